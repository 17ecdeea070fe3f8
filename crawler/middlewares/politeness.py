"""robots.txt ``Crawl-delay``, per host.

Scrapy's RobotsTxtMiddleware obeys ``Allow``/``Disallow`` but ignores ``Crawl-delay``.
This middleware reads it (protego) from every robots.txt response that passes through
the downloader — the one RobotsTxtMiddleware fetches for each host — and makes it the
floor of that host's download-slot delay: for slots created later
(``Downloader.per_slot_settings``) and, on every request, for the live slot, which
AutoThrottle may have lowered meanwhile. Such a slot gets no jitter
(``DOWNLOAD_DELAY_JITTER`` would make every other gap shorter than asked).

Settings: ``NEWSARCHIVE_OBEY_CRAWL_DELAY`` (default True; tests turn it off to run
fast), ``NEWSARCHIVE_MAX_CRAWL_DELAY`` (seconds, default 60: a robots.txt asking for an
hour between requests is capped, with a warning), ``ROBOTSTXT_USER_AGENT`` or
``USER_AGENT`` (the group of robots.txt that applies). Stat:
``newsarchive/crawl_delay/<host>`` (seconds applied).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from protego import Protego
from scrapy.exceptions import NotConfigured

logger = logging.getLogger(__name__)


def crawl_delay(robots_txt: str, user_agent: str) -> float | None:
    """The ``Crawl-delay`` (seconds) robots.txt gives ``user_agent``'s group, or None."""
    try:
        delay = Protego.parse(robots_txt).crawl_delay(user_agent)
    except Exception:  # noqa: BLE001 - a robots.txt we cannot read gives no delay
        return None
    return float(delay) if delay is not None and delay >= 0 else None


class CrawlDelayMiddleware:
    """Downloader middleware applying robots.txt ``Crawl-delay`` per host (see module doc).
    Order 120: just after RobotsTxtMiddleware (100) lets a request through, before it is
    queued in its download slot."""

    def __init__(self, crawler, user_agent: str, max_delay: float):
        self.crawler = crawler
        self.user_agent = user_agent
        self.max_delay = max_delay
        self.delays: dict[str, float] = {}  # slot key (host) -> Crawl-delay

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        if not s.getbool("ROBOTSTXT_OBEY") or not s.getbool("NEWSARCHIVE_OBEY_CRAWL_DELAY", True):
            raise NotConfigured
        user_agent = s.get("ROBOTSTXT_USER_AGENT") or s.get("USER_AGENT") or "*"
        return cls(crawler, user_agent, s.getfloat("NEWSARCHIVE_MAX_CRAWL_DELAY", 60.0))

    @property
    def downloader(self):
        return self.crawler.engine.downloader

    def process_request(self, request):
        key = self.downloader.get_slot_key(request)
        delay = self.delays.get(key)
        slot = self.downloader.slots.get(key)
        if delay is not None and slot is not None:
            self._floor(slot, delay)
        return None

    @staticmethod
    def _floor(slot, delay: float) -> None:
        if slot.delay < delay:
            slot.delay = delay
        slot.jitter = 0.0

    def process_response(self, request, response):
        if urlsplit(response.url).path == "/robots.txt" and response.status == 200:
            self.learn(request, response.text if hasattr(response, "text") else response.body.decode("utf-8", "replace"))
        return response

    def learn(self, request, robots_txt: str) -> float | None:
        """Read ``Crawl-delay`` from a host's robots.txt and apply it to its slot."""
        delay = crawl_delay(robots_txt, self.user_agent)
        if delay is None:
            return None
        if delay > self.max_delay:
            logger.warning("robots.txt of %s asks Crawl-delay %s s; capped at %s s", request.url, delay, self.max_delay)
            delay = self.max_delay
        key = self.downloader.get_slot_key(request)
        self.delays[key] = delay
        settings = self.downloader.per_slot_settings.setdefault(key, {})
        settings["delay"] = max(settings.get("delay", 0.0), delay)
        settings["jitter"] = 0.0
        slot = self.downloader.slots.get(key)
        if slot is not None:
            self._floor(slot, delay)
        self.crawler.stats.set_value(f"newsarchive/crawl_delay/{key}", delay)
        return delay
