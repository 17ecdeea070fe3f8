"""Structured metadata of a page: JSON-LD and OpenGraph (read with extruct) and plain
``<meta>`` tags, memoised on the :class:`~crawler.sites.base.Doc`.

These are secondary sources (FAULTS.md F26: the visible page wins), read for the fallback
chain (:mod:`crawler.sites.fallback`) and for cross-checks. Nothing here raises on bad
input: a JSON-LD script that is not strict JSON adds the ``invalid_json_ld`` warning and
is then read leniently by extruct (JSON with comments/trailing commas, via jstyleson);
one that cannot be read at all is skipped.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any, Iterator

from extruct.jsonld import JsonLdExtractor
from extruct.opengraph import OpenGraphExtractor

if TYPE_CHECKING:  # pragma: no cover
    from crawler.sites.base import Doc

__all__ = [
    "ARTICLE_TYPES",
    "json_ld_objects",
    "json_ld_articles",
    "opengraph",
    "meta_tags",
    "ld_texts",
]

#: schema.org types that describe an article (besides every ``…Article`` type).
ARTICLE_TYPES = frozenset({"BlogPosting", "LiveBlogPosting", "Report", "SocialMediaPosting"})

_JSONLD = JsonLdExtractor()
_OPENGRAPH = OpenGraphExtractor()
_LD_SCRIPTS = (
    "//script[translate(normalize-space(@type), 'APLICTONJSD+', 'aplictonjsd+')"
    "='application/ld+json']"
)


def _iter_ld(data: Any) -> Iterator[dict]:
    """Every object of a JSON-LD document: lists walked, ``@graph`` flattened."""
    if isinstance(data, list):
        for item in data:
            yield from _iter_ld(item)
    elif isinstance(data, dict):
        yield data
        graph = data.get("@graph")
        if graph is not None:
            yield from _iter_ld(graph)


def json_ld_objects(doc: "Doc") -> list[dict]:
    """All JSON-LD objects of the page, in document order (``@graph`` flattened).

    Each ``<script type="application/ld+json">`` is read on its own, so one broken script
    does not hide the others. Not strict JSON -> ``invalid_json_ld`` warning, then
    extruct's lenient reading; unreadable even so -> skipped.
    """
    if "ld" in doc.cache:
        return doc.cache["ld"]
    found: list[dict] = []
    for script in doc.root.xpath(_LD_SCRIPTS):
        raw = script.text or ""
        if not raw.strip():
            continue
        try:
            data: Any = json.loads(raw)
        except ValueError:
            doc.warn("invalid_json_ld")
            try:
                # extruct matches the type attribute exactly: normalise it on a copy.
                node = copy.deepcopy(script)
                node.set("type", "application/ld+json")
                data = _JSONLD.extract_items(node)
            except Exception:  # noqa: BLE001 - jstyleson raises various errors
                continue
        found.extend(_iter_ld(data))
    doc.cache["ld"] = found
    return found


def _types(obj: dict) -> list[str]:
    t = obj.get("@type")
    return [x for x in (t if isinstance(t, list) else [t]) if isinstance(x, str)]


def json_ld_articles(doc: "Doc") -> list[dict]:
    """JSON-LD objects whose ``@type`` is an article type (``NewsArticle``, ``Article``,
    ``BlogPosting`` …)."""
    return [
        o for o in json_ld_objects(doc)
        if any(t.endswith("Article") or t in ARTICLE_TYPES for t in _types(o))
    ]


def opengraph(doc: "Doc") -> dict[str, list[str]]:
    """OpenGraph properties of the page's ``<head>`` (``og:*``, ``article:*`` …) as
    ``property -> [values in order]``, via extruct's OpenGraphExtractor."""
    if "og" in doc.cache:
        return doc.cache["og"]
    props: dict[str, list[str]] = {}
    try:
        for item in _OPENGRAPH.extract_items(doc.root):
            for prop, value in item.get("properties", []):
                if isinstance(value, str) and value.strip():
                    props.setdefault(prop.strip().lower(), []).append(value)
    except Exception:  # noqa: BLE001 - a page without <html>/<head> structure
        pass
    doc.cache["og"] = props
    return props


def meta_tags(doc: "Doc") -> dict[str, list[str]]:
    """``<meta name|itemprop|http-equiv=… content=…>`` as ``lower-cased key -> values``
    (``author``, ``description``, ``datepublished``, ``content-language`` …)."""
    if "meta" in doc.cache:
        return doc.cache["meta"]
    out: dict[str, list[str]] = {}
    for el in doc.root.iter("meta"):
        content = el.get("content")
        if not content or not content.strip():
            continue
        for attr in ("name", "itemprop", "http-equiv"):
            key = (el.get(attr) or "").strip().lower()
            if key:
                out.setdefault(key, []).append(content)
    doc.cache["meta"] = out
    return out


def ld_texts(value: Any) -> list[str]:
    """Strings held by a JSON-LD value: a string, a list of them, or objects with
    ``name`` / ``@value`` / ``url`` (in that order)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list):
        return [s for v in value for s in ld_texts(v)]
    if isinstance(value, dict):
        for key in ("name", "@value", "url"):
            if isinstance(value.get(key), str):
                return [value[key]]
    return []
