"""``newsarchive warc check`` on hand-made WARC files: a faithful file passes,
and each kind of lie (digest, Content-Encoding, chunked, Content-Length,
unresolvable revisit) is reported per record with a non-zero exit."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from crawler.cli import main

HTML = "<html><head><title>Lâm Bình</title></head><body>Then</body></html>".encode() * 10
HTML_GZ = gzip.compress(HTML, mtime=0)
DATE = "2026-01-02T03:04:05.000000Z"


def _response(w: WARCWriter, url: str, headers: list[tuple[str, str]], body: bytes, warc_headers=None, status="200 OK"):
    http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
    rec = w.create_warc_record(url, "response", payload=io.BytesIO(body), length=len(body), http_headers=http,
                               warc_headers_dict={"WARC-Date": DATE, **(warc_headers or {})})
    w.write_record(rec)
    return rec


def _revisit(w: WARCWriter, url: str, digest: str, refers_uri: str | None, refers_date: str | None):
    http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
    if refers_uri:
        rec = w.create_revisit_record(url, digest, refers_uri, refers_date, http_headers=http,
                                      warc_headers_dict={"WARC-Date": DATE})
    else:  # an old-style revisit that names nothing
        rec = w.create_warc_record(url, "revisit", http_headers=http, warc_headers_dict={"WARC-Date": DATE})
        rec.rec_headers.add_header("WARC-Payload-Digest", digest)
        rec.rec_headers.add_header("WARC-Profile", "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest")
    w.write_record(rec)
    return rec


def _offsets(path: Path) -> list[int]:
    from warcio.archiveiterator import ArchiveIterator

    out = []
    with open(path, "rb") as fh:
        it = ArchiveIterator(fh)
        for rec in it:
            rec.raw_stream.read()
            out.append(it.get_record_offset())
    return out


def test_a_faithful_file_passes(tmp_path, capsys):
    path = tmp_path / "good.warc.gz"
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True, warc_version="1.1")
        orig = _response(w, "https://h.test/a", [("Content-Type", "text/html"), ("Content-Encoding", "gzip"),
                                                 ("Content-Length", str(len(HTML_GZ)))], HTML_GZ)
        digest = orig.rec_headers.get_header("WARC-Payload-Digest")
        _revisit(w, "https://h.test/a?utm_source=x", digest, "https://h.test/a", DATE)
    assert main(["warc", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == "checked 2 records in 1 file(s): OK"


def test_every_lie_is_reported_per_record(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./archive here: `warc check FILE` has no store to look in
    path = tmp_path / "bad.warc.gz"
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True, warc_version="1.1")
        _response(w, "https://h.test/plain-labelled-gzip",
                  [("Content-Encoding", "gzip"), ("Content-Length", str(len(HTML)))], HTML)
        _response(w, "https://h.test/dechunked-labelled-chunked",
                  [("Transfer-Encoding", "chunked")], HTML)
        _response(w, "https://h.test/wrong-length", [("Content-Length", "5")], HTML)
        _response(w, "https://h.test/wrong-digest", [("Content-Length", str(len(HTML)))], HTML,
                  {"WARC-Payload-Digest": "sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})
        _revisit(w, "https://h.test/nameless", "sha1:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", None, None)
        _revisit(w, "https://h.test/orphan", "sha1:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
                 "https://h.test/never-archived", DATE)
        # a faithful record among the bad ones is not reported
        _response(w, "https://h.test/fine", [("Content-Length", str(len(HTML)))], HTML)
    offsets = _offsets(path)
    assert main(["warc", "check", str(path)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "checked 7 records in 1 file(s): 6 problem(s)"
    by_offset = {}
    for line in lines[:-1]:
        m = re.match(rf"{re.escape(str(path))}: offset (\d+) (\w+) (\S+): error: (.*)", line)
        assert m, line
        by_offset.setdefault(int(m.group(1)), []).append((m.group(2), m.group(3), m.group(4)))
    assert sorted(by_offset) == offsets[:6]
    msgs = [by_offset[o][0] for o in offsets[:6]]
    assert msgs[0][1] == "https://h.test/plain-labelled-gzip"
    assert msgs[0][2].startswith("bytes are not what Content-Encoding: gzip says (Content-Encoding gzip: not gzip data")
    assert msgs[1][2].startswith("Transfer-Encoding: chunked but the stored bytes are not chunked")
    assert msgs[2][2] == f"Content-Length: 5 but the stored entity is {len(HTML)} bytes"
    assert msgs[3][2].startswith("digest mismatch: payload digest failed sha1:AAAA")
    assert msgs[4] == ("revisit", "https://h.test/nameless",
                       "revisit without WARC-Refers-To-Target-URI and WARC-Refers-To-Date "
                       "(replay tools cannot resolve it)")
    assert msgs[5][2] == ("original not found in this file (no store to look in): https://h.test/never-archived "
                          f"at {DATE} with sha1:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC")


def test_a_revisit_is_resolved_in_the_store(tmp_path, capsys, monkeypatch):
    """A revisit whose original sits in another file passes once --store has it."""
    monkeypatch.chdir(tmp_path)  # no ./archive here: `warc check FILE` has no store to look in
    from crawler.extensions.warc_upload import upload_warc
    from crawler.store import open_store

    first = tmp_path / "NA-20260102030405-00000-h.warc.gz"
    with open(first, "wb") as fh:
        orig = _response(WARCWriter(fh, gzip=True, warc_version="1.1"), "https://h.test/a",
                         [("Content-Length", str(len(HTML)))], HTML)
    store = open_store(tmp_path / "store")
    upload_warc(store, first)  # indexes (CDXJ) and uploads
    later = tmp_path / "later.warc.gz"
    with open(later, "wb") as fh:
        _revisit(WARCWriter(fh, gzip=True, warc_version="1.1"), "https://h.test/a",
                 orig.rec_headers.get_header("WARC-Payload-Digest"), "https://h.test/a", DATE)
    assert main(["warc", "check", str(later)]) == 1
    assert "original not found in this file (no store to look in)" in capsys.readouterr().out
    assert main(["warc", "check", str(later), "--store", str(tmp_path / "store")]) == 0
    # and the store itself checks out: file indexed, index agrees with the records
    assert main(["warc", "check", str(tmp_path / "store")]) == 0
    assert capsys.readouterr().out.strip().endswith("checked 1 records in 1 file(s): OK")
