"""Tests for crawler.warc.writer (WARC 1.1 writing on top of warcio)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import subprocess
import sys
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.warc.writer import (
    RecordPointer,
    WarcFileWriter,
    recover_open_files,
    sha1_base32_digest,
)

WARCIO = str(Path(sys.executable).with_name("warcio"))
FETCHED = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)

HTML = "<html><body><p>Tuyên Quang – tin tức</p></body></html>".encode("utf-8") * 20
HTML_GZ = gzip.compress(HTML, mtime=0)


def b32sha1(data: bytes) -> str:
    """Independent digest computation (not via warcio / the module under test)."""
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def warcio_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WARCIO, "check", "-v", str(path)], capture_output=True, text=True, timeout=30
    )


def read_records(path: Path) -> list[dict]:
    """All records with headers, raw payload, offset and length."""
    out = []
    with open(path, "rb") as fh:
        it = ArchiveIterator(fh)
        for rec in it:
            raw = rec.raw_stream.read()
            out.append(
                {
                    "type": rec.rec_type,
                    "h": rec.rec_headers,
                    "http": rec.http_headers,
                    "raw": raw,
                    "offset": it.get_record_offset(),
                    "length": it.get_record_length(),
                }
            )
    return out


def read_one(path: Path, offset: int, length: int):
    """Read exactly [offset, offset+length) and parse it as ONE record."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        blob = fh.read(length)
    assert len(blob) == length
    # The member must be a complete gzip stream by itself with nothing after it.
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    d.decompress(blob)
    assert d.eof and d.unused_data == b""
    recs = []
    for rec in ArchiveIterator(io.BytesIO(blob)):
        rec.payload = rec.raw_stream.read()  # read before the iterator moves on
        recs.append(rec)
    assert len(recs) == 1
    return recs[0]


def _exchange(w: WarcFileWriter, **over) -> RecordPointer:
    kw = dict(
        url="https://baotuyenquang.com.vn/a-1.html",
        request_method="GET",
        request_target="/a-1.html",
        request_headers=[
            ("Host", "baotuyenquang.com.vn"),
            ("User-Agent", "newsarchive-test"),
            ("Accept-Encoding", "gzip, deflate, br"),
        ],
        protocol="HTTP/1.1",
        status=200,
        reason="OK",
        response_headers=[
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Encoding", "gzip"),
            ("Content-Length", str(len(HTML_GZ))),
        ],
        body=HTML_GZ,
        ip_address="203.0.113.7",
        fetched_at=FETCHED,
    )
    kw.update(over)
    return w.write_exchange(**kw)


@pytest.fixture
def writer(tmp_path: Path):
    closed: list[Path] = []
    w = WarcFileWriter(
        tmp_path,
        prefix="TEST",
        host="testhost",
        warcinfo={
            "operator": "newsarchive tests",
            "robots": "obey",
            "http-header-user-agent": "newsarchive-test",
        },
        on_close=closed.append,
    )
    w.closed_log = closed  # type: ignore[attr-defined]
    return w


