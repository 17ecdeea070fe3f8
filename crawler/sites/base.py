"""Site profile base class: URL rules plus field-by-field article parsing (fundus-style).

A profile is a pure description of one news site: which hosts belong to it, how its URLs are
canonicalised, which URLs are articles, and one method per record field that reads that
field from a parsed page. No Scrapy objects anywhere: input is ``(url, html)`` and output
is plain dicts/lists/strings, so the same code serves the spider, offline re-extraction
from WARCs and the tests.

This module also holds the small HTML helpers the site profiles share (visible text of a
node, alignment/emphasis tests, flattening an article body into blocks, JSON-LD reading).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, ClassVar, Iterable, Iterator
from urllib.parse import unquote_plus, urljoin, urlsplit, urlunsplit

import parsel
from w3lib.url import canonicalize_url as w3lib_canonicalize_url
from w3lib.url import safe_url_string

from crawler.dates import parse_vn_datetime
from crawler.text import is_nfc, normalize_text

__all__ = [
    "SiteProfile",
    "Doc",
    "Block",
    "RECORD_FIELDS",
    "node_text",
    "clean_text",
    "wholly",
    "is_bold",
    "is_italic",
    "alignment",
    "has_class",
    "image_src",
    "flatten_blocks",
]

#: Keys of an article record, in the order the pipeline writes them.
RECORD_FIELDS: tuple[str, ...] = (
    "article_id",
    "canonical_url",
    "section",
    "title",
    "lead",
    "body",
    "authors",
    "source",
    "published_at",
    "images",
    "tags",
    "language",
)

# --------------------------------------------------------------------------------------
# HTML helpers
# --------------------------------------------------------------------------------------

#: Elements whose content is never visible text.
SKIP_TAGS = frozenset(
    {"script", "style", "noscript", "template", "iframe", "object", "embed", "video",
     "audio", "button", "select", "option", "textarea", "input", "svg", "map"}
)
#: Elements that start a new line when rendered; their text is separated by a space.
BLOCK_TAGS = frozenset(
    {"p", "div", "li", "td", "th", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
     "figure", "figcaption", "section", "article", "table", "tbody", "thead", "tfoot",
     "ul", "ol", "dl", "dt", "dd", "pre", "address", "header", "footer", "center", "main",
     "aside", "nav", "caption", "hr"}
)
#: Block containers that may hold paragraphs (recursed into when they do).
CONTAINER_TAGS = frozenset({"div", "section", "article", "blockquote", "center", "main", "span"})
EMBED_TAGS = frozenset({"iframe", "video", "audio", "object", "embed"})
_BLOCK_OR_EMBED = BLOCK_TAGS | EMBED_TAGS
_HEADING_OR_PARA = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "address", "dd", "dt"})

_ALIGN_RE = re.compile(r"text-align\s*:\s*(left|right|center|justify)", re.IGNORECASE)
_BOLD_STYLE_RE = re.compile(r"font-weight\s*:\s*(bold|[6-9]00)", re.IGNORECASE)
_ITALIC_STYLE_RE = re.compile(r"font-style\s*:\s*italic", re.IGNORECASE)


def _tag(el: Any) -> str | None:
    """Lower-case tag name, or None for comments/processing instructions."""
    tag = el.tag
    return tag.lower() if isinstance(tag, str) else None


def node_text(el: Any) -> str:
    """Raw visible text of an lxml element (its tail excluded), not yet normalised.

    ``<br>`` and block-level children become spaces so ``a<br>b`` does not read ``ab``;
    script/style/iframe content and comments are skipped. Link text is kept.
    """
    parts: list[str] = []
    _collect_text(el, parts, None)
    return "".join(parts)


def _collect_text(el: Any, parts: list[str], keep: Callable[[Any], bool] | None,
                  inside: bool = False) -> None:
    tag = _tag(el)
    if tag is None or tag in SKIP_TAGS:
        return
    if tag == "br":
        parts.append(" ")
        return
    now_inside = inside or (keep is not None and keep(el))
    # With a ``keep`` predicate only text *outside* matching elements is collected.
    emit = keep is None or not now_inside
    block = tag in BLOCK_TAGS
    if block:
        parts.append(" ")
    if el.text and emit:
        parts.append(el.text)
    for child in el:
        _collect_text(child, parts, keep, now_inside)
        if child.tail and emit:
            parts.append(child.tail)
    if block:
        parts.append(" ")


def clean_text(el: Any) -> str:
    """Normalised visible text of an element (``normalize_text`` without re-decoding
    entities: the HTML parser already decoded them)."""
    return normalize_text(node_text(el), decode_entities=False)


def wholly(el: Any, pred: Callable[[Any], bool]) -> bool:
    """True if ``el`` has visible text and all of it sits inside elements matching ``pred``
    (e.g. a paragraph that is entirely ``<strong>``)."""
    if not clean_text(el):
        return False
    if pred(el):
        return True
    outside: list[str] = []
    _collect_text(el, outside, pred)
    return not normalize_text("".join(outside), decode_entities=False)


def is_bold(el: Any) -> bool:
    """``<b>``/``<strong>`` or an inline ``font-weight: bold|600+``."""
    return _tag(el) in ("b", "strong") or bool(_BOLD_STYLE_RE.search(el.get("style") or ""))


def is_italic(el: Any) -> bool:
    """``<em>``/``<i>`` or an inline ``font-style: italic``."""
    return _tag(el) in ("em", "i") or bool(_ITALIC_STYLE_RE.search(el.get("style") or ""))


def has_class(el: Any, *names: str) -> bool:
    """True if the element's class list contains any of ``names``."""
    classes = (el.get("class") or "").split()
    return any(n in classes for n in names)


