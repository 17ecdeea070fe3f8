"""Publish stage: cleaned records to the store as gzip JSON Lines, quarantined
pages beside them.

Records are buffered per batch (``NEWSARCHIVE_BATCH_SIZE``, default 500) keyed by
article, so the URLs of duplicates seen in the same batch are merged into the
record's ``urls``, and an article first met on an alternate page (mobile host,
second section path) takes the content of its canonical page when that comes.
A batch is written as one object per ``published_date`` partition
(:func:`crawler.layout.dataset_key`); gzip members carry no timestamp, so the
same records always give the same bytes.
"""

from __future__ import annotations

import gzip
import json
import logging

from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.threads import deferToThread

from crawler.items import INTERNAL_FIELDS, ArticleItem, QuarantineItem
from crawler.layout import dataset_key, quarantine_key
from crawler.store import StoreError, open_store

logger = logging.getLogger(__name__)

#: Fields taken from the canonical page when it replaces an alternate page's record.
CONTENT_FIELDS = (
    "article_id", "canonical_url", "section", "title", "lead", "body", "authors", "source",
    "published_at", "images", "tags", "language", "content_sha256", "url", "fetched_at", "warc",
)


def to_record(item: ArticleItem) -> dict:
    """The published record of an article item: every field but the internal ones."""
    return {k: v for k, v in dict(item).items() if k not in INTERNAL_FIELDS}


def page_rank(item: ArticleItem, dedup: dict) -> int:
    """How well a page speaks for its article: 2 the canonical URL itself, 1 the
    canonical page under tracking parameters, 0 a copy (mobile host, second
    section path). The best page seen in a batch gives the record its content and
    ``url``, whatever order the crawl met them in."""
    if item["url"] == item.get("canonical_url"):
        return 2
    return 1 if dedup["canonical_page"] else 0


def jsonl_gz(records: list[dict]) -> bytes:
    """Records as gzip-compressed JSON Lines (UTF-8, one object a line, mtime 0)."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    return gzip.compress(text.encode("utf-8"), mtime=0)


class PublishPipeline:
    """Item pipeline that writes dataset and quarantine batches to the store.

    Settings: ``NEWSARCHIVE_STORE`` (store URL), ``NEWSARCHIVE_RUN_ID``,
    ``NEWSARCHIVE_BATCH_SIZE``. Stats: ``newsarchive/publish/records``,
    ``…/objects``, ``…/quarantined``, ``…/errors``; the keys written are kept in
    :attr:`written` for the run report.
    """

    def __init__(self, store_url: str, run_id: str, batch_size: int, site: str, stats):
        self.store_url = store_url
        self.run_id = run_id
        self.batch_size = batch_size
        self.site = site
        self.stats = stats
        self.store = None
        self.records: dict[str, dict] = {}
        self.page_rank: dict[str, int] = {}
        self.quarantine: list[dict] = []
        self.batch = 0
        self.written: list[str] = []
        self._flushing = False

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        pipeline = cls(
            s.get("NEWSARCHIVE_STORE", "archive"),
            s.get("NEWSARCHIVE_RUN_ID", "manual"),
            s.getint("NEWSARCHIVE_BATCH_SIZE", 500),
            s.get("NEWSARCHIVE_SITE", "baotuyenquang"),
            crawler.stats,
        )
        crawler.newsarchive_publisher = pipeline
        return pipeline

    def open_spider(self):
        self.store = open_store(self.store_url)

    async def process_item(self, item):
        if isinstance(item, QuarantineItem):
            self.quarantine.append(dict(item))
            self.stats.inc_value("newsarchive/publish/quarantined")
        elif isinstance(item, ArticleItem):
            self.add_article(item)
        if len(self.records) >= self.batch_size and not self._flushing:
            await self._flush_in_thread()
        return item

    async def _flush_in_thread(self) -> None:
        # One batch at a time, cut on the reactor thread: items that arrive while it
        # is being written stay buffered for the next batch, and no batch is written
        # twice (concurrent items used to start overlapping flushes of one buffer).
        self._flushing = True
        records, quarantine = dict(self.records), list(self.quarantine)
        try:
            done = await maybe_deferred_to_future(deferToThread(self._write_batch, records, quarantine))
        finally:
            self._flushing = False
        if done:
            for key, record in records.items():
                if self.records.get(key) is record:  # not replaced by a newer version meanwhile
                    del self.records[key]
                    self.page_rank.pop(key, None)
            del self.quarantine[: len(quarantine)]

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
            # Its record went out in an earlier batch or run; the state store has the URL.
            self.stats.inc_value("newsarchive/publish/duplicate_of_published")
            return
        record["urls"] = sorted(set(record["urls"]) | {item["url"]})
        if rank > self.page_rank[key]:
            for field in CONTENT_FIELDS:
                record[field] = item.get(field)
            self.page_rank[key] = rank

    def flush(self) -> None:
        """Write the buffered records and quarantine entries as one batch.
        Store errors are counted and logged, and the batch is kept for the next
        flush (never dropped)."""
        if self._write_batch(dict(self.records), list(self.quarantine)):
            self.records.clear()
            self.page_rank.clear()
            self.quarantine.clear()

    def _write_batch(self, buffered: dict[str, dict], quarantine: list[dict]) -> bool:
        """Write one batch; True when it is stored (or empty), False on a store error."""
        if not buffered and not quarantine:
            return True
        partitions: dict[str, list[dict]] = {}
        for record in sorted(buffered.values(), key=lambda r: (r.get("article_id") or "", r["url"])):
            date = (record.get("published_at") or "unknown")[:10]
            partitions.setdefault(date, []).append(record)
        try:
            for date, records in sorted(partitions.items()):
                key = dataset_key(date, self.run_id, self.batch)
                self.store.put_bytes(key, jsonl_gz(records), "application/gzip")
                self.written.append(key)
                self.stats.inc_value("newsarchive/publish/objects")
                self.stats.inc_value("newsarchive/publish/records", len(records))
            if quarantine:
                key = quarantine_key(self.run_id, self.batch)
                self.store.put_bytes(key, jsonl_gz(quarantine), "application/gzip")
                self.written.append(key)
        except StoreError as exc:
            self.stats.inc_value("newsarchive/publish/errors")
            logger.error("publishing batch %d failed: %s", self.batch, exc)
            return False
        self.batch += 1
        return True

    def close_spider(self):
        self.flush()
