"""The fallback chain: record fields for pages no profile knows and for fields a
profile does not find.

For each field the sources are tried in a fixed order and the first one that gives a
value wins; :meth:`FallbackChain.field` returns the value and the name of the method
that produced it (the record's ``extracted_by``):

==============  ==========================================================================
field           sources, in order
==============  ==========================================================================
title           json-ld ``headline`` › opengraph ``og:title`` › trafilatura
published_at    json-ld ``datePublished`` › opengraph ``article:published_time`` ›
                meta (``itemprop=datePublished``, ``<time datetime>`` …) › htmldate
                (markup only)
modified_at     json-ld ``dateModified`` › opengraph ``article:modified_time`` /
                ``og:updated_time`` › meta (``itemprop=dateModified`` …)
lead            json-ld ``description`` › opengraph ``og:description`` › meta ``description``
authors/source  json-ld ``author`` › opengraph ``article:author`` › meta ``author`` ›
                trafilatura (each name read as a byline: ``Theo TTXVN`` is a source)
body            json-ld ``articleBody`` › trafilatura (tables and comments left out)
images          json-ld ``image`` (ImageObject ``caption`` kept) › opengraph ``og:image``
tags            json-ld ``keywords`` › opengraph ``article:tag`` › meta ``news_keywords`` ›
                trafilatura
section         json-ld ``articleSection`` › opengraph ``article:section`` › trafilatura
language        meta (``<html lang>``, ``content-language``) › json-ld ``inLanguage`` ›
                opengraph ``og:locale``
==============  ==========================================================================

Dates are read with :func:`crawler.dates.parse_vn_datetime`; a date a source gives but
that cannot be read is recorded on the page (``Doc.problems``) and the next source is
tried. htmldate runs with ``extensive_search=False`` (markup only, no free-text guessing)
and a day without a time of day is not accepted: the time would be a guess.

trafilatura and htmldate are imported and run only when a field gets that far, so pages a
profile reads completely never pay for them.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import TYPE_CHECKING, Any, Callable
from crawler.bylines import parse_byline
from crawler.dates import parse_vn_datetime
from crawler.sites.metadata import json_ld_articles, ld_texts, meta_tags, opengraph
from crawler.text import normalize_text

if TYPE_CHECKING:  # pragma: no cover
    from crawler.sites.base import Doc, SiteProfile

__all__ = ["FallbackChain", "METHODS", "FIELDS", "run_trafilatura", "ld_never_modified"]

logger = logging.getLogger(__name__)

#: Values of ``extracted_by``.
METHODS = ("profile", "json-ld", "opengraph", "meta", "trafilatura", "htmldate", "default")
#: Fields the chain can fill (``authors`` also fills ``source``).
FIELDS = ("title", "published_at", "modified_at", "lead", "authors", "images", "body",
          "tags", "section", "language")

# A byline is a name line, not prose.
_MAX_BYLINE_CHARS = 120
_LANG_RE = re.compile(r"^([a-z]{2,3})(?:[-_][a-z0-9]+)*$", re.IGNORECASE | re.ASCII)
_SPLIT_KEYWORDS_RE = re.compile(r"\s*[,;]\s*")
# What htmldate must not see when asked for the date of publication.
_MODIFIED_MARKUP = (
    "//script[contains(translate(@type, 'LDJSON', 'ldjson'), 'ld+json')]"
    " | //meta[contains(translate(@property, 'MODIFEDUPAT', 'modifedupat'), 'modified')"
    " or contains(translate(@property, 'MODIFEDUPAT', 'modifedupat'), 'updated')"
    " or contains(translate(@name, 'MODIFEDUPAT', 'modifedupat'), 'modified')"
    " or contains(translate(@itemprop, 'MODIFEDUPAT', 'modifedupat'), 'modified')]"
    " | //*[@itemprop='dateModified']"
)


def _clean(s: Any, *, entities: bool = True) -> str:
    """Normalised text of a metadata value ('' for non-strings). JSON-LD text is not
    entity-decoded by the HTML parser (it sits in a ``<script>``), so entities are."""
    return normalize_text(s, decode_entities=entities) if isinstance(s, str) else ""


def _unique(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return out


class FallbackChain:
    """Secondary sources for record fields (see the module docstring for the order).

    Stateless; everything read from a page is memoised on its :class:`Doc`
    (``doc.cache``). ``field(name, doc, profile, record)`` never raises: a source that
    fails is logged at debug level and skipped.
    """

    def field(self, name: str, doc: "Doc", profile: "SiteProfile", record: dict) -> tuple[Any, str | None]:
        """``(value, method)`` for field ``name`` from the first source that has it, or
        ``(None, None)``. ``record`` holds the fields found so far (used to keep the
        title, lead and byline out of a trafilatura body). For ``authors`` the value is
        ``(authors, source)``."""
        for method, getter in self._sources(name):
            try:
                value = getter(doc, profile, record)
            except Exception as exc:  # noqa: BLE001 - a secondary source never breaks a page
                logger.debug("fallback %s/%s failed on %s: %r", name, method, doc.url, exc)
                continue
            if value:
                return value, method
        return None, None

    def _sources(self, name: str) -> list[tuple[str, Callable[..., Any]]]:
        return {
            "title": [("json-ld", self._ld_title), ("opengraph", self._og_title),
                      ("trafilatura", self._tf_title)],
            "published_at": [("json-ld", self._ld_date("datePublished", "published_at")),
                             ("opengraph", self._og_date(("article:published_time",), "published_at")),
                             ("meta", self._meta_date(("datepublished", "article:published_time", "pubdate",
                                                       "publishdate", "dc.date.issued", "date"), "published_at")),
                             ("htmldate", self._htmldate)],
            "modified_at": [("json-ld", self._ld_date("dateModified", "modified_at")),
                            ("opengraph", self._og_date(("article:modified_time", "og:updated_time"), "modified_at")),
                            ("meta", self._meta_date(("datemodified", "article:modified_time",
                                                      "last-modified", "dc.date.modified"), "modified_at"))],
            "lead": [("json-ld", self._ld_text("description")), ("opengraph", self._og_text("og:description")),
                     ("meta", self._meta_text("description"))],
            "authors": [("json-ld", self._ld_authors), ("opengraph", self._og_authors),
                        ("meta", self._meta_authors), ("trafilatura", self._tf_authors)],
            "body": [("json-ld", self._ld_body), ("trafilatura", self._tf_body)],
            "images": [("json-ld", self._ld_images), ("opengraph", self._og_images)],
            "tags": [("json-ld", self._ld_list("keywords")), ("opengraph", self._og_list("article:tag")),
                     ("meta", self._meta_list("news_keywords")), ("trafilatura", self._tf_list("tags"))],
            "section": [("json-ld", self._ld_list("articleSection")), ("opengraph", self._og_list("article:section")),
                        ("trafilatura", self._tf_list("categories"))],
            "language": [("meta", self._meta_language), ("json-ld", self._ld_language),
                         ("opengraph", self._og_language)],
        }.get(name, [])

    # ---------------------------------------------------------------- JSON-LD

    @staticmethod
    def _ld_values(doc: "Doc", key: str) -> list[Any]:
        return [obj[key] for obj in json_ld_articles(doc) if obj.get(key) not in (None, "", [])]

    def _ld_title(self, doc, profile, record):
        for key in ("headline", "name"):
            for v in self._ld_values(doc, key):
                text = next((t for t in map(_clean, ld_texts(v)) if t), "")
                if text:
                    return text
        return None

    def _ld_text(self, key: str):
        def get(doc, profile, record):
            for v in self._ld_values(doc, key):
                text = next((t for t in map(_clean, ld_texts(v)) if t), "")
                if text:
                    return text
            return None
        return get

    def _ld_list(self, key: str):
        def get(doc, profile, record):
            for v in self._ld_values(doc, key):
                parts = []
                for s in ld_texts(v):
                    parts.extend(_SPLIT_KEYWORDS_RE.split(s) if key == "keywords" else [s])
                items = _unique([_clean(p) for p in parts])
                if items:
                    return items
            return None
        return get

    def _ld_date(self, key: str, field: str):
        def get(doc, profile, record):
            for v in self._ld_values(doc, key):
                for raw in ld_texts(v):
                    iso = parse_vn_datetime(raw)
                    if iso:
                        return iso
                    doc.problem(field, f"json-ld {key}: {raw!r}")
            return None
        return get

    def _ld_authors(self, doc, profile, record):
        names: list[str] = []
        for v in self._ld_values(doc, "author"):
            names.extend(ld_texts(v))
        return _bylines(names)

    def _ld_body(self, doc, profile, record):
        for v in self._ld_values(doc, "articleBody"):
            if isinstance(v, str):
                paras = [p for p in (_clean(line) for line in v.splitlines()) if p]
                if paras:
                    return _without_repeats(paras, record)
        return None

    def _ld_images(self, doc, profile, record):
        out: list[dict] = []
        for v in self._ld_values(doc, "image"):
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, str):
                    src, caption = item, None
                elif isinstance(item, dict):
                    src = next((item[k] for k in ("url", "contentUrl", "@id") if isinstance(item.get(k), str)), None)
                    caption = _clean(item.get("caption") if isinstance(item.get("caption"), str) else None) or None
                else:
                    continue
                _add_image(out, profile, doc, src, caption)
        return out or None

    def _ld_language(self, doc, profile, record):
        for v in self._ld_values(doc, "inLanguage"):
            for s in ld_texts(v):
                lang = _language(s)
                if lang:
                    return lang
        return None

    # ---------------------------------------------------------------- OpenGraph

    @staticmethod
    def _og(doc: "Doc", prop: str) -> list[str]:
        return opengraph(doc).get(prop, [])

    def _og_title(self, doc, profile, record):
        for raw in self._og(doc, "og:title"):
            title = _strip_site_name(_clean(raw, entities=False), self._og(doc, "og:site_name"))
            if title:
                return title
        return None

    def _og_text(self, prop: str):
        def get(doc, profile, record):
            return next((t for t in (_clean(v, entities=False) for v in self._og(doc, prop)) if t), None)
        return get

    def _og_list(self, prop: str):
        def get(doc, profile, record):
            return _unique([_clean(v, entities=False) for v in self._og(doc, prop)]) or None
        return get

    def _og_date(self, props: tuple[str, ...], field: str):
        def get(doc, profile, record):
            for prop in props:
                for raw in self._og(doc, prop):
                    iso = parse_vn_datetime(raw)
                    if iso:
                        return iso
                    doc.problem(field, f"opengraph {prop}: {raw!r}")
            return None
        return get

    def _og_authors(self, doc, profile, record):
        # article:author is often a profile URL; only names are authors.
        names = [v for v in self._og(doc, "article:author") if not v.strip().lower().startswith(("http:", "https:"))]
        return _bylines(names)

    def _og_images(self, doc, profile, record):
        out: list[dict] = []
        for src in self._og(doc, "og:image") + self._og(doc, "og:image:url"):
            _add_image(out, profile, doc, src, None)
        return out or None

    def _og_language(self, doc, profile, record):
        return next((lang for lang in map(_language, self._og(doc, "og:locale")) if lang), None)

    # ---------------------------------------------------------------- <meta>, <html lang>

    def _meta_text(self, key: str):
        def get(doc, profile, record):
            return next((t for t in (_clean(v, entities=False) for v in meta_tags(doc).get(key, [])) if t), None)
        return get

    def _meta_list(self, key: str):
        def get(doc, profile, record):
            parts = [p for v in meta_tags(doc).get(key, []) for p in _SPLIT_KEYWORDS_RE.split(v)]
            return _unique([_clean(p, entities=False) for p in parts]) or None
        return get

    def _meta_date(self, keys: tuple[str, ...], field: str):
        def get(doc, profile, record):
            tags = meta_tags(doc)
            for key in keys:
                for raw in tags.get(key, []):
                    iso = parse_vn_datetime(raw)
                    if iso:
                        return iso
                    doc.problem(field, f"meta {key}: {raw!r}")
            # <time datetime="…"> marked as this date: itemprop, pubdate, a "published"/
            # "updated" class, or (publication only) the first <time> of the <article>.
            prop, cls = ("datePublished", "publish") if field == "published_at" else ("dateModified", "update")
            xpaths = [f"//*[@itemprop='{prop}']/@datetime", f"//*[@itemprop='{prop}']/@content",
                      f"//time[contains(@class, '{cls}')]/@datetime"]
            if field == "published_at":
                xpaths += ["//time[@pubdate]/@datetime", "(//article//time[@datetime])[1]/@datetime"]
            # One scan of the page finds whether any is there (usually none), then the
            # kinds are tried in order.
            if not doc.root.xpath(" | ".join(xpaths)):
                return None
            for xp in xpaths:
                for raw in doc.root.xpath(xp):
                    iso = parse_vn_datetime(raw)
                    if iso:
                        return iso
            return None
        return get

    def _meta_authors(self, doc, profile, record):
        return _bylines(meta_tags(doc).get("author", []))

    def _meta_language(self, doc, profile, record):
        for raw in doc.root.xpath("/html/@lang | /html/@xml:lang") + meta_tags(doc).get("content-language", []):
            lang = _language(raw)
            if lang:
                return lang
        return None

    # ---------------------------------------------------------------- htmldate

    def _htmldate(self, doc, profile, record):
        from htmldate import find_date

        # htmldate falls back on modification dates when it finds no publication date;
        # it gets a copy of the page without them (and without the JSON-LD, read above).
        tree = copy.deepcopy(doc.root)
        for el in tree.xpath(_MODIFIED_MARKUP):
            el.getparent().remove(el)
        found = find_date(tree, original_date=True, extensive_search=False,
                          outputformat="%Y-%m-%dT%H:%M:%S%z", url=doc.url)
        if not found:
            return None
        # htmldate gives midnight without an offset for a bare day: not a time of day.
        if found.endswith("T00:00:00"):
            doc.problem("published_at", f"htmldate: day without a time {found[:10]}")
            return None
        return parse_vn_datetime(found)

    # ---------------------------------------------------------------- trafilatura

    @staticmethod
    def _trafilatura(doc: "Doc") -> Any:
        if "trafilatura" not in doc.cache:
            doc.cache["trafilatura"] = run_trafilatura(doc.html, doc.url)
        return doc.cache["trafilatura"]

    def _tf_title(self, doc, profile, record):
        result = self._trafilatura(doc)
        return _clean(getattr(result, "title", None), entities=False) or None

    def _tf_authors(self, doc, profile, record):
        result = self._trafilatura(doc)
        author = getattr(result, "author", None)
        return _bylines(author.split(";")) if isinstance(author, str) else None

    def _tf_list(self, attr: str):
        def get(doc, profile, record):
            values = getattr(self._trafilatura(doc), attr, None) or []
            parts = [p for v in values if isinstance(v, str) for p in _SPLIT_KEYWORDS_RE.split(v)]
            return _unique([_clean(p, entities=False) for p in parts]) or None
        return get

    def _tf_body(self, doc, profile, record):
        text = getattr(self._trafilatura(doc), "text", None)
        if not isinstance(text, str):
            return None
        paras = [p for p in (_clean(line, entities=False) for line in text.splitlines()) if p]
        return _without_repeats(paras, record) or None


def run_trafilatura(html: str, url: str | None) -> Any:
    """trafilatura's ``bare_extraction`` as the fallback uses it: metadata on, comments
    and tables off (table cells are not body paragraphs), htmldate without free-text
    search. Returns trafilatura's ``Document`` or None (nothing found or it failed)."""
    try:
        from trafilatura import bare_extraction

        return bare_extraction(
            html, url=url, with_metadata=True, include_comments=False, include_tables=False,
            date_extraction_params={"extensive_search": False, "original_date": True},
        )
    except Exception as exc:  # noqa: BLE001 - trafilatura on hostile markup
        logger.debug("trafilatura failed on %s: %r", url, exc)
        return None


