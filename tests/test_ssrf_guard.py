"""SSRF guard: private, loopback and link-local addresses are never fetched, by
literal IP, by a name that resolves to one, or after a redirect (live crawl, no
proxy)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crawler.middlewares.ssrf_guard import forbidden_address

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("192.168.1.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link_local"),
        ("::1", "loopback"),
        ("fe80::1", "link_local"),
        ("::ffff:10.0.0.1", "private"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not_global"),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_address_classes(address, reason):
    assert forbidden_address(address) == reason


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self):  # noqa: N802 - http.server's name
        self.hits.append(self.path)
        if self.path == "/robots.txt":
            self.send_response(404)
            self.end_headers()
            return
        target = {"/to-loopback": self.server.loopback_url, "/to-private": "http://10.0.0.1/"}.get(self.path)
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _serve(host: str):
    hits: list[str] = []
    handler = type("H", (_Handler,), {"hits": hits})
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


SPIDER = """
import json, scrapy
class S(scrapy.Spider):
    name = "s"
    async def start(self):
        for url in {urls!r}:
            yield scrapy.Request(url, callback=self.ok, errback=self.err, dont_filter=True)
    def ok(self, response):
        print("FETCHED", response.url, flush=True)
    def err(self, failure):
        print("REFUSED", failure.request.url, flush=True)
"""


def test_crawl_refuses_private_targets_including_after_redirects(tmp_path):
    secret, secret_hits = _serve("127.0.0.1")
    allowed, allowed_hits = _serve("127.0.0.2")
    allowed.loopback_url = f"http://127.0.0.1:{secret.server_port}/secret"
    a = f"http://127.0.0.2:{allowed.server_port}"
    urls = [
        f"http://127.0.0.1:{secret.server_port}/direct",
        f"http://localhost:{secret.server_port}/by-name",
        f"{a}/to-loopback",
        f"{a}/to-private",
        f"{a}/public-page",
    ]
    spider = tmp_path / "spider.py"
    spider.write_text(SPIDER.format(urls=urls))
    env = {"PATH": "/usr/bin:/bin", "SCRAPY_SETTINGS_MODULE": "crawler.settings"}
    proc = subprocess.run(
        [sys.executable, "-m", "scrapy", "runspider", str(spider), "-s", "WARC_ENABLED=False", "-s", "ITEM_PIPELINES={}",
         "-s", "EXTENSIONS={}", "-s", "DOWNLOAD_DELAY=0", "-s", "ROBOTSTXT_OBEY=False",
         "-s", "SSRF_ALLOWED_ADDRESSES=127.0.0.2", "-s", "RETRY_ENABLED=False"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    secret.shutdown()
    allowed.shutdown()
    assert secret_hits == [], proc.stderr[-2000:]
    assert f"FETCHED {a}/public-page" in proc.stdout, proc.stderr[-2000:]
    assert "ssrf/refused/loopback" in proc.stderr
    assert "ssrf/refused/private" in proc.stderr
    assert sorted(allowed_hits) == ["/public-page", "/to-loopback", "/to-private"]
