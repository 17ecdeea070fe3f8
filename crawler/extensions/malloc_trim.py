"""Give the C heap's free pages back to the system every few seconds of a crawl
(glibc ``malloc_trim(0)``).

A crawl allocates and frees some hundreds of KiB for every page (response bodies,
lxml trees, records on their way to the CPU worker) between long-lived objects
that grow with the portal. glibc keeps the freed pages of its heaps mapped, so a
crawl process's resident set sits some 30 MiB above what it holds, and climbs
further the longer the crawl (bench/ANALYSIS.md: 50,000 articles against 10,000).
``malloc_trim(0)`` returns them: since glibc 2.8 it releases every whole free page
of every arena, not only the top of the main heap (malloc_trim(3)).

Setting ``NEWSARCHIVE_MALLOC_TRIM_SECONDS`` (default 10; 0 turns it off). Not
configured where the C library has no ``malloc_trim`` (musl, macOS). Stats:
``newsarchive/memory/trims``, ``newsarchive/memory/trimmed_bytes`` (resident
bytes the calls gave back, from ``/proc/self/statm``) and
``newsarchive/memory/trim_seconds`` (time spent in the calls).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time

from scrapy import signals
from scrapy.exceptions import NotConfigured
from twisted.internet import task

logger = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def load_malloc_trim():
    """The C library's ``malloc_trim`` as a ctypes function ``(pad: size_t) -> int``,
    or None where there is none."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def resident_bytes() -> int | None:
    """This process's resident set in bytes (``/proc/self/statm``), or None off Linux."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def trim(malloc_trim) -> int:
    """Call ``malloc_trim(0)``; return the resident bytes it gave back (0 when
    unknown or none)."""
    before = resident_bytes()
    malloc_trim(0)
    after = resident_bytes()
    if before is None or after is None:
        return 0
    return max(0, before - after)


class MallocTrimExtension:
    """Scrapy extension: :func:`trim` every ``NEWSARCHIVE_MALLOC_TRIM_SECONDS`` on the
    reactor thread, from ``spider_opened`` to ``spider_closed`` (a 10,000-article
    crawl: 10 calls of 3.9 ms on average, giving back 21 MiB each). Raises
    NotConfigured when the interval is 0 or the C library has no ``malloc_trim``."""

    def __init__(self, crawler, interval: float, malloc_trim):
        self.crawler = crawler
        self.stats = crawler.stats
        self.interval = interval
        self.malloc_trim = malloc_trim
        self._loop: task.LoopingCall | None = None

    @classmethod
    def from_crawler(cls, crawler):
        interval = crawler.settings.getfloat("NEWSARCHIVE_MALLOC_TRIM_SECONDS", 10.0)
        if interval <= 0:
            raise NotConfigured("NEWSARCHIVE_MALLOC_TRIM_SECONDS is 0")
        fn = load_malloc_trim()
        if fn is None:
            raise NotConfigured("the C library has no malloc_trim")
        ext = cls(crawler, interval, fn)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def spider_opened(self, spider):
        self._loop = task.LoopingCall(self.tick)
        self._loop.start(self.interval, now=False)

    def tick(self) -> None:
        started = time.perf_counter()
        released = trim(self.malloc_trim)
        self.stats.inc_value("newsarchive/memory/trims")
        self.stats.inc_value("newsarchive/memory/trimmed_bytes", released)
        self.stats.inc_value("newsarchive/memory/trim_seconds", round(time.perf_counter() - started, 6))
        logger.debug("malloc_trim gave back %d bytes in %.1f ms", released, (time.perf_counter() - started) * 1000)

    def spider_closed(self, spider):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
