"""Site profile base class: URL rules plus field-by-field article parsing (fundus-style).

A profile is a pure description of one news site: which hosts belong to it, how its URLs are
canonicalised, which URLs are articles, and one method per record field that reads that
field from a parsed page. No Scrapy objects anywhere: input is ``(url, html)`` and output
is plain dicts/lists/strings, so the same code serves the spider, ``newsarchive eval``,
offline re-extraction from WARCs and the tests.

A field method returns the field's value, the empty value of its type (``[]``, ``""``)
when the page has the field's place but nothing in it, or ``None`` when the profile cannot
find the field on this page at all; then the fallback chain
(:mod:`crawler.sites.fallback`: JSON-LD, OpenGraph, ``<meta>``, trafilatura, htmldate)
is asked. ``Unreadable(raw)`` says the page shows the field but it cannot be read (an
unparseable date line): it is reported and not replaced by a guess. Which method produced
each field is kept in the record's ``extracted_by``.

HTML helpers (visible text, emphasis, body flattening) live in :mod:`crawler.sites.html`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Iterable
from urllib.parse import unquote_plus, urljoin, urlsplit, urlunsplit

import parsel
from w3lib.url import canonicalize_url as w3lib_canonicalize_url
from w3lib.url import safe_url_string

from crawler.dates import parse_vn_datetime
from crawler.sites.fallback import FallbackChain, ld_never_modified
from crawler.sites.html import node_text
from crawler.sites.metadata import json_ld_articles
from crawler.text import is_nfc, normalize_text

__all__ = [
    "SiteProfile",
    "Doc",
    "Unreadable",
    "EXTRACTED_FIELDS",
    "CONTENT_FIELDS",
]

#: Content fields read from the page, each with an ``extracted_by`` entry.
CONTENT_FIELDS: tuple[str, ...] = (
    "title",
    "lead",
    "body",
    "authors",
    "source",
    "published_at",
    "modified_at",
    "images",
    "tags",
    "section",
    "language",
)

#: Keys of the record :meth:`SiteProfile.parse_fields` returns, in record order. The
#: pipeline adds the rest of the dataset record (``crawler/items.py``).
EXTRACTED_FIELDS: tuple[str, ...] = (
    "article_id",
    "canonical_url",
    "section",
    "title",
    "lead",
    "body",
    "authors",
    "source",
    "published_at",
    "modified_at",
    "images",
    "tags",
    "language",
    "extracted_by",
)

_LIST_FIELDS = frozenset({"body", "authors", "images", "tags", "section"})


@dataclass(frozen=True)
class Unreadable:
    """Returned by a field method for a field the page shows but that cannot be read
    (``raw``: the text as shown). The field is left empty and reported, never guessed
    from another source."""

    raw: str


# --------------------------------------------------------------------------------------
# Parsed page
# --------------------------------------------------------------------------------------


@dataclass
class Doc:
    """One parsed page handed to the field methods.

    ``url``: URL the page was fetched from (identity, not necessarily canonical).
    ``html``: the decoded document. ``sel``: ``parsel.Selector`` over it. ``warnings``:
    codes that field methods add while reading (deduplicated). ``problems``: field ->
    what could not be read (e.g. an unparseable date line), for the quarantine detail.
    ``cache``: per-page memo for work several fields share (the body walk, JSON-LD …).
    """

    url: str
    sel: parsel.Selector
    html: str = ""
    warnings: list[str] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Any:
        return self.sel.root

    def warn(self, code: str) -> None:
        if code not in self.warnings:
            self.warnings.append(code)

    def problem(self, field_name: str, detail: str) -> None:
        """Record that ``field_name`` was shown but could not be read (``detail``)."""
        found = self.problems.setdefault(field_name, [])
        if detail not in found:
            found.append(detail[:200])

    def first(self, selectors: Iterable[str]) -> Any | None:
        """First lxml element matched by the first CSS selector that matches anything
        (memoised per page: several fields look for the same template blocks)."""
        key = ("first", tuple(selectors))
        if key not in self.cache:
            self.cache[key] = next(
                (found[0].root for found in (self.sel.css(css) for css in key[1]) if found), None
            )
        return self.cache[key]


# --------------------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------------------


class SiteProfile:
    """Base class for one news site.

    Class attributes a subclass sets: ``name`` (registry key), ``hosts`` (hosts the crawler
    may fetch from; the first is the main host), ``host_aliases`` (host -> host it mirrors,
    e.g. the ``m.`` mobile host), ``start_urls``, ``language_default`` (record language when
    the page does not say), ``article_path_re`` (regex on the URL path with an ``id``
    group), ``force_https``, ``url_decides_article``.

    URL methods: :meth:`canonicalize_url`, :meth:`strip_tracking`, :meth:`is_article_url`,
    :meth:`article_id`.

    Parsing: :meth:`parse_article` (``url, html -> record dict``; :meth:`parse_fields` also
    returns the page warnings) calls one method per field: ``title(doc)``,
    ``published_at(doc)``, ``modified_at(doc)``, ``lead(doc)``, ``body(doc)``,
    ``authors_source(doc)``, ``images(doc, url)``, ``tags(doc)``, ``section(doc)``,
    ``language(doc)``, ``canonical_url(doc, url)``. Here they all return ``None`` (not
    found: the fallback chain decides), so a profile overrides only what its template
    shows.
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
    #: True when :meth:`is_article_url` is exact (a page at an article URL that is not an
    #: article is a fault worth quarantining). False for heuristic URL rules (the generic
    #: profile), where the page itself decides and a non-article page is simply skipped.
    url_decides_article: ClassVar[bool] = True
    #: Secondary sources for fields the profile does not find.
    fallback: ClassVar[FallbackChain] = FallbackChain()

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

    def link_regions(self, url: str) -> tuple[str, ...]:
        """CSS selectors of the parts of the page at ``url`` whose links the spider
        follows; ``()`` (here, and for any page none of them matches) means the whole
        page. A profile narrows this to the content and listing blocks so that the menus,
        sidebars and footers every page repeats are read once (on the pages it leaves
        whole, e.g. the home page), not on every article."""
        return ()

    # ---------------------------------------------------------------- parsing

    def parse_document(self, url: str, html: str) -> Doc:
        """Parse decoded HTML into a :class:`Doc` (lxml via parsel). May raise on input
        lxml cannot handle; :func:`crawler.extract.extract_article` catches that."""
        return Doc(url=url, sel=parsel.Selector(text=html, type="html"), html=html)

    def is_article_page(self, doc: Doc) -> bool:
        """True if the page uses an article template of this site."""
        raise NotImplementedError

    def parse_article(self, url: str, html: str) -> dict:
        """Record dict (keys :data:`EXTRACTED_FIELDS`) for one article page.

        Pure function of its inputs; page-level warnings are dropped here — use
        :meth:`parse_fields` (or :func:`crawler.extract.extract_article`) to get them.
        """
        return self.parse_fields(self.parse_document(url, html))[0]

    def parse_fields(self, doc: Doc) -> tuple[dict, list[str]]:
        """Run every field method, then the fallback chain for the fields the profile
        did not find; return ``(record, warnings)``.

        Strings that come out empty are ``None``; lists that nobody found are ``[]``; a
        language nobody found is ``language_default`` (``extracted_by`` ``"default"``).
        ``extracted_by[field]`` is the method that answered (``"profile"`` also for an
        empty value the profile read, e.g. a photo-only article's ``[]`` body), ``None``
        when nothing did. ``doc.problems`` lists what was shown but unreadable.
        """
        canonical = self.canonical_url(doc, doc.url)
        record: dict[str, Any] = {
            "article_id": self.article_id(canonical) or self.article_id(doc.url),
            "canonical_url": canonical,
        }
        by: dict[str, str | None] = {}
        getters = (
            ("title", self.title), ("published_at", self.published_at),
            ("modified_at", self.modified_at), ("lead", self.lead),
            ("authors", self.authors_source), ("images", lambda d: self.images(d, d.url)),
            ("body", self.body), ("tags", self.tags),
            ("section", self.section), ("language", self.language),
        )
        for name, getter in getters:
            value, method = getter(doc), "profile"
            if isinstance(value, Unreadable):
                doc.problem(name, f"page: {value.raw!r}")
                value, method = None, None
            elif value is None:
                value, method = self.fallback.field(name, doc, self, record)
            if name == "authors":
                authors, source = value if value is not None else ([], None)
                record["authors"], record["source"] = list(authors), source or None
                by["authors"] = by["source"] = method
                continue
            if name in _LIST_FIELDS:
                value = list(value or [])
            elif name == "language" and not value:
                value, method = self.language_default, "default"
            elif not value:
                value = None
            record[name] = value
            by[name] = method
        self.reconcile(doc, record, by)
        record["extracted_by"] = {f: by.get(f) for f in CONTENT_FIELDS}
        ordered = {k: record.get(k) for k in EXTRACTED_FIELDS}
        self.check(doc, ordered)
        return ordered, list(doc.warnings)

    def reconcile(self, doc: Doc, record: dict, by: dict) -> None:
        """Make dates from different sources agree.

        A JSON-LD ``dateModified`` equal to its ``datePublished`` means "not modified
        since publication": ``modified_at`` is then the record's ``published_at`` (the
        page's clock wins, F26). A ``modified_at`` before ``published_at`` cannot be
        right: it is dropped with the warning ``modified_before_published``.
        """
        published, modified = record.get("published_at"), record.get("modified_at")
        if not (published and modified):
            return
        if by.get("modified_at") == "json-ld" and ld_never_modified(doc):
            record["modified_at"] = published
        elif datetime.fromisoformat(modified) < datetime.fromisoformat(published):
            doc.warn("modified_before_published")
            record["modified_at"] = None
            by["modified_at"] = None

    # Field methods. Site profiles override the ones their template shows; ``None``
    # hands the field to the fallback chain.

    def title(self, doc: Doc) -> str | None:
        return None

    def published_at(self, doc: Doc) -> str | Unreadable | None:
        return None

    def modified_at(self, doc: Doc) -> str | Unreadable | None:
        return None

    def lead(self, doc: Doc) -> str | None:
        return None

    def body(self, doc: Doc) -> list[str] | None:
        return None

    def authors_source(self, doc: Doc) -> tuple[list[str], str | None] | None:
        return None

    def images(self, doc: Doc, url: str) -> list[dict] | None:
        return None

    def tags(self, doc: Doc) -> list[str] | None:
        return None

    def section(self, doc: Doc) -> list[str] | None:
        return None

    def is_same_site(self, host: str, page_url: str) -> bool:
        """May a canonical link on ``page_url`` point at ``host``? The profile's own
        hosts (a canonical elsewhere is ignored, ``canonical_offsite``)."""
        return self.is_own_host(host)

    def canonical_url(self, doc: Doc, url: str) -> str:
        """The page's ``<link rel="canonical">`` with scheme forced to https (warning
        ``canonical_uses_http``, F06), host aliases mapped and tracking parameters dropped;
        without a usable canonical, the fetched URL without tracking parameters (F06).

        A canonical on a foreign host (``canonical_offsite``) or one that is not an article
        URL while the fetched URL is (``canonical_not_article``) is ignored. The result
        is a URI (``safe_url_string``: spaces and non-ASCII percent-encoded).
        """
        fallback = safe_url_string(self.to_main_host(self.strip_tracking(url)))
        hrefs = doc.sel.xpath(
            "//link[contains(concat(' ', normalize-space(translate(@rel, "
            "'CANONIL', 'canonil')), ' '), ' canonical ')]/@href"
        ).getall()
        href = next((h.strip() for h in hrefs if h.strip()), None)
        if not href:
            return fallback
        absolute = urljoin(url, href)
        p = urlsplit(absolute)
        try:
            host = p.hostname or ""
        except ValueError:
            host = ""
        if p.scheme.lower() not in ("http", "https") or not self.is_same_site(host, url):
            doc.warn("canonical_offsite")
            return fallback
        if p.scheme.lower() == "http" and self.force_https:
            doc.warn("canonical_uses_http")
        canonical = safe_url_string(self.to_main_host(self.strip_tracking(absolute)))
        if self.article_id(canonical) is None and self.article_id(url) is not None:
            doc.warn("canonical_not_article")
            return fallback
        return canonical

    def language(self, doc: Doc) -> str | None:
        """Primary subtag of ``<html lang>`` (``vi-VN`` -> ``vi``), else the site default."""
        lang = (doc.sel.xpath("/html/@lang").get() or "").strip().lower()
        primary = re.split(r"[-_]", lang)[0] if lang else ""
        return primary if re.fullmatch(r"[a-z]{2,3}", primary) else self.language_default

    def absolute_image_url(self, src: str, base: str) -> str | None:
        """Absolute image address: resolved against ``base``; on the site's own hosts forced
        to ``https://<main host>/…`` (F28: relative, protocol-relative and absolute forms).
        None for non-HTTP(S) sources and unparseable addresses."""
        try:
            absolute = urljoin(base, src.strip())
            if urlsplit(absolute).scheme.lower() not in ("http", "https") or not urlsplit(absolute).hostname:
                return None
            return safe_url_string(self.to_main_host(absolute))
        except ValueError:
            return None

    def base_url(self, doc: Doc, url: str) -> str:
        """``<base href>`` if the page sets one, else the page URL."""
        href = doc.sel.xpath("//head/base/@href").get()
        try:
            return urljoin(url, href.strip()) if href and href.strip() else url
        except ValueError:
            return url

    # ---------------------------------------------------------------- consistency checks

    def json_ld(self, doc: Doc) -> list[dict]:
        """Article objects from ``application/ld+json`` scripts (``NewsArticle`` and
        friends, ``@graph`` flattened; :func:`crawler.sites.metadata.json_ld_articles`).
        Not strict JSON adds ``invalid_json_ld``: JSON-LD is never authoritative (F26)."""
        return json_ld_articles(doc)

    def check(self, doc: Doc, record: dict) -> None:
        """Cross-check the record against secondary sources; only adds warnings.

        ``json_ld_date_disagrees_with_page`` / ``json_ld_headline_disagrees_with_page``
        (F04, F26; only when the field came from the page) and ``text_in_nfd`` (F07).
        """
        by = record.get("extracted_by") or {}
        for obj in self.json_ld(doc):
            raw_date = obj.get("datePublished")
            ld_date = parse_vn_datetime(raw_date) if isinstance(raw_date, str) else None
            if (ld_date and record.get("published_at") and by.get("published_at") == "profile"
                    and ld_date != record["published_at"]):
                doc.warn("json_ld_date_disagrees_with_page")
            headline = obj.get("headline")
            if (isinstance(headline, str) and record.get("title") and by.get("title") == "profile"
                    and normalize_text(headline) != record["title"]):
                doc.warn("json_ld_headline_disagrees_with_page")
        raw = self.raw_article_text(doc)
        if raw and not is_nfc(raw):
            doc.warn("text_in_nfd")

    def raw_article_text(self, doc: Doc) -> str:
        """Unnormalised text of the article area (for encoding/normalisation checks)."""
        return node_text(doc.root)
