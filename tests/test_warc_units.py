"""Unit tests of the WARC helpers: strict payload decoding, outlinks, page
requisites, the payload-digest index and the spider's requisite requests."""

from __future__ import annotations

import gzip
import zlib
from datetime import datetime, timezone
from pathlib import Path

import brotli
import pytest

from crawler.requisites import css_requisites, html_requisites
from crawler.warc.digests import Capture, PayloadDigestIndex, normalise_store_url
from crawler.warc.outlinks import find_outlinks
from crawler.warc.payload import PayloadError, decode_content, dechunk, parse_codings
from crawler.warc.writer import WarcFileWriter

HOSTS = ["baotuyenquang.com.vn", "m.baotuyenquang.com.vn"]
SEED = Path(__file__).parent / "fixtures/portal/site/baotuyenquang.com.vn/chinh-tri/xay-dung-dang/" \
    "dang-bo-thi-tran-na-hang-chu-trong-cong-tac-phat-trien-dang-vien-127836.html"
SEED_URL = "https://baotuyenquang.com.vn/chinh-tri/xay-dung-dang/" \
    "dang-bo-thi-tran-na-hang-chu-trong-cong-tac-phat-trien-dang-vien-127836.html"
TEXT = "Tuyên Quang – tin tức".encode() * 50


# ------------------------------------------------------------------ payload
def test_decode_content_each_coding_and_stacked():
    assert decode_content(gzip.compress(TEXT), ["gzip"]) == TEXT
    assert decode_content(gzip.compress(TEXT), ["x-gzip"]) == TEXT
    assert decode_content(zlib.compress(TEXT), ["deflate"]) == TEXT
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    assert decode_content(raw.compress(TEXT) + raw.flush(), ["deflate"]) == TEXT  # raw deflate too
    assert decode_content(brotli.compress(TEXT), ["br"]) == TEXT
    # "Content-Encoding: gzip, br" = gzip applied first, then br
    assert decode_content(brotli.compress(gzip.compress(TEXT)), parse_codings(["gzip, br"])) == TEXT
    assert parse_codings(["identity", "GZIP"]) == ["gzip"]


@pytest.mark.parametrize(
    "data, codings, message",
    [
        (TEXT, ["gzip"], "not gzip data"),
        (gzip.compress(TEXT)[:-10], ["gzip"], "truncated"),
        (TEXT, ["deflate"], "not deflate"),
        (TEXT, ["br"], "not brotli"),
        (TEXT, ["zstd"], "unsupported Content-Encoding 'zstd'"),
    ],
)
def test_decode_content_is_strict(data, codings, message):
    with pytest.raises(PayloadError, match=message):
        decode_content(data, codings)


