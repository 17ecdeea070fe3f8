"""Redirect loop detection (FAULTS.md F13).

Scrapy's RedirectMiddleware stops a chain only after ``REDIRECT_MAX_TIMES`` hops. A
loop back to a URL already requested is cut short earlier, silently, by the
scheduler's duplicate filter: the article disappears from the run without a trace.
This middleware sits just before RedirectMiddleware in response order (priority
610 > 600), sees each 3xx with a ``Location``, and when the target is the request's
own URL or one already in its chain (``meta["redirect_urls"]``) it records a
``redirect_loop`` error for the chain's first URL in the run report and drops the
response (:class:`~scrapy.exceptions.IgnoreRequest`)."""

from __future__ import annotations

import logging
from urllib.parse import urldefrag, urljoin

from scrapy.exceptions import IgnoreRequest
from w3lib.url import safe_url_string

from crawler.report import record_error

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class RedirectLoopMiddleware:
    """Downloader middleware (priority 610); no settings."""

    def __init__(self, stats):
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.stats)

    def process_response(self, request, response):
        if response.status not in REDIRECT_STATUSES or b"Location" not in response.headers:
            return response
        if request.meta.get("dont_redirect") or response.status in request.meta.get("handle_httpstatus_list", ()):
            return response
        location = response.headers[b"Location"].decode("latin1")
        target = urldefrag(safe_url_string(urljoin(response.url, location)))[0]
        chain = [*request.meta.get("redirect_urls", []), request.url]
        if target not in {urldefrag(u)[0] for u in chain}:
            return response
        first = chain[0]
        record_error(self.stats, "redirect_loop", first)
        logger.warning("redirect loop: %s", " -> ".join([*chain, target]))
        raise IgnoreRequest(f"redirect loop back to {target}")
