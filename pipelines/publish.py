"""Publish stage: cleaned records → batches → local spool → store.

Records are buffered keyed by article, so the URLs of duplicates seen while the
record is buffered are merged into its ``urls``, and an article first met on an
alternate page (mobile host, second section path) takes the content of its
canonical page when that comes. A record from an alternate page waits in the
buffer for its canonical page until the run ends; the others go out in batches.

A batch is cut every ``NEWSARCHIVE_BATCH_SIZE`` records (default 500) or when
its oldest record has waited ``NEWSARCHIVE_BATCH_SECONDS`` (default 60). Each
batch is serialized (:mod:`crawler.dataset.batches`; in the CPU worker process
when there is one, see :meth:`PublishPipeline.flush`), written durably to the
spool in the state directory, reported to the dedup state as published
(``crawler.newsarchive_state.mark_published``, the contract of HELPERS.md), and
handed to one worker thread that drains the spool into the store
(:mod:`crawler.dataset.publisher`). A crash loses at most the batch being
buffered, whose articles the state has not marked published, so the next run
emits them again.

When the store is unreachable (after botocore's retries) batches stay spooled;
the store is tried again after ``NEWSARCHIVE_STORE_RETRY_SECONDS`` (300) and by
the next run, which drains the spool before it crawls. Stats:
``newsarchive/publish/{records,objects,quarantined,drained_records,store_failures}``,
``…/errors`` (conflicting objects, spool failures) and ``…/spooled`` (records and
quarantine entries left in the spool at the end); the CLI exits 3 when either of
the last two is non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from itertools import chain
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred

from crawler.cpu_pool import CpuPool
from crawler.dataset.batches import BuiltBatch, build_batch, published_date
from crawler.dataset.publisher import DatasetPublisher, DrainResult, RunFinalized
from crawler.dataset.reader import find_record, partition_objects
from crawler.dataset.spool import Spool, SpoolError
from crawler.items import INTERNAL_FIELDS, ArticleItem, QuarantineItem
from crawler.store import StoreError, open_store, store_options

logger = logging.getLogger(__name__)

#: Fields taken from the canonical page when it replaces an alternate page's record.
CONTENT_FIELDS = (
    "article_id", "canonical_url", "section", "title", "lead", "body", "authors", "source",
    "published_at", "images", "tags", "language", "content_sha256", "url", "fetched_at", "warc",
    "text", "word_count", "modified_at", "extracted_by",
)

#: page_rank of the canonical page itself: a record with it is ready to publish.
CANONICAL = 2


def to_record(item: ArticleItem) -> dict:
    """The published record of an article item: every field but the internal ones."""
    return {k: v for k, v in dict(item).items() if k not in INTERNAL_FIELDS}


def page_rank(item: ArticleItem, dedup: dict) -> int:
    """How well a page speaks for its article: 2 the canonical URL itself, 1 the
    canonical page under tracking parameters, 0 a copy (mobile host, second
    section path). The best page seen gives the record its content and ``url``,
    whatever order the crawl met them in."""
    if item["url"] == item.get("canonical_url"):
        return CANONICAL
    return 1 if dedup["canonical_page"] else 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class _Flight:
    """A batch cut from the buffer: its number, article keys, records and quarantine
    entries, and once built, what :func:`build_batch` made of them."""

    batch: int
    keys: list[str]
    records: list[dict]
    quarantine: list[dict]
    built: BuiltBatch | None = None
    #: The worker's build, then staging, when the batch went to the worker.
    pending: Deferred | None = None


class PublishPipeline:
    """Item pipeline that publishes dataset and quarantine batches (see module
    docstring). Settings: ``NEWSARCHIVE_STORE``, ``NEWSARCHIVE_STATE_DIR`` (the
    spool is its ``spool/``), ``NEWSARCHIVE_RUN_ID``, ``NEWSARCHIVE_BATCH_SIZE``,
    ``NEWSARCHIVE_BATCH_SECONDS``, ``NEWSARCHIVE_STORE_RETRY_SECONDS``,
    ``NEWSARCHIVE_SITE`` and the S3 options of :func:`crawler.store.store_options`.
    What this run stored is counted (``newsarchive/publish/objects``) and listed by
    its manifest (``newsarchive/publish/manifest``, its key, once written), not
    held here: a 50,000-article crawl writes ~66,000 objects."""

    def __init__(self, store, run_id: str, batch_size: int, site: str, stats, *, crawler=None,
                 spool_dir: Path | None = None, batch_seconds: float = 60.0, retry_seconds: float = 300.0,
                 store_options: dict | None = None):
        """``store``: a store URL (opened in :meth:`open_spider`) or a Store."""
        if batch_size < 1 or batch_seconds <= 0:
            raise ValueError("NEWSARCHIVE_BATCH_SIZE must be >= 1 and NEWSARCHIVE_BATCH_SECONDS > 0")
        self.crawler = crawler
        self.stats = stats
        self.store = store
        self.store_options = store_options or {}
        self.spool_dir = Path(spool_dir) if spool_dir is not None else Path("state") / "spool"
        self.run_id = run_id
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.retry_seconds = retry_seconds
        self.site = site
        self.spool: Spool | None = None
        self.publisher: DatasetPublisher | None = None
        self.records: dict[str, dict] = {}
        self.page_rank: dict[str, int] = {}
        self.quarantine: list[dict] = []
        self.oldest: float | None = None  # monotonic time the buffer's oldest entry arrived
        self.batch = 0
        self.retry_at = 0.0  # monotonic time before which the store is not tried again
        self.failed = False  # a spool write failed: publishing stopped for this run
        self._marking_waiters: list[Deferred] = []
        self._done_marking = False
        self._unknown_fields: set[str] = set()
        # One worker: drains never overlap and batches reach the store in order.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="newsarchive-publish")
        self._jobs: list[Future] = []
        self._timer: task.LoopingCall | None = None
        #: Batches cut and being built, by number (in order); see :meth:`flush`.
        self._in_flight: dict[int, _Flight] = {}
        #: CPU worker processes that build batches (from_crawler); none: built here.
        self.pool = CpuPool(0)

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        pipeline = cls(
            s.get("NEWSARCHIVE_STORE", "archive"),
            s.get("NEWSARCHIVE_RUN_ID", "manual"),
            s.getint("NEWSARCHIVE_BATCH_SIZE", 500),
            s.get("NEWSARCHIVE_SITE", "baotuyenquang"),
            crawler.stats,
            crawler=crawler,
            spool_dir=Path(s.get("NEWSARCHIVE_STATE_DIR", "state")) / "spool",
            batch_seconds=s.getfloat("NEWSARCHIVE_BATCH_SECONDS", 60.0),
            retry_seconds=s.getfloat("NEWSARCHIVE_STORE_RETRY_SECONDS", 300.0),
            store_options=store_options(s),
        )
        pipeline.pool = CpuPool.for_crawler(crawler)
        crawler.newsarchive_publisher = pipeline
        return pipeline

    # -- lifecycle ----------------------------------------------------------
    async def open_spider(self):
        """Open the run in the spool, then drain what earlier runs left there
        (before this run adds anything) and finalize runs that are over."""
        if isinstance(self.store, (str, os.PathLike)):
            self.store = open_store(self.store, **self.store_options)
        self.spool = Spool(self.spool_dir)
        self.publisher = DatasetPublisher(self.store, self.spool)
        try:
            await asyncio.wrap_future(self._worker.submit(self.publisher.check_run_open, self.run_id))
        except RunFinalized as exc:
            # Its manifest is immutable: nothing can join that run. Stop the crawl
            # (finish reason below, exit code 1) instead of crawling for nothing.
            logger.error("%s; start a crawl with another --run-id", exc)
            self.failed = True
            self.stats.set_value("newsarchive/publish/run_already_published", self.run_id)
            reactor.callLater(0, lambda: deferred_from_coro(
                self.crawler.engine.close_spider_async(reason="run_already_published")))
            return
        except StoreError as exc:  # unreachable: the drain below counts it; the crawl spools
            logger.warning("cannot ask the store about run %s: %s", self.run_id, exc)
        self.batch = self.spool.start_run(self.run_id, _now())
        merger = getattr(self.crawler, "newsarchive_manifest_merger", None)
        if merger is not None:
            # Distributed crawl: batch numbers of its own, one run manifest for all.
            self.batch += merger.batch_offset
            merger.store = self.store
            self.publisher.finalize = merger.finalize
        # A crash between spooling a batch and marking it published would make the
        # next run emit those articles again: mark every pending batch (idempotent).
        for pending in self.spool.pending():
            self._mark_published(pending.article_keys)
        await asyncio.wrap_future(self._submit_drain())
        interval = max(0.2, min(5.0, self.batch_seconds / 4))
        self._timer = task.LoopingCall(self._flush_if_due)
        self._timer.start(interval, now=False)

    def close_spider(self):
        """Cut the last batch (built in the CPU worker like the others: building it
        here would add the Arrow and Parquet buffers to this process's peak memory),
        then return a coroutine that lands every batch in flight, waits for the
        uploads and writes the run's manifest. The dedup stage keeps its state open
        until the last batch is marked (:meth:`when_done_marking`)."""
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        if self.spool is None or self.stats.get_value("newsarchive/publish/run_already_published"):
            self._worker.shutdown(wait=False)
            self._fire_done_marking()
            return None
        # A crawl asked to stop (SIGTERM, Ctrl-C) has not met every page: a record from
        # an alternate page may still get its canonical page's content from the next
        # run, which can only happen if it is not published (nor marked) now; the
        # state then forgets it (State.recover) and the next run emits it again.
        stopped = self.crawler is not None and getattr(self.crawler, "crawling", True) is False
        held = sum(1 for rank in self.page_rank.values() if rank < CANONICAL) if stopped else 0
        self.flush(final=not stopped)
        return self._finish(held)

    def when_done_marking(self) -> Deferred | None:
        """A Deferred fired once this stage will mark no more articles published
        (its last batch is staged, or publishing stopped), or None when that is
        already so or the stage never opened. The dedup stage closes its state then."""
        if self._done_marking or self.spool is None:
            return None
        d: Deferred = Deferred()
        self._marking_waiters.append(d)
        return d

    def _fire_done_marking(self) -> None:
        self._done_marking = True
        waiters, self._marking_waiters = self._marking_waiters, []
        for d in waiters:
            d.callback(None)

    async def _land_last(self) -> None:
        """Wait for the batches the worker builds, then land the rest here (a worker
        that failed or went away), in order."""
        for flight in list(self._in_flight.values()):
            if flight.pending is not None:
                await maybe_deferred_to_future(flight.pending)
        self._land_in_flight(upto=None)

    async def _finish(self, held: int):
        try:
            await self._land_last()
            if held:
                self.stats.set_value("newsarchive/publish/held_for_canonical_page", held)
                logger.info("crawl stopped: %d record(s) from alternate pages left for the next run", held)
            if not self.failed:
                self.spool.finish_run(self.run_id, _now())
        finally:
            self._fire_done_marking()
        for job in list(self._jobs):
            await asyncio.wrap_future(job)
        if time.monotonic() >= self.retry_at:
            await asyncio.wrap_future(self._submit_drain())
        left = self.spool.pending()
        self.stats.set_value("newsarchive/publish/spooled", sum(p.records for p in left))
        self.stats.set_value("newsarchive/publish/spooled_batches", len(left))
        if left:
            logger.error(
                "%d batch(es) (%d records and quarantine entries) stay in the spool %s for the next run",
                len(left), sum(p.records for p in left), self.spool_dir,
            )
        self._worker.shutdown(wait=True)

    # -- items --------------------------------------------------------------
    def process_item(self, item):
        if isinstance(item, QuarantineItem):
            self.quarantine.append(dict(item))
            self.stats.inc_value("newsarchive/publish/quarantined")
        elif isinstance(item, ArticleItem):
            self.add_article(item)
        ready = self._ready()
        if ready and self.oldest is None:
            self.oldest = time.monotonic()
        if ready >= self.batch_size:
            self.flush()
        return item

    def _ready(self) -> int:
        """Buffered entries that the next batch would take."""
        return sum(1 for rank in self.page_rank.values() if rank >= CANONICAL) + len(self.quarantine)

    def add_article(self, item: ArticleItem) -> None:
        """Buffer a new/updated record or merge a duplicate into its buffered record."""
        dedup = item.get("dedup") or {"status": "new", "article_key": item["url"], "canonical_page": True}
        key = dedup["article_key"]
        rank = page_rank(item, dedup)
        if dedup["status"] != "duplicate":
            record = to_record(item)
            record["site"] = self.site
            self.records[key] = record
            self.page_rank[key] = rank
            return
        record = self.records.get(key)
        if record is None:
            if self._hand_over(key, rank, item):
                return
            # Its record went out in an earlier batch or run; the state store has the URL.
            self.stats.inc_value("newsarchive/publish/duplicate_of_published")
            return
        self._merge(key, record, rank, item)

    def add_revision(self, key: str, record: dict) -> None:
        """Buffer a record the dedup stage built from an already published one (a
        near-duplicate link revision): it goes out with the next batch."""
        self.records[key] = record
        self.page_rank[key] = CANONICAL

    def published_record(self, article_id: str, version: int, published_at: str | None) -> dict | None:
        """The published record (this site, ``article_id``, ``version``), looked up in
        the spool (batches not in the store yet) then in the store's partition of
        ``published_at``'s date; None when absent or unreadable (logged)."""
        for flight in list(self._in_flight.values()):
            if any(r.get("article_id") == article_id and r.get("version") == version for r in flight.records):
                self._land_in_flight(upto=flight.batch)
                break
        day = published_date({"published_at": published_at})
        spooled = []
        if self.spool is not None:
            for pending in self.spool.pending():
                try:
                    spooled.extend(pending.data(e) for e in pending.entries
                                   if e["kind"] == "dataset" and e["format"] == "jsonl.gz"
                                   and e["published_date"] == day)
                except OSError:
                    continue  # committed meanwhile by the upload worker: it is in the store now
        try:
            return find_record(chain(spooled, partition_objects(self.store, day)), self.site, article_id, version)
        except (StoreError, OSError, ValueError) as exc:
            logger.warning("cannot read back the published record of %s v%d: %s", article_id, version, exc)
            return None

    def _merge(self, key: str, record: dict, rank: int, page) -> None:
        """Merge a duplicate page (item or record dict) into the buffered ``record``."""
        record["urls"] = sorted(set(record["urls"]) | {page["url"]})
        if rank > self.page_rank[key]:
            for name in CONTENT_FIELDS:
                if name in page or name in record:
                    record[name] = page.get(name)
            self.page_rank[key] = rank

    def _hand_over(self, key: str, rank: int, item) -> bool:
        """Distributed crawl: the article's record is buffered by the process that
        recorded it first; send it this page. True when sent."""
        merger = getattr(self.crawler, "newsarchive_manifest_merger", None)
        state = getattr(self.crawler, "newsarchive_state", None)
        owner = state.claimant(key) if merger is not None and hasattr(state, "claimant") else None
        if owner is None or owner == merger.worker:
            return False
        record = to_record(item)
        record["site"] = self.site
        merger.send(owner, key, rank, record)
        self.stats.inc_value("newsarchive/publish/handed_over")
        return True

    def _receive(self) -> None:
        """Merge the pages peers handed over (see :meth:`_hand_over`)."""
        merger = getattr(self.crawler, "newsarchive_manifest_merger", None)
        if merger is None:
            return
        for entry in merger.receive():
            record = self.records.get(entry["key"])
            if record is None:
                self.stats.inc_value("newsarchive/publish/duplicate_of_published")
                continue
            if "set" in entry:
                record.update(entry["set"])
                continue
            self._merge(entry["key"], record, entry["rank"], entry["record"])

    def _flush_if_due(self) -> None:
        if self.oldest is not None and time.monotonic() - self.oldest >= self.batch_seconds:
            self.flush()

    # -- batches ------------------------------------------------------------
    def flush(self, final: bool = False) -> None:
        """Cut a batch from the buffer (records from alternate pages stay unless
        ``final``) and have it built; once built (in order), spool it, mark its
        articles published and queue the upload (:meth:`_stage`).

        The build (JSON Lines, Parquet) runs in a CPU worker process when there is
        one, and the batch is *in flight* meanwhile: its records have left the
        buffer, as after staging, and :meth:`published_record` finishes the flight
        first when asked for one of them (the run's end waits for them all,
        :meth:`_land_last`). Without a worker, every batch in flight and this one
        are built here and staged before this returns. Spooling and marking run on
        the reactor thread: the spool write is local and the dedup state is not
        shared between threads."""
        if self.failed:
            return
        self._receive()
        keys = [k for k, rank in self.page_rank.items() if final or rank >= CANONICAL]
        self.oldest = None  # every ready entry goes into this batch
        if not (keys or self.quarantine):
            return
        flight = _Flight(self.batch, keys, [self.records[k] for k in keys], self.quarantine)
        self.batch += 1
        for k in keys:
            del self.records[k]
            del self.page_rank[k]
        self.quarantine = []
        self._in_flight[flight.batch] = flight
        d = self.pool.submit("build_batch", self.run_id, flight.batch, flight.records, flight.quarantine)
        if d is None:
            self._land_in_flight(upto=None)
            return
        d.addCallbacks(self._built, self._build_failed, callbackArgs=(flight,), errbackArgs=(flight,))
        d.addErrback(self._stage_failed)
        flight.pending = d

    def _built(self, built: BuiltBatch, flight: "_Flight") -> None:
        if self._in_flight.get(flight.batch) is not flight:
            return  # landed here meanwhile (the run's end, or a record was asked for)
        flight.built = built
        self.stats.inc_value("newsarchive/publish/batches_built_in_worker")
        while self._in_flight:
            first = next(iter(self._in_flight.values()))
            if first.built is None:
                return
            del self._in_flight[first.batch]
            self._stage(first)

    def _build_failed(self, failure, flight: "_Flight") -> None:
        logger.warning("building batch %d in the CPU worker failed (%s); building it here",
                       flight.batch, failure.getErrorMessage())
        if self._in_flight.get(flight.batch) is flight:
            self._land_in_flight(upto=flight.batch)

    def _stage_failed(self, failure) -> None:
        # Staging a batch built in the worker raised (not a SpoolError, which
        # _stage handles): stop publishing, as a spool failure does; the next run
        # emits what was not marked.
        self.failed = True
        self.stats.inc_value("newsarchive/publish/errors")
        logger.error("publishing stops for this run: %s", failure.getTraceback())

    def _land_in_flight(self, upto: int | None) -> None:
        """Build here (unless the worker has) and stage every batch in flight, in
        order, up to batch ``upto`` (all with None)."""
        while self._in_flight:
            first = next(iter(self._in_flight.values()))
            if upto is not None and first.batch > upto:
                return
            del self._in_flight[first.batch]
            if first.built is None:
                first.built = build_batch(self.run_id, first.batch, first.records, first.quarantine)
            self._stage(first)

    def _stage(self, flight: "_Flight") -> None:
        """Spool a built batch, mark its articles (and quarantined pages) published,
        queue the upload. After a spool failure nothing more is spooled or marked:
        the next run emits those articles again."""
        if self.failed:
            return
        built = flight.built
        for name in set(built.unknown_fields) - self._unknown_fields:
            logger.warning("record field %r is not in the dataset schema; it is not published", name)
            self._unknown_fields.add(name)
        if built.rejected:
            self.stats.inc_value("newsarchive/publish/schema_rejected", built.rejected)
            logger.error("%d record(s) did not fit the dataset schema; quarantined", built.rejected)
        # Quarantined pages are marked too, or every run would fetch them again.
        marked = [*flight.keys, *(q["url"] for q in flight.quarantine if q.get("url"))]
        with self.spool.lock:  # no drain sees the batch before its articles are marked
            try:
                self.spool.stage(self.run_id, flight.batch, built.objects, marked)
            except SpoolError as exc:
                # Nothing is marked published, so the next run emits these articles again.
                self.failed = True
                self.stats.inc_value("newsarchive/publish/errors")
                logger.error("publishing stops for this run: %s", exc)
                return
            self._mark_published(marked)
        self._submit_drain()

    def _mark_published(self, article_keys: list[str]) -> None:
        state = getattr(self.crawler, "newsarchive_state", None)
        if article_keys and state is not None and hasattr(state, "mark_published"):
            state.mark_published(list(article_keys))

    def _submit_drain(self) -> Future:
        """Queue a drain of the spool on the worker, unless the store failed less
        than ``retry_seconds`` ago (the batch then waits in the spool)."""
        if time.monotonic() < self.retry_at:
            done: Future = Future()
            done.set_result(None)
            return done
        job = self._worker.submit(self._drain)
        self._jobs = [j for j in self._jobs if not j.done()] + [job]
        return job

    def _drain(self) -> DrainResult | None:
        """Worker thread: drain and account. Never raises (a failed job must not
        hide the others); problems become stats and log lines."""
        if time.monotonic() < self.retry_at:
            return None
        try:
            result = self.publisher.drain(current_run=self.run_id)
        except Exception as exc:  # the spool folder itself failed (disk full, permissions)
            self.stats.inc_value("newsarchive/publish/errors")
            logger.exception("draining the spool failed: %s", exc)
            return None
        for entry in result.stored:
            if entry["run_id"] == self.run_id:
                self.stats.inc_value("newsarchive/publish/objects")
                if entry["kind"] == "dataset" and entry["format"] == "parquet":
                    self.stats.inc_value("newsarchive/publish/records", entry["records"])
            elif entry["kind"] == "dataset" and entry["format"] == "parquet":
                self.stats.inc_value("newsarchive/publish/drained_records", entry["records"])
        for key in result.manifests:
            if key.endswith(f"/{self.run_id}.json"):
                self.stats.set_value("newsarchive/publish/manifest", key)
        if result.conflicts:
            self.stats.inc_value("newsarchive/publish/errors", len(result.conflicts))
        if result.unavailable is not None:
            self.stats.inc_value("newsarchive/publish/store_failures")
            self.retry_at = time.monotonic() + self.retry_seconds
            logger.error(
                "store unreachable, batches stay in the spool (next try in %ds): %s",
                self.retry_seconds, result.unavailable,
            )
        return result