def alignment(el: Any) -> str | None:
    """Horizontal alignment of a paragraph: ``left|right|center|justify`` or None.

    Reads the element's ``style``/``align``; if it has none and only wraps a single element
    (Word-paste ``<p><span><span>…``), the wrapper's alignment is used.
    """
    while el is not None:
        m = _ALIGN_RE.search(el.get("style") or "")
        if m:
            return m.group(1).lower()
        align = (el.get("align") or "").strip().lower()
        if align in ("left", "right", "center", "justify"):
            return align
        children = [c for c in el if _tag(c) is not None]
        if len(children) == 1 and not (el.text or "").strip() and not (children[0].tail or "").strip():
            el = children[0]
        else:
            return None
    return None


def image_src(img: Any) -> str | None:
    """The real image address of an ``<img>``: lazy-load attributes before ``src``."""
    for attr in ("data-src", "data-original", "data-lazy-src", "src"):
        v = (img.get(attr) or "").strip()
        if v and not v.startswith("data:"):
            return v
    return None


@dataclass
class Block:
    """One top-level unit of an article body after flattening.

    ``kind``: ``"text"`` (paragraph, heading, leaf div, list item or a run of loose inline
    content), ``"figure"``, ``"table"`` or ``"embed"`` (iframe/video). ``el`` is the lxml
    element (``None`` for a loose run, whose nodes are in ``nodes``).
    """

    kind: str
    el: Any = None
    nodes: list[Any] = field(default_factory=list)

    @cached_property
    def text(self) -> str:
        """Normalised visible text."""
        if self.el is not None:
            return clean_text(self.el)
        raw = "".join(n if isinstance(n, str) else node_text(n) for n in self.nodes)
        return normalize_text(raw, decode_entities=False)

    @cached_property
    def imgs(self) -> list[Any]:
        """``<img>`` elements inside the block, in document order."""
        if self.el is not None:
            return [] if self.kind == "embed" else list(self.el.iter("img"))
        out: list[Any] = []
        for n in self.nodes:
            if not isinstance(n, str):
                out.extend(n.iter("img"))
        return out

    @cached_property
    def empty(self) -> bool:
        """Text block with no visible text and no image (e.g. ``<p>&nbsp;</p>``)."""
        return self.kind == "text" and not self.text and not self.imgs

    def _el_test(self, fn: Callable[[Any], Any]) -> Any:
        return fn(self.el) if self.el is not None else None

    @cached_property
    def align(self) -> str | None:
        return self._el_test(alignment)

    @cached_property
    def bold(self) -> bool:
        return bool(self._el_test(lambda e: wholly(e, is_bold)))

    @cached_property
    def italic(self) -> bool:
        return bool(self._el_test(lambda e: wholly(e, is_italic)))


