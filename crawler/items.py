"""Items the spider yields and the pipelines pass along.

``ArticleItem`` is one parsed article page; its fields are the dataset record's
(see DATASET fields in README.md). ``QuarantineItem`` is a page that should have
been an article but could not become a valid record: it carries the reason and
the WARC pointer of the page, so nothing fetched is lost silently.
"""

from __future__ import annotations

import hashlib
import json

import scrapy


class ArticleItem(scrapy.Item):
    """One article as parsed from one fetched page.

    Shapes: ``section``/``body``/``authors``/``tags`` are lists of str; ``images``
    a list of ``{"url": str, "caption": str | None}``; ``published_at`` and
    ``fetched_at`` ISO 8601 strings (+07:00 and UTC respectively); ``warc`` is
    ``{"file": store key, "offset": int, "length": int}`` of the page's
    ``response`` record.
    """

    article_id = scrapy.Field()
    site = scrapy.Field()
    url = scrapy.Field()
    canonical_url = scrapy.Field()
    urls = scrapy.Field()
    section = scrapy.Field()
    title = scrapy.Field()
    lead = scrapy.Field()
    body = scrapy.Field()
    authors = scrapy.Field()
    source = scrapy.Field()
    published_at = scrapy.Field()
    images = scrapy.Field()
    tags = scrapy.Field()
    language = scrapy.Field()
    fetched_at = scrapy.Field()
    content_sha256 = scrapy.Field()
    version = scrapy.Field()
    previous_sha256 = scrapy.Field()
    near_duplicate_of = scrapy.Field()
    run_id = scrapy.Field()
    warc = scrapy.Field()
    # Pipeline bookkeeping, not part of the published record.
    warnings = scrapy.Field()
    dedup = scrapy.Field()


#: Fields of ArticleItem that are not published (internal to the pipelines).
INTERNAL_FIELDS = frozenset({"warnings", "dedup"})


class QuarantineItem(scrapy.Item):
    """A page that did not become a record: ``reason`` (e.g. ``empty_body``,
    ``truncated_body``, ``schema: …``), ``url``, ``warc`` pointer, ``fetched_at``,
    ``detail`` (free text) and ``run_id``."""

    reason = scrapy.Field()
    url = scrapy.Field()
    article_id = scrapy.Field()
    detail = scrapy.Field()
    warc = scrapy.Field()
    fetched_at = scrapy.Field()
    run_id = scrapy.Field()


def content_sha256(title: str | None, lead: str | None, body: list[str]) -> str:
    """SHA-256 (hex) of an article's text content: the canonical JSON of
    ``{"title", "lead", "body"}`` (sorted keys, UTF-8, no spaces). Two pages with
    the same cleaned text have the same digest whatever their markup or URL."""
    doc = {"title": title or "", "lead": lead or "", "body": list(body or [])}
    blob = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
