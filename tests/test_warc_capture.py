"""Tests for crawler.middlewares.warc_capture.

``test_real_crawl`` runs a real Scrapy 2.19 crawl (asyncio reactor) in a
subprocess against a local http.server and inspects the WARC files.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import json
import subprocess
import sys
import textwrap
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from scrapy.http import HtmlResponse, Request, Response
from warcio.archiveiterator import ArchiveIterator

from crawler.middlewares.warc_capture import build_exchange, reason_phrase, target_uri

WARCIO = str(Path(sys.executable).with_name("warcio"))

PAGE = "<html><head><title>Gìn giữ làn điệu Then</title></head><body>Lâm Bình</body></html>"
PAGE_GZ = gzip.compress(PAGE.encode("utf-8") * 30, mtime=0)
CHUNKS = [b"<html><body>", b"chunk-one ", b"chunk-two ", b"</body></html>"]
SECRET = "Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M="  # must never reach a WARC


def b32sha1(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


# --------------------------------------------------------------------- server
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # needed for chunked responses / keep-alive
    seen: list[dict] = []

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        Handler.seen.append({"path": self.path, "headers": dict(self.headers.items())})
        if self.path == "/robots.txt":
            self._send(200, b"User-agent: *\nDisallow: /private\n", {"Content-Type": "text/plain"})
        elif self.path == "/gz":
            self._send(
                200,
                PAGE_GZ,
                {"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"},
            )
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for c in CHUNKS:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/redirect":
            self._send(302, b"", {"Location": "/final"})
        elif self.path == "/final":
            self._send(200, b"<html>final</html>", {"Content-Type": "text/html"})
        elif self.path == "/missing":
            self._send(404, b"<html>404</html>", {"Content-Type": "text/html"})
        elif self.path == "/error":
            self._send(500, b"<html>500</html>", {"Content-Type": "text/html"})
        else:
            self._send(404, b"", {})


@pytest.fixture
def server():
    Handler.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


# ---------------------------------------------------------------- crawl script
CRAWL_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading
    from pathlib import Path

    import scrapy
    from scrapy.crawler import CrawlerProcess

    from crawler.middlewares import warc_capture
    from crawler.warc.writer import WarcFileWriter

    base, warc_dir, out_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    SECRET = sys.argv[4]
    WRITER_PROCESS = sys.argv[5] == "process"

    # Record which thread performs each write (must not be the reactor thread).
    threads = []
    _orig = WarcFileWriter.write_exchange
    def _spy(self, **kw):
        threads.append(threading.current_thread().name)
        return _orig(self, **kw)
    WarcFileWriter.write_exchange = _spy

    class T(scrapy.Spider):
        name = "t"

        async def start(self):
            for path, meta in [
                ("/gz", {}),
                ("/chunked", {}),
                ("/redirect", {}),
                ("/missing", {"handle_httpstatus_list": [404]}),
                ("/error", {"handle_httpstatus_list": [500]}),
            ]:
                headers = {"Authorization": SECRET} if path == "/gz" else {}
                yield scrapy.Request(base + path, meta=meta, headers=headers)

        def parse(self, response):
            yield {
                "url": response.url,
                "status": response.status,
                "warc": response.meta.get("warc"),
                "body": response.text,
                "reactor_thread": threading.current_thread().name,
            }

    hook_calls, signal_calls = [], []

    def hook(path):
        # must be called with a final, already renamed file
        hook_calls.append({"path": str(path), "exists": path.exists(),
                           "open_exists": Path(str(path) + ".open").exists()})

    process = CrawlerProcess(settings={
        "DOWNLOADER_MIDDLEWARES": {
            "crawler.middlewares.warc_capture.WarcCaptureMiddleware": 650,
        },
        "DEFAULT_REQUEST_HEADERS": {"Accept-Encoding": "gzip, deflate, br"},
        "WARC_DIR": warc_dir,
        "WARC_PREFIX": "CAPTURE",
        "WARC_MAX_SIZE": 3000,
        "WARC_WRITER_PROCESS": WRITER_PROCESS,
        "NEWSARCHIVE_CPU_WORKERS": 1,
        "WARC_OPERATOR": "newsarchive test-suite",
        "USER_AGENT": "newsarchive-test/1.0",
        "ROBOTSTXT_OBEY": True,
        "RETRY_TIMES": 1,
        "LOG_LEVEL": "INFO",
        "FEEDS": {str(out_dir / "items.jsonl"): {"format": "jsonlines"}},
    })
    crawler = process.create_crawler(T)
    crawler.newsarchive_on_warc_closed = hook
    crawler.signals.connect(lambda path, spider: signal_calls.append(str(path)),
                            signal=warc_capture.warc_file_closed, weak=False)
    process.crawl(crawler)
    process.start()
    (out_dir / "result.json").write_text(json.dumps({
        "threads": threads,
        "pid": os.getpid(),
        "hook_calls": hook_calls,
        "signal_calls": signal_calls,
        "stats": crawler.stats.get_stats(),
    }, default=str))
    """
)