def flatten_blocks(container: Any, skip: Callable[[Any], bool]) -> list[Block]:
    """Split an article body element into :class:`Block` s in document order.

    Containers (``div`` etc.) that hold block-level children are recursed into; elements for
    which ``skip(el)`` is true (related boxes, songs box, attachment box …) are dropped with
    their content; inline content lying directly in a container is grouped into runs.
    """
    out: list[Block] = []
    run: list[Any] = []

    def flush() -> None:
        if run:
            out.append(Block("text", None, list(run)))
            run.clear()

    if container.text and container.text.strip():
        run.append(container.text)
    for child in container:
        tag = _tag(child)
        if tag is None or tag in ("script", "style", "noscript", "template", "input", "link", "meta"):
            pass
        elif skip(child):
            flush()
        elif tag in EMBED_TAGS or (tag == "div" and has_class(child, "embed-video", "video")):
            flush()
            out.append(Block("embed", child))
        elif tag == "table":
            flush()
            out.append(Block("table", child))
        elif tag == "figure":
            flush()
            out.append(Block("figure", child))
        elif tag in ("ul", "ol", "dl"):
            flush()
            out.extend(flatten_blocks(child, skip))
        elif tag in _HEADING_OR_PARA:
            flush()
            out.append(_leaf(child))
        elif tag in CONTAINER_TAGS or tag in BLOCK_TAGS:
            if _has_block_child(child):
                flush()
                out.extend(flatten_blocks(child, skip))
            elif tag == "span":
                run.append(child)  # inline span without blocks inside
            else:
                flush()
                out.append(_leaf(child))
        else:
            run.append(child)  # inline: a, strong, em, img, br, font …
        # Whitespace-only tails matter between inline nodes ("<b>A</b> <i>B</i>"), not
        # between blocks.
        if child.tail and (run or child.tail.strip()):
            run.append(child.tail)
    flush()
    return out


def _leaf(el: Any) -> Block:
    """A paragraph-like element; one that only wraps a video player is an embed."""
    if any(_tag(c) in EMBED_TAGS for c in el.iter()) and not clean_text(el):
        return Block("embed", el)
    return Block("text", el)


def _has_block_child(el: Any) -> bool:
    for c in el.iter():
        if c is not el and _tag(c) in _BLOCK_OR_EMBED:
            return True
    return False


# --------------------------------------------------------------------------------------
# Parsed page
# --------------------------------------------------------------------------------------


@dataclass
class Doc:
    """One parsed page handed to the field methods.

    ``url``: URL the page was fetched from (identity, not necessarily canonical).
    ``sel``: ``parsel.Selector`` over the document. ``warnings``: codes that field methods
    add while reading (deduplicated by the caller). ``cache``: per-page memo for work that
    several fields share (e.g. the body walk that yields body, images and byline).
    """

    url: str
    sel: parsel.Selector
    warnings: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Any:
        return self.sel.root

    def warn(self, code: str) -> None:
        if code not in self.warnings:
            self.warnings.append(code)

    def first(self, selectors: Iterable[str]) -> Any | None:
        """First lxml element matched by the first CSS selector that matches anything."""
        for css in selectors:
            found = self.sel.css(css)
            if found:
                return found[0].root
        return None


# --------------------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------------------


