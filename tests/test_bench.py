"""The benchmark's synthetic portal and one tiny ``bench.run`` (the real benchmark is
``make bench``, never part of the test suite: speed targets are not timed tests)."""

from __future__ import annotations

import json

from bench.portal import SyntheticPortal
from bench.run import main as bench_main
from bench.run import summarise_profile
from crawler.extract import extract_article
from crawler.sites import get_profile


def test_synthetic_article_page_is_a_real_article_to_the_profile():
    portal = SyntheticPortal(500)
    profile = get_profile("baotuyenquang")
    for i in (0, 123, 499):
        a = portal.article(i)
        status, ctype, body = portal.page("baotuyenquang.com.vn", a.path)
        assert status == 200 and 25_000 <= len(body) <= 40_000  # the real pages' weight
        record = extract_article(profile, a.url, body, ctype).record
        assert record["article_id"] == str(a.id)
        assert record["title"] == a.title
        assert record["canonical_url"] == a.url
        assert record["published_at"] == a.published.isoformat()
        assert record["section"] == [a.sub[1], a.sub[3]]
        assert len(record["body"]) >= 5 and record["authors"]
    # Two articles never share their text (their content digests differ).
    bodies = {tuple(extract_article(profile, portal.article(i).url, portal.article_html(i).encode(), None).record["body"])
              for i in range(40)}
    assert len(bodies) == 40


def test_portal_routes_listings_sitemaps_and_unknown_paths():
    portal = SyntheticPortal(100, page_size=20)
    host = "baotuyenquang.com.vn"
    assert portal.page(host, "/xa-hoi/y-te/")[0] == 200  # 6 of the 100 articles
    assert portal.page(host, "/xa-hoi/y-te/trang-2.html")[0] == 404  # one page only
    assert portal.page(host, "/sitemap-articles-1.xml")[2].count(b"<loc>") == 100
    assert portal.page(host, "/sitemap-articles-2.xml")[0] == 404
    assert portal.page(host, "/khong-co-bai-999999.html")[0] == 404
    # The tracking-parameter duplicate is the same page (the query is ignored by routing).
    dup = next(i for i in range(100) if portal.tracking_url(i))
    assert "?fbclid=" in portal.tracking_url(dup)
    status, headers, body = portal.respond(host, portal.article(dup).path, accept_gzip=True)
    assert status == 200 and ("Content-Encoding", "gzip") in headers


def test_tiny_bench_run_writes_the_report(tmp_path):
    out, data = tmp_path / "BENCH.md", tmp_path / "bench.json"
    # A batch of 5 makes publish flushes overlap with arriving items: every article
    # must still be published exactly once.
    code = bench_main(["--sizes", "60", "--bare-sizes", "60", "--pairs", "1", "--sample", "5", "--repeat", "1",
                       "-s", "NEWSARCHIVE_BATCH_SIZE=5", "--out", str(out), "--json", str(data)])
    assert code == 0
    result = json.loads(data.read_text())
    bare, full = result["crawls"]
    assert (bare["kind"], full["kind"]) == ("bare", "full")
    for crawl in (bare, full):
        # Every page of the portal fetched once (robots.txt of the main host twice), nothing else.
        assert crawl["pages"] == crawl["expected_pages"] == crawl["server_hits"]
        assert crawl["statuses"] == {"200": crawl["pages"]}
        assert crawl["peak_rss_mib"] > 50
        # The reactor thread ran (parsing 60+ pages takes CPU) and its clock was read.
        assert crawl["reactor_cpu_ms"] > 0 and crawl["reactor_wait_ms"] >= 0
    assert bare["records_published"] == 0 and bare["warc_bytes"] == 0
    # The full crawl's item stages ran in their own process, whose peak is counted too.
    assert bare["item_process_rss_mib"] is None and bare["peak_rss_mib"] == bare["crawl_rss_mib"]
    assert full["item_process_rss_mib"] > 50
    assert abs(full["peak_rss_mib"] - full["crawl_rss_mib"] - full["item_process_rss_mib"]) <= 0.1
    assert full["records_published"] == 60
    assert full["warc_bytes"] > 60 * 5_000
    assert result["extraction"]["ours"]["failed"] == 0
    text = out.read_text()
    assert "## Targets" in text and "| full | 60 | 1 |" in text and "| bare | 60 | 1 |" in text
    assert "extraction ≥ 5 × faster than trafilatura" in text


