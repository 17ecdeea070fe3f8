"""The generic profile and the fallback chain, on a small site no profile knows
(tests/generic_site.py): one page each with only JSON-LD, only OpenGraph, only plain
markup, plus a listing and a soft 404; then a whole ``newsarchive crawl --start-url URL
--allow-domain HOST`` of it."""

from __future__ import annotations

import pytest

from crawler.extract import extract_article
from crawler.schema import validate_record
from crawler.sites import get_profile, profile_name_for
from tests.conftest import read_jsonl_gz, run_newsarchive
from tests.generic_site import ARTICLE_1, ARTICLE_2, ARTICLE_3, BASE, HOST, SOFT_404_URL, SiteProxy, pages, write_site

GENERIC = get_profile("generic")
HTML = "text/html; charset=utf-8"
FAST = ["-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=WARNING"]


def extract(path: str, html: str | None = None):
    return extract_article(GENERIC, BASE + path, (html or pages()[path]).encode(), HTML)


def _path(url: str) -> str:
    return url[len(BASE):]


@pytest.mark.parametrize("expected", [ARTICLE_1, ARTICLE_2, ARTICLE_3], ids=["json-ld", "opengraph", "markup"])
def test_fallback_chain_fields(expected: dict) -> None:
    ex = extract(_path(expected["url"]))
    assert ex.quarantine is None, ex
    got = {k: ex.record[k] for k in expected if k != "url"}
    assert got == {k: v for k, v in expected.items() if k != "url"}


def test_json_ld_page_body_leaves_out_sapo_share_bar_caption_byline_related() -> None:
    body = extract(_path(ARTICLE_1["url"])).record["body"]
    text = " ".join(body)
    for boilerplate in ("Chia sẻ Facebook", "In bài", "Tin liên quan", "Giá lúa tăng mạnh", "Đọc nhiều",
                        "Minh Anh - Quốc Việt", "Các cầu thủ ăn mừng", ARTICLE_1["lead"]):
        assert boilerplate not in text


def test_article_id_without_a_number_is_a_url_digest() -> None:
    rec = extract(_path(ARTICLE_2["url"])).record
    assert len(rec["article_id"]) == 16 and int(rec["article_id"], 16) >= 0
    assert rec["article_id"] == GENERIC.article_id(ARTICLE_2["url"] + "?utm_source=x")


@pytest.mark.parametrize("path", ["/", "/the-thao/", "/doi-song/", "/tag/bong-da/"])
def test_listings_and_home_are_not_articles(path: str) -> None:
    assert extract(path).quarantine == "not_an_article"


def test_soft_404() -> None:
    assert extract(_path(SOFT_404_URL)).quarantine == "soft_404"


def test_generic_url_rule() -> None:
    assert GENERIC.is_article_url(ARTICLE_1["url"]) and GENERIC.is_article_url(ARTICLE_2["url"])
    for url in (f"{BASE}/", f"{BASE}/tag/bong-da/", f"{BASE}/the-thao/trang-2.html", f"{BASE}/page/3",
                f"{BASE}/rss/home.rss", f"{BASE}/images/a.jpg", "mailto:a@b.c"):
        assert not GENERIC.is_article_url(url), url
    assert not GENERIC.url_decides_article


def test_canonical_on_same_host_only() -> None:
    html = pages()[_path(ARTICLE_1["url"])].replace(
        "<title>", f'<link rel="canonical" href="https://www.{HOST}/the-thao/doi-tuyen-thang-dam-9001.html?utm_source=x"><title>')
    rec = extract(_path(ARTICLE_1["url"]), html).record
    assert rec["canonical_url"] == f"https://www.{HOST}/the-thao/doi-tuyen-thang-dam-9001.html"
    offsite = html.replace(f"https://www.{HOST}/", "https://other.example/")
    ex = extract(_path(ARTICLE_1["url"]), offsite)
    assert ex.record["canonical_url"] == ARTICLE_1["url"] and "canonical_offsite" in ex.warnings


def test_unreadable_metadata_date_is_reported_not_guessed() -> None:
    """A date-only ``datePublished`` and no other source: quarantined, the raw value in
    the detail; htmldate's bare day (no time) is not taken either."""
    html = pages()[_path(ARTICLE_1["url"])].replace('"2024-03-21T19:30:00+07:00"', '"hôm qua"')
    ex = extract(_path(ARTICLE_1["url"]), html)
    assert ex.quarantine == "unreadable_date"
    assert "published_at: json-ld datePublished: 'hôm qua'" in ex.detail
    day_only = pages()[_path(ARTICLE_3["url"])].replace("2024-06-10T10:00:00+07:00", "2024-06-10")
    ex = extract(_path(ARTICLE_3["url"]), day_only)
    assert ex.quarantine == "unreadable_date"
    assert "day without a time 2024-06-10" in ex.detail


def test_profile_name_for_start_urls() -> None:
    assert profile_name_for([]) == "baotuyenquang"
    assert profile_name_for(["https://m.baotuyenquang.com.vn/"]) == "baotuyenquang"
    assert profile_name_for([f"{BASE}/"]) == "generic"


# ---------------------------------------------------------------- the whole crawl


@pytest.fixture(scope="module")
def generic_crawl(tmp_path_factory):
    """``newsarchive crawl --start-url http://tintuc.example/ --allow-domain tintuc.example``
    with the site served through a forward proxy; (process, store, requested URLs)."""
    base = tmp_path_factory.mktemp("generic")
    root = write_site(base / "site")
    with SiteProxy(root) as proxy:
        proc = run_newsarchive(
            ["crawl", "--start-url", f"{BASE}/", "--allow-domain", HOST,
             "--store", str(base / "archive"), "--state-dir", str(base / "state"), *FAST],
            proxy.proxy_url,
        )
        requested = list(proxy.requests)
    return proc, base / "archive", requested


def _store_entries(store, prefix: str) -> list[dict]:
    out = []
    for path in sorted((store / prefix).rglob("*.jsonl.gz")):
        out.extend(read_jsonl_gz(path.read_bytes()))
    return out


def test_generic_crawl_publishes_the_three_articles(generic_crawl) -> None:
    proc, store, requested = generic_crawl
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "articles stored    3 " in proc.stderr
    records = {r["url"]: r for r in _store_entries(store, "dataset")}
    assert sorted(records) == sorted(a["url"] for a in (ARTICLE_1, ARTICLE_2, ARTICLE_3))
    for expected in (ARTICLE_1, ARTICLE_2, ARTICLE_3):
        record = records[expected["url"]]
        assert validate_record(record) == [], record["url"]
        assert record["site"] == "generic"
        for field, value in expected.items():
            assert record[field] == value, (record["url"], field)
    # Nothing outside the allowed host was asked for (share links, off-site images).
    assert all(u.startswith(f"{BASE}/") for u in requested), requested


def test_generic_crawl_quarantines_the_soft_404_only(generic_crawl) -> None:
    _, store, _ = generic_crawl
    entries = _store_entries(store, "quarantine")
    assert [(e["url"], e["reason"]) for e in entries] == [(SOFT_404_URL, "soft_404")]
    assert entries[0]["warc"]["length"] > 0
