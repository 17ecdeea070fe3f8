"""The crawl's side of the item process (:mod:`crawler.item_process`): one item
pipeline that hands every item to the child running the item stages, holds the crawl
back when the child falls behind, and merges the child's stats into the crawl's.

The state stays open in the crawl process too (``crawler.newsarchive_state``, a
second connection), for the spider's incremental decisions and the page recorder;
the child recovers it (:meth:`crawler.state.State.recover`) before it answers
``ready``, and the crawl's spider starts only after that (``open_spider`` waits).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from scrapy.exceptions import NotConfigured
from scrapy.settings import SETTINGS_PRIORITIES
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from crawler.frames import FrameReader, frame
from crawler.priority import lower_priority
from crawler.state import open_state

logger = logging.getLogger(__name__)

__all__ = ["ItemProcessError", "ItemProcessPipeline", "merge_stats"]


class ItemProcessError(RuntimeError):
    """The item process could not open its stages, or ended before it reported."""


def merge_stats(stats, child: dict) -> None:
    """Add the item process's ``child`` stats to the crawl's ``stats`` (a Scrapy
    StatsCollector): numbers are added, lists joined (repeats dropped), anything else
    set when the crawl has no value of its own."""
    for key, value in child.items():
        mine = stats.get_value(key)
        if mine is None:
            stats.set_value(key, value)
        elif isinstance(value, (int, float)) and isinstance(mine, (int, float)) and not isinstance(value, bool):
            stats.set_value(key, mine + value)
        elif isinstance(value, list) and isinstance(mine, list):
            stats.set_value(key, mine + [v for v in value if v not in mine])


def non_default_settings(settings) -> dict:
    """The settings of ``settings`` (Scrapy Settings) set above Scrapy's defaults
    (project, spider, command line), as a plain dict for the item process. Scrapy's
    own defaults stay out: the item process has them already, and setting a deprecated
    one again (RANDOMIZE_DOWNLOAD_DELAY, DNS_RESOLVER) would log a deprecation
    warning there."""
    default = SETTINGS_PRIORITIES["default"]
    return {k: v for k, v in settings.copy_to_dict().items() if (settings.getpriority(k) or 0) > default}


class _Child(ProcessProtocol):
    """The item process, seen from the crawl's reactor: frames in, events out."""

    def __init__(self, pipeline: "ItemProcessPipeline"):
        self.pipeline = pipeline
        self.frames = FrameReader()
        self.ready: Deferred = Deferred()
        self.done: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        for message in self.frames.feed(data):
            kind = message[0]
            if kind == "ack":
                self.pipeline.acked(message[1])
            elif kind == "ready":
                self.ready.callback(None)
            elif kind == "close":
                self.pipeline.close_requested(message[1])
            elif kind == "done":
                if not self.ready.called:
                    if self.pipeline.close_reason is None:
                        self.ready.errback(ItemProcessError("the item process could not open the item stages"))
                    else:  # a stage stopped the run as it opened (run_already_published)
                        self.ready.callback(None)
                self.done.callback(message[1:])

    def processEnded(self, reason: Any) -> None:
        error = ItemProcessError(f"the item process ended before its report: {getattr(reason, 'value', reason)}")
        if not self.ready.called:
            self.ready.errback(error)
        if not self.done.called:
            self.pipeline.child_failed(error)
            self.done.errback(error)


