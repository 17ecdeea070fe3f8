"""Incremental crawling: which article URLs to fetch again, and the record of what
each article URL answered (status, ``ETag``, ``Last-Modified``, sitemap ``<lastmod>``).

The rule (README, "Incremental crawls"), for an article URL met in a listing, feed,
sitemap or page in ``--mode incremental``:

1. not known (never fetched, or fetched by a run that never published what it found)
   -> fetch it;
2. known, and the article was published less than ``--recheck-days`` ago (its
   ``published_at``) -> re-check it with a conditional GET;
3. known, and a sitemap gives it a ``<lastmod>`` later than the one stored for it (the
   sitemap's lastmod from the last fetch, else the page's ``Last-Modified``), or the
   URL has no stored date to compare with -> re-check it with a conditional GET;
4. otherwise (known, older, unchanged) -> skip it.

A conditional GET sends ``If-None-Match`` (stored ``ETag``) and ``If-Modified-Since``
(stored ``Last-Modified``); a 304 means unchanged. Known redirects count as known when
their target is; known 404/410 pages and quarantined pages are re-checked only by rules
2-3. ``--mode full`` fetches every URL without conditions (the weekly safety net).
A listing page whose article links are all settled (known, not due for a re-check) has
its pagination links dropped: the section's older pages hold nothing new.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urljoin

from w3lib.url import safe_url_string

from crawler.state import KnownPage, State



@dataclass(frozen=True)
class Decision:
    """Whether to fetch a URL, why, and the conditional request headers to send."""

    fetch: bool
    reason: str
    headers: dict[str, str] = field(default_factory=dict)


def parse_lastmod(value: str | None) -> datetime | None:
    """A sitemap ``<lastmod>`` (W3C datetime: ``YYYY-MM-DD`` or with time and offset)
    as an aware datetime; a date or a time without offset is taken as UTC. None when
    unreadable."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date (``Last-Modified``) as an aware datetime, None when unreadable."""
    if not value:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class IncrementalPolicy:
    """Decides, from the state, whether an article URL is fetched (see the module doc).

    ``mode``: ``incremental`` or ``full``; ``recheck_days``: age (days, from the
    article's ``published_at``) under which a known article is always re-checked;
    ``now``: the current time (tests pass a fixed one); ``canonicalize``: the profile's
    URL canonicalisation (a new tracking-parameter variant of a known article's URL is
    that article).
    """

    def __init__(self, state: State | None, mode: str = "incremental", recheck_days: float = 7.0,
                 now: datetime | None = None, canonicalize=None):
        if mode not in ("incremental", "full"):
            raise ValueError(f"mode must be 'incremental' or 'full', got {mode!r}")
        if recheck_days < 0:
            raise ValueError(f"recheck days must be >= 0, got {recheck_days}")
        self.state = state
        self.mode = mode
        self.recheck_days = recheck_days
        self.now = now or datetime.now(timezone.utc)
        self.canonicalize = canonicalize

    @property
    def incremental(self) -> bool:
        return self.mode == "incremental" and self.state is not None

    def decide(self, url: str, lastmod: str | None = None) -> Decision:
        """Fetch or skip ``url`` (as it will be requested), given the sitemap's
        ``lastmod`` for it when a sitemap listed it."""
        if not self.incremental:
            return Decision(True, "full")
        own = self.state.page(url)
        page = self._settled_page(own, set())
        if page is None:
            return self._unknown(url, lastmod)
        headers = {}
        if own.status == 200:
            if own.etag:
                headers["If-None-Match"] = own.etag
            if own.last_modified:
                headers["If-Modified-Since"] = own.last_modified
        if self._young(page.published_at):
            return Decision(True, "young", headers)
        # The URL's own row: a redirect's lastmod is the one the sitemap gave its source.
        if lastmod is not None and self._lastmod_moved(own, lastmod):
            return Decision(True, "lastmod", headers)
        return Decision(False, "known")

    def is_settled(self, url: str) -> bool:
        """Known and not due for a re-check (without a sitemap's word on it)."""
        return not self.decide(url).fetch

    def _unknown(self, url: str, lastmod: str | None) -> Decision:
        # A new address of a published article (another tracking parameter, say) is
        # that article: no need to fetch it unless it is due for a re-check.
        if self.canonicalize is not None:
            article = self.state.by_key(self.canonicalize(url))
            if article is not None and article.published:
                if self._young(article.published_at):
                    return Decision(True, "young")
                if lastmod is not None:
                    return Decision(True, "lastmod")
                return Decision(False, "known_article")
        return Decision(True, "new")

    def _settled_page(self, page: KnownPage | None, seen: set[str]) -> KnownPage | None:
        """``page`` (a stored row) when it counts as known: committed, and for a
        redirect, its target known too (then the target's row; a loop is known: it
        never resolves)."""
        if page is None or page.pending:
            return None
        if 300 <= page.status < 400 and page.location:
            if page.location in seen:
                return page
            seen.add(page.url)
            return self._settled_page(self.state.page(page.location), seen)
        return page

    def _young(self, published_at: str | None) -> bool:
        if not published_at or self.recheck_days <= 0:
            return False
        try:
            published = datetime.fromisoformat(published_at)
        except ValueError:
            return False
        if published.tzinfo is None:
            published = published.replace(tzinfo=timezone.utc)
        return self.now - published < timedelta(days=self.recheck_days)

    @staticmethod
    def _lastmod_moved(page: KnownPage, lastmod: str) -> bool:
        new = parse_lastmod(lastmod)
        if new is None:
            return False
        old = parse_lastmod(page.sitemap_lastmod) or parse_http_date(page.last_modified)
        return old is None or new > old


