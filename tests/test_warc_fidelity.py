"""Byte fidelity: gzip, deflate and brotli responses keep their Content-Encoding
and compressed bytes, chunked responses are stored de-chunked without
Transfer-Encoding; the digests are those of the bytes the server sent, every
check passes, and pywb replays each page."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import brotli
import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.cli import main
from tests.conftest import ROOT, free_port

BIN = Path(sys.executable).parent
TOOLS = ROOT / ".venv-pywb" / "bin"


def page(name: str) -> bytes:
    return (f"<html><head><title>Trang {name} – Tuyên Quang</title></head><body>"
            + f"<p>Nội dung {name}</p>" * 40 + "</body></html>").encode("utf-8")


def b32sha1(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data, 6)


#: path → (Content-Encoding, entity bytes as sent, chunked?)
PAGES = {
    "/gzip": ("gzip", gzip.compress(page("gzip"), mtime=0), False),
    "/deflate": ("deflate", _deflate(page("deflate")), False),
    "/br": ("br", brotli.compress(page("br")), False),
    "/chunked": (None, page("chunked"), True),
    "/chunked-gzip": ("gzip", gzip.compress(page("chunked-gzip"), mtime=0), True),
}


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if self.path not in PAGES:
            body = b"<html><body>" + b"".join(b'<a href="%s">x</a>' % p.encode() for p in PAGES) + b"</body></html>"
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        coding, entity, chunked = PAGES[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        if coding:
            self.send_header("Content-Encoding", coding)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(entity), 100):  # many small chunks
                part = entity[i : i + 100]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(entity)))
            self.end_headers()
            self.wfile.write(entity)


CRAWL = textwrap.dedent(
    """
    import sys
    import scrapy
    from scrapy.crawler import CrawlerProcess

    base, store, warc_dir = sys.argv[1:4]
    paths = sys.argv[4:]

    class Pages(scrapy.Spider):
        name = "pages"

        async def start(self):
            for p in paths:
                yield scrapy.Request(base + p)

        def parse(self, response):
            yield {"url": response.url, "text": response.text}

    process = CrawlerProcess(settings={
        "DOWNLOADER_MIDDLEWARES": {"crawler.middlewares.warc_capture.WarcCaptureMiddleware": 650},
        "EXTENSIONS": {"crawler.extensions.warc_upload.WarcUploadExtension": 500},
        "DEFAULT_REQUEST_HEADERS": {"Accept-Encoding": "gzip, deflate, br"},
        "NEWSARCHIVE_STORE": store,
        "WARC_DIR": warc_dir,
        "ROBOTSTXT_OBEY": False,
        "LOG_LEVEL": "WARNING",
    })
    process.crawl(Pages)
    process.start()
    """
)


@pytest.fixture(scope="module")
def archived(tmp_path_factory):
    base = tmp_path_factory.mktemp("fidelity")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    (base / "crawl.py").write_text(CRAWL)
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    proc = subprocess.run([sys.executable, str(base / "crawl.py"), origin, str(base / "store"),
                           str(base / "state" / "warc"), *PAGES], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)
    yield {"proc": proc, "origin": origin, "store": base / "store", "base": base}
    server.shutdown()
    server.server_close()


def test_encoded_and_chunked_responses_are_stored_as_sent(archived):
    assert archived["proc"].returncode == 0, archived["proc"].stderr[-3000:]
    assert "Traceback" not in archived["proc"].stderr, archived["proc"].stderr[-3000:]
    files = sorted(archived["store"].rglob("*.warc.gz"))
    assert len(files) == 1 and Path(str(files[0]) + ".cdxj").is_file()
    responses = {}
    with open(files[0], "rb") as fh:
        for rec in ArchiveIterator(fh):
            if rec.rec_type == "response":
                responses[rec.rec_headers["WARC-Target-URI"].removeprefix(archived["origin"])] = (
                    rec.rec_headers, rec.http_headers, rec.raw_stream.read())
    assert set(responses) == set(PAGES)
    for path, (coding, entity, _chunked) in PAGES.items():
        warc_h, http_h, raw = responses[path]
        assert raw == entity, path  # still compressed, de-chunked
        assert http_h.get_header("Content-Encoding") == coding, path
        assert http_h.get_header("Transfer-Encoding") is None, path
        assert http_h.get_header("Content-Length") == str(len(entity)), path
        assert warc_h["WARC-Payload-Digest"] == b32sha1(entity), path
    assert main(["warc", "check", str(archived["store"])]) == 0


def test_warcio_check_passes_with_brotlipy(archived):
    """warcio decodes br only with brotlipy (warcio#73): with Google's brotli, which
    Scrapy needs in the main venv, `warcio check` crashes on any br record. The
    archive-tools venv has brotlipy (pywb pulls it), so its warcio is the one to use."""
    if not (TOOLS / "warcio").is_file():
        pytest.skip("the archive-tools venv is missing: `make pywb` (a prerequisite of `make test`) creates it")
    (path,) = archived["store"].rglob("*.warc.gz")
    check = subprocess.run([str(TOOLS / "warcio"), "check", "-v", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("digest pass") == 3 * len(PAGES) + 1  # warcinfo; response, request, metadata each


def test_each_page_comes_back_decoded_with_warc_get(archived, tmp_path):
    for path in PAGES:
        out = tmp_path / (path.strip("/") + ".html")
        assert main(["warc", "get", archived["origin"] + path, "--payload", "-o", str(out),
                     "--store", str(archived["store"])]) == 0
        assert out.read_bytes() == page(path.strip("/"))


def test_pywb_replays_each_page(archived):
    if not (TOOLS / "wayback").is_file():
        pytest.skip("the archive-tools venv is missing: `make pywb` (a prerequisite of `make test`) creates it")
    port = free_port()
    proc = subprocess.Popen([str(BIN / "newsarchive"), "replay", "--port", str(port),
                             "--store", str(archived["store"])], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                opener.open(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "pywb did not start"
                time.sleep(0.3)
        for path, (coding, entity, _chunked) in PAGES.items():
            name = path.strip("/")
            # rewritten replay: the decoded page
            with opener.open(f"http://127.0.0.1:{port}/newsarchive/mp_/{archived['origin']}{path}") as r:
                assert r.status == 200
                body = r.read()
            if r.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            assert f"<title>Trang {name} – Tuyên Quang</title>".encode() in body, path
            assert body.count(f"<p>Nội dung {name}</p>".encode()) == 40, path
            # identity replay: the archived bytes, whose digest is the recorded one
            req = urllib.request.Request(f"http://127.0.0.1:{port}/newsarchive/id_/{archived['origin']}{path}",
                                         headers={"Accept-Encoding": "gzip, deflate, br"})
            with opener.open(req) as r:
                raw = r.read()
                assert r.headers.get("Content-Encoding") == coding, path
            assert b32sha1(raw) == b32sha1(entity), path
    finally:
        proc.terminate()
        proc.wait(timeout=30)