def ld_never_modified(doc: "Doc") -> bool:
    """True when a JSON-LD article says ``dateModified`` == ``datePublished`` (never
    modified since publication)."""
    for obj in json_ld_articles(doc):
        if obj.get("dateModified") and obj.get("dateModified") == obj.get("datePublished"):
            return True
    return False


def _bylines(names: list[Any]) -> tuple[list[str], str | None] | None:
    """Authors and source from name strings, each read as a byline (so ``Theo TTXVN``
    and ``Thanh Hà (TTV)`` split as on the page). None if nothing is found."""
    authors: list[str] = []
    source: str | None = None
    for name in names:
        if not isinstance(name, str):
            continue
        found, src = parse_byline(name)
        authors.extend(a for a in found if a not in authors)
        source = source or src
    return (authors, source) if authors or source else None


def _without_repeats(paras: list[str], record: dict) -> list[str]:
    """Body paragraphs without the title, the lead or an image caption repeated as text
    (whole-page extractors pick them up) and without a trailing byline naming the
    record's authors/source."""
    skip = {record.get("title"), record.get("lead")}
    skip |= {img.get("caption") for img in record.get("images") or [] if isinstance(img, dict)}
    skip -= {None, ""}
    paras = [p for p in paras if p not in skip]
    if paras and len(paras[-1]) <= _MAX_BYLINE_CHARS:
        authors, source = parse_byline(paras[-1])
        known = record.get("authors") or []
        if (authors and authors == known) or (source and source == record.get("source") and not authors):
            paras = paras[:-1]
    return paras


def _add_image(out: list[dict], profile: "SiteProfile", doc: "Doc", src: Any, caption: str | None) -> None:
    if not isinstance(src, str) or not src.strip():
        return
    url = profile.absolute_image_url(src, profile.base_url(doc, doc.url))
    if url and all(img["url"] != url for img in out):
        out.append({"url": url, "caption": caption})


def _strip_site_name(title: str, site_names: list[str]) -> str:
    """``"Headline - Site"`` -> ``"Headline"`` when ``Site`` is the page's og:site_name."""
    for site in site_names:
        site = normalize_text(site, decode_entities=False)
        for sep in (" - ", " | ", " – ", " — ", " :: "):
            suffix = sep + site
            if site and title.endswith(suffix) and len(title) > len(suffix):
                return title[: -len(suffix)].strip()
    return title


def _language(raw: Any) -> str | None:
    """Primary language subtag, lower-case (``vi_VN`` -> ``vi``), or None."""
    if not isinstance(raw, str):
        return None
    m = _LANG_RE.match(raw.strip())
    return m.group(1).lower() if m else None
