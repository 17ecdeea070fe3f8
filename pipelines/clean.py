"""Clean stage: every text field of an article in NFC, without zero-width characters
or soft hyphens, NBSP and white space collapsed (README "Gold conventions",
:func:`crawler.text.normalize_text`; HTML entities are decoded once, by the extractors);
then ``text`` and ``word_count`` from the cleaned body.

Site profiles already return clean text; this stage makes the guarantee hold for any
extractor (fallback chain, future profiles): paragraphs that clean to nothing (an
NBSP-only ``<p>``) are dropped, and so are body paragraphs that repeat the title, the
lead or an image caption — extractors that read the page as a whole (trafilatura) pick
those up as text."""

from __future__ import annotations

from crawler.items import ArticleItem
from crawler.text import body_text, normalize_text, word_count


def _clean(value) -> str:
    # Extractors hand over parser-decoded text (the fallback chain decodes JSON-LD's own
    # entities): decoding again would turn a visible "&amp;lt;" into "<".
    return normalize_text(value, decode_entities=False) if isinstance(value, str) else ""


def clean_article(item: ArticleItem) -> ArticleItem:
    """Normalise ``title``, ``lead``, ``source``, ``body``, ``authors``, ``tags``,
    ``section`` and image captions of ``item`` in place, drop empty and repeated body
    paragraphs, set ``text``/``word_count``; return the item."""
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
    repeats = {item.get("title"), item.get("lead")} | {img["caption"] for img in item["images"]}
    repeats.discard(None)
    item["body"] = [p for p in map(_clean, item.get("body") or []) if p and p not in repeats]
    item["text"] = body_text(item["body"])
    item["word_count"] = word_count(item["text"])
    return item


class CleanPipeline:
    """Item pipeline over :func:`clean_article`; other items pass untouched."""

    def process_item(self, item):
        if isinstance(item, ArticleItem):
            return clean_article(item)
        return item