#: An extraction result that meets its target (the throughput tests do not look at it).
EXTRACTION = {"speedup_vs_metadata": 7.0, "speedup_vs_text": 4.1,
              "trafilatura_metadata": {"mean_ms": 21.0}, "ours": {"mean_ms": 3.0}}


def test_targets_compare_medians_of_the_pairs():
    from bench.run import targets

    crawls = [
        {"kind": "bare", "articles": 10, "pages_per_s": 90.0, "peak_rss_mib": 200.0},
        {"kind": "full", "articles": 10, "pages_per_s": 60.0, "peak_rss_mib": 300.0},
        {"kind": "bare", "articles": 10, "pages_per_s": 80.0, "peak_rss_mib": 210.0},
        {"kind": "full", "articles": 10, "pages_per_s": 64.0, "peak_rss_mib": 310.0},
        {"kind": "full", "articles": 50, "pages_per_s": 61.0, "peak_rss_mib": 330.0},
    ]
    throughput, rss, speed = targets(crawls, EXTRACTION)
    assert throughput["measured"] == "62.0 / 85.0 = 0.73 (medians of 2 pairs)" and throughput["ok"] is False
    assert rss["measured"] == "330.0 / 305.0 MiB = 1.08" and rss["ok"] is True
    assert speed["ok"] is True


def test_the_throughput_target_names_the_reactor_cpu_medians_beside_the_ratio():
    from bench.run import targets

    crawls = [
        {"kind": "bare", "articles": 10, "pages_per_s": 90.0, "reactor_cpu_ms": 6.0},
        {"kind": "full", "articles": 10, "pages_per_s": 60.0, "reactor_cpu_ms": 8.5},
        {"kind": "bare", "articles": 10, "pages_per_s": 80.0, "reactor_cpu_ms": 6.2},
        {"kind": "full", "articles": 10, "pages_per_s": 64.0, "reactor_cpu_ms": 8.1},
    ]
    throughput = targets(crawls, EXTRACTION)[0]
    assert throughput["measured"] == ("62.0 / 85.0 = 0.73 (medians of 2 pairs); "
                                      "reactor CPU a page 8.3 / 6.1 ms (bare ÷ full = 0.73)")
    # One crawl without a clock (a profiled one, an older JSON): no note, same verdict.
    crawls[0]["reactor_cpu_ms"] = None
    assert targets(crawls, EXTRACTION)[0]["measured"] == "62.0 / 85.0 = 0.73 (medians of 2 pairs)"


def test_thread_clock_reads_a_busy_childs_cpu_time_and_keeps_it_after_exit():
    import subprocess
    import sys

    from bench.run import ThreadClock

    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\n"
                              "while time.process_time() - t < 0.6: pass"])
    clock = ThreadClock(child.pid, every=0.05).start()
    child.wait()
    clock.stop()
    cpu_ms, wait_ms = clock.per(1)
    # The last reading is at most 0.05 s before the exit; interpreter start-up adds a little.
    assert 450 <= cpu_ms <= 2000 and wait_ms >= 0
    assert ThreadClock(child.pid).per(1) == (None, None)  # never read


def test_profile_summary_names_the_innermost_known_component(tmp_path):
    raw = tmp_path / "p.txt"
    raw.write_text(
        "main (crawler/cli.py:1);article (crawler/spiders/portal.py:170);extract_article (crawler/extract.py:90) 30\n"
        "main (crawler/cli.py:1);process_response (crawler/middlewares/warc_capture.py:400) 10\n"
        "main (crawler/cli.py:1);_run_once (asyncio/base_events.py:1922) 60\n"
    )
    shares = dict(summarise_profile(raw))
    assert shares == {
        "other Scrapy/Twisted/asyncio machinery": 60.0,
        "extraction (site profile, lxml/parsel)": 30.0,
        "WARC capture (warcio, zlib)": 10.0,
    }
