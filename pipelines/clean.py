"""Clean stage: every text field of an article in NFC, without zero-width characters
or soft hyphens, NBSP and white space collapsed (README "Gold conventions",
:func:`crawler.text.normalize_text`; HTML entities are decoded once, by the extractors);
then ``text`` and ``word_count`` from the cleaned body.

Site profiles and the fallback chain already return clean text (and keep captions,
bylines and boxes out of the body); this stage makes the text guarantee hold for any
extractor: paragraphs, tags or names that clean to nothing (an NBSP-only ``<p>``) are
dropped, duplicates in tags/authors/section too."""

from __future__ import annotations

from crawler.items import ArticleItem
from crawler.text import body_text, normalize_text, word_count


def _clean(value) -> str:
    # Extractors hand over parser-decoded text (the fallback chain decodes JSON-LD's own
    # entities): decoding again would turn a visible "&amp;lt;" into "<".
    return normalize_text(value, decode_entities=False) if isinstance(value, str) else ""


def clean_article(item: ArticleItem) -> ArticleItem:
    """Normalise ``title``, ``lead``, ``source``, ``body``, ``authors``, ``tags``,
    ``section`` and image captions of ``item`` in place, drop empty paragraphs and
    repeated names, set ``text``/``word_count``; return the item."""
    for field in ("title", "lead", "source"):
        if item.get(field) is not None:
            item[field] = _clean(item[field]) or None
    for field in ("authors", "tags", "section"):
        item[field] = list(dict.fromkeys(t for t in map(_clean, item.get(field) or []) if t))
    item["images"] = [
        {"url": img["url"], "caption": _clean(img.get("caption")) or None}
        for img in item.get("images") or []
        if isinstance(img, dict) and img.get("url")
    ]
    item["body"] = [p for p in map(_clean, item.get("body") or []) if p]
    item["text"] = body_text(item["body"])
    item["word_count"] = word_count(item["text"])
    return item


class CleanPipeline:
    """Item pipeline over :func:`clean_article`; other items pass untouched."""

    def process_item(self, item):
        if isinstance(item, ArticleItem):
            return clean_article(item)
        return item
