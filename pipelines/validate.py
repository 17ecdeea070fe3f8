"""Validate stage: an article item that breaks the record schema
(``schemas/article.schema.json``) becomes a quarantine item with the reason, never a
silent drop.

Two checks, because the record is finished in two places:

* :class:`ValidatePipeline` (200, after clean, before dedup) checks the whole schema
  except the fields dedup adds later (``urls``, ``version``, ``previous_sha256``,
  ``near_duplicate_of``; :func:`crawler.schema.validate_stage`). This is where a page
  without a title, a readable date, content, an article id or a WARC pointer (nothing is
  published that is not archived) is quarantined, before it reaches the state store.
* :class:`RecordGatePipeline` (850, just before publish) checks every record about to be
  published against the complete schema (:func:`crawler.schema.validate_record`), so a
  later stage that forgets a field cannot publish a record the schema refuses.

Reasons: ``no_title``, ``unreadable_date``, ``no_content``, ``no_article_id``,
``no_warc_record``, else ``invalid_<field>``; the quarantine entry's ``detail`` lists
every violation.
"""

from __future__ import annotations

from crawler.cpu_pool import CpuPool
from crawler.items import ArticleItem, QuarantineItem, record_of
from crawler.neardup import DEFAULT_SHINGLE_SIZE, NUM_PERM, attach_signature, signed_text
from crawler.schema import Violation, quarantine_reason, validate_record, validate_stage


def validation_errors(item: ArticleItem) -> list[Violation]:
    """Schema violations of ``item`` at the validate stage (empty list: valid)."""
    return validate_stage(record_of(item))


def quarantine_item(item: ArticleItem, violations: list[Violation]) -> QuarantineItem:
    """The quarantine entry for an article item that breaks the schema."""
    return QuarantineItem(
        reason=quarantine_reason(violations),
        url=item.get("url"),
        article_id=item.get("article_id"),
        detail="; ".join(str(v) for v in violations),
        warc=item.get("warc"),
        fetched_at=item.get("fetched_at"),
        run_id=item.get("run_id"),
    )


def _judge(stats, item: ArticleItem, violations, ok: str, quarantined: str):
    """``item`` when there are no ``violations`` (stat ``ok``), else its quarantine
    item (stats ``quarantined`` and the reason's)."""
    if not violations:
        stats.inc_value(f"newsarchive/validate/{ok}")
        return item
    out = quarantine_item(item, violations)
    stats.inc_value(f"newsarchive/validate/{quarantined}")
    stats.inc_value(f"newsarchive/validate/quarantine/{out['reason']}")
    return out


def _pool_of(crawler) -> CpuPool | None:
    pool = CpuPool.for_crawler(crawler)
    return pool if pool.workers else None


class ValidatePipeline:
    """Turns an :class:`ArticleItem` that breaks the schema (dedup's fields aside) into a
    :class:`QuarantineItem`. Stats: ``newsarchive/validate/ok``,
    ``newsarchive/validate/quarantined`` and ``newsarchive/validate/quarantine/<reason>``.

    With a worker process (``pool``, crawler/cpu_pool.py) the check runs there and
    ``process_item`` returns an awaitable of the outcome, which Scrapy awaits; the
    worker also computes a valid article's MinHash signature for the dedup stage
    (``shingle_size`` words a shingle, ``num_perm`` values; the dedup stage's
    settings), left on the item (:func:`crawler.neardup.attach_signature`)."""

    def __init__(self, stats, pool: CpuPool | None = None, shingle_size: int = DEFAULT_SHINGLE_SIZE,
                 num_perm: int = NUM_PERM):
        self.stats = stats
        self.pool = pool
        self.shingle_size = shingle_size
        self.num_perm = num_perm

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.stats, _pool_of(crawler),
                   crawler.settings.getint("NEWSARCHIVE_SHINGLE_SIZE", DEFAULT_SHINGLE_SIZE))

    def process_item(self, item):
        if not isinstance(item, ArticleItem):
            return item
        if self.pool is not None:
            return self._check_in_pool(item)
        return _judge(self.stats, item, validation_errors(item), "ok", "quarantined")

    async def _check_in_pool(self, item: ArticleItem):
        # The worker also signs a valid article's text for the dedup stage (its
        # MinHash): one round trip instead of two. The signature stays on the item
        # for as long as its text is the text signed (crawler.neardup.attached_signature).
        text = signed_text(item)
        violations, signature = await self.pool.run(
            "validate_and_sign", record_of(item), self.shingle_size, self.num_perm)
        if signature is not None:
            attach_signature(item, text, self.shingle_size, self.num_perm, signature)
        return _judge(self.stats, item, violations, "ok", "quarantined")


class RecordGatePipeline:
    """Last check before publishing: an :class:`ArticleItem` that will be published as a
    record (dedup status ``new`` or ``updated``; duplicates only add a URL to a record)
    must validate against the complete record schema, else it is quarantined. Stats:
    ``newsarchive/validate/record_ok``, ``newsarchive/validate/record_quarantined`` and
    ``newsarchive/validate/quarantine/<reason>``.

    It runs in-process, never in the CPU worker: from dedup to publish an item must not
    wait, or a duplicate page (which this check lets through at once) could reach publish
    before its article's record, and its URL would miss the record's ``urls``."""

    def __init__(self, stats, site: str):
        self.stats = stats
        self.site = site

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.stats, crawler.settings.get("NEWSARCHIVE_SITE", "baotuyenquang"))

    def process_item(self, item):
        if not isinstance(item, ArticleItem):
            return item
        if (item.get("dedup") or {}).get("status") == "duplicate":
            return item
        record = record_of(item)
        record.setdefault("site", self.site)  # the publisher stamps the site
        return _judge(self.stats, item, validate_record(record), "record_ok", "record_quarantined")
