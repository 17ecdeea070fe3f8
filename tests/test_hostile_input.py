"""Bad input: one crawl of a small hostile site served by a second replica (its own
routes.json in a temporary folder, production host names). Each page below is one
case; the crawl must finish, publish only the real articles (equal to gold), and put
every other page in the quarantine with its reason or in the run report under an
error kind with its URL — never a crash, never a silent loss, never a fetch it must
not make.

Cases: a gzip bomb (small compressed, huge expanded) and two oversized pages, one with
its ``Content-Length`` and one streamed without (stop at DOWNLOAD_MAXSIZE; the bytes
received are archived with ``WARC-Truncated: length``); binary bytes at an ``.html`` URL; malformed and truncated HTML;
BOM / header / meta charset disagreement; non-ASCII bytes in HTTP headers; an empty
200; a soft-404; javascript:/data:/mailto:/tel: links; an IDN host; raw and
percent-encoded Vietnamese paths; a URL over URLLENGTH_LIMIT; a redirect chain over
REDIRECT_MAX_TIMES; a redirect loop; a redirect to a private address."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import PORTAL, load_gold, read_jsonl_gz, run_newsarchive

GOLD = load_gold()
SITE = "https://baotuyenquang.com.vn"
SEED = "/chinh-tri/xay-dung-dang/dang-bo-thi-tran-na-hang-chu-trong-cong-tac-phat-trien-dang-vien-127836.html"
OTHER = "/xa-hoi/giao-duc/son-duong-san-sang-cho-ky-thi-tuyen-sinh-vao-lop-10-145540.html"
MAXSIZE = 2_000_000
LONG = "/tin-" + "a" * 2200 + "-900030.html"
VIET = "/tin-tức/bài-viết-tuyên-quang-900031.html"
VIET_PCT = "/tin-t%E1%BB%A9c/b%C3%A0i-vi%E1%BA%BFt-900032.html"
BIG = b"<html><body>" + b"<p>Tuy\xc3\xaan Quang</p>" * (MAXSIZE // 10) + b"</body></html>"  # 3.8 MB
GZ_ONLY = "/kinh-te/nong-nghiep/ham-yen-cam-sanh-duoc-mua-duoc-gia-133807.html"  # listed only in the .xml.gz sitemap
XXE_SECRET = "XXE-DRILL-SECRET-CONTENTS-7f3a"
LAUGHS = "lol" * 10
BOMB_XML = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
            + ']><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://baotuyenquang.com.vn/'
              '&lol9;-900050.html</loc></url></urlset>')

CASES = {
    "bomb": "/bom-nen-900001.html",
    "big": "/trang-qua-lon-900002.html",
    "big_stream": "/trang-qua-lon-khong-do-dai-900012.html",
    "binary": "/tep-nhi-phan-900003.html",
    "malformed": "/html-hong-900004.html",
    "truncated": "/html-cut-900005.html",
    "empty": "/trang-rong-900006.html",
    "soft404": "/khong-ton-tai-900007.html",
    "chain": "/chuoi-1-900008.html",
    "loop": "/vong-a-900009.html",
    "private": "/sang-noi-bo-900010.html",
}


def build_site(root: Path) -> None:
    site = root / "site"
    site.mkdir(parents=True)
    src = PORTAL / "site" / "baotuyenquang.com.vn"
    routes = []

    def add(path, body: bytes | None, status=200, headers=None, **extra):
        name = None
        if body is not None:
            name = f"site/f{len(routes)}.bin"
            (root / name).write_bytes(body)
        routes.append({"path": path, "file": name, "status": status,
                       "headers": headers or {"Content-Type": "text/html; charset=utf-8"}, **extra})

    links = [SEED, OTHER, *CASES.values(), LONG, VIET, VIET_PCT,
             "javascript:void(0)", "data:text/html,<b>x</b>", "mailto:toasoan@baotuyenquang.com.vn", "tel:+842073822",
             "https://bảotuyênquang.vn/tin-900040.html", "https://xn--bo-tuyn-quang-5ib.vn/tin-900041.html"]
    home = ('<html><head><title>Báo Tuyên Quang</title><link rel="alternate" type="application/rss+xml" '
            'href="/rss/bomb.rss"></head><body>') + "".join(
        f'<a href="{u}">link {i}</a>' for i, u in enumerate(links)) + "</body></html>"
    add("/", home.encode())
    robots = "User-agent: *\nDisallow: /admin/\n" + "".join(
        f"Sitemap: {SITE}{p}\n" for p in ("/sitemap-bomb.xml", "/sitemap-xxe.xml", "/sitemap-self.xml"))
    add("/robots.txt", robots.encode(), headers={"Content-Type": "text/plain"})
    xml = {"Content-Type": "application/xml"}
    add("/sitemap-bomb.xml", BOMB_XML.encode(), headers=xml)
    secret = root / "xxe-secret.txt"
    secret.write_text(XXE_SECRET)
    add("/sitemap-xxe.xml", (f'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file://{secret}">]>'
                             '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>'
                             f'{SITE}/&xxe;-900051.html</loc></url></urlset>').encode(), headers=xml)
    add("/sitemap-self.xml", ('<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                              f"<sitemap><loc>{SITE}/sitemap-self.xml</loc></sitemap>"
                              f"<sitemap><loc>{SITE}/sitemap-news.xml.gz</loc></sitemap></sitemapindex>").encode(),
        headers=xml)
    add("/sitemap-news.xml.gz", gzip.compress(('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                                               f'sitemap/0.9"><url><loc>{SITE}{GZ_ONLY}</loc></url></urlset>').encode()),
        headers={"Content-Type": "application/x-gzip"})
    add(GZ_ONLY, (src / GZ_ONLY.lstrip("/")).read_bytes())
    add("/rss/bomb.rss", BOMB_XML.replace("urlset", "rss").encode(), headers={"Content-Type": "application/rss+xml"})
    # Charset disagreement: UTF-8 bytes with a BOM, the header says ISO-8859-1 and the
    # meta windows-1252; the BOM is right (WHATWG: BOM wins).
    seed = (src / SEED.lstrip("/")).read_bytes().replace(b"charset=utf-8", b"charset=windows-1252")
    add(SEED, b"\xef\xbb\xbf" + seed, headers={"Content-Type": "text/html; charset=iso-8859-1"})
    # Non-ASCII bytes in headers (UTF-8 sent raw, as some CMSs do).
    add(OTHER, (src / OTHER.lstrip("/")).read_bytes(),
        headers={"Content-Type": "text/html; charset=utf-8", "X-Tieu-De": "TuyÃªn Quang Ä\x91áº¹p",
                 "Content-Disposition": 'inline; filename="bÃ i-viáº¿t.html"'})
    bomb = gzip.compress(b"<html><body><p>" + b" " * 40_000_000 + b"</p></body></html>", 9)
    assert len(bomb) < 100_000
    add(CASES["bomb"], bomb, headers={"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"})
    add(CASES["big"], BIG)
    add(CASES["big_stream"], BIG, close_delimited=True)  # no Content-Length: found out while reading
    add(CASES["binary"], bytes(range(256)) * 64)
    add(CASES["malformed"], b"<html><<body><p <b>x</i></table></html><div><p>" * 50 + b"\x00\xff<script>")
    add(CASES["truncated"], (src / SEED.lstrip("/")).read_bytes()[:9000])
    add(CASES["empty"], None)
    add(CASES["soft404"], "<html><head><title>Không tìm thấy trang</title></head><body><h1>Không tìm thấy trang"
        "</h1><p>Bài viết không tồn tại hoặc đã bị xoá.</p></body></html>".encode())
    for i in range(1, 8):  # 7 hops > REDIRECT_MAX_TIMES (5)
        add(CASES["chain"].replace("chuoi-1", f"chuoi-{i}"), b"", 302, {"Content-Type": "text/html"},
            redirect_to=CASES["chain"].replace("chuoi-1", f"chuoi-{i + 1}"))
    add(CASES["loop"], b"", 302, {"Content-Type": "text/html"}, redirect_to="/vong-b-900019.html")
    add("/vong-b-900019.html", b"", 301, {"Content-Type": "text/html"}, redirect_to=CASES["loop"])
    add(CASES["private"], b"", 302, {"Content-Type": "text/html"}, redirect_to="http://127.0.0.1:9/admin")
    for path in (LONG, VIET, VIET_PCT):
        add(path, b"<html><head><title>x</title></head><body><p>x</p></body></html>")
    (root / "routes.json").write_text(json.dumps(routes, ensure_ascii=False), encoding="utf-8")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from tests.replica.server import ReplicaServer

    base = tmp_path_factory.mktemp("hostile")
    build_site(base / "portal")
    server = ReplicaServer(root=base / "portal", port=0)
    server.start()
    try:
        proc = run_newsarchive(
            ["crawl", "--store", str(base / "archive"), "--state-dir", str(base / "state"), "--run-id", "H1",
             "-s", "DOWNLOAD_DELAY=0", "-s", f"DOWNLOAD_MAXSIZE={MAXSIZE}", "-s", "DOWNLOAD_WARNSIZE=1000000",
             "-s", "WARC_PAGE_REQUISITES=0", "--logfile", str(base / "crawl.log")], server.proxy_url, timeout=180)
        requests = list(server.requests)
    finally:
        server.stop()
    report = json.loads((base / "state" / "runs" / "H1.json").read_text())
    return proc, base, report, requests


def records(base: Path, folder: str) -> list[dict]:
    return [r for p in sorted((base / "archive" / folder).rglob("*.jsonl.gz")) for r in read_jsonl_gz(p.read_bytes())]


def test_the_crawl_finishes_without_a_crash(hostile):
    proc, base, report, _ = hostile
    assert report["finish_reason"] == "finished", proc.stderr[-3000:]
    assert report["errors"]["spider_exceptions"] == 0
    assert "Traceback" not in (base / "crawl.log").read_text(errors="replace")


def test_only_the_real_articles_are_published_and_equal_gold(hostile):
    _, base, _, _ = hostile
    got = {r["article_id"]: r for r in records(base, "dataset")}
    assert sorted(got) == ["127836", "133807", "145540"]  # 133807: from the gzip-compressed sitemap only
    for aid, r in got.items():
        for field in ("title", "lead", "body", "authors", "published_at", "images", "tags"):
            assert r[field] == GOLD[aid][field], (aid, field)


def test_bad_pages_are_quarantined_with_their_reason(hostile):
    _, base, report, _ = hostile
    q = {r["url"]: r["reason"] for r in records(base, "quarantine")}
    assert q[SITE + CASES["empty"]] == "empty_body"
    assert q[SITE + CASES["truncated"]] == "truncated_body"
    assert q[SITE + CASES["soft404"]] == "soft_404"
    for case in ("binary", "malformed"):
        assert SITE + CASES[case] in q, (case, q)


def test_redirect_chain_over_the_limit_and_loop_are_reported_with_their_url(hostile):
    _, _, report, requests = hostile
    by_type = report["errors"]["by_type"]
    assert SITE + CASES["loop"] in by_type["redirect_loop"]["examples"]
    assert by_type["redirect_limit"] == {"count": 1, "examples": [SITE + CASES["chain"]]}
    hops = [r["path"] for r in requests if "/chuoi-" in r["path"]]
    assert len(hops) == 6  # the first request and REDIRECT_MAX_TIMES redirects, no more


def test_redirect_to_a_private_address_is_refused_and_counted(hostile):
    _, _, report, requests = hostile
    assert not [r for r in requests if r["host"] not in ("baotuyenquang.com.vn", "m.baotuyenquang.com.vn")]
    refused = report["refused"]
    assert refused["private_address"].get("loopback", 0) + refused["offsite"] >= 1


def test_links_that_are_not_urls_and_overlong_urls_are_never_requested(hostile):
    _, _, report, requests = hostile
    paths = [r["path"] for r in requests]
    assert not [p for p in paths if "javascript" in p or "mailto" in p or p.startswith("data")]
    assert not [p for p in paths if len(p) > 2083]
    assert report["refused"]["url_too_long"] >= 1 or LONG not in paths


def _responses(base: Path) -> dict[str, tuple]:
    """WARC response records by target URI: ``(WARC headers, HTTP headers, payload)``."""
    from warcio.archiveiterator import ArchiveIterator

    out = {}
    for path in (base / "archive" / "warc").rglob("*.warc.gz"):
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type == "response":
                    out[rec.rec_headers.get_header("WARC-Target-URI")] = (
                        rec.rec_headers, rec.http_headers, rec.raw_stream.read())
    return out


def test_gzip_bomb_and_oversized_pages_stop_at_maxsize_reported(hostile):
    _, base, report, requests = hostile
    by_type = report["errors"]["by_type"]
    # The bomb arrives whole (39 kB) and HttpCompressionMiddleware stops decompressing
    # at DOWNLOAD_MAXSIZE; the oversized pages are cut at DOWNLOAD_MAXSIZE while read
    # (crawler/middlewares/maxsize.py). All three are one error kind, never retried.
    oversized = [SITE + CASES[c] for c in ("bomb", "big", "big_stream")]
    assert by_type["download_maxsize"]["count"] == 3
    assert sorted(by_type["download_maxsize"]["examples"]) == sorted(oversized)
    assert "DownloadCancelledError" not in by_type
    assert [r["path"] for r in requests].count(CASES["big"]) == 1
    assert [r["path"] for r in requests].count(CASES["big_stream"]) == 1
    log = (base / "crawl.log").read_text(errors="replace")
    assert "exceeded DOWNLOAD_MAXSIZE (2000000 B) during decompression" in log
    assert f"{SITE + CASES['big']} announces {len(BIG)} bytes, over DOWNLOAD_MAXSIZE (2000000 B)" in log
    assert f"{SITE + CASES['big_stream']} is over DOWNLOAD_MAXSIZE (2000000 B): the first 2000000 bytes are archived" in log
    assert report["errors"]["download_exceptions"] == {}
    responses = _responses(base)
    # The WARC holds the bomb as received (compressed bytes, whole): what was fetched
    # is on record though nothing was extracted from it.
    warc_headers, _, bomb = responses[SITE + CASES["bomb"]]
    assert bomb[:2] == b"\x1f\x8b" and len(bomb) < 100_000
    assert warc_headers.get_header("WARC-Truncated") is None
    # The oversized pages: the first DOWNLOAD_MAXSIZE bytes served, flagged as cut at a
    # configured length (ISO 28500 §5.13), the HTTP Content-Length the stored length.
    for case in ("big", "big_stream"):
        warc_headers, http_headers, payload = responses[SITE + CASES[case]]
        assert warc_headers.get_header("WARC-Truncated") == "length", case
        assert len(payload) == MAXSIZE and BIG.startswith(payload), case
        assert http_headers.get_statuscode() == "200"
        assert http_headers.get_header("Content-Length") == str(MAXSIZE)
    # Nothing of any of them was published or quarantined as a page.
    assert not [r for r in records(base, "dataset") + records(base, "quarantine") if r["url"] in oversized]


def test_the_warc_with_truncated_records_passes_warc_check(hostile):
    _, base, _, _ = hostile
    files = sorted((base / "archive" / "warc").rglob("*.warc.gz"))
    assert files
    for path in files:
        proc = run_newsarchive(["warc", "check", str(path)], "http://127.0.0.1:9")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "OK" in proc.stdout, proc.stdout
        assert "WARC-Truncated: length" in proc.stdout + proc.stderr  # reported as a warning, not an error


def test_xml_bombs_and_external_entities_are_not_expanded_and_sitemaps_terminate(hostile):
    proc, base, report, requests = hostile
    paths = [r["path"] for r in requests]
    # A sitemap index that lists itself is read once; the gzip sitemap it lists is read.
    assert paths.count("/sitemap-self.xml") == 1 and paths.count("/sitemap-news.xml.gz") == 1
    assert GZ_ONLY in paths
    assert {"/sitemap-bomb.xml", "/sitemap-xxe.xml", "/rss/bomb.rss"} <= set(paths)  # all were read
    # No URL made of an expanded entity was requested.
    assert not [p for p in paths if LAUGHS in p or XXE_SECRET in p or p.endswith(("-900050.html", "-900051.html"))]
    # The file behind the external entity was never read into anything the run wrote.
    for path in [*base.joinpath("archive").rglob("*"), *base.joinpath("state").rglob("*"), base / "crawl.log"]:
        if path.is_file():
            data = path.read_bytes()
            data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data  # WARC: every member
            assert XXE_SECRET.encode() not in data, path
            assert (LAUGHS * 10).encode() not in data, path
    assert XXE_SECRET not in proc.stderr + proc.stdout


def test_reprocess_drops_the_truncated_records_as_the_crawl_did(hostile, tmp_path):
    # Replayed from the WARC (default DOWNLOAD_MAXSIZE, 32 MiB: the 2 MB prefixes fit),
    # a record marked WARC-Truncated: length is still an oversized page, not an article.
    _, base, _, _ = hostile
    store = tmp_path / "again"
    proc = run_newsarchive(["reprocess", "--warc", str(base / "archive" / "warc"), "--store", str(store),
                            "--run-id", "R1"], "http://127.0.0.1:9", timeout=180)
    report = json.loads((store / "runs" / "R1" / "report.json").read_text())
    assert report["finish_reason"] == "finished", proc.stderr[-3000:]
    maxsize = report["errors"]["by_type"]["download_maxsize"]
    assert sorted(maxsize["examples"]) == sorted(SITE + CASES[c] for c in ("bomb", "big", "big_stream"))
    ids = sorted(r["article_id"] for p in sorted((store / "dataset").rglob("*.jsonl.gz"))
                 for r in read_jsonl_gz(p.read_bytes()))
    assert ids == ["127836", "133807", "145540"]
