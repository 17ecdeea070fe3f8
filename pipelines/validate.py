"""Validate stage: an article item that cannot make a usable record becomes a
quarantine item with the reason, never a silent drop.

Rules (the record schema's required content): a title; at least one of lead,
body paragraphs or images; ``published_at`` as ISO 8601 with an offset; an
``article_id``; a WARC pointer (nothing is published that is not archived)."""

from __future__ import annotations

from datetime import datetime

from crawler.items import ArticleItem, QuarantineItem


def validation_errors(item: ArticleItem) -> list[str]:
    """Reasons ``item`` is not a valid record (empty list when it is)."""
    errors = []
    if not item.get("title"):
        errors.append("no_title")
    if not (item.get("body") or item.get("images") or item.get("lead")):
        errors.append("no_content")
    published = item.get("published_at")
    try:
        if not published or datetime.fromisoformat(published).utcoffset() is None:
            errors.append("unreadable_date")
    except ValueError:
        errors.append("unreadable_date")
    if not item.get("article_id"):
        errors.append("no_article_id")
    if not item.get("warc"):
        errors.append("no_warc_record")
    return errors


class ValidatePipeline:
    """Turns invalid :class:`ArticleItem` into :class:`QuarantineItem`; counts both
    under ``newsarchive/validate/…`` stats."""

    def __init__(self, stats):
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.stats)

    def process_item(self, item):
        if not isinstance(item, ArticleItem):
            return item
        errors = validation_errors(item)
        if not errors:
            self.stats.inc_value("newsarchive/validate/ok")
            return item
        self.stats.inc_value("newsarchive/validate/quarantined")
        return QuarantineItem(
            reason=errors[0],
            url=item.get("url"),
            article_id=item.get("article_id"),
            detail=", ".join(errors),
            warc=item.get("warc"),
            fetched_at=item.get("fetched_at"),
            run_id=item.get("run_id"),
        )
