"""The publish pipeline's batching without a crawl: size and age triggers, the
mark_published contract, records from alternate pages waiting for their
canonical page, and an outage that leaves batches spooled (stats → exit 3)."""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest

from crawler.dataset.manifest import list_manifests, load_manifest
from crawler.dataset.publisher import DatasetPublisher
from crawler.dataset.reader import jsonl_records, verify
from crawler.dataset.spool import Spool
from crawler.items import ArticleItem, QuarantineItem
from pipelines.publish import PublishPipeline
from tests.test_arrow_schema import record_today
from tests.test_spool_publisher import FlakyStore


class Stats(dict):
    def inc_value(self, key, count=1):
        self[key] = self.get(key, 0) + count

    def set_value(self, key, value):
        self[key] = value

    def get_value(self, key, default=None):
        return self.get(key, default)


class State:
    """Stands in for issue 5's SQLiteState: records mark_published calls."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def mark_published(self, keys):
        self.calls.append(list(keys))


class Crawler:
    def __init__(self):
        self.stats = Stats()
        self.newsarchive_state = State()


def make(tmp_path, store=None, batch_size=500, batch_seconds=60.0, run="R1"):
    store = store or FlakyStore(tmp_path / "archive")
    crawler = Crawler()
    p = PublishPipeline(store, run, batch_size, "baotuyenquang", crawler.stats, crawler=crawler,
                        spool_dir=tmp_path / "state" / "spool", batch_seconds=batch_seconds)
    # What open_spider does, without a reactor.
    p.spool = Spool(p.spool_dir)
    p.publisher = DatasetPublisher(store, p.spool)
    p.batch = p.spool.start_run(run, "2026-11-29T10:00:00+00:00")
    p._submit_drain().result()
    return p


def item(i, url=None, status="new", canonical_page=True, **extra):
    canonical = f"https://baotuyenquang.com.vn/a-{i}.html"
    rec = record_today(article_id=str(i), url=url or canonical, canonical_url=canonical, urls=[url or canonical],
                       **extra)
    rec.pop("site")
    return ArticleItem(**rec, dedup={"status": status, "article_key": canonical, "canonical_page": canonical_page})


def close(p):
    asyncio.run(p.close_spider())


def published(store):
    out = []
    for key in list_manifests(store):
        for o in load_manifest(store, key)[0]["objects"]:
            if o["kind"] == "dataset" and o["format"] == "jsonl.gz":
                out += jsonl_records(store.get_bytes(o["key"]))
    return out


def test_batches_by_size_and_each_batch_marked_published_after_spooling(tmp_path):
    p = make(tmp_path, batch_size=2)
    for i in range(5):
        p.process_item(item(i))
    assert p.crawler.newsarchive_state.calls == [
        ["https://baotuyenquang.com.vn/a-0.html", "https://baotuyenquang.com.vn/a-1.html"],
        ["https://baotuyenquang.com.vn/a-2.html", "https://baotuyenquang.com.vn/a-3.html"],
    ]
    close(p)
    assert p.crawler.newsarchive_state.calls[-1] == ["https://baotuyenquang.com.vn/a-4.html"]
    records = published(p.store)
    assert sorted(r["article_id"] for r in records) == ["0", "1", "2", "3", "4"]
    manifest = json.loads(p.store.get_bytes("dataset/articles/v1/_manifests/R1.json"))
    assert sorted({o["key"].rsplit("-", 1)[1] for o in manifest["objects"] if o["format"] == "parquet"}) == [
        "00000.parquet", "00001.parquet", "00002.parquet"]
    assert p.crawler.stats["newsarchive/publish/records"] == 5
    assert p.crawler.stats["newsarchive/publish/objects"] == len(manifest["objects"]) == 6
    assert p.crawler.stats["newsarchive/publish/spooled"] == 0
    assert p.crawler.stats["newsarchive/publish/manifest"] == "dataset/articles/v1/_manifests/R1.json"
    assert verify(p.store).problems == []


def test_batch_cut_when_the_oldest_record_waited_long_enough(tmp_path):
    p = make(tmp_path, batch_seconds=0.05)
    p.process_item(item(1))
    p._flush_if_due()
    assert p.crawler.newsarchive_state.calls == []  # not due yet
    time.sleep(0.06)
    p._flush_if_due()
    assert p.crawler.newsarchive_state.calls == [["https://baotuyenquang.com.vn/a-1.html"]]
    close(p)
    assert [r["article_id"] for r in published(p.store)] == ["1"]


def test_record_from_an_alternate_page_waits_for_its_canonical_page(tmp_path):
    p = make(tmp_path, batch_size=1)
    mobile = "https://m.baotuyenquang.com.vn/a-7.html"
    p.process_item(item(7, url=mobile, canonical_page=False, section=[]))
    assert p.crawler.newsarchive_state.calls == []  # held back, nothing cut
    p.process_item(item(8))
    assert p.crawler.newsarchive_state.calls == [["https://baotuyenquang.com.vn/a-8.html"]]
    p.process_item(item(7, status="duplicate"))  # the canonical page arrives
    close(p)
    [rec] = [r for r in published(p.store) if r["article_id"] == "7"]
    assert rec["url"] == "https://baotuyenquang.com.vn/a-7.html"
    assert rec["section"] == record_today()["section"]  # the canonical page's content
    assert rec["urls"] == ["https://baotuyenquang.com.vn/a-7.html", mobile]


@pytest.mark.parametrize("stopped", [False, True])
def test_a_stopped_crawl_leaves_records_from_alternate_pages_to_the_next_run(tmp_path, stopped):
    """Stopped (SIGTERM): the canonical page may come in the next run, so the
    alternate page's record is neither published nor marked. Finished: it is."""
    p = make(tmp_path)
    mobile = "https://m.baotuyenquang.com.vn/a-7.html"
    p.process_item(item(7, url=mobile, canonical_page=False, section=[]))
    p.process_item(item(8))
    p.crawler.crawling = not stopped
    close(p)
    assert sorted(r["article_id"] for r in published(p.store)) == (["8"] if stopped else ["7", "8"])
    marked = [k for call in p.crawler.newsarchive_state.calls for k in call]
    assert ("https://baotuyenquang.com.vn/a-7.html" in marked) is not stopped
    assert p.crawler.stats.get("newsarchive/publish/held_for_canonical_page") == (1 if stopped else None)
    from crawler.report import print_summary, summarize

    report = summarize({**p.crawler.stats, "finish_reason": "shutdown" if stopped else "finished"}, "R1", "x")
    assert report["articles"]["published"] == (1 if stopped else 2)
    assert report["articles"]["held_for_next_run"] == (1 if stopped else 0)
    out = io.StringIO()
    print_summary({**report, "exit_code": 1}, out)
    assert ("  held for next run  1 (records from alternate pages of a stopped crawl)" in out.getvalue()) is stopped