def read_records(path: Path) -> list[dict]:
    out = []
    with open(path, "rb") as fh:
        it = ArchiveIterator(fh)
        for rec in it:
            out.append(
                {
                    "type": rec.rec_type,
                    "h": rec.rec_headers,
                    "http": rec.http_headers,
                    "raw": rec.raw_stream.read(),
                    "offset": it.get_record_offset(),
                    "length": it.get_record_length(),
                    "file": path.name,
                }
            )
    return out


def read_pointer(warc_dir: Path, ptr: dict) -> dict:
    """Follow a meta['warc'] pointer: seek + read exactly one gzip member / record."""
    with open(warc_dir / ptr["file"], "rb") as fh:
        fh.seek(ptr["offset"])
        blob = fh.read(ptr["length"])
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    d.decompress(blob)
    assert d.eof and d.unused_data == b""
    recs = [
        {"type": r.rec_type, "h": r.rec_headers, "http": r.http_headers, "raw": r.raw_stream.read()}
        for r in ArchiveIterator(io.BytesIO(blob))
    ]
    assert len(recs) == 1
    return recs[0]


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_real_crawl(server: str, tmp_path: Path, writer: str) -> None:
    warc_dir = tmp_path / "warc"
    script = tmp_path / "crawl.py"
    script.write_text(CRAWL_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), server, str(warc_dir), str(tmp_path), SECRET, writer],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    items = [json.loads(ln) for ln in (tmp_path / "items.jsonl").read_text().splitlines()]
    by_path = {i["url"].removeprefix(server): i for i in items}
    assert set(by_path) == {"/gz", "/chunked", "/final", "/missing", "/error"}

    # --- files: all closed, renamed, valid
    assert not list(warc_dir.glob("*.open"))
    files = sorted(warc_dir.glob("CAPTURE-*.warc.gz"))
    assert len(files) >= 2  # WARC_MAX_SIZE=3000 forces rollover
    for f in files:
        chk = subprocess.run([WARCIO, "check", str(f)], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
    records = [r for f in files for r in read_records(f)]
    for f in files:
        assert read_records(f)[0]["type"] == "warcinfo"
    info = read_records(files[0])[0]["raw"].decode()
    assert "operator: newsarchive test-suite\r\n" in info
    assert "robots: obey\r\n" in info
    assert "http-header-user-agent: newsarchive-test/1.0\r\n" in info
    assert "HTTP/2 exchanges are recorded as HTTP/1.1" in info

    responses = {
        r["h"]["WARC-Target-URI"].removeprefix(server): r for r in records if r["type"] == "response"
    }
    requests_ = [r for r in records if r["type"] == "request"]
    resp_ids = {r["h"]["WARC-Record-ID"] for r in records if r["type"] in ("response", "revisit")}
    # every request record and every metadata record is linked to a response/revisit record
    assert {r["h"]["WARC-Concurrent-To"] for r in requests_} == resp_ids
    metas = [r for r in records if r["type"] == "metadata"]
    full_ids = {r["h"]["WARC-Record-ID"] for r in records if r["type"] == "response"}
    assert {r["h"]["WARC-Concurrent-To"] for r in metas} == full_ids  # revisits get none
    assert len(metas) == len(full_ids) == 7 and len(requests_) == 8

    # --- every response recorded: robots, 200s, 302 + target, 404, 500 twice (retry)
    status_by_uri: dict[str, list[int]] = {}
    for r in records:
        if r["type"] in ("response", "revisit"):
            uri = r["h"]["WARC-Target-URI"].removeprefix(server)
            status_by_uri.setdefault(uri, []).append(int(r["http"].get_statuscode()))
    assert status_by_uri == {
        "/robots.txt": [200],
        "/gz": [200],
        "/chunked": [200],
        "/redirect": [302],
        "/final": [200],
        "/missing": [404],
        "/error": [500, 500],
    }
    for r in records:
        if r["type"] in ("response", "revisit"):
            assert r["h"]["WARC-IP-Address"] == "127.0.0.1"
            assert r["http"].protocol == "HTTP/1.1"

    # --- the retried 500 sent the same bytes again: a revisit of the first one
    errors = [r for r in records
              if r["type"] in ("response", "revisit") and r["h"]["WARC-Target-URI"].endswith("/error")]
    assert [r["type"] for r in errors] == ["response", "revisit"]
    first, again = errors
    assert again["h"]["WARC-Profile"] == "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
    assert again["h"]["WARC-Refers-To-Target-URI"] == first["h"]["WARC-Target-URI"]
    assert again["h"]["WARC-Refers-To-Date"] == first["h"]["WARC-Date"]
    assert again["h"]["WARC-Refers-To"] == first["h"]["WARC-Record-ID"]
    assert again["h"]["WARC-Payload-Digest"] == first["h"]["WARC-Payload-Digest"] == b32sha1(b"<html>500</html>")
    assert again["raw"] == b""  # headers only
    assert again["http"].get_header("Content-Length") == "16"  # still the entity's length

    # --- metadata: via, fetch time, outlinks
    meta_of = {r["h"]["WARC-Concurrent-To"]: r["raw"].decode() for r in metas}
    redirect_meta = meta_of[responses["/redirect"]["h"]["WARC-Record-ID"]]
    assert f"outlink: {server}/final R http/location\r\n" in redirect_meta
    assert "fetchTimeMs: " in redirect_meta
    assert f"via: {server}/redirect\r\n" in meta_of[responses["/final"]["h"]["WARC-Record-ID"]]
    assert again["h"]["WARC-Record-ID"] not in meta_of  # a revisit's outlinks are the original's

    # --- gzip page: compressed bytes exactly as sent, with Content-Encoding
    gz = responses["/gz"]
    assert gz["raw"] == PAGE_GZ
    assert gz["http"].get_header("Content-Encoding") == "gzip"
    assert gz["http"].get_header("Content-Length") == str(len(PAGE_GZ))
    assert gz["http"].statusline == "200 OK"
    assert gz["h"]["WARC-Payload-Digest"] == b32sha1(PAGE_GZ)
    assert by_path["/gz"]["body"] == PAGE * 30  # the spider still got it decoded

    # --- chunked: de-chunked entity, no Transfer-Encoding, correct Content-Length
    ch = responses["/chunked"]
    entity = b"".join(CHUNKS)
    assert ch["raw"] == entity
    assert ch["http"].get_header("Transfer-Encoding") is None
    assert ch["http"].get_header("Content-Length") == str(len(entity))
    assert ch["h"]["WARC-Payload-Digest"] == b32sha1(entity)

    # --- redirect recorded with its Location
    rd = responses["/redirect"]
    assert rd["http"].statusline == "302 Found"
    assert rd["http"].get_header("Location") == "/final"
    assert responses["/missing"]["http"].statusline == "404 Not Found"
    assert responses["/error"]["http"].statusline == "500 Internal Server Error"

    # --- request records: what was sent, minus credentials
    gz_req = next(r for r in requests_ if r["h"]["WARC-Target-URI"].endswith("/gz"))
    assert gz_req["http"].protocol == "GET"
    assert gz_req["http"].statusline == "/gz HTTP/1.1"
    assert gz_req["http"].get_header("Host") == server.removeprefix("http://")
    assert gz_req["http"].get_header("User-Agent") == "newsarchive-test/1.0"
    assert gz_req["http"].get_header("Accept-Encoding") == "gzip, deflate, br"
    assert gz_req["http"].get_header("Authorization") is None
    sent = next(s for s in Handler.seen if s["path"] == "/gz")
    assert sent["headers"]["Authorization"] == SECRET  # it WAS on the wire …
    for f in files:  # … but is nowhere in any WARC
        with gzip.open(f, "rb") as fh:
            data = fh.read()
        assert SECRET.split()[1].encode() not in data
        assert b"\r\nAuthorization:" not in data and b"\r\nProxy-Authorization:" not in data

    # --- the spider saw pointers to its own response records
    for path, item in by_path.items():
        ptr = item["warc"]
        assert ptr and set(ptr) >= {"file", "offset", "length", "payload_digest"}
        rec = read_pointer(warc_dir, ptr)
        assert rec["type"] == "response"
        assert rec["h"]["WARC-Target-URI"] == item["url"]
        assert int(rec["http"].get_statuscode()) == item["status"]
        assert rec["h"]["WARC-Payload-Digest"] == ptr["payload_digest"] == b32sha1(rec["raw"])
        assert rec["h"]["WARC-Record-ID"] == ptr["record_id"]
    # redirect: the final response's pointer won
    assert by_path["/final"]["warc"]["record_id"] == responses["/final"]["h"]["WARC-Record-ID"]
    # 500 was retried once; the second answer is a revisit, so the pointer leads
    # to the first response (same bytes) and names the revisit
    err_ptr = by_path["/error"]["warc"]
    assert err_ptr["record_id"] == first["h"]["WARC-Record-ID"]
    assert err_ptr["record_type"] == "response"
    assert err_ptr["revisit"]["record_id"] == again["h"]["WARC-Record-ID"]

    # --- writes ran in the WARC writer process, or on the writer thread; never on the
    # reactor thread. File names carry the crawl process's pid either way.
    if writer == "process":
        assert result["threads"] == []
    else:
        assert len(result["threads"]) == 8  # robots, gz, chunked, 302, final, 404, 500 x2
        assert all(t.startswith("warc-writer") for t in result["threads"])
    assert all(f.name.endswith(f"-{result['pid']}.warc.gz") for f in files)
    assert {i["reactor_thread"] for i in items} == {"MainThread"}

    # --- hook + signal + stats
    names = [str(f) for f in files]
    assert sorted(c["path"] for c in result["hook_calls"]) == names
    assert all(c["exists"] and not c["open_exists"] for c in result["hook_calls"])
    assert sorted(result["signal_calls"]) == names
    stats = result["stats"]
    assert stats["warc/exchanges"] == 8
    assert stats["warc/records"] == 23 + len(files)  # 8 x (request, response|revisit), 7 metadata, warcinfos
    assert stats["warc/revisits"] == 1
    assert stats["warc/indexed"] == len(files)
    for f in files:  # every closed file has its CDXJ index beside it
        assert Path(str(f) + ".cdxj").read_text().count("\n") == sum(
            1 for r in read_records(f) if r["type"] in ("response", "revisit"))
    assert stats["warc/files"] == len(files)
    assert sorted(stats["warc/closed_files"]) == names
    assert stats["warc/bytes"] == sum(f.stat().st_size for f in files)
    assert "warc/errors" not in stats


# ------------------------------------------------------- unit: build_exchange
def _resp(url: str, status: int = 200, headers=None, body=b"", protocol="HTTP/1.1", flags=None,
          method="GET", req_headers=None, meta=None) -> Response:
    req = Request(url, method=method, headers=req_headers or {}, meta=meta or {})
    return HtmlResponse(
        url, status=status, headers=headers or {}, body=body, request=req,
        protocol=protocol, flags=flags or [],
    )


def test_build_exchange_reconstruction() -> None:
    r = _resp(
        "https://user:pw@baotuyenquang.com.vn:8443/a/b.html?x=1&y=2#frag",
        headers={"Content-Type": "text/html", "Transfer-Encoding": "chunked",
                 "Set-Cookie": ["a=1", "b=2"]},
        body=b"hello",
        protocol="h2",
        req_headers={"Authorization": "Basic Zm9v", "Proxy-Authorization": "Basic YmFy",
                     "Cookie": "s=1", "User-Agent": "ua"},
        meta={"download_latency": 0.25},
    )
    ex = build_exchange(r.request, r)
    assert ex["url"] == "https://baotuyenquang.com.vn:8443/a/b.html?x=1&y=2"
    assert ex["request_target"] == "/a/b.html?x=1&y=2"
    assert ex["protocol"] == "HTTP/1.1"  # h2 recorded as HTTP/1.1
    assert ex["reason"] == "OK"
    names = [k.lower() for k, _ in ex["request_headers"]]
    assert "authorization" not in names and "proxy-authorization" not in names
    assert ex["request_headers"][0] == ("Host", "baotuyenquang.com.vn:8443")
    assert ("Cookie", "s=1") in ex["request_headers"]
    assert ("Transfer-Encoding", "chunked") not in ex["response_headers"]
    assert ("Content-Length", "5") in ex["response_headers"]
    assert [v for k, v in ex["response_headers"] if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert ex["truncated"] is None
    assert ex["ip_address"] is None


def test_build_exchange_content_length_rules() -> None:
    # wrong server Content-Length is repaired to the stored entity length
    r = _resp("http://h.test/", headers={"Content-Length": "999"}, body=b"abc")
    assert ("Content-Length", "3") in build_exchange(r.request, r)["response_headers"]
    # HEAD: no body by definition, keep the server's value
    r = _resp("http://h.test/", headers={"Content-Length": "999"}, method="HEAD")
    assert ("Content-Length", "999") in build_exchange(r.request, r)["response_headers"]
    # 304: keep as is, do not invent one
    r = _resp("http://h.test/", status=304)
    ex = build_exchange(r.request, r)
    assert ex["reason"] == "Not Modified"
    assert not any(k.lower() == "content-length" for k, _ in ex["response_headers"])
    # default port omitted from Host, HTTP/1.0 kept, dataloss → WARC-Truncated
    r = _resp("http://h.test:80/p", protocol="HTTP/1.0", flags=["dataloss"], body=b"x")
    ex = build_exchange(r.request, r)
    assert ex["request_headers"][0] == ("Host", "h.test")
    assert ex["protocol"] == "HTTP/1.0"
    assert ex["truncated"] == "disconnect"
    # close-delimited bodies ("partial") are complete, not truncated
    r = _resp("http://h.test/p", flags=["partial"], protocol=None)
    ex = build_exchange(r.request, r)
    assert ex["truncated"] is None and ex["protocol"] == "HTTP/1.1"
    # stopped at DOWNLOAD_MAXSIZE (crawler/middlewares/maxsize.py): the body ran one chunk
    # past the limit; the record keeps exactly the limit, WARC-Truncated: length (§5.13)
    r = _resp("http://h.test/big", flags=["download_stopped"], body=b"x" * 150,
              headers={"Content-Length": "9000"}, meta={"newsarchive_truncated_at": 100})
    ex = build_exchange(r.request, r)
    assert ex["truncated"] == "length" and ex["body"] == b"x" * 100
    assert ("Content-Length", "100") in ex["response_headers"]
    # another StopDownload: the bytes received, reason unspecified
    r = _resp("http://h.test/p", flags=["download_stopped"], body=b"x" * 150)
    ex = build_exchange(r.request, r)
    assert ex["truncated"] == "unspecified" and len(ex["body"]) == 150


def test_reason_phrase_and_target_uri() -> None:
    assert reason_phrase(404) == "Not Found"
    assert reason_phrase(599) == ""
    assert target_uri("http://u:p@[::1]:8080/x#y") == "http://[::1]:8080/x"


# ------------------------------------------------- middleware without a crawl
def _make_mw(tmp_path: Path, **settings):
    from scrapy import Spider
    from scrapy.utils.test import get_crawler

    from crawler.middlewares.warc_capture import WarcCaptureMiddleware

    crawler = get_crawler(Spider, {"WARC_DIR": str(tmp_path), **settings})
    crawler.stats.open_spider()
    return crawler, WarcCaptureMiddleware.from_crawler(crawler)


def test_disabled_raises_not_configured(tmp_path: Path) -> None:
    from scrapy.exceptions import NotConfigured

    with pytest.raises(NotConfigured):
        _make_mw(tmp_path, WARC_ENABLED=False)


def test_recovered_orphan_is_published_and_errors_propagate(tmp_path: Path) -> None:
    import asyncio
    from datetime import datetime, timezone

    from crawler.warc.writer import WarcFileWriter

    # An orphan .open file from a "killed" earlier run.
    dead = WarcFileWriter(tmp_path, prefix="OLD", host="h")
    dead.write_exchange(
        url="http://h.test/old", request_method="GET", request_target="/old",
        request_headers=[("Host", "h.test")], protocol="HTTP/1.1", status=200,
        response_headers=[("Content-Length", "2")], body=b"ok", ip_address=None,
        fetched_at=datetime.now(timezone.utc),
    )
    orphan_final = tmp_path / dead.current_file
    dead._fh.close()  # process death: lock released, file left as .open
    dead._fh = None

    crawler, mw = _make_mw(tmp_path, WARC_PREFIX="NEW")
    assert crawler.stats.get_value("warc/recovered_files") == 1
    seen: list[Path] = []
    crawler.newsarchive_on_warc_closed = seen.append

    async def run() -> None:
        r = _resp("http://h.test/page", body=b"<html>x</html>")
        out = await mw.process_response(r.request, r)
        assert out is r
        assert r.meta["warc"]["file"].startswith("NEW-")
        assert seen == [orphan_final]  # published on the first drain

        # write failure: stale pointer removed, error raised, counted
        r2 = _resp("http://h.test/p2", meta={"warc": {"file": "stale"}})

        def boom(**kw):
            raise OSError(28, "No space left on device")

        mw.writer.write_exchange = boom
        with pytest.raises(OSError):
            await mw.process_response(r2.request, r2)
        assert "warc" not in r2.meta
        await mw.spider_closed()

    asyncio.run(run())
    assert orphan_final.exists()
    assert len(seen) == 2 and seen[1].name.startswith("NEW-")
    stats = crawler.stats.get_stats()
    assert stats["warc/errors"] == 1
    assert stats["warc/exchanges"] == 1
    assert stats["warc/files"] == 2
    assert not list(tmp_path.glob("*.open"))


def test_an_index_left_half_written_by_a_killed_run_is_removed_at_start(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"NEWSARCHIVE-20261130040229-00002-vm-{dead.pid}.warc.gz.cdxj.tmp-{dead.pid}"
    live = tmp_path / f"OTHER-20261130040229-00000-vm-1.warc.gz.cdxj.tmp-{os.getpid()}"
    orphan.write_text("com,baotuyenquang)/ 2026")
    live.write_text("com,baotuyenquang)/ 2026")
    _make_mw(tmp_path)
    assert not orphan.exists()
    assert live.exists()  # a running process is still writing it