class ItemProcessPipeline:
    """Item pipeline: every item goes to the item process, and on, unchanged, to
    ``item_scraped``. When ``backlog`` items are with the child and unfinished,
    ``process_item`` waits (awaitable) until half of them are done, so the crawl never
    runs ahead of its stages by more than that (Scrapy's scraper then holds back the
    downloads).

    Settings: ``NEWSARCHIVE_ITEM_STAGES`` (the child's ``ITEM_PIPELINES``; none:
    NotConfigured), ``NEWSARCHIVE_ITEM_PROCESS_BACKLOG`` (default 200 items),
    ``NEWSARCHIVE_HELPER_NICE``, and the state's (``NEWSARCHIVE_STATE_URL``,
    ``NEWSARCHIVE_STATE_DIR``). Stats: the child's (merged at close),
    ``newsarchive/item_process/peak_rss_kib``; when the child dies mid-run the crawl is
    closed with finish reason ``item_process_failed``, ``newsarchive/item_process/failed``
    is set (the run report's ``errors.item_process_failed``: exit code 1) and later items in
    ``newsarchive/item_process/items_not_processed`` (their pages stay pending in the
    state: the next run fetches them again).

    Raises :class:`ItemProcessError` from ``open_spider`` when the child cannot open
    its stages (the crawl does not start) and from ``close_spider`` when it ended
    without its report."""

    def __init__(self, crawler, backlog: int = 200, nice: int = 0):
        if backlog < 1:
            raise ValueError(f"NEWSARCHIVE_ITEM_PROCESS_BACKLOG must be >= 1, got {backlog}")
        self.crawler = crawler
        self.stats = crawler.stats
        self.backlog = backlog
        self.nice = nice
        self.child: _Child | None = None
        self.failed = False
        #: Why the item process closed its run early (a stage asked), if it did.
        self.close_reason: str | None = None
        self.in_flight = 0
        self._waiters: list[Deferred] = []
        s = crawler.settings
        self.state = open_state(s.get("NEWSARCHIVE_STATE_URL") or None, Path(s.get("NEWSARCHIVE_STATE_DIR", "state")),
                                s.get("NEWSARCHIVE_WORKER_ID") or None)
        crawler.newsarchive_state = self.state

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        if not s.getdict("NEWSARCHIVE_ITEM_STAGES"):
            raise NotConfigured("no item stages to run (NEWSARCHIVE_ITEM_STAGES)")
        return cls(crawler, s.getint("NEWSARCHIVE_ITEM_PROCESS_BACKLOG", 200), s.getint("NEWSARCHIVE_HELPER_NICE", 10))

    async def open_spider(self):
        from twisted.internet import reactor

        child = self.child = _Child(self)
        env = dict(os.environ)
        # The child imports this package the way this process did, installed or not.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            child, sys.executable, [sys.executable, "-m", "crawler.item_process", str(os.getpid())], env=env,
            childFDs={0: "w", 1: "r", 2: 2},
        )
        lower_priority(transport.pid, self.nice)
        transport.write(frame(non_default_settings(self.crawler.settings)))
        await maybe_deferred_to_future(child.ready)

    def process_item(self, item):
        if self.failed or self.child.done.called:
            self.stats.inc_value("newsarchive/item_process/items_not_processed")
            return item
        self.child.transport.write(frame(("item", item)))
        self.in_flight += 1
        if self.in_flight < self.backlog:
            return item
        return self._after_room(item)

    async def _after_room(self, item):
        d: Deferred = Deferred()
        self._waiters.append(d)
        await maybe_deferred_to_future(d)
        return item

    def acked(self, n: int) -> None:
        self.in_flight -= n
        if self._waiters and self.in_flight <= self.backlog // 2:
            self._release()

    def _release(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def close_requested(self, reason: str) -> None:
        """A stage closed the item process's run (e.g. ``run_already_published``):
        close the crawl with the same reason (on the next reactor turn: the crawl may
        still be opening)."""
        from twisted.internet import reactor

        if self.close_reason is None:
            self.close_reason = reason

        def close() -> None:
            engine = self.crawler.engine
            if engine is not None and engine.spider is not None:
                deferred_from_coro(engine.close_spider_async(reason=reason))

        reactor.callLater(0, close)

    def child_failed(self, error: ItemProcessError) -> None:
        self.failed = True
        logger.error("%s; stopping the crawl (what it had not published is fetched again by the next run)", error)
        self.stats.set_value("newsarchive/item_process/failed", 1)
        self._release()
        self.close_requested("item_process_failed")

    async def close_spider(self):
        try:
            if self.child is None:
                return
            if self.failed:
                self.child.done.addErrback(lambda _: None)  # reported by child_failed
                return
            self.child.transport.closeStdin()
            stats, peak_rss_kib = await maybe_deferred_to_future(self.child.done)
            merge_stats(self.stats, stats)
            self.stats.set_value("newsarchive/item_process/peak_rss_kib", peak_rss_kib)
        finally:
            self.state.close()
