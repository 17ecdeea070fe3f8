"""Clean stage: every text field of an article in NFC, without zero-width
characters, with white space collapsed (README "Gold conventions").

Site profiles already return clean text; this stage makes the guarantee hold for
any extractor (fallback chains, future profiles) and drops paragraphs that clean
to nothing (an NBSP-only ``<p>``)."""

from __future__ import annotations

from crawler.items import ArticleItem
from crawler.text import normalize_text


def clean_article(item: ArticleItem) -> ArticleItem:
    """Normalise ``title``, ``lead``, ``body``, ``authors``, ``source``, ``tags``,
    ``section`` and image captions of ``item`` in place and return it."""
    for field in ("title", "lead", "source"):
        if item.get(field) is not None:
            item[field] = normalize_text(item[field], decode_entities=False) or None
    for field in ("body", "authors", "tags", "section"):
        item[field] = [t for t in (normalize_text(x, decode_entities=False) for x in item.get(field) or []) if t]
    item["images"] = [
        {"url": img["url"], "caption": (normalize_text(img["caption"], decode_entities=False) or None) if img.get("caption") else None}
        for img in item.get("images") or []
    ]
    return item


class CleanPipeline:
    """Item pipeline over :func:`clean_article`; other items pass untouched."""

    def process_item(self, item):
        if isinstance(item, ArticleItem):
            return clean_article(item)
        return item
