"""Outlinks of a captured response, for its ``metadata`` record.

Heritrix writes one ``outlink: <url> <hop> <context>`` line per link found in a
page (hop ``L`` = navigation link, ``E`` = embedded resource, ``R`` = redirect);
archivists use them to see what a page pointed to, fetched or not. This module
finds them in HTML (``a``/``area``/``link`` ``href``, ``img``/``script``/
``iframe``/``source``… ``src``), CSS (``url()``, ``@import``), sitemaps and RSS
(``loc``/``link``), and in a redirect's ``Location``. Relative URLs are resolved
against ``<base href>`` or the page URL. Nothing here fetches anything.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

#: Outlinks kept per record: a page with more is summarised by the count.
MAX_OUTLINKS = 2000

# (tag, attribute, hop, context)
_HTML_LINKS = (
    ("a", "href", "L"),
    ("area", "href", "L"),
    ("link", "href", None),  # E for stylesheets/icons, L otherwise
    ("img", "src", "E"),
    ("img", "srcset", "E"),
    ("source", "src", "E"),
    ("source", "srcset", "E"),
    ("script", "src", "E"),
    ("iframe", "src", "E"),
    ("frame", "src", "E"),
    ("embed", "src", "E"),
    ("video", "src", "E"),
    ("video", "poster", "E"),
    ("audio", "src", "E"),
    ("input", "src", "E"),
    ("object", "data", "E"),
)
#: tag -> [(attribute, hop)], for one pass over the document.
_WANTED: dict[str, list[tuple[str, str | None]]] = {}
for _tag, _attr, _hop in _HTML_LINKS:
    _WANTED.setdefault(_tag, []).append((_attr, _hop))
_EMBED_RELS = {"stylesheet", "icon", "shortcut", "apple-touch-icon", "preload", "modulepreload", "manifest"}
_CSS_URL = re.compile(rb"""url\(\s*(['"]?)([^'")\s]+)\1\s*\)|@import\s+(['"])([^'"]+)\3""", re.I)
_SKIP_SCHEMES = ("javascript:", "mailto:", "data:", "tel:", "about:", "blob:")


def _resolve(base: str, raw: str) -> str | None:
    """``raw`` (stripped, non-empty) resolved against ``base`` (RFC 3986 §5.2, as
    ``urljoin`` does it), fragment dropped; ``None`` for a non-HTTP(S) or broken link."""
    if raw.startswith("#") or raw.lower().startswith(_SKIP_SCHEMES):
        return None
    try:
        url = urljoin(base, raw)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    return url.split("#", 1)[0]


# A page's menus, footer and scripts repeat on every page of a site, and a root-relative
# ("/x", "//host/x") or absolute ("https://…") link resolves the same against any base of
# the same origin: remember those (they are most links of a page).
_resolve_from_origin = lru_cache(maxsize=8192)(_resolve)
_CACHED_MAX_LEN = 512  # a hostile page's megabyte-long links are not kept


def _origin(base: str) -> str:
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}/"


def _clean(base: str, raw: str | None, origin: str | None = None) -> str | None:
    """An outlink of a page at ``base`` (``origin``: its ``scheme://host/``, when known)."""
    if not raw:
        return None
    raw = raw.strip()
    if not raw:
        return None
    if (
        origin is not None
        and len(raw) <= _CACHED_MAX_LEN
        and (raw[0] == "/" or raw[:8].lower().startswith(("http://", "https://")))
    ):
        return _resolve_from_origin(origin, raw)
    return _resolve(base, raw)


def html_outlinks(url: str, text: bytes) -> list[tuple[str, str, str]]:
    """``(url, hop, context)`` for every link in an HTML document (in document order)."""
    from lxml import html as lxml_html
    from lxml.etree import ParserError

    try:
        doc = lxml_html.document_fromstring(text)
    except (ParserError, ValueError):
        return []
    base = url
    for b in doc.iter("base"):
        if b.get("href"):
            base = urljoin(url, b.get("href").strip())
            break
    try:
        origin = _origin(base)
    except ValueError:
        origin = None
    out: list[tuple[str, str, str]] = []
    wanted = _WANTED
    for el in doc.iter(*wanted):
        for attr, hop in wanted[el.tag]:
            value = el.get(attr)
            if value is None:
                continue
            if hop is None:  # <link>
                rels = set((el.get("rel") or "").lower().split())
                hop = "E" if rels & _EMBED_RELS else "L"
            values = [v.strip().split()[0] for v in value.split(",") if v.strip()] if attr == "srcset" else [value]
            for v in values:
                link = _clean(base, v, origin)
                if link:
                    out.append((link, hop, f"{el.tag}/@{attr}"))
    return out


def css_outlinks(url: str, text: bytes) -> list[tuple[str, str, str]]:
    """``url()`` and ``@import`` references of a stylesheet (hop ``E``)."""
    out = []
    for m in _CSS_URL.finditer(text):
        raw = (m.group(2) or m.group(4) or b"").decode("utf-8", "replace")
        link = _clean(url, raw)
        if link:
            out.append((link, "E", "css/@import" if m.group(4) else "css/url()"))
    return out


def xml_outlinks(url: str, text: bytes) -> list[tuple[str, str, str]]:
    """``<loc>`` (sitemaps) and ``<link>`` (RSS items) of an XML document."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False)
    try:
        root = etree.fromstring(text, parser=parser)
    except etree.XMLSyntaxError:
        return []
    if root is None:
        return []
    out = []
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        local = el.tag.rsplit("}", 1)[-1]
        if local in ("loc", "link") and el.text:
            link = _clean(url, el.text)
            if link:
                out.append((link, "L", f"xml/{local}"))
    return out


def reads_links(content_type: str | None) -> bool:
    """Whether :func:`find_outlinks` reads links out of a body of this media type
    (HTML, CSS, XML)."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    return ctype in ("text/html", "application/xhtml+xml", "text/css") or ctype.endswith("xml")


def find_outlinks(
    url: str, content_type: str | None, text: bytes, location: str | None = None
) -> list[tuple[str, str, str]]:
    """Outlinks of a response: its decoded entity ``text`` read by media type,
    plus ``location`` (a redirect target, hop ``R``). Duplicates are removed
    (first occurrence kept); at most :data:`MAX_OUTLINKS`."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    links: list[tuple[str, str, str]] = []
    if location:
        link = _clean(url, location)
        if link:
            links.append((link, "R", "http/location"))
    if text:
        if ctype in ("text/html", "application/xhtml+xml"):
            links += html_outlinks(url, text)
        elif ctype == "text/css":
            links += css_outlinks(url, text)
        elif ctype.endswith("xml"):
            links += xml_outlinks(url, text)
    seen: set[str] = set()
    out = []
    for link in links:
        if link[0] not in seen:
            seen.add(link[0])
            out.append(link)
    return out[:MAX_OUTLINKS]


def outlink_fields(
    url: str, content_type: str | None, body: bytes, content_encodings: list[str], location: str | None = None
) -> dict[str, list[str] | str]:
    """The outlink part of a response's ``metadata`` record: ``{"outlink": ["<url>
    <hop> <context>", …]}`` (Heritrix's line format), plus ``"outlinkError"`` when the
    body's ``Content-Encoding`` (``content_encodings``, as sent) cannot be decoded. A
    pure function of its arguments (the crawl may run it in its worker process,
    crawler/cpu_pool.py)."""
    from crawler.warc.payload import PayloadError, decode_content, parse_codings

    fields: dict[str, list[str] | str] = {}
    text = body
    try:
        text = decode_content(body, parse_codings(content_encodings))
    except PayloadError as exc:
        fields["outlinkError"] = str(exc)
        text = b""
    links = find_outlinks(url, content_type, text, location)
    fields["outlink"] = [f"{link} {hop} {where}" for link, hop, where in links]
    return fields