def test_exchanges_roundtrip(writer: WarcFileWriter, tmp_path: Path) -> None:
    p200 = _exchange(writer)
    p404 = _exchange(
        writer,
        url="https://baotuyenquang.com.vn/missing",
        request_target="/missing",
        status=404,
        reason="Not Found",
        response_headers=[("Content-Type", "text/html"), ("Content-Length", "9")],
        body=b"not found",
    )
    p302 = _exchange(
        writer,
        url="https://baotuyenquang.com.vn/old",
        request_target="/old",
        status=302,
        reason="Found",
        response_headers=[("Location", "/a-1.html"), ("Content-Length", "0")],
        body=b"",
        ip_address=None,
    )
    meta = writer.write_metadata(
        p200.record_id,
        "https://baotuyenquang.com.vn/a-1.html",
        {"outlink": ["https://baotuyenquang.com.vn/b", "https://x.test/c"], "fetchTimeMs": 42},
    )

    # The .open file is where writing happens; nothing final exists yet.
    open_files = list(tmp_path.glob("*.open"))
    assert len(open_files) == 1 and open_files[0].name == p200.file + ".open"
    assert not (tmp_path / p200.file).exists()

    closed = writer.close()
    assert closed == [tmp_path / p200.file]
    assert writer.closed_log == closed  # type: ignore[attr-defined]
    assert not list(tmp_path.glob("*.open"))
    path = closed[0]
    name = path.name
    assert name.startswith("TEST-") and name.endswith(f"-00000-testhost-{os.getpid()}.warc.gz")
    assert len(name.split("-")[1]) == 14 and name.split("-")[1].isdigit()
    assert p404.file == p302.file == meta.file == name

    chk = warcio_check(path)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    assert chk.stdout.count("digest pass") == 8  # warcinfo + 3*(req+resp) + metadata

    recs = read_records(path)
    assert [r["type"] for r in recs] == [
        "warcinfo", "response", "request", "response", "request",
        "response", "request", "metadata",
    ]
    info = recs[0]
    assert info["h"]["WARC-Filename"] == name
    assert info["h"].protocol == "WARC/1.1"
    info_text = info["raw"].decode()
    assert "format: WARC File Format 1.1\r\n" in info_text
    assert "operator: newsarchive tests\r\n" in info_text
    assert "robots: obey\r\n" in info_text
    assert "http-header-user-agent: newsarchive-test\r\n" in info_text
    assert "conformsTo: https://iipc.github.io/warc-specifications/" in info_text
    sw = [ln for ln in info_text.splitlines() if ln.startswith("software: ")][0]
    assert sw.startswith("software: newsarchive/") and " warcio/1.8.1" in sw and " scrapy/" in sw

    # response, then its request (Heritrix order); linkage, dates, IP
    for resp, req in [(recs[1], recs[2]), (recs[3], recs[4]), (recs[5], recs[6])]:
        assert req["h"]["WARC-Concurrent-To"] == resp["h"]["WARC-Record-ID"]
        assert req["h"]["WARC-Target-URI"] == resp["h"]["WARC-Target-URI"]
        assert req["h"]["WARC-Date"] == resp["h"]["WARC-Date"] == "2024-05-06T07:08:09.123456Z"
    assert recs[1]["h"]["WARC-IP-Address"] == "203.0.113.7"
    assert recs[5]["h"]["WARC-IP-Address"] is None

    # gzip entity stored compressed; payload digest over exactly those bytes
    r200 = recs[1]
    assert r200["raw"] == HTML_GZ
    assert gzip.decompress(r200["raw"]) == HTML
    assert r200["http"].get_header("Content-Encoding") == "gzip"
    assert r200["http"].protocol == "HTTP/1.1"
    assert r200["http"].statusline == "200 OK"
    assert r200["h"]["WARC-Payload-Digest"] == b32sha1(HTML_GZ) == p200.payload_digest
    assert sha1_base32_digest(HTML_GZ) == b32sha1(HTML_GZ)
    assert recs[2]["http"].protocol == "GET"
    assert recs[2]["http"].statusline == "/a-1.html HTTP/1.1"
    assert recs[2]["http"].get_header("Host") == "baotuyenquang.com.vn"

    r404 = recs[3]
    assert r404["http"].statusline == "404 Not Found"
    assert r404["raw"] == b"not found"
    assert p404.payload_digest == b32sha1(b"not found")
    r302 = recs[5]
    assert r302["http"].statusline == "302 Found"
    assert r302["http"].get_header("Location") == "/a-1.html"
    assert p302.payload_digest == b32sha1(b"")

    m = recs[7]
    assert m["h"]["WARC-Concurrent-To"] == p200.record_id
    assert m["h"]["Content-Type"] == "application/warc-fields"
    assert m["raw"] == (
        b"outlink: https://baotuyenquang.com.vn/b\r\n"
        b"outlink: https://x.test/c\r\n"
        b"fetchTimeMs: 42\r\n"
    )

    # Pointers address exactly the response records (and metadata record).
    for ptr, idx in [(p200, 1), (p404, 3), (p302, 5), (meta, 7)]:
        assert (ptr.offset, ptr.length) == (recs[idx]["offset"], recs[idx]["length"])
        rec = read_one(path, ptr.offset, ptr.length)
        assert rec.rec_headers["WARC-Record-ID"] == ptr.record_id
        assert rec.rec_headers["WARC-Date"] == ptr.warc_date
    rec = read_one(path, p200.offset, p200.length)
    assert rec.rec_type == "response"
    assert rec.payload == HTML_GZ
    # the gzip member of the response ends exactly where its request begins
    assert p200.offset + p200.length == recs[2]["offset"]


def test_headers_are_written_byte_exact(writer: WarcFileWriter) -> None:
    """Non-ASCII header bytes survive (warcio alone would %-encode them)."""
    raw_cd = 'attachment; filename="Báo.pdf"'.encode("utf-8").decode("latin-1")
    ptr = _exchange(
        writer,
        status=799,
        reason="",
        protocol=None,
        response_headers=[("Content-Disposition", raw_cd), ("Content-Length", "2")],
        body=b"ok",
    )
    path = writer.close()[0]
    assert warcio_check(path).returncode == 0
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    assert 'filename="Báo.pdf"'.encode("utf-8") in data
    assert b"\r\nHTTP/1.1 799 \r\n" in data  # protocol None -> HTTP/1.1, empty reason
    assert read_one(path, ptr.offset, ptr.length).http_headers.get_statuscode() == "799"


def test_close_without_writes_leaves_no_file(writer: WarcFileWriter, tmp_path: Path) -> None:
    assert writer.close() == []
    assert list(tmp_path.iterdir()) == []