def test_dechunk():
    assert dechunk(b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\n\r\n") == b"Wikipedia "
    assert dechunk(b"3\r\nabc\r\n0\r\nExpires: never\r\n\r\n") == b"abc"
    for bad in (b"<html>not chunked</html>", b"5\r\nab\r\n0\r\n\r\n", b"3\r\nabc\r\n"):
        with pytest.raises(PayloadError):
            dechunk(bad)


# ----------------------------------------------------------------- outlinks
def test_outlinks_of_the_seed_article():
    links = find_outlinks(SEED_URL, "text/html; charset=utf-8", SEED.read_bytes())
    by_url = {u: (hop, ctx) for u, hop, ctx in links}
    assert by_url["https://baotuyenquang.com.vn/media/images/2019/10/img_20191017105600.jpg"] == ("E", "img/@src")
    assert by_url["https://baotuyenquang.com.vn/static/css/main.css"] == ("E", "link/@href")
    assert by_url["https://baotuyenquang.com.vn/rss/chinh-tri.rss"] == ("L", "link/@href")
    assert by_url["https://www.googletagmanager.com/gtag/js?id=UA-84415322-1"] == ("E", "script/@src")
    assert by_url["https://baotuyenquang.com.vn/chinh-tri/"][0] == "L"
    assert not any(u.startswith(("javascript:", "mailto:")) or "#" in u for u in by_url)
    assert len(by_url) == len(links)  # no duplicates


def test_outlinks_of_css_xml_and_redirect():
    css = b"body{background:url('/images/bg.png')} @import \"print.css\"; .x{background:url(data:image/png;base64,AA)}"
    assert find_outlinks("https://h.test/s/main.css", "text/css", css) == [
        ("https://h.test/images/bg.png", "E", "css/url()"),
        ("https://h.test/s/print.css", "E", "css/@import"),
    ]
    xml = b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">' \
          b"<url><loc>https://h.test/a.html</loc></url></urlset>"
    assert find_outlinks("https://h.test/sitemap.xml", "application/xml", xml) == [
        ("https://h.test/a.html", "L", "xml/loc")
    ]
    assert find_outlinks("https://h.test/old", None, b"", "/new") == [("https://h.test/new", "R", "http/location")]



@pytest.mark.parametrize("base", [
    "https://baotuyenquang.com.vn/chinh-tri/a/b.html?x=1",
    "http://baotuyenquang.com.vn/",
    "https://h.test:8443/deep/path/",
])
@pytest.mark.parametrize("raw", [
    "/chinh-tri/", "/a/../b/./c?q=1#frag", "//cdn.test/x.js", "///weird", "/",
    "https://Other.test/A?b#c", "HTTP://h.test/x", "http:relative", "https:", "rel/x.html",
    "../up.html", "?only=query", "#top", " /spaced ", "javascript:void(0)", "mailto:a@b.c",
    "ftp://h.test/f", "http://[::1/", "/" + "x" * 600,
])
def test_outlink_resolution_with_the_origin_cache_equals_urljoin(base, raw):
    """The cached path for root-relative and absolute links (resolved against the page's
    origin) gives what resolving against the page URL gives (RFC 3986 §5.2 via urljoin)."""
    from urllib.parse import urljoin, urlsplit

    from crawler.warc.outlinks import _clean, _origin

    def reference(raw: str) -> str | None:
        raw = raw.strip()
        if not raw or raw.startswith("#") or raw.lower().startswith(("javascript:", "mailto:", "data:", "tel:", "about:", "blob:")):
            return None
        try:
            url = urljoin(base, raw)
            scheme = urlsplit(url).scheme
        except ValueError:
            return None
        return url.split("#", 1)[0] if scheme in ("http", "https") else None

    assert _clean(base, raw, _origin(base)) == reference(raw)
    assert _clean(base, raw, _origin(base)) == reference(raw)  # second call: from the cache


# ---------------------------------------------------------------- requisites
def test_requisites_are_same_site_images_css_js_only():
    reqs = html_requisites(SEED_URL, SEED.read_bytes(), HOSTS)
    assert "https://baotuyenquang.com.vn/media/images/2019/10/img_20191017105600.jpg" in reqs
    assert "https://baotuyenquang.com.vn/static/css/main.css" in reqs
    assert "https://baotuyenquang.com.vn/static/js/main.js" in reqs
    assert "https://baotuyenquang.com.vn/favicon.ico" in reqs
    assert all(u.startswith("https://baotuyenquang.com.vn/") for u in reqs)  # never off-site (F30)
    assert not any(u.endswith((".html", ".rss")) or u.rstrip("/").count("/") < 3 for u in reqs)
    assert len(reqs) == len(set(reqs)) == 16
    css = (SEED.parents[2] / "static/css/main.css").read_bytes()
    assert css_requisites("https://baotuyenquang.com.vn/static/css/main.css", css, HOSTS) == [
        "https://baotuyenquang.com.vn/images/logo.png",
        "https://baotuyenquang.com.vn/images/no-image.jpg",
    ]


def _spider(**settings):
    from scrapy.utils.test import get_crawler

    from crawler.spiders.portal import PortalSpider

    crawler = get_crawler(PortalSpider, {"NEWSARCHIVE_SITE": "baotuyenquang", **settings})
    return PortalSpider.from_crawler(crawler)


def test_spider_requests_requisites_of_article_pages_and_never_parses_them():
    from scrapy.http import HtmlResponse, Request, TextResponse

    spider = _spider()
    page = HtmlResponse(SEED_URL, body=SEED.read_bytes(), headers={"Content-Type": "text/html; charset=utf-8"},
                        request=Request(SEED_URL))
    out = list(spider.parse(page))
    reqs = [r for r in out if isinstance(r, Request) and r.meta.get("page_requisite")]
    assert len(reqs) == 16
    assert all(r.callback == spider.parse_requisite and r.priority < 0 for r in reqs)
    # a requisite is archived, never an item or a source of links …
    img = "https://baotuyenquang.com.vn/media/images/2019/10/img_20191017105600.jpg"
    html_lookalike = HtmlResponse(img, body=b"<html><a href='/x-1.html'>x</a></html>",
                                  headers={"Content-Type": "image/jpeg"}, request=Request(img))
    assert list(spider.parse_requisite(html_lookalike)) == []
    # … except a stylesheet, whose own same-site url() references are requisites
    css_url = "https://baotuyenquang.com.vn/static/css/main.css"
    css = TextResponse(css_url, body=b"a{background:url(/images/logo.png)} b{background:url(https://x.test/y.png)}",
                       headers={"Content-Type": "text/css"}, request=Request(css_url))
    follow = list(spider.parse_requisite(css))
    assert [r.url for r in follow] == ["https://baotuyenquang.com.vn/images/logo.png"]
    assert follow[0].callback == spider.parse_requisite


def test_requisites_setting_turns_them_off():
    from scrapy.http import HtmlResponse, Request

    spider = _spider(WARC_PAGE_REQUISITES=False)
    page = HtmlResponse(SEED_URL, body=SEED.read_bytes(), headers={"Content-Type": "text/html; charset=utf-8"},
                        request=Request(SEED_URL))
    assert not [r for r in spider.parse(page) if isinstance(r, Request) and r.meta.get("page_requisite")]


# ------------------------------------------------------------ digest index
def _cap(digest, url, date="2026-01-01T00:00:00.000000Z", file="F-20260101000000-00000-h.warc.gz", **kw):
    return Capture(digest=digest, url=url, warc_date=date, record_id=f"<urn:uuid:{url[-1]}{date[-8:-1]}>",
                   status=200, file=file, offset=kw.get("offset", 10), length=kw.get("length", 100))


def test_digest_index_staged_until_file_closed_then_persisted(tmp_path):
    path = tmp_path / "warc-digests.sqlite"
    idx = PayloadDigestIndex(path, str(tmp_path / "store"))
    a = _cap("sha1:AAA", "https://h.test/a")
    idx.stage(a)
    assert idx.lookup("sha1:AAA", "https://h.test/a") == a  # visible in-process
    assert idx.lookup("sha1:AAA", "https://h.test/other") is None  # same URL only by default
    assert idx.lookup("sha1:AAA", "https://h.test/other", any_url=True) == a
    assert idx.count() == 0  # not committed: the file is still .open
    assert idx.commit_file(a.file) == 1
    idx.close()
    # a new run (new process) sees it; another store does not
    again = PayloadDigestIndex(path, str(tmp_path / "store"))
    assert again.lookup("sha1:AAA", "https://h.test/a") == a
    assert again.latest_for_url("https://h.test/a") == a
    assert PayloadDigestIndex(path, "s3://bucket/x").lookup("sha1:AAA", "https://h.test/a") is None
    # a discarded file's captures are forgotten
    b = _cap("sha1:BBB", "https://h.test/b", file="G.warc.gz")
    again.stage(b)
    again.stage_revisit("https://h.test/r", "G.warc.gz")
    assert again.has_url("https://h.test/r")
    # staged captures belong to the process that wrote them: another connection to the
    # same file (a peer process) does not see them
    peer = PayloadDigestIndex(path, str(tmp_path / "store"))
    assert peer.lookup("sha1:BBB", "https://h.test/b") is None and not peer.has_url("https://h.test/r")
    again.discard_file("G.warc.gz")
    assert again.lookup("sha1:BBB", "https://h.test/b") is None
    assert not again.has_url("https://h.test/r")
    # a committed revisit URL is kept
    again.stage_revisit("https://h.test/r", "H.warc.gz")
    again.commit_file("H.warc.gz")
    assert peer.has_url("https://h.test/r")


def test_digest_index_prefers_same_url_then_earliest(tmp_path):
    idx = PayloadDigestIndex(tmp_path / "d.sqlite", "archive")
    first = _cap("sha1:X", "https://h.test/1", date="2026-01-01T00:00:00.000000Z")
    second = _cap("sha1:X", "https://h.test/2", date="2026-01-02T00:00:00.000000Z")
    idx.stage(first)
    idx.stage(second)
    idx.commit_file(first.file)
    assert idx.lookup("sha1:X", "https://h.test/2") == second
    assert idx.lookup("sha1:X", "https://h.test/2", any_url=True) == second
    assert idx.lookup("sha1:X", "https://h.test/3", any_url=True) == first
    assert idx.lookup("sha1:X", "https://h.test/3") is None
    newer = _cap("sha1:Y", "https://h.test/1", date="2026-02-01T00:00:00.000000Z")
    idx.stage(newer)  # staged, newer than the committed one
    assert idx.latest_for_url("https://h.test/1") == newer


def test_digest_index_rebuilds_from_a_recovered_file(tmp_path):
    w = WarcFileWriter(tmp_path, prefix="R", host="h")
    ptr = w.write_exchange(
        url="https://h.test/p", request_method="GET", request_target="/p", request_headers=[("Host", "h.test")],
        protocol="HTTP/1.1", status=200, response_headers=[("Content-Length", "5")], body=b"hello",
        ip_address=None, fetched_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    w.write_exchange(  # empty bodies are never originals
        url="https://h.test/e", request_method="GET", request_target="/e", request_headers=[("Host", "h.test")],
        protocol="HTTP/1.1", status=200, response_headers=[("Content-Length", "0")], body=b"",
        ip_address=None, fetched_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    path = w.close()[0]
    idx = PayloadDigestIndex(tmp_path / "d.sqlite", "archive")
    assert idx.add_from_warc(path) == 1
    cap = idx.lookup(ptr.payload_digest, "https://h.test/p")
    assert (cap.file, cap.offset, cap.length, cap.record_id, cap.warc_date) == (
        ptr.file, ptr.offset, ptr.length, ptr.record_id, ptr.warc_date)


def test_normalise_store_url(tmp_path):
    assert normalise_store_url("s3://b/p/") == "s3://b/p"
    assert normalise_store_url(f"file://{tmp_path}/x") == str(tmp_path / "x")
    assert normalise_store_url("rel") == str(Path("rel").resolve())


# ------------------------------------------------------- middleware revisits
def _mw(tmp_path, **settings):
    from scrapy import Spider
    from scrapy.utils.test import get_crawler

    from crawler.middlewares.warc_capture import WarcCaptureMiddleware

    crawler = get_crawler(Spider, {"WARC_DIR": str(tmp_path / "warc"), "NEWSARCHIVE_STORE": str(tmp_path / "store"),
                                   **settings})
    crawler.stats.open_spider()
    return crawler, WarcCaptureMiddleware.from_crawler(crawler)


def _run(mw, exchanges):
    import asyncio

    from scrapy.http import HtmlResponse, Request

    async def go():
        out = []
        for url, status, body, meta in exchanges:
            req = Request(url, meta=dict(meta))
            try:
                mw.process_request(req)
            except Exception as exc:  # noqa: BLE001 - the test looks at it
                out.append(exc)
                continue
            resp = HtmlResponse(url, status=status, body=body, request=req,
                                headers={"Content-Type": "text/html"})
            await mw.process_response(req, resp)
            out.append(req.meta["warc"])
        await mw.spider_closed()
        return out

    return asyncio.run(go())


def _types(tmp_path):
    from warcio.archiveiterator import ArchiveIterator

    out = []
    for path in sorted((tmp_path / "warc").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type in ("response", "revisit"):
                    out.append((rec.rec_type, rec.rec_headers["WARC-Target-URI"], rec.rec_headers["WARC-Profile"],
                                rec.rec_headers["WARC-Refers-To-Target-URI"]))
    return out


def test_revisits_are_same_url_by_default_and_url_agnostic_on_request(tmp_path):
    body = b"<html>same bytes</html>"
    _crawler, mw = _mw(tmp_path / "a")
    ptrs = _run(mw, [("http://h.test/1", 200, body, {}), ("http://h.test/2", 200, body, {}),
                     ("http://h.test/1", 200, body, {})])
    ipd = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
    assert _types(tmp_path / "a") == [("response", "http://h.test/1", None, None),
                                      ("response", "http://h.test/2", None, None),
                                      ("revisit", "http://h.test/1", ipd, "http://h.test/1")]
    # the page's pointer leads to the bytes: the original response of the same URL
    assert ptrs[2]["record_id"] == ptrs[0]["record_id"] and ptrs[2]["revisit"]["record_id"]
    _crawler, mw = _mw(tmp_path / "b", WARC_REVISITS_URL_AGNOSTIC=True)
    _run(mw, [("http://h.test/1", 200, body, {}), ("http://h.test/2", 200, body, {})])
    assert _types(tmp_path / "b")[1] == ("revisit", "http://h.test/2", ipd, "http://h.test/1")


def test_304_is_a_server_not_modified_revisit_and_requisites_are_fetched_once(tmp_path):
    from scrapy.exceptions import IgnoreRequest

    crawler, mw = _mw(tmp_path)
    out = _run(mw, [
        ("http://h.test/never-seen", 304, b"", {}),
        ("http://h.test/page", 200, b"<html>v1</html>", {}),
        ("http://h.test/page", 304, b"", {}),
        ("http://h.test/logo.png", 200, b"PNG", {"page_requisite": True}),
        ("http://h.test/logo.png", 200, b"PNG", {"page_requisite": True}),
    ])
    snm = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
    assert _types(tmp_path) == [("response", "http://h.test/never-seen", None, None),
                                ("response", "http://h.test/page", None, None),
                                ("revisit", "http://h.test/page", snm, "http://h.test/page"),
                                ("response", "http://h.test/logo.png", None, None)]
    assert isinstance(out[-1], IgnoreRequest)
    stats = crawler.stats.get_stats()
    assert stats["warc/revisits/not_modified"] == 1 and stats["warc/requisites/already_archived"] == 1


def test_a_parsed_page_lets_go_of_its_tree_and_text():
    """Scrapy holds a response until its item is through the pipelines; the spider
    drops what it cached on it (the lxml tree is ~10 times the page's bytes)."""
    from scrapy.http import HtmlResponse, Request

    from crawler.items import ArticleItem

    spider = _spider(WARC_PAGE_REQUISITES=False)
    page = HtmlResponse(SEED_URL, body=SEED.read_bytes(), headers={"Content-Type": "text/html; charset=utf-8"},
                        request=Request(SEED_URL))
    out = spider.parse(page)
    item = next(out)
    assert isinstance(item, ArticleItem) and item["title"].startswith("Đảng bộ thị trấn Na Hang")
    links = [r.url for r in out]
    assert links and page._cached_selector is None and page._cached_ubody is None
    assert page.css("title") and page.text  # rebuilt on demand
