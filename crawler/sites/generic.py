"""The ``generic`` profile: any news portal, through the fallback chain alone.

Used for ``newsarchive crawl --start-url URL --allow-domain HOST`` on a portal no profile
knows. It has no template: every field comes from JSON-LD, OpenGraph, ``<meta>``,
trafilatura and htmldate (:mod:`crawler.sites.fallback`). What is an article is decided
per page (:meth:`GenericProfile.is_article_page`), since URLs of an unknown site say
little; the URL rule only keeps obvious non-articles (home, listings by keyword, feeds,
files) from being parsed at all.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

from crawler.sites.base import Doc, SiteProfile
from crawler.sites.fallback import run_trafilatura
from crawler.sites.metadata import json_ld_articles, opengraph

__all__ = ["GenericProfile"]

#: Characters of trafilatura-extracted text from which a page without article metadata
#: counts as an article (a listing's teasers rarely reach it; a short news item does).
MIN_BODY_CHARS = 400

# Path segments of pages that list or search, never articles.
_NOT_ARTICLE_SEGMENT_RE = re.compile(
    r"/(?:tag|tags|category|categories|chuyen-muc|author|authors|tac-gia|search|tim-kiem|"
    r"page|trang|feed|rss|login|admin|wp-admin|wp-json)(?:/|$|[-_.]?\d+(?:\.\w+)?$)",
    re.IGNORECASE,
)
_FILE_EXT_RE = re.compile(
    r"\.(?:xml|rss|atom|json|txt|pdf|jpe?g|png|gif|webp|svg|ico|css|js|mp3|mp4|zip|docx?|xlsx?)$",
    re.IGNORECASE,
)
# A trailing number of 4+ digits in the last path segment: most CMSs' article id.
_ID_RE = re.compile(r"(?:^|[-_/.])(\d{4,})(?:\.[a-z]+)?/?$", re.IGNORECASE)


class GenericProfile(SiteProfile):
    """A portal without a profile. No hosts of its own (the crawl's ``--allow-domain``
    decides), no field methods (the fallback chain reads everything), language
    ``und`` (undetermined, BCP 47) when the page does not declare one."""

    name = "generic"
    language_default = "und"
    url_decides_article = False

    def is_own_host(self, host: str) -> bool:
        """No host is the generic profile's own: URLs keep their scheme and host."""
        return False

    def is_same_site(self, host: str, page_url: str) -> bool:
        """A canonical link may name the page's own host (``www.`` ignored)."""
        page_host = self.host_of(page_url)
        strip = lambda h: h.rstrip(".").lower().removeprefix("www.")  # noqa: E731
        return bool(host) and strip(host) == strip(page_host)

    def is_article_url(self, url: str) -> bool:
        """Heuristic: an http(s) URL with a path, not a file download, feed, listing by
        tag/category/author, search or pagination. The page then decides."""
        try:
            p = urlsplit(url.strip())
        except ValueError:
            return False
        if p.scheme.lower() not in ("http", "https") or not p.hostname:
            return False
        path = p.path or "/"
        if path.strip("/") == "" or path.lower() in ("/index.html", "/index.htm", "/index.php"):
            return False
        return not (_FILE_EXT_RE.search(path) or _NOT_ARTICLE_SEGMENT_RE.search(path))

    def article_id(self, url: str) -> str | None:
        """The URL's trailing number (4+ digits) when it has one (``…-123456.html``),
        else the first 16 hex digits of the SHA-256 of the URL without fragment."""
        try:
            p = urlsplit(url.strip())
        except ValueError:
            return None
        if p.scheme.lower() not in ("http", "https") or not p.hostname:
            return None
        m = _ID_RE.search(p.path)
        if m:
            return m.group(1)
        return hashlib.sha256(self.strip_tracking(url).encode("utf-8")).hexdigest()[:16]

    def is_article_page(self, doc: Doc) -> bool:
        """An article if the page says so (a JSON-LD ``…Article``/``BlogPosting`` object,
        or ``og:type`` ``article``), else if trafilatura finds at least
        :data:`MIN_BODY_CHARS` characters of main text."""
        if json_ld_articles(doc):
            return True
        og_type = [t.strip().lower() for t in opengraph(doc).get("og:type", [])]
        if og_type:
            return "article" in og_type
        if "trafilatura" not in doc.cache:
            doc.cache["trafilatura"] = run_trafilatura(doc.html, doc.url)
        text = getattr(doc.cache["trafilatura"], "text", None) or ""
        return len(text) >= MIN_BODY_CHARS

    def language(self, doc: Doc) -> str | None:
        """Left to the chain (``<html lang>``, JSON-LD, og:locale), then ``und``."""
        return None