def test_outage_spools_everything_stats_say_so_and_the_next_run_publishes_it(tmp_path):
    store = FlakyStore(tmp_path / "archive")
    p = make(tmp_path, store=store, batch_size=2)
    store.down = True
    for i in range(3):
        p.process_item(item(i))
    p.process_item(QuarantineItem(reason="empty_body", url="https://baotuyenquang.com.vn/q.html", run_id="R1"))
    close(p)
    stats = p.crawler.stats
    assert stats["newsarchive/publish/spooled"] == 4 and stats["newsarchive/publish/spooled_batches"] == 2
    assert stats["newsarchive/publish/store_failures"] == 1  # tried once, then left for the retry interval
    assert "newsarchive/publish/records" not in stats and store.created == []
    from crawler.report import checks, summarize

    report = summarize({**stats, "finish_reason": "finished", "downloader/response_count": 9}, "R1", "x")
    assert checks(report, None, 0.05)[0] == 3
    store.down = False
    p2 = make(tmp_path, store=store, run="R2")
    assert p2.crawler.stats["newsarchive/publish/drained_records"] == 3
    close(p2)
    assert sorted(r["article_id"] for r in published(store)) == ["0", "1", "2"]
    assert [load_manifest(store, k)[0]["run_id"] for k in list_manifests(store)] == ["R1", "R2"]
    assert len(store.created) == len(set(store.created))
    assert verify(store).problems == []


def test_a_spool_that_cannot_be_written_stops_publishing_and_marks_nothing(tmp_path, monkeypatch):
    from crawler.dataset.spool import SpoolError

    p = make(tmp_path, batch_size=1)

    def full(*args, **kwargs):
        raise SpoolError("cannot spool batch 0 of run R1: No space left on device")

    monkeypatch.setattr(p.spool, "stage", full)
    p.process_item(item(1))
    p.process_item(item(2))
    close(p)
    assert p.crawler.newsarchive_state.calls == []  # not published: the next run emits them again
    assert p.crawler.stats["newsarchive/publish/errors"] == 1
    assert p.spool.run_info("R1")["status"] == "running"  # not closed: the next run finalizes it
    assert list_manifests(p.store) == []


class WorkerPool:
    """Stands in for the CPU pool: holds each submitted step until the test runs it
    (as the worker process would, in :func:`crawler.cpu_worker._steps`)."""

    def __init__(self):
        self.submitted: list = []

    def submit(self, step, *args):
        from twisted.internet.defer import Deferred

        d = Deferred()
        self.submitted.append((step, args, d))
        return d

    def run_all(self):
        from crawler.cpu_worker import _steps

        steps = _steps()
        while self.submitted:
            step, args, d = self.submitted.pop(0)
            d.callback(steps[step](*args))


def test_the_last_batch_is_built_in_the_worker_and_the_dedup_state_waits_for_its_marks(tmp_path):
    # Building it here put its Arrow and Parquet buffers on top of the crawl
    # process's peak memory (BENCH.md); the dedup stage closes its state only
    # once the last batch is marked published.
    p = make(tmp_path, batch_size=2)
    p.pool = pool = WorkerPool()
    for i in range(5):
        p.process_item(item(i))
    state_closable = p.when_done_marking()
    finish = p.close_spider()
    assert [(step, args[1], [r["article_id"] for r in args[2]]) for step, args, _ in pool.submitted] == [
        ("build_batch", 0, ["0", "1"]), ("build_batch", 1, ["2", "3"]), ("build_batch", 2, ["4"])]
    assert p.crawler.newsarchive_state.calls == [] and not state_closable.called
    pool.run_all()
    asyncio.run(finish)
    assert p.crawler.newsarchive_state.calls == [
        [f"https://baotuyenquang.com.vn/a-{i}.html" for i in pair] for pair in ((0, 1), (2, 3), (4,))]
    assert state_closable.called and p.when_done_marking() is None
    assert p.crawler.stats["newsarchive/publish/batches_built_in_worker"] == 3
    assert sorted(r["article_id"] for r in published(p.store)) == ["0", "1", "2", "3", "4"]
    assert verify(p.store).problems == []