class PageRecorderMiddleware:
    """Downloader middleware that stores what every article URL answered in the state
    (``crawler.newsarchive_state``): 200 (pending until its article is published, with
    ``ETag``/``Last-Modified``), 304 (checked, unchanged), 3xx (redirect target), 404/410
    (gone). 5xx and failures are not stored: the URL stays unknown and is fetched again.

    Sits at 640: after WARC capture (650) has the raw response, before RedirectMiddleware
    (600) turns a 3xx into a new request, so every hop of a redirect chain (a loop too)
    is seen. Settings: ``NEWSARCHIVE_RUN_ID``, ``NEWSARCHIVE_SITE``.
    """

    def __init__(self, crawler, profile, run_id: str):
        self.crawler = crawler
        self.profile = profile
        self.run_id = run_id

    @classmethod
    def from_crawler(cls, crawler):
        from crawler.sites import get_profile

        s = crawler.settings
        return cls(crawler, get_profile(s.get("NEWSARCHIVE_SITE", "baotuyenquang")), s.get("NEWSARCHIVE_RUN_ID", "manual"))

    def process_response(self, request, response):
        state = getattr(self.crawler, "newsarchive_state", None)
        if state is None or not self.profile.is_article_url(request.url):
            return response
        status = response.status
        header = response.headers.get
        etag = (header(b"ETag") or b"").decode("latin-1") or None
        modified = (header(b"Last-Modified") or b"").decode("latin-1") or None
        # The sitemap's lastmod, when the spider has read it already (else the spider
        # notes it on the page row when it does).
        lastmod = getattr(getattr(self.crawler, "spider", None), "sitemap_lastmods", {}).get(request.url)
        if status == 304:
            state.record_page(request.url, 304, etag=etag, last_modified=modified, sitemap_lastmod=lastmod,
                              run_id=self.run_id)
            self.crawler.stats.inc_value("newsarchive/incremental/not_modified")
        elif status in (301, 302, 303, 307, 308) and header(b"Location"):
            location = safe_url_string(urljoin(request.url, header(b"Location").decode("latin-1")))
            state.record_page(request.url, status, location=location, sitemap_lastmod=lastmod, run_id=self.run_id)
        elif status in (404, 410):
            state.record_page(request.url, status, sitemap_lastmod=lastmod, run_id=self.run_id)
        elif status == 200:
            state.record_page(request.url, 200, etag=etag, last_modified=modified, sitemap_lastmod=lastmod,
                              pending=True, run_id=self.run_id)
        return response