class SiteProfile:
    """Base class for one news site.

    Class attributes a subclass sets: ``name`` (registry key), ``hosts`` (hosts the crawler
    may fetch from; the first is the main host), ``host_aliases`` (host -> host it mirrors,
    e.g. the ``m.`` mobile host), ``start_urls``, ``language_default`` (record language when
    the page does not say), ``article_path_re`` (regex on the URL path with an ``id``
    group), ``force_https``.

    URL methods: :meth:`canonicalize_url`, :meth:`strip_tracking`, :meth:`is_article_url`,
    :meth:`article_id`.

    Parsing: :meth:`parse_article` (``url, html -> record dict``; :meth:`parse_fields` also
    returns the page warnings) calls one method per field
    (``title(doc)``, ``published_at(doc)``, ``lead(doc)``, ``body(doc)``,
    ``authors_source(doc)``, ``images(doc, url)``, ``tags(doc)``, ``section(doc)``,
    ``canonical_url(doc, url)``, ``language(doc)``). Site-specific fields raise
    ``NotImplementedError`` here.
    """

    name: ClassVar[str] = ""
    hosts: ClassVar[tuple[str, ...]] = ()
    host_aliases: ClassVar[dict[str, str]] = {}
    start_urls: ClassVar[tuple[str, ...]] = ()
    language_default: ClassVar[str] = "vi"
    article_path_re: ClassVar[re.Pattern[str] | None] = None
    #: The site's hosts serve https only: an ``http://`` link to them names the https page
    #: (read by the spider when scheduling; canonical URLs are always https regardless).
    force_https: ClassVar[bool] = False

    #: Query parameters that only track where a click came from (exact names, lower-case).
    tracking_params: ClassVar[frozenset[str]] = frozenset(
        {"fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid",
         "twclid", "igshid", "mc_cid", "mc_eid", "zarsrc", "gidzl", "_hsenc", "_hsmi",
         "mkt_tok", "utm"}
    )
    #: Name prefixes of tracking parameters (``utm_source``, ``utm_medium`` …).
    tracking_prefixes: ClassVar[tuple[str, ...]] = ("utm_",)

    # ---------------------------------------------------------------- URL rules

    @property
    def main_host(self) -> str:
        return self.hosts[0] if self.hosts else ""

    @staticmethod
    def host_of(url: str) -> str:
        """Lower-case host of ``url`` without port or trailing dot ('' if none)."""
        try:
            return (urlsplit(url.strip()).hostname or "").rstrip(".").lower()
        except ValueError:
            return ""

    def is_own_host(self, host: str) -> bool:
        """True for the profile's hosts and their aliases."""
        host = host.rstrip(".").lower()
        return host in self.hosts or host in self.host_aliases

    def is_tracking_param(self, name: str) -> bool:
        """True if a query parameter name is a click/campaign tracker."""
        n = name.strip().lower()
        return n in self.tracking_params or n.startswith(self.tracking_prefixes)

    def _filter_query(self, query: str) -> str:
        # Work on the raw "k=v" pieces so the kept parameters stay byte-identical.
        kept = [
            p for p in query.split("&")
            if p and not self.is_tracking_param(unquote_plus(p.split("=", 1)[0]))
        ]
        return "&".join(kept)

    def strip_tracking(self, url: str) -> str:
        """Same URL with tracking parameters and the fragment removed; scheme, host, path
        and the remaining query are kept exactly as given."""
        try:
            p = urlsplit(url.strip())
        except ValueError:
            return url
        return urlunsplit((p.scheme, p.netloc, p.path, self._filter_query(p.query), ""))

    def to_main_host(self, url: str) -> str:
        """For URLs on the profile's hosts: force ``https`` and map host aliases (``m.`` ->
        main host), dropping default ports. Other URLs are returned unchanged."""
        try:
            p = urlsplit(url)
            host = (p.hostname or "").rstrip(".").lower()
            port = p.port
        except ValueError:
            return url
        if not self.is_own_host(host):
            return url
        host = self.host_aliases.get(host, host)
        netloc = host if port in (None, 80, 443) else f"{host}:{port}"
        return urlunsplit(("https", netloc, p.path or "/", p.query, p.fragment))

    def canonicalize_url(self, url: str) -> str:
        """Dedupe key for a URL.

        ``https``; lower-case host without default port; host aliases mapped to the main
        host (``m.baotuyenquang.com.vn`` -> ``baotuyenquang.com.vn``, F01/F02); tracking
        parameters and fragment dropped; the rest via ``w3lib.url.canonicalize_url``
        (sorted query, normalised percent-encoding). Non-HTTP URLs (``mailto:``,
        ``javascript:``) are returned stripped but otherwise unchanged.
        """
        url = url.strip()
        try:
            p = urlsplit(url)
            host = (p.hostname or "").rstrip(".").lower()
            port = p.port
        except ValueError:
            return url
        if p.scheme.lower() not in ("http", "https", ""):
            return url
        if not host:
            return url
        host = self.host_aliases.get(host, host)
        scheme = "https" if self.is_own_host(host) or p.scheme.lower() in ("https", "") else "http"
        if port in (None, 80, 443):
            netloc = host
        else:
            netloc = f"{host}:{port}"
        rebuilt = urlunsplit((scheme, netloc, p.path or "/", self._filter_query(p.query), ""))
        return w3lib_canonicalize_url(rebuilt, keep_fragments=False)

    def is_article_url(self, url: str) -> bool:
        """True if ``url`` is on one of the profile's hosts and its path has the article
        shape (``article_path_re``). Query strings do not matter."""
        return self.article_id(url) is not None

    def article_id(self, url: str) -> str | None:
        """Numeric article id from an article URL, else None."""
        if self.article_path_re is None:
            return None
        try:
            p = urlsplit(url.strip())
        except ValueError:
            return None
        if p.scheme.lower() not in ("http", "https") or not self.is_own_host(p.hostname or ""):
            return None
        m = self.article_path_re.match(p.path)
        return m.group("id") if m else None

    # ---------------------------------------------------------------- parsing

    def parse_document(self, url: str, html: str) -> Doc:
        """Parse decoded HTML into a :class:`Doc` (lxml via parsel). May raise on input
        lxml cannot handle; :func:`crawler.extract.extract_article` catches that."""
        return Doc(url=url, sel=parsel.Selector(text=html, type="html"))

    def is_article_page(self, doc: Doc) -> bool:
        """True if the page uses an article template of this site."""
        raise NotImplementedError

    def parse_article(self, url: str, html: str) -> dict:
        """Record dict (keys :data:`RECORD_FIELDS`) for one article page.

        Pure function of its inputs; page-level warnings are dropped here — use
        :meth:`parse_fields` (or :func:`crawler.extract.extract_article`) to get them.
        """
        return self.parse_fields(self.parse_document(url, html))[0]

    def parse_fields(self, doc: Doc) -> tuple[dict, list[str]]:
        """Run every field method; return ``(record, warnings)``."""
        canonical = self.canonical_url(doc, doc.url)
        authors, source = self.authors_source(doc)
        record = {
            "article_id": self.article_id(canonical) or self.article_id(doc.url),
            "canonical_url": canonical,
            "section": self.section(doc),
            "title": self.title(doc),
            "lead": self.lead(doc),
            "body": self.body(doc),
            "authors": authors,
            "source": source,
            "published_at": self.published_at(doc),
            "images": self.images(doc, doc.url),
            "tags": self.tags(doc),
            "language": self.language(doc),
        }
        self.check(doc, record)
        return record, list(doc.warnings)

    # Field methods. Site profiles override the ones that depend on the template.

    def title(self, doc: Doc) -> str:
        raise NotImplementedError

    def published_at(self, doc: Doc) -> str | None:
        raise NotImplementedError

    def lead(self, doc: Doc) -> str | None:
        raise NotImplementedError

    def body(self, doc: Doc) -> list[str]:
        raise NotImplementedError

    def authors_source(self, doc: Doc) -> tuple[list[str], str | None]:
        raise NotImplementedError

    def images(self, doc: Doc, url: str) -> list[dict]:
        raise NotImplementedError

    def tags(self, doc: Doc) -> list[str]:
        raise NotImplementedError

    def section(self, doc: Doc) -> list[str]:
        raise NotImplementedError

    def canonical_url(self, doc: Doc, url: str) -> str:
        """The page's ``<link rel="canonical">`` with scheme forced to https (warning
        ``canonical_uses_http``, F06), host aliases mapped and tracking parameters dropped;
        without a usable canonical, the fetched URL without tracking parameters (F06).

        A canonical on a foreign host (``canonical_offsite``) or one that is not an article
        URL while the fetched URL is (``canonical_not_article``) is ignored.
        """
        fallback = self.to_main_host(self.strip_tracking(url))
        hrefs = doc.sel.xpath(
            "//link[contains(concat(' ', normalize-space(translate(@rel, "
            "'CANONIL', 'canonil')), ' '), ' canonical ')]/@href"
        ).getall()
        href = next((h.strip() for h in hrefs if h.strip()), None)
        if not href:
            return fallback
        absolute = urljoin(url, href)
        p = urlsplit(absolute)
        if p.scheme.lower() not in ("http", "https") or not self.is_own_host(p.hostname or ""):
            doc.warn("canonical_offsite")
            return fallback
        if p.scheme.lower() == "http":
            doc.warn("canonical_uses_http")
        canonical = self.to_main_host(self.strip_tracking(absolute))
        if self.article_id(canonical) is None and self.article_id(url) is not None:
            doc.warn("canonical_not_article")
            return fallback
        return canonical

    def language(self, doc: Doc) -> str:
        """Primary subtag of ``<html lang>`` (``vi-VN`` -> ``vi``), else the site default."""
        lang = (doc.sel.xpath("/html/@lang").get() or "").strip().lower()
        primary = re.split(r"[-_]", lang)[0] if lang else ""
        return primary if re.fullmatch(r"[a-z]{2,3}", primary) else self.language_default

    def absolute_image_url(self, src: str, base: str) -> str | None:
        """Absolute image address: resolved against ``base``; on the site's own hosts forced
        to ``https://<main host>/…`` (F28: relative, protocol-relative and absolute forms)."""
        absolute = urljoin(base, src.strip())
        if urlsplit(absolute).scheme.lower() not in ("http", "https"):
            return None
        return safe_url_string(self.to_main_host(absolute))

    def base_url(self, doc: Doc, url: str) -> str:
        """``<base href>`` if the page sets one, else the page URL."""
        href = doc.sel.xpath("//head/base/@href").get()
        return urljoin(url, href.strip()) if href and href.strip() else url

    # ---------------------------------------------------------------- consistency checks

    def json_ld(self, doc: Doc) -> list[dict]:
        """Article objects from ``application/ld+json`` scripts (``NewsArticle`` and
        friends, ``@graph`` flattened). Unparseable JSON adds ``invalid_json_ld`` and is
        skipped: JSON-LD is never authoritative (F26)."""
        if "json_ld" in doc.cache:
            return doc.cache["json_ld"]
        found: list[dict] = []
        for raw in doc.sel.xpath(
            "//script[translate(@type, 'APLICTONJSD+', 'aplictonjsd+')='application/ld+json']/text()"
        ).getall():
            try:
                data = json.loads(raw)
            except ValueError:
                doc.warn("invalid_json_ld")
                continue
            for obj in _iter_ld(data):
                types = obj.get("@type")
                types = types if isinstance(types, list) else [types]
                if any(isinstance(t, str) and t.endswith("Article") for t in types):
                    found.append(obj)
        doc.cache["json_ld"] = found
        return found

    def check(self, doc: Doc, record: dict) -> None:
        """Cross-check the record against secondary sources; only adds warnings.

        ``json_ld_date_disagrees_with_page`` / ``json_ld_headline_disagrees_with_page``
        (F04, F26) and ``text_in_nfd`` (F07).
        """
        for obj in self.json_ld(doc):
            ld_date = parse_vn_datetime(obj.get("datePublished")) if isinstance(obj.get("datePublished"), str) else None
            if ld_date and record.get("published_at") and ld_date != record["published_at"]:
                doc.warn("json_ld_date_disagrees_with_page")
            headline = obj.get("headline")
            if isinstance(headline, str) and record.get("title") and normalize_text(headline) != record["title"]:
                doc.warn("json_ld_headline_disagrees_with_page")
        raw = self.raw_article_text(doc)
        if raw and not is_nfc(raw):
            doc.warn("text_in_nfd")

    def raw_article_text(self, doc: Doc) -> str:
        """Unnormalised text of the article area (for encoding/normalisation checks)."""
        return node_text(doc.root)


def _iter_ld(data: Any) -> Iterator[dict]:
    if isinstance(data, list):
        for item in data:
            yield from _iter_ld(item)
    elif isinstance(data, dict):
        yield data
        graph = data.get("@graph")
        if graph is not None:
            yield from _iter_ld(graph)
