"""Incremental crawling: the fetch/skip rule (crawler/incremental.py) on its own, the
page recorder, and three incremental runs over the replica (the second serves the
updated article F04), then a re-check run (conditional GETs answered 304) and a full
run, checked against the gold."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest
from scrapy.http import Request, Response
from scrapy.settings import Settings
from scrapy.statscollectors import MemoryStatsCollector

from crawler.incremental import IncrementalPolicy, PageRecorderMiddleware, parse_lastmod
from crawler.sites import get_profile
from crawler.state import SQLiteState
from tests.conftest import load_expected, load_gold, read_jsonl_gz, run_newsarchive

PROFILE = get_profile("baotuyenquang")
URL = "https://baotuyenquang.com.vn/va-cham-giao-thong-tren-quoc-lo-2c-mot-nguoi-bi-thuong-nang-185230.html"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
ETAG, MODIFIED = '"a8fbd19125bcb42e"', "Mon, 02 Jun 2025 23:20:00 GMT"


@pytest.fixture()
def state(tmp_path):
    s = SQLiteState(tmp_path / "state.sqlite")
    yield s
    s.close()


def known(state, url=URL, published_at="2025-06-03T06:20:00+07:00", lastmod=None, key=URL):
    """``url`` fetched and published in an earlier run."""
    state.record_page(url, 200, etag=ETAG, last_modified=MODIFIED, sitemap_lastmod=lastmod, pending=True, run_id="r0")
    state.record(key, "185230", "11" * 32, 1, published_at=published_at)
    state.link_page(url, key)
    state.mark_published([key])


def policy(state, **kw):
    return IncrementalPolicy(state, now=NOW, canonicalize=PROFILE.canonicalize_url, **kw)


def test_an_unknown_url_is_fetched(state):
    d = policy(state).decide(URL)
    assert (d.fetch, d.reason, d.headers) == (True, "new", {})


def test_a_known_old_article_is_skipped_unless_its_lastmod_moved(state):
    known(state, lastmod="2025-06-03T06:20:00+07:00")
    p = policy(state)
    assert p.decide(URL).fetch is False
    assert p.decide(URL, "2025-06-03T06:20:00+07:00").fetch is False  # same lastmod
    assert p.decide(URL, "2025-06-02").fetch is False  # older
    d = p.decide(URL, "2025-06-03T14:45:00+07:00")  # sitemap v2 (F04)
    assert (d.fetch, d.reason) == (True, "lastmod")
    assert d.headers == {"If-None-Match": ETAG, "If-Modified-Since": MODIFIED}
    assert p.is_settled(URL)


def test_without_a_stored_lastmod_last_modified_is_compared(state):
    known(state)  # found through a listing: no sitemap lastmod stored
    p = policy(state)
    assert p.decide(URL, "2025-06-03T06:20:00+07:00").fetch is False  # == Last-Modified
    assert p.decide(URL, "2025-06-03T14:45:00+07:00").reason == "lastmod"


def test_a_young_article_is_rechecked_with_a_conditional_get(state):
    known(state, published_at="2026-11-25T08:00:00+07:00")
    d = policy(state).decide(URL)
    assert (d.fetch, d.reason, d.headers["If-None-Match"]) == (True, "young", ETAG)
    assert policy(state, recheck_days=3).decide(URL).fetch is False
    assert not policy(state).is_settled(URL)


def test_full_mode_fetches_everything_unconditionally(state):
    known(state)
    d = policy(state, mode="full").decide(URL)
    assert (d.fetch, d.reason, d.headers) == (True, "full", {})


def test_a_page_whose_article_was_never_published_is_unknown(state):
    state.record_page(URL, 200, etag=ETAG, pending=True)
    state.record(URL, "185230", "11" * 32, 1)
    state.link_page(URL, URL)
    assert policy(state).decide(URL).reason == "new"


def test_a_new_tracking_variant_of_a_published_article_is_that_article(state):
    known(state)
    assert policy(state).decide(URL + "?utm_source=zalo&fbclid=x").reason == "known_article"


def test_redirects_are_known_through_their_target_and_loops_are_known(state):
    old = "https://baotuyenquang.com.vn/kinh-te/doanh-nghiep-che-bien-go-tang-toc-san-xuat-dau-nam-144105.html"
    new = "https://baotuyenquang.com.vn/kinh-te/doanh-nghiep/doanh-nghiep-che-bien-go-tang-toc-san-xuat-dau-nam-144105.html"
    state.record_page(old, 301, location=new)
    assert policy(state).decide(old).reason == "new"  # the target is not known yet
    known(state, url=new, key=new)
    assert policy(state).decide(old).fetch is False
    a = "https://baotuyenquang.com.vn/van-hoa/di-san/tuyen-quang-co-them-3-di-tich-duoc-xep-hang-cap-quoc-gia-181276.html"
    b = "https://baotuyenquang.com.vn/tuyen-quang-co-them-3-di-tich-duoc-xep-hang-cap-quoc-gia-181276.html"
    state.record_page(a, 302, location=b, sitemap_lastmod="2024-01-01")
    state.record_page(b, 301, location=a)
    assert policy(state).decide(a).fetch is False
    assert policy(state).decide(a, "2024-01-01").fetch is False


def test_a_gone_page_is_not_fetched_again(state):
    gone = "https://baotuyenquang.com.vn/xa-hoi/y-te/benh-vien-da-khoa-tinh-ung-dung-ky-thuat-moi-trong-dieu-tri-dot-quy-150011.html"
    state.record_page(gone, 404, sitemap_lastmod="2021-01-01")
    assert policy(state).decide(gone, "2021-01-01").fetch is False
    assert policy(state).decide(gone, "2026-01-01").reason == "lastmod"


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("2025-06-03T14:45:00+07:00", "2025-06-03T07:45:00+00:00"),
        ("2025-06-03T07:45:00Z", "2025-06-03T07:45:00+00:00"),
        ("2025-06-03", "2025-06-03T00:00:00+00:00"),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_lastmod(value, iso):
    dt = parse_lastmod(value)
    assert (dt.astimezone(timezone.utc).isoformat() if dt else None) == iso


def test_bad_mode_and_recheck_days_are_refused(state):
    with pytest.raises(ValueError):
        IncrementalPolicy(state, mode="sometimes")
    with pytest.raises(ValueError):
        IncrementalPolicy(state, recheck_days=-1)


class _Crawler:
    def __init__(self, state):
        self.settings = Settings()
        self.newsarchive_state = state
        self.stats = MemoryStatsCollector(self)
        self.spider = type("Spider", (), {"sitemap_lastmods": {URL: "2025-06-03T06:20:00+07:00"}})()


def test_the_page_recorder_stores_every_answer_of_an_article_url(state):
    crawler = _Crawler(state)
    mw = PageRecorderMiddleware(crawler, PROFILE, "r1")
    req = Request(URL)
    resp = Response(URL, status=200, headers={"ETag": ETAG, "Last-Modified": MODIFIED}, request=req)
    assert mw.process_response(req, resp) is resp
    page = state.page(URL)
    assert (page.status, page.etag, page.last_modified, page.sitemap_lastmod, page.pending) == (
        200, ETAG, MODIFIED, "2025-06-03T06:20:00+07:00", True)
    mw.process_response(req, Response(URL, status=304, request=req))
    assert state.page(URL).status == 200 and crawler.stats.get_value("newsarchive/incremental/not_modified") == 1
    src = "https://baotuyenquang.com.vn/kinh-te/doanh-nghiep-che-bien-go-tang-toc-san-xuat-dau-nam-144105.html"
    req = Request(src)
    mw.process_response(req, Response(src, status=301, headers={"Location": "/kinh-te/doanh-nghiep/x-144105.html"}, request=req))
    assert state.page(src).location == "https://baotuyenquang.com.vn/kinh-te/doanh-nghiep/x-144105.html"
    req = Request("https://baotuyenquang.com.vn/a-150011.html")
    mw.process_response(req, Response(req.url, status=404, request=req))
    assert state.page(req.url).status == 404 and not state.page(req.url).pending
    req = Request("https://baotuyenquang.com.vn/a-147903.html")
    mw.process_response(req, Response(req.url, status=500, request=req))
    assert state.page(req.url) is None  # a failure leaves the URL unknown
    listing = Request("https://baotuyenquang.com.vn/xa-hoi/y-te/")
    mw.process_response(listing, Response(listing.url, status=200, request=listing))
    assert state.page(listing.url) is None  # hubs are fetched every run: not recorded


# ---------------------------------------------------------------- the replica, run after run

GOLD = load_gold()
EXPECTED = load_expected()
UPDATED = EXPECTED["updated_articles"][0]
GOLD_FIELDS = (
    "article_id", "canonical_url", "section", "title", "published_at", "authors", "source",
    "lead", "body", "images", "tags", "language",
)
FAST = ["-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=WARNING"]


def run_records(store, run_id: str) -> list[dict]:
    out = []
    for path in sorted((store / "dataset").rglob(f"part-{run_id}-*.jsonl.gz")):
        out.extend(read_jsonl_gz(path.read_bytes()))
    return out


def report_of(state_dir, run_id):
    return json.loads((state_dir / "runs" / f"{run_id}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runs(replica, tmp_path_factory):
    """Three incremental runs, then a re-check of everything (``--recheck-days`` large:
    conditional GETs), then a full run, on one state and store. Per run: (process,
    requests logged by the replica during it, run id)."""
    base = tmp_path_factory.mktemp("incremental")
    store, state = base / "archive", base / "state"
    replica.reset()
    out = []
    plans = [[], [], [], ["--recheck-days", "100000"], ["--mode", "full"]]
    for i, extra in enumerate(plans, 1):
        before = len(replica.requests)
        run_id = f"run{i}"
        proc = run_newsarchive(
            ["crawl", "--store", str(store), "--state-dir", str(state), "--run-id", run_id, *extra, *FAST],
            replica.proxy_url,
        )
        out.append((proc, replica.requests[before:], run_id))
    return store, state, out


def test_every_run_exits_0(runs):
    for proc, _, run_id in runs[2]:
        assert proc.returncode == 0, (run_id, proc.stderr[-3000:])


def test_the_first_run_stores_the_gold_articles_once(runs):
    store, state, out = runs
    records = run_records(store, "run1")
    assert sorted(r["article_id"] for r in records) == sorted(EXPECTED["article_ids"])
    assert {r["version"] for r in records} == {1}
    assert report_of(state, "run1")["articles"] == {
        "new": 25, "updated": 0, "duplicate": 7, "near_duplicate": 1, "link_revisions": 0, "quarantined": 2,
        "published": 26, "held_for_next_run": 0, "quarantine_reasons": {"empty_body": 1, "truncated_body": 1},
    }


def test_the_second_run_emits_exactly_the_updated_article_as_version_2(runs):
    store, state, out = runs
    (record,) = run_records(store, "run2")
    v1 = next(r for r in run_records(store, "run1") if r["article_id"] == UPDATED["article_id"])
    assert (record["article_id"], record["version"], record["previous_sha256"]) == ("185230", 2, v1["content_sha256"])
    assert record["title"] == UPDATED["v2"]["title"] == GOLD["185230"]["title"]
    assert v1["title"] == UPDATED["v1"]["title"]
    assert not list((store / "quarantine").glob("run2/*"))
    # Only the article the sitemap says moved was fetched; no listing went past page 1.
    _, requests, _ = out[1]
    articles = [r["url"] for r in requests if PROFILE.is_article_url(r["url"])]
    assert articles == [UPDATED["url"]]
    assert not [r["url"] for r in requests if "trang-" in r["path"]]
    report = report_of(state, "run2")
    assert report["articles"]["updated"] == 1 and report["articles"]["published"] == 1
    assert report["incremental"]["rechecked"] == 1
    assert report["incremental"]["article_urls_discovered"] == 32
    # Counted by article like the URLs met (URL variants counted apart gave 36).
    assert report["incremental"]["skipped_known"] == 31


def test_the_third_run_emits_nothing_and_fetches_no_article(runs):
    store, state, out = runs
    assert run_records(store, "run3") == []
    _, requests, _ = out[2]
    assert [r["url"] for r in requests if PROFILE.is_article_url(r["url"])] == []
    assert report_of(state, "run3")["articles"]["published"] == 0
    assert report_of(state, "run3")["incremental"]["skipped_known"] == 32


def test_rechecking_sends_conditional_gets_the_replica_answers_304(runs):
    store, state, out = runs
    _, requests, _ = out[3]
    statuses = {}
    for r in requests:
        if PROFILE.is_article_url(r["url"]):
            statuses.setdefault(r["status"], []).append(r["url"])
    # Every known article page (31 with an ETag or Last-Modified) is unchanged.
    assert len(statuses[304]) == len(set(statuses[304])) >= 30
    assert run_records(store, "run4") == []
    report = report_of(state, "run4")
    assert report["incremental"]["not_modified"] == len(statuses[304])


def test_a_full_run_walks_everything_and_emits_nothing_new(runs):
    store, state, out = runs
    _, requests, _ = out[4]
    paths = {urlsplit(r["url"]).path for r in requests}
    assert "/chinh-tri/thoi-su/trang-2.html" in paths
    fetched = {r["url"] for r in requests if PROFILE.is_article_url(r["url"]) and r["status"] == 200}
    assert set(EXPECTED["crawl_counts"]["policy_as_linked"]["article_pages_fetched_ok_urls"]) <= fetched
    assert run_records(store, "run5") == []


def test_all_runs_together_hold_each_article_once_per_version(runs):
    store, _, _ = runs
    records = []
    for path in sorted((store / "dataset").rglob("*.jsonl.gz")):
        records.extend(read_jsonl_gz(path.read_bytes()))
    keys = [(r["article_id"], r["version"]) for r in records]
    assert len(keys) == len(set(keys)) == 27, "a record was emitted twice"
    latest = {}
    for r in sorted(records, key=lambda r: r["version"]):
        latest[r["article_id"]] = r
    assert sorted(latest) == sorted(EXPECTED["article_ids"])
    wrong = {aid: [f for f in GOLD_FIELDS if r[f] != GOLD[aid][f]] for aid, r in latest.items()}
    assert {aid: d for aid, d in wrong.items() if d} == {}
    marked = {aid: r["near_duplicate_of"] for aid, r in latest.items() if r["near_duplicate_of"]}
    assert marked == {"157890": "146233"}
    assert [r["version"] for r in records if r["article_id"] == "185230"] == [1, 2]
