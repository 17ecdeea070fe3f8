"""Tests for the portal replica (tests/replica): routing, faults, proxying, TLS, Scrapy."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.replica.server import DEFAULT_ROOT, ReplicaServer

REPO = Path(__file__).resolve().parent.parent
MAIN = DEFAULT_ROOT / "site" / "baotuyenquang.com.vn"
MOBILE = DEFAULT_ROOT / "site" / "m.baotuyenquang.com.vn"
F01 = "/chinh-tri/thoi-su/chuan-bi-chu-dao-dai-hoi-dang-bo-cap-co-so-nhiem-ky-2020-2025-132450.html"
F04 = "/va-cham-giao-thong-tren-quoc-lo-2c-mot-nguoi-bi-thuong-nang-185230.html"
F04_V1_ETAG, F04_V2_ETAG = '"a8fbd19125bcb42e"', '"6a96a759d79b0769"'
F11 = "/xa-hoi/y-te/tiem-vac-xin-phong-covid-19-cho-nguoi-dan-vung-sau-vung-xa-147903.html"
F14 = "/soi-noi-lien-hoan-van-nghe-quan-chung-cac-dan-toc-187402.html"
SEED = "/chinh-tri/xay-dung-dang/dang-bo-thi-tran-na-hang-chu-trong-cong-tac-phat-trien-dang-vien-127836.html"
SEED_ETAG, SEED_LAST_MODIFIED = '"92fc86121866aeb5"', "Thu, 17 Oct 2019 15:56:00 GMT"


@pytest.fixture
def srv():
    with ReplicaServer() as server:
        yield server


def fetch(srv, target, headers=None, method="GET"):
    """One request on a fresh connection to the replica; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, target, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def raw_get(srv, target: bytes) -> bytes:
    """GET with an arbitrary (e.g. raw UTF-8) request target; returns the status line."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return sock.makefile("rb").readline().strip()


def https_opener(srv):
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    proxies = urllib.request.ProxyHandler({"http": srv.proxy_url, "https": srv.proxy_url})
    return urllib.request.build_opener(proxies, urllib.request.HTTPSHandler(context=unverified))


def test_exact_route_with_query_as_multiset(srv):
    f01_bytes = (MAIN / F01.lstrip("/")).read_bytes()
    reordered = F01 + "?utm_campaign=zalo&utm_medium=zalo&zarsrc=31&utm_source=zalo"
    status, headers, body = fetch(srv, reordered)
    assert (status, headers["ETag"], body) == (200, '"11cfb9ed6f3cef36"', f01_bytes)
    assert headers["Content-Length"] == str(len(f01_bytes))
    # a multiset, not a subset: a missing or a doubled pair is another URL
    assert fetch(srv, F01 + "?zarsrc=31&utm_source=zalo")[0] == 404
    assert fetch(srv, reordered + "&zarsrc=31")[0] == 404
    # the second section path is its own route with its own ETag
    status, headers, _ = fetch(srv, F01.replace("thoi-su", "xay-dung-dang"))
    assert (status, headers["ETag"]) == (200, '"40b633834957ec36"')


def test_tracking_param_url_of_f01_through_http_proxy(srv):
    url = f"http://baotuyenquang.com.vn{F01}?fbclid=IwAR2Zk8Qx0vT3Lr6pFhYw1mN4cB7dE9sJ2aU5oK8gH1iV3xZ0qR6tY4uP7wS"
    with https_opener(srv).open(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.read() == (MAIN / F01.lstrip("/")).read_bytes()
    [entry] = srv.requests
    assert entry["url"] == url
    assert (entry["scheme"], entry["host"], entry["path"], entry["status"]) == ("http", "baotuyenquang.com.vn", F01, 200)
    assert entry["query"].startswith("fbclid=IwAR2Zk8")


def test_host_header_and_path_prefix_mode(srv):
    mobile_home = (MOBILE / "index.html").read_bytes()
    assert fetch(srv, "/", {"Host": "m.baotuyenquang.com.vn"})[2] == mobile_home
    assert fetch(srv, "/m.baotuyenquang.com.vn/")[2] == mobile_home
    assert fetch(srv, "/baotuyenquang.com.vn/robots.txt")[2] == (MAIN / "robots.txt").read_bytes()
    # Host 127.0.0.1:PORT (http.client's default) means the main host
    assert fetch(srv, "/robots.txt")[2] == (MAIN / "robots.txt").read_bytes()
    assert [e["url"] for e in srv.requests] == [
        "http://m.baotuyenquang.com.vn/", "http://m.baotuyenquang.com.vn/",
        "http://baotuyenquang.com.vn/robots.txt", "http://baotuyenquang.com.vn/robots.txt",
    ]


def test_raw_and_percent_encoded_queries_match_the_same_route(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "tag.html").write_bytes(b"<p>tag page</p>")
    routes = [{"path": "/tag?q=Tuyên Quang&type=tag", "file": "site/tag.html", "status": 200, "headers": {}}]
    (tmp_path / "routes.json").write_text(json.dumps(routes, ensure_ascii=False), "utf-8")
    with ReplicaServer(root=tmp_path) as server:
        for target in ["/tag?q=Tuy%C3%AAn%20Quang&type=tag",  # what Scrapy sends
                       "/tag?type=tag&q=Tuy%C3%AAn+Quang",
                       "/tag?q=Tuyên+Quang&type=tag"]:
            assert raw_get(server, target.encode("utf-8")) == b"HTTP/1.1 200 OK", target
        assert raw_get(server, "/tag?q=Tuyên&type=tag".encode()) == b"HTTP/1.1 404 Not Found"
        # the log keeps the query as sent, with raw UTF-8 decoded to text
        assert [e["query"] for e in server.requests][2:] == ["q=Tuyên+Quang&type=tag", "q=Tuyên&type=tag"]


def test_prefix_route_for_robots_disallowed_search(srv):
    status, _, body = fetch(srv, "/tim-kiem/?q=Na%20Hang&type=tag")
    assert (status, body) == (200, (MAIN / "tim-kiem" / "index.html").read_bytes())
    assert raw_get(srv, "/tim-kiem/?q=Tuyên+Quang&type=tag".encode()) == b"HTTP/1.1 200 OK"
    assert fetch(srv, "/admin/login.html")[2] == (MAIN / "admin" / "login.html").read_bytes()


def test_unrouted_path_is_404_with_error_page(srv):
    status, headers, body = fetch(srv, "/khong-co-bai-nay-999999.html")
    assert (status, body) == (404, (MAIN / "_errors" / "404.html").read_bytes())
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert srv.requests[-1]["status"] == 404


def test_fail_first_f11_gives_500_500_200(srv):
    results = [fetch(srv, F11) for _ in range(3)]
    assert [r[0] for r in results] == [500, 500, 200]
    assert results[0][2] == results[1][2] == (MAIN / "_errors" / "500.html").read_bytes()
    assert results[2][2] == (MAIN / F11.lstrip("/")).read_bytes()
    assert results[2][1]["ETag"] == '"1c279fefa552549a"'


def test_drill_options_drop_cut_and_close_delimited(tmp_path):
    (tmp_path / "page.html").write_bytes(b"<p>" + b"x" * 5000 + b"</p>")
    page = {"file": "page.html", "status": 200, "headers": {"Content-Type": "text/html"}}
    routes = [{"path": "/drop", "drop": 2, **page}, {"path": "/cut", "drop": 1, "drop_after_bytes": 100, **page},
              {"path": "/stream", "close_delimited": True, **page}]
    (tmp_path / "routes.json").write_text(json.dumps(routes), "utf-8")
    whole = (tmp_path / "page.html").read_bytes()
    with ReplicaServer(root=tmp_path) as server:
        for _ in range(2):  # closed before any answer
            with pytest.raises(http.client.RemoteDisconnected):
                fetch(server, "/drop")
        assert fetch(server, "/drop")[::2] == (200, whole)
        with pytest.raises(http.client.IncompleteRead) as cut:  # headers, 100 bytes of 5007, closed
            fetch(server, "/cut")
        assert cut.value.partial == whole[:100]
        assert fetch(server, "/cut")[::2] == (200, whole)
        status, headers, body = fetch(server, "/stream")  # read to the end of the connection
        assert (status, body, headers["Content-Length"], headers["Connection"]) == (200, whole, None, "close")
        assert [(e["path"], e["status"]) for e in server.requests] == [
            ("/drop", 0), ("/drop", 0), ("/drop", 200), ("/cut", 200), ("/cut", 200), ("/stream", 200)]


def test_versions_f04_serve_v1_then_v2_and_reset_restarts(srv):
    v1 = (MAIN / F04.lstrip("/")).read_bytes()
    v2 = (MAIN / "_versions" / "va-cham-giao-thong-tren-quoc-lo-2c-mot-nguoi-bi-thuong-nang-185230.v2.html").read_bytes()
    first, second, third = (fetch(srv, F04) for _ in range(3))
    assert (first[1]["ETag"], first[1]["Last-Modified"], first[2]) == (F04_V1_ETAG, "Mon, 02 Jun 2025 23:20:00 GMT", v1)
    assert (second[1]["ETag"], second[1]["Last-Modified"], second[2]) == (F04_V2_ETAG, "Tue, 03 Jun 2025 07:45:00 GMT", v2)
    assert third[2] == v2
    srv.reset()
    assert srv.requests == []
    assert fetch(srv, F04)[2] == v1


def test_conditional_requests_answer_304(srv):
    status, headers, body = fetch(srv, SEED, {"If-None-Match": SEED_ETAG})
    assert (status, body, headers["ETag"]) == (304, b"", SEED_ETAG)
    assert fetch(srv, SEED, {"If-None-Match": '"stale"'})[0] == 200
    assert fetch(srv, SEED, {"If-Modified-Since": SEED_LAST_MODIFIED})[0] == 304
    assert fetch(srv, SEED, {"If-Modified-Since": "Wed, 16 Oct 2019 00:00:00 GMT"})[0] == 200
    # F04: a 304 counts as a successful request, so the next one is v2
    assert fetch(srv, F04, {"If-None-Match": F04_V1_ETAG})[0] == 304
    status, headers, _ = fetch(srv, F04, {"If-None-Match": F04_V1_ETAG})
    assert (status, headers["ETag"]) == (200, F04_V2_ETAG)


def test_connect_tunnel_tls_keepalive_and_head(srv):
    opener = https_opener(srv)
    with opener.open("https://baotuyenquang.com.vn/robots.txt", timeout=10) as resp:
        assert resp.read() == (MAIN / "robots.txt").read_bytes()
    with opener.open("https://m.baotuyenquang.com.vn/robots.txt", timeout=10) as resp:
        assert resp.read() == (MOBILE / "robots.txt").read_bytes()
    # several requests, GET and HEAD, inside one tunnel
    tls = ssl.create_default_context(cadata=srv.cert_pem.decode())  # the cert names both hosts
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=tls, timeout=10)
    conn.set_tunnel("m.baotuyenquang.com.vn", 443)
    conn.request("HEAD", "/")
    head = conn.getresponse()
    assert (head.status, head.read(), head.headers["Content-Length"]) == (
        200, b"", str((MOBILE / "index.html").stat().st_size))
    conn.request("GET", "/")
    assert conn.getresponse().read() == (MOBILE / "index.html").read_bytes()
    conn.close()
    assert [(e["method"], e["url"]) for e in srv.requests] == [
        ("GET", "https://baotuyenquang.com.vn/robots.txt"),
        ("GET", "https://m.baotuyenquang.com.vn/robots.txt"),
        ("HEAD", "https://m.baotuyenquang.com.vn/"),
        ("GET", "https://m.baotuyenquang.com.vn/"),
    ]


def test_offsite_hosts_are_refused_and_logged(srv):
    with pytest.raises(urllib.error.URLError, match="403"):
        https_opener(srv).open("https://www.facebook.com/sharer/sharer.php?u=x", timeout=10)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    for url in ("http://tuyenquang.gov.vn/", "http://127.0.0.1:9/"):  # F30, F31
        conn.request("GET", url)
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (403, b"not routed")
    conn.close()
    assert [(e["method"], e["host"], e["url"], e["status"]) for e in srv.requests] == [
        ("CONNECT", "www.facebook.com", "https://www.facebook.com:443", 403),
        ("GET", "tuyenquang.gov.vn", "http://tuyenquang.gov.vn/", 403),
        ("GET", "127.0.0.1", "http://127.0.0.1:9/", 403),
    ]


def test_slow_route_does_not_block_other_clients(srv):
    slow = {}
    worker = threading.Thread(target=lambda: slow.update(r=fetch(srv, F14), t=time.monotonic()))
    started = time.monotonic()
    worker.start()
    time.sleep(0.2)  # let the slow request reach the server first
    assert fetch(srv, "/robots.txt")[0] == 200
    assert time.monotonic() - started < 1.5
    worker.join(10)
    assert slow["r"][0] == 200 and slow["t"] - started >= 3.0


def test_control_endpoints_and_cli(tmp_path):
    port_file, log = tmp_path / "port", tmp_path / "log.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "tests.replica", "--port-file", str(port_file), "--log", str(log)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        port = int(port_file.read_text())
        assert line == f"replica listening on http://127.0.0.1:{port}"
        direct = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        direct.request("GET", "/robots.txt")
        assert direct.getresponse().read() == (MAIN / "robots.txt").read_bytes()
        # absolute-form for the server itself (a client with http_proxy set) is a control call too
        direct.request("GET", f"http://127.0.0.1:{port}/__replica__/requests")
        [entry] = json.loads(direct.getresponse().read())
        assert (entry["url"], entry["status"]) == ("http://baotuyenquang.com.vn/robots.txt", 200)
        direct.request("POST", "/__replica__/reset", body=b"")
        reset = direct.getresponse()
        assert (reset.status, json.loads(reset.read())) == (200, {"reset": True})
        direct.request("GET", "/__replica__/requests")
        assert json.loads(direct.getresponse().read()) == []
        direct.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not port_file.exists()
    assert [json.loads(x)["path"] for x in log.read_text().splitlines()] == ["/robots.txt"]


SPIDER = '''
import hashlib
import scrapy

class ReplicaCheck(scrapy.Spider):
    name = "replica_check"

    async def start(self):
        for url in ("https://baotuyenquang.com.vn/robots.txt", "https://m.baotuyenquang.com.vn/"):
            yield scrapy.Request(url)

    def parse(self, response):
        yield {"url": response.url, "status": response.status,
               "sha256": hashlib.sha256(response.body).hexdigest()}
'''


def test_scrapy_crawls_production_urls_through_the_proxy(srv, tmp_path):
    import hashlib

    (tmp_path / "spider.py").write_text(SPIDER)
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    env.update(http_proxy=srv.proxy_url, https_proxy=srv.proxy_url)
    proc = subprocess.run(
        [sys.executable, "-m", "scrapy", "runspider", "spider.py", "-O", "out.jsonl",
         "-s", "LOG_LEVEL=INFO", "-s", "TELNETCONSOLE_ENABLED=False", "-s", "ROBOTSTXT_OBEY=False"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    items = {i["url"]: i for i in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert items == {
        "https://baotuyenquang.com.vn/robots.txt": {
            "url": "https://baotuyenquang.com.vn/robots.txt", "status": 200, "sha256": sha(MAIN / "robots.txt")},
        "https://m.baotuyenquang.com.vn/": {
            "url": "https://m.baotuyenquang.com.vn/", "status": 200, "sha256": sha(MOBILE / "index.html")},
    }
    assert sorted(e["url"] for e in srv.requests) == sorted(items)
    assert {e["scheme"] for e in srv.requests} == {"https"}
