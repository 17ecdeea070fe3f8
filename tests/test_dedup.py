"""Dedup stage: one article under several URLs, the canonical page winning, exact and
near-duplicates (F03), versions across runs with the state kept on disk (SQLite), and
what a killed run left unpublished coming back."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from scrapy.statscollectors import MemoryStatsCollector

from crawler.dataset.publisher import DatasetPublisher
from crawler.dataset.reader import jsonl_records, latest_versions, load_manifests, verify
from crawler.dataset.spool import Spool
from crawler.items import ArticleItem, content_sha256
from crawler.sites import get_profile
from crawler.store import LocalStore
from pipelines.dedup import DedupPipeline
from pipelines.publish import PublishPipeline
from tests.conftest import load_gold
from tests.test_arrow_schema import record_today

CANON = "https://baotuyenquang.com.vn/chinh-tri/thoi-su/chuan-bi-chu-dao-dai-hoi-dang-bo-cap-co-so-nhiem-ky-2020-2025-132450.html"
ALIASES = [
    CANON + "?fbclid=IwAR2Zk8Qx0vT3Lr6pFhYw1mN4cB7dE9sJ2aU5oK8gH1iV3xZ0qR6tY4uP7wS",
    CANON + "?zarsrc=31&utm_source=zalo&utm_medium=zalo&utm_campaign=zalo",
    CANON.replace("/thoi-su/", "/xay-dung-dang/"),
    CANON.replace("//baotuyenquang", "//m.baotuyenquang"),
]


class _Crawler:
    def __init__(self, tmp_path):
        from scrapy.settings import Settings

        # No worker process: these tests call process_item and read its result at once.
        self.settings = Settings({"NEWSARCHIVE_STATE_DIR": str(tmp_path), "NEWSARCHIVE_SITE": "baotuyenquang",
                                  "NEWSARCHIVE_CPU_WORKERS": 0})
        self.stats = MemoryStatsCollector(self)


def item(url, title="Chuẩn bị chu đáo", body=("Đoạn một.", "Đoạn hai."), section=("Chính trị", "Thời sự")):
    return ArticleItem(
        article_id="132450", url=url, canonical_url=CANON, title=title, lead="Sapo.", body=list(body),
        section=list(section), content_sha256=content_sha256(title, "Sapo.", list(body)),
    )


def open_pipeline(tmp_path):
    crawler = _Crawler(tmp_path)
    pipeline = DedupPipeline.from_crawler(crawler)
    pipeline.open_spider()
    return pipeline, crawler.stats


def test_one_article_under_five_urls_gives_one_new_and_four_duplicates(tmp_path):
    dedup, stats = open_pipeline(tmp_path)
    outcomes = [dedup.process_item(item(u))["dedup"]["status"] for u in [ALIASES[2], CANON, *ALIASES[:2], ALIASES[3]]]
    assert outcomes == ["new", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert dedup.state.urls_of(get_profile("baotuyenquang").canonicalize_url(CANON)) == sorted([CANON, *ALIASES])
    assert stats.get_value("newsarchive/dedup/new") == 1


def test_the_canonical_page_replaces_an_alternate_page_in_the_batch(tmp_path):
    dedup, stats = open_pipeline(tmp_path)
    publisher = PublishPipeline("unused", "R", 500, "baotuyenquang", stats)
    publisher.add_article(dedup.process_item(item(ALIASES[2], section=("Chính trị", "Xây dựng Đảng"))))
    publisher.add_article(dedup.process_item(item(CANON)))
    (record,) = publisher.records.values()
    assert record["section"] == ["Chính trị", "Thời sự"]
    assert record["url"] == CANON
    assert record["urls"] == sorted([CANON, ALIASES[2]])


def test_same_text_under_another_canonical_url_is_a_duplicate(tmp_path):
    dedup, _ = open_pipeline(tmp_path)
    dedup.process_item(item(CANON))
    other = item("https://baotuyenquang.com.vn/copy-999.html")
    other["canonical_url"] = "https://baotuyenquang.com.vn/copy-999.html"
    assert dedup.process_item(other)["dedup"]["status"] == "duplicate"


def test_versions_across_runs(tmp_path):
    dedup, _ = open_pipeline(tmp_path)
    first = dedup.process_item(item(CANON))
    assert (first["dedup"]["status"], first["version"]) == ("new", 1)
    dedup.state.mark_published([first["dedup"]["article_key"]])  # its batch went out
    dedup.close_spider()

    dedup, _ = open_pipeline(tmp_path)  # a later run, same state directory
    assert dedup.process_item(item(CANON))["dedup"]["status"] == "duplicate"
    changed = dedup.process_item(item(CANON, body=("Đoạn một.", "Đoạn hai, đã sửa.")))
    assert changed["dedup"]["status"] == "updated"
    assert changed["version"] == 2
    assert changed["previous_sha256"] == first["content_sha256"]
    # A stale alternate URL with other text is not a third version.
    stale = dedup.process_item(item(ALIASES[3], body=("Cũ.",)))
    assert stale["dedup"]["status"] == "duplicate"


# ---------------------------------------------------------------- canonical keys


@pytest.mark.parametrize(
    ("canonical", "key"),
    [
        # https, the m. host alias, tracking parameters and the fragment go ...
        ("http://m.baotuyenquang.com.vn/a-b-123456.html?utm_source=fb&fbclid=Iw#binh-luan",
         "https://baotuyenquang.com.vn/a-b-123456.html"),
        # ... parameters that select content stay (sorted, percent-encoding normalised by w3lib).
        ("https://baotuyenquang.com.vn/a-b-123456.html?page=2&zarsrc=31&id=7",
         "https://baotuyenquang.com.vn/a-b-123456.html?id=7&page=2"),
        ("https://baotuyenquang.com.vn/a-b-123456.html?q=Hàm Yên", "https://baotuyenquang.com.vn/a-b-123456.html?q=H%C3%A0m+Y%C3%AAn"),
    ],
)
def test_the_dedup_key_is_the_canonicalised_canonical_url(tmp_path, canonical, key):
    dedup, _ = open_pipeline(tmp_path)
    it = item("https://baotuyenquang.com.vn/some-other-path-123456.html")
    it["canonical_url"] = canonical
    assert dedup.process_item(it)["dedup"]["article_key"] == key


def test_exact_duplicate_under_another_id_adds_its_url_to_the_first_record(tmp_path):
    """Same normalised title and text under another URL and id: one record whose
    ``urls`` holds both addresses."""
    dedup, stats = open_pipeline(tmp_path)
    publisher = PublishPipeline("unused", "R", 500, "baotuyenquang", stats)
    publisher.add_article(dedup.process_item(item(CANON)))
    copy_url = "https://baotuyenquang.com.vn/chinh-tri/thoi-su/ban-sao-999999.html"
    copy = item(copy_url)
    copy["article_id"], copy["canonical_url"] = "999999", copy_url
    out = dedup.process_item(copy)
    assert out["dedup"] == {"status": "duplicate", "article_key": CANON, "canonical_page": False, "near_duplicate": False}
    publisher.add_article(out)
    (record,) = publisher.records.values()
    assert record["article_id"] == "132450"
    assert record["urls"] == sorted([CANON, copy_url])
    assert copy_url in dedup.state.urls_of(CANON)


# ---------------------------------------------------------------- near-duplicates (F03)

GOLD = load_gold()


def gold_item(article_id: str) -> ArticleItem:
    g = GOLD[article_id]
    return ArticleItem(
        article_id=article_id, url=g["canonical_url"], canonical_url=g["canonical_url"], title=g["title"],
        lead=g["lead"], body=list(g["body"]), section=list(g["section"]), published_at=g["published_at"],
        content_sha256=content_sha256(g["title"], g["lead"], g["body"]),
    )


def test_republication_is_marked_near_duplicate_of_the_first(tmp_path):
    dedup, stats = open_pipeline(tmp_path)
    first = dedup.process_item(gold_item("146233"))
    second = dedup.process_item(gold_item("157890"))
    assert (first["dedup"]["status"], first["near_duplicate_of"]) == ("new", None)
    assert (second["dedup"]["status"], second["version"], second["near_duplicate_of"]) == ("new", 1, "146233")
    assert second["dedup"]["near_duplicate"] is True
    assert (stats.get_value("newsarchive/dedup/new"), stats.get_value("newsarchive/dedup/near_duplicate")) == (1, 1)


def test_no_other_gold_article_is_a_near_duplicate(tmp_path):
    dedup, stats = open_pipeline(tmp_path)
    marked = {}
    for article_id in sorted(GOLD, key=lambda a: GOLD[a]["published_at"]):
        out = dedup.process_item(gold_item(article_id))
        if out["near_duplicate_of"]:
            marked[article_id] = out["near_duplicate_of"]
    assert marked == {"157890": "146233"}
    assert stats.get_value("newsarchive/dedup/new") == 25


def test_the_earlier_article_met_later_in_the_same_batch_becomes_the_original(tmp_path):
    """Crawl order is not publication order: the 2022 republication met first is
    re-pointed at the 2021 original while its record still waits in the batch."""
    crawler = _Crawler(tmp_path)
    dedup = DedupPipeline.from_crawler(crawler)
    publisher = PublishPipeline("unused", "R", 500, "baotuyenquang", crawler.stats)
    crawler.newsarchive_publisher = publisher
    dedup.open_spider()
    publisher.add_article(dedup.process_item(gold_item("157890")))
    original = dedup.process_item(gold_item("146233"))
    publisher.add_article(original)
    assert original["near_duplicate_of"] is None
    by_id = {r["article_id"]: r for r in publisher.records.values()}
    assert by_id["157890"]["near_duplicate_of"] == "146233"
    assert by_id["146233"]["near_duplicate_of"] is None
    assert dedup.state.by_key(GOLD["157890"]["canonical_url"]).near_duplicate_of == "146233"
    assert (crawler.stats.get_value("newsarchive/dedup/new"), crawler.stats.get_value("newsarchive/dedup/near_duplicate")) == (1, 1)


def test_without_the_published_record_the_earlier_article_points_at_the_later(tmp_path):
    """Fallback only (no publisher to read the later record back from): archive order
    decides, and it is counted."""
    dedup, stats = open_pipeline(tmp_path)
    later = dedup.process_item(gold_item("157890"))
    dedup.state.mark_published([later["dedup"]["article_key"]])
    earlier = dedup.process_item(gold_item("146233"))
    assert earlier["near_duplicate_of"] == "157890"
    assert stats.get_value("newsarchive/dedup/near_duplicate_order_inverted") == 1


def full_item(article_id: str, run_id: str) -> ArticleItem:
    """A gold article as the spider of run ``run_id`` yields it, with every published field."""
    g = GOLD[article_id]
    sha = content_sha256(g["title"], g["lead"], g["body"])
    rec = record_today(**{k: g[k] for k in ("canonical_url", "section", "title", "lead", "body", "authors",
                                             "source", "published_at", "images", "tags", "language")},
                       article_id=article_id, url=g["canonical_url"], urls=[g["canonical_url"]],
                       content_sha256=sha)
    for name in ("site", "urls", "version", "previous_sha256"):
        rec.pop(name)
    return ArticleItem(**dict(rec, run_id=run_id))


def crawl_run(tmp_path, run_id: str):
    """The dedup and publish stages of one run over one state folder and one store,
    wired as in a crawl (publisher and state reachable from the crawler)."""
    from scrapy.settings import Settings

    crawler = _Crawler(tmp_path / "state")
    crawler.settings = Settings({"NEWSARCHIVE_STATE_DIR": str(tmp_path / "state"), "NEWSARCHIVE_RUN_ID": run_id,
                                 "NEWSARCHIVE_CPU_WORKERS": 0})
    dedup = DedupPipeline.from_crawler(crawler)
    publisher = PublishPipeline(LocalStore(tmp_path / "archive"), run_id, 500, "baotuyenquang", crawler.stats,
                                crawler=crawler, spool_dir=tmp_path / "state" / "spool")
    crawler.newsarchive_publisher = publisher
    publisher.spool = Spool(publisher.spool_dir)
    publisher.publisher = DatasetPublisher(publisher.store, publisher.spool)
    publisher.batch = publisher.spool.start_run(run_id, "2026-11-29T10:00:00+00:00")
    dedup.open_spider()
    return dedup, publisher, crawler.stats


def test_the_earlier_article_met_in_a_later_run_gets_the_later_one_a_link_revision(tmp_path):
    """The republication (2022) went out in run 1 without a link; run 2 meets the
    original (2021): the original is not marked, and the republication is published
    again as version 2 with the same content and near_duplicate_of set."""
    dedup, publisher, _ = crawl_run(tmp_path, "run1")
    publisher.process_item(dedup.process_item(full_item("157890", "run1")))
    asyncio.run(publisher.close_spider())
    dedup.close_spider()

    dedup, publisher, stats = crawl_run(tmp_path, "run2")
    original = dedup.process_item(full_item("146233", "run2"))
    assert (original["dedup"]["status"], original["near_duplicate_of"]) == ("new", None)
    later_key = GOLD["157890"]["canonical_url"]
    known = dedup.state.by_key(later_key)
    assert (known.version, known.near_duplicate_of, known.published) == (2, "146233", False)
    publisher.process_item(original)
    asyncio.run(publisher.close_spider())
    assert dedup.state.by_key(later_key).published

    store = LocalStore(tmp_path / "archive")
    assert not verify(store).problems
    table, _ = latest_versions(store)
    latest = {r["article_id"]: r for r in table.to_pylist()}
    assert {a: r["near_duplicate_of"] for a, r in latest.items()} == {"146233": None, "157890": "146233"}
    first, second = sorted((r for m in load_manifests(store) for e in m["objects"]
                            if e["format"] == "jsonl.gz" for r in jsonl_records(store.get_bytes(e["key"]))
                            if r["article_id"] == "157890"), key=lambda r: r["version"])
    sha = content_sha256(GOLD["157890"]["title"], GOLD["157890"]["lead"], GOLD["157890"]["body"])
    assert (first["version"], first["near_duplicate_of"], first["run_id"]) == (1, None, "run1")
    assert (second["version"], second["previous_sha256"], second["content_sha256"], second["run_id"]) == (
        2, sha, sha, "run2")
    assert {k: v for k, v in second.items() if k not in ("version", "previous_sha256", "near_duplicate_of",
                                                         "run_id")} == {
        k: v for k, v in first.items() if k not in ("version", "previous_sha256", "near_duplicate_of", "run_id")}
    assert stats.get_value("newsarchive/dedup/near_duplicate_relinked") == 1
    assert stats.get_value("newsarchive/dedup/near_duplicate_order_inverted") is None


def test_a_link_revision_lost_with_a_killed_run_is_made_again(tmp_path):
    """Killed before the revision's batch: recovery restores version 1 without the
    link, and the next run, meeting the original again, relinks it."""
    dedup, publisher, _ = crawl_run(tmp_path, "run1")
    publisher.process_item(dedup.process_item(full_item("157890", "run1")))
    asyncio.run(publisher.close_spider())
    dedup.close_spider()
    dedup, publisher, _ = crawl_run(tmp_path, "run2")
    dedup.process_item(full_item("146233", "run2"))  # then killed: nothing flushed
    dedup.state.db.close()  # killed: no close_spider

    dedup, publisher, stats = crawl_run(tmp_path, "run3")
    later = dedup.state.by_key(GOLD["157890"]["canonical_url"])
    assert (later.version, later.near_duplicate_of, later.published) == (1, None, True)
    assert dedup.state.by_key(GOLD["146233"]["canonical_url"]) is None
    dedup.process_item(full_item("146233", "run3"))
    assert stats.get_value("newsarchive/dedup/near_duplicate_relinked") == 1
    assert publisher.records[GOLD["157890"]["canonical_url"]]["version"] == 2


def test_a_republication_in_a_later_run_is_caught_from_the_stored_signatures(tmp_path):
    dedup, _ = open_pipeline(tmp_path)
    first = dedup.process_item(gold_item("146233"))
    dedup.state.mark_published([first["dedup"]["article_key"]])
    dedup.close_spider()

    dedup, stats = open_pipeline(tmp_path)  # a new process: only the SQLite file remains
    assert stats.get_value("newsarchive/dedup/signatures_loaded") == 1
    assert dedup.process_item(gold_item("157890"))["near_duplicate_of"] == "146233"


def test_signatures_built_with_another_shingle_size_are_not_compared(tmp_path):
    dedup, _ = open_pipeline(tmp_path)
    first = dedup.process_item(gold_item("146233"))
    dedup.state.mark_published([first["dedup"]["article_key"]])
    dedup.close_spider()

    crawler = _Crawler(tmp_path)
    crawler.settings.set("NEWSARCHIVE_SHINGLE_SIZE", 3)
    dedup = DedupPipeline.from_crawler(crawler)
    dedup.open_spider()
    assert crawler.stats.get_value("newsarchive/dedup/signatures_loaded") == 0
    assert dedup.process_item(gold_item("157890"))["near_duplicate_of"] is None


def test_an_updated_article_keeps_its_near_duplicate_link(tmp_path):
    dedup, _ = open_pipeline(tmp_path)
    dedup.process_item(gold_item("146233"))
    second = dedup.process_item(gold_item("157890"))
    dedup.state.mark_published([second["dedup"]["article_key"]])
    edited = gold_item("157890")
    edited["body"] = [*edited["body"], "Một đoạn mới."]
    edited["content_sha256"] = content_sha256(edited["title"], edited["lead"], edited["body"])
    out = dedup.process_item(edited)
    assert (out["dedup"]["status"], out["version"], out["near_duplicate_of"]) == ("updated", 2, "146233")


# ---------------------------------------------------------------- publication and recovery


def test_what_a_killed_run_left_unpublished_is_emitted_again(tmp_path):
    dedup, _ = open_pipeline(tmp_path)
    published = dedup.process_item(item(CANON))
    dedup.state.mark_published([CANON])
    lost = dedup.process_item(gold_item("146233"))  # its batch never reached the store
    assert lost["dedup"]["status"] == "new"
    dedup.state.db.close()  # killed: no close_spider, no mark_published

    dedup, stats = open_pipeline(tmp_path)
    assert stats.get_value("newsarchive/state/recovered/articles_dropped") == 1
    assert dedup.process_item(item(CANON))["dedup"]["status"] == "duplicate"
    again = dedup.process_item(gold_item("146233"))
    assert (again["dedup"]["status"], again["version"]) == ("new", 1)
    assert published["version"] == 1


def test_an_unpublished_update_is_rolled_back_and_emitted_again(tmp_path):
    dedup, _ = open_pipeline(tmp_path)
    v1 = dedup.process_item(item(CANON))
    dedup.state.mark_published([CANON])
    changed = item(CANON, body=("Đoạn một.", "Đoạn hai, đã sửa."))
    assert dedup.process_item(changed)["version"] == 2
    dedup.state.db.close()  # killed before the batch with version 2 was written

    dedup, stats = open_pipeline(tmp_path)
    assert stats.get_value("newsarchive/state/recovered/versions_dropped") == 1
    assert dedup.state.by_key(CANON).version == 1
    again = dedup.process_item(item(CANON, body=("Đoạn một.", "Đoạn hai, đã sửa.")))
    assert (again["dedup"]["status"], again["version"], again["previous_sha256"]) == ("updated", 2, v1["content_sha256"])


def test_the_publish_stage_marks_its_batch_published_after_writing_it(tmp_path):
    from scrapy.settings import Settings

    crawler = _Crawler(tmp_path)
    crawler.settings = Settings({"NEWSARCHIVE_STATE_DIR": str(tmp_path / "state"), "NEWSARCHIVE_STORE": str(tmp_path / "store"),
                                 "NEWSARCHIVE_CPU_WORKERS": 0})
    dedup = DedupPipeline.from_crawler(crawler)
    # The contract with the publish stage: the state is on the crawler before the
    # publisher (a later pipeline) is built.
    assert crawler.newsarchive_state is dedup.state
    publisher = PublishPipeline.from_crawler(crawler)
    dedup.open_spider()
    asyncio.run(publisher.open_spider())  # drains the (empty) spool first
    it = dedup.process_item(item(CANON))
    it["warc"], it["published_at"] = {"file": "w", "offset": 0, "length": 1}, "2020-01-01T00:00:00+07:00"
    publisher.add_article(it)
    assert dedup.state.pending_count() == 1
    publisher.flush()
    assert dedup.state.pending_count() == 0
    assert crawler.newsarchive_state.by_key(CANON).published


def test_an_article_is_classified_in_one_transaction(tmp_path):
    # A failure after the article's record but before its URL and page link (a crash,
    # a full disk) leaves none of its rows: the next run classifies it afresh.
    dedup, _stats = open_pipeline(tmp_path)
    key = get_profile("baotuyenquang").canonicalize_url(CANON)
    dedup.state.record_page(CANON, 200)

    def broken(url, article_key):
        raise sqlite3.OperationalError("disk I/O error")

    real, dedup.state.link_page = dedup.state.link_page, broken
    with pytest.raises(sqlite3.OperationalError):
        dedup.process_item(item(CANON))
    assert dedup.state.by_key(key) is None and dedup.state.urls_of(key) == []
    dedup.state.link_page = real
    assert dedup.process_item(item(CANON))["dedup"]["status"] == "new"
    assert dedup.state.by_key(key).version == 1 and dedup.state.urls_of(key) == [CANON]
    assert dedup.state.page(CANON).article_key == key


class _CountingPool:
    """A worker pool that runs steps in this process and lists the steps asked for."""

    workers = 1

    def __init__(self):
        from crawler.cpu_pool import CpuPool

        self.steps: list[str] = []
        self._here = CpuPool(0)

    async def run(self, step, *args):
        self.steps.append(step)
        return self._here.run_here(step, *args)


def test_the_validate_stage_signs_for_the_dedup_stage_in_one_worker_round_trip(tmp_path):
    from crawler.items import QuarantineItem
    from crawler.neardup import NUM_PERM, attached_signature, signature_bytes
    from pipelines.validate import ValidatePipeline
    from tests.test_schema import item_from, seed_record

    pool = _CountingPool()
    validate = ValidatePipeline(_Crawler(tmp_path / "v").stats, pool)
    seed = item_from(seed_record())
    expected = signature_bytes(seed["title"], seed["lead"], seed["body"], 5, NUM_PERM)
    assert asyncio.run(validate.process_item(seed)) is seed
    assert pool.steps == ["validate_and_sign"]
    assert attached_signature(seed, 5, NUM_PERM) == expected
    assert attached_signature(seed, 4, NUM_PERM) is None  # other parameters: not this signature

    dedup, stats = open_pipeline(tmp_path)
    dedup.pool = pool
    out = dedup.process_item(seed)  # no coroutine: nothing to wait for
    assert out["dedup"]["status"] == "new"
    assert pool.steps == ["validate_and_sign"]  # no second round trip for the signature
    assert dedup.state.signature(out["dedup"]["article_key"], dedup.index.params) == expected

    # A stage between them that changes the text: the dedup stage signs the new text.
    other = item_from(seed_record() | {"article_id": "999999", "url": CANON.replace("132450", "999999"),
                                       "canonical_url": CANON.replace("132450", "999999")})
    asyncio.run(validate.process_item(other))
    other["body"] = [*other["body"], "Một đoạn thêm."]
    assert attached_signature(other, 5, NUM_PERM) is None
    asyncio.run(dedup.process_item(other))
    assert pool.steps == ["validate_and_sign", "validate_and_sign", "signature"]

    # An item the stage check refuses is quarantined and not signed.
    bad = item_from(seed_record() | {"title": ""})
    assert isinstance(asyncio.run(validate.process_item(bad)), QuarantineItem)
    assert attached_signature(bad, 5, NUM_PERM) is None


def test_the_state_stays_open_until_the_publish_stage_marked_its_last_batch(tmp_path):
    # Scrapy closes the pipelines concurrently; the publish stage marks its last
    # batch after the worker built it, so the state must outlive that.
    from twisted.internet.defer import Deferred

    class Publisher:
        done = Deferred()

        def when_done_marking(self):
            return self.done

    crawler = _Crawler(tmp_path)
    crawler.newsarchive_publisher = publisher = Publisher()
    dedup = DedupPipeline.from_crawler(crawler)
    dedup.open_spider()
    key = dedup.process_item(gold_item("146233"))["dedup"]["article_key"]
    closing = dedup.close_spider()
    dedup.state.mark_published([key])  # the last batch, marked after close_spider
    publisher.done.callback(None)
    asyncio.run(closing)
    with pytest.raises(sqlite3.ProgrammingError):
        dedup.state.db.execute("SELECT 1")
    dedup, _ = open_pipeline(tmp_path)
    assert dedup.state.by_key(key).published