def test_rollover(tmp_path: Path) -> None:
    closed: list[Path] = []
    w = WarcFileWriter(tmp_path, prefix="ROLL", host="h", max_size=1, on_close=closed.append)
    ptrs = [_exchange(w, url=f"https://baotuyenquang.com.vn/{i}", request_target=f"/{i}") for i in range(3)]
    # max_size=1: every exchange fills a file, which is closed right after it.
    assert len(closed) == 3
    assert not list(tmp_path.glob("*.open"))
    assert w.close() == closed
    files = sorted(tmp_path.glob("*.warc.gz"))
    assert files == sorted(closed)
    assert [p.file for p in ptrs] == [c.name for c in closed]
    assert [c.name.split("-")[2] for c in closed] == ["00000", "00001", "00002"]
    for i, (f, ptr) in enumerate(zip(closed, ptrs)):
        assert warcio_check(f).returncode == 0
        recs = read_records(f)
        assert [r["type"] for r in recs] == ["warcinfo", "response", "request"]
        assert recs[0]["h"]["WARC-Filename"] == f.name
        rec = read_one(f, ptr.offset, ptr.length)
        assert rec.rec_headers["WARC-Target-URI"] == f"https://baotuyenquang.com.vn/{i}"


def test_rollover_threshold_is_checked_after_exchange(tmp_path: Path) -> None:
    w = WarcFileWriter(tmp_path, host="h", max_size=5000)
    for i in range(6):  # ~0.6-0.9 KB per exchange with the 1 KB-ish gzip body
        _exchange(w, url=f"https://baotuyenquang.com.vn/{i}", request_target=f"/{i}")
    files = w.close()
    assert len(files) >= 2
    for f in files[:-1]:
        assert f.stat().st_size >= 5000  # closed only once it reached max_size
    for f in files:
        assert read_records(f)[0]["type"] == "warcinfo"
        assert warcio_check(f).returncode == 0


def test_recover_truncated_open_file(tmp_path: Path) -> None:
    w = WarcFileWriter(tmp_path, host="h")
    p1 = _exchange(w)
    p2 = _exchange(w, url="https://baotuyenquang.com.vn/b", request_target="/b")
    open_path = tmp_path / (p1.file + ".open")
    good_end = p2.offset + p2.length
    # Simulate a kill: release the writer's file without renaming, then cut
    # the file in the middle of an extra record appended after p2.
    _exchange(w, url="https://baotuyenquang.com.vn/c", request_target="/c")
    w._fh.close()  # drops the flock like process death would
    w._fh = None
    size = open_path.stat().st_size
    assert size > good_end
    with open(open_path, "r+b") as fh:
        # keep the /c response record whole, cut the /c request record in half
        fh.truncate(size - 100)

    recovered = recover_open_files(tmp_path)
    final = tmp_path / p1.file
    assert recovered == [final]
    assert not open_path.exists()
    assert warcio_check(final).returncode == 0
    types = [r["type"] for r in read_records(final)]
    assert types == ["warcinfo", "response", "request", "response", "request", "response"]
    assert read_one(final, p2.offset, p2.length).rec_headers["WARC-Target-URI"].endswith("/b")


def test_recover_skips_live_and_deletes_empty(tmp_path: Path) -> None:
    live = WarcFileWriter(tmp_path, host="live")
    ptr = _exchange(live)
    junk = tmp_path / "TEST-20240101000000-00000-x-1.warc.gz.open"
    junk.write_bytes(b"\x1f\x8b\x08\x00garbage")
    assert recover_open_files(tmp_path) == []
    assert not junk.exists()  # no complete record: removed
    assert (tmp_path / (ptr.file + ".open")).exists()  # locked by a live writer: untouched
    assert live.close() == [tmp_path / ptr.file]


def test_failed_write_rolls_back(writer: WarcFileWriter, monkeypatch) -> None:
    ok = _exchange(writer)
    real = writer._write_record

    def flaky(record):
        # response record goes through; request record is half-written, then "disk full"
        if record.rec_type == "request":
            writer._fh.write(b"\x1f\x8b\x08\x00partial")
            raise OSError(28, "No space left on device")
        return real(record)

    monkeypatch.setattr(writer, "_write_record", flaky)
    size_before = writer._fh.tell()
    with pytest.raises(OSError):
        _exchange(writer, url="https://baotuyenquang.com.vn/x", request_target="/x")
    assert writer._fh.tell() == size_before  # response + partial request removed
    monkeypatch.setattr(writer, "_write_record", real)

    after = _exchange(writer, url="https://baotuyenquang.com.vn/y", request_target="/y")
    path = writer.close()[0]
    assert warcio_check(path).returncode == 0
    uris = [r["h"]["WARC-Target-URI"] for r in read_records(path)[1:]]
    assert uris == ["https://baotuyenquang.com.vn/a-1.html"] * 2 + ["https://baotuyenquang.com.vn/y"] * 2
    assert after.offset > ok.offset
    assert read_one(path, after.offset, after.length).rec_headers["WARC-Target-URI"].endswith("/y")


def test_max_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        WarcFileWriter(tmp_path, max_size=0)
