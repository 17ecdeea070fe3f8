"""Items the spider yields and the pipelines pass along.

``ArticleItem`` is one parsed article page; its fields are exactly the dataset record's,
as ``schemas/article.schema.json`` defines them (:mod:`crawler.schema`), plus two internal
fields the publisher drops. ``QuarantineItem`` is a page that should have been an article
but could not become a valid record: it carries the reason and the WARC pointer of the
page, so nothing fetched is lost silently.
"""

from __future__ import annotations

import hashlib
import json

import scrapy


class ArticleItem(scrapy.Item):
    """One article as parsed from one fetched page (record schema v1, see
    ``schemas/article.schema.json`` for every field's rule).

    Shapes: ``section``/``body``/``authors``/``tags``/``urls`` are lists of str; ``text``
    the body joined with ``"\n\n"`` and ``word_count`` its word count (set by the clean
    stage); ``images`` a list of ``{"url": str, "caption": str | None}``;
    ``published_at``/``modified_at`` ISO 8601 at +07:00 and ``fetched_at`` in UTC;
    ``warc`` is ``{"file": store key, "offset": int, "length": int}`` of the page's
    ``response`` record; ``extracted_by`` maps each content field to the method that
    produced it (``profile``, ``json-ld``, ``opengraph``, ``meta``, ``trafilatura``,
    ``htmldate``, ``default`` or None).

    Who fills what: the spider (extraction fields, ``site``, ``url``, ``fetched_at``,
    ``content_sha256``, ``run_id``, ``warc``), clean (``text``, ``word_count``), dedup
    (``urls``, ``version``, ``previous_sha256``, ``near_duplicate_of``). The nullable
    fields a later stage may set (:data:`NULL_DEFAULTS`) start as None, so a record is
    complete whichever stage leaves them alone.
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
    modified_at = scrapy.Field()
    images = scrapy.Field()
    tags = scrapy.Field()
    language = scrapy.Field()
    text = scrapy.Field()
    word_count = scrapy.Field()
    fetched_at = scrapy.Field()
    content_sha256 = scrapy.Field()
    version = scrapy.Field()
    previous_sha256 = scrapy.Field()
    near_duplicate_of = scrapy.Field()
    run_id = scrapy.Field()
    warc = scrapy.Field()
    extracted_by = scrapy.Field()
    # Pipeline bookkeeping, not part of the published record.
    warnings = scrapy.Field()
    dedup = scrapy.Field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, value in NULL_DEFAULTS.items():
            self.setdefault(name, value)


#: Fields of ArticleItem that are not published (internal to the pipelines).
INTERNAL_FIELDS = frozenset({"warnings", "dedup"})

#: Nullable record fields and their value until a stage sets them.
NULL_DEFAULTS = {"modified_at": None, "previous_sha256": None, "near_duplicate_of": None}


def record_of(item) -> dict:
    """The record of an article item: every field but :data:`INTERNAL_FIELDS`."""
    return {k: v for k, v in dict(item).items() if k not in INTERNAL_FIELDS}


class QuarantineItem(scrapy.Item):
    """A page that did not become a record: ``reason`` (``empty_body``,
    ``truncated_body``, ``soft_404``, ``no_title``, ``unreadable_date``, ``no_content``,
    ``invalid_<field>`` …; :data:`crawler.extract.QUARANTINE_REASONS`), ``url``, ``warc``
    pointer, ``fetched_at``, ``detail`` (free text: what could not be read, warnings) and
    ``run_id``."""

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
