"""The item process: the crawl's item stages (clean, validate, dedup, record gate,
publish) in a child process of the crawl (``python -m crawler.item_process``).

Why: the crawl process's reactor thread is the crawl's bottleneck (it downloads,
runs the spider and hands every exchange to the WARC writer, on one core), and the
item stages were the largest part of what a full crawl adds to it (bench/ANALYSIS.md,
sessions 10 and 11). Here they run as a Scrapy crawl of their own whose spider
(:class:`ItemFeed`) yields the items the crawl process sends, so every stage keeps its
``from_crawler``, settings, stats, signals, CPU worker and close order unchanged, and
its results are the same. It is the warcprox shape again, as for the WARC writer.
The crawl's side is :class:`pipelines.offload.ItemProcessPipeline`.

Protocol: the crawl process writes frames (:mod:`crawler.frames`) to the child's
stdin: first the crawl's settings set above Scrapy's defaults (a dict), then
``("item", item)`` for each item, then EOF. The child writes to its stdout
``("ready",)`` once its stages are open (the state recovered: the crawl's spider may
start), ``("ack", n)`` as items finish their stages (the crawl's flow control),
``("close", reason)`` when a stage stops the run (e.g. ``run_already_published``),
and last ``("done", stats, peak_rss_kib)``.

Lifetime: the child ignores SIGINT and SIGTERM (the crawl decides when to stop: EOF on
stdin; its stages then close as they would in-process, landing the last batch) and is
killed with its parent (``PR_SET_PDEATHSIG``): a crawl killed mid-run leaves what it
had not published pending in the state, which the next run recovers and fetches
again, as with the stages in-process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import sys
import threading
from typing import Any, BinaryIO

import scrapy
from scrapy import signals

from crawler.frames import frame, read_frame
from crawler.report import record_error

logger = logging.getLogger(__name__)

__all__ = ["ItemFeed", "child_settings", "route_item_stages", "serve"]

#: The crawl-side pipeline that replaces the stages when they run in the item process.
OFFLOAD_PIPELINE = "pipelines.offload.ItemProcessPipeline"


def route_item_stages(settings, distributed: bool = False) -> bool:
    """Move the crawl's item stages (``ITEM_PIPELINES``) to the item process when
    ``NEWSARCHIVE_ITEM_PROCESS`` is on (default: on a machine with more than one CPU):
    ``NEWSARCHIVE_ITEM_STAGES`` gets them and ``ITEM_PIPELINES`` only the crawl-side
    :data:`OFFLOAD_PIPELINE`. Nothing moves without stages, or in a distributed crawl
    (``distributed``: its stages share the crawl process's Redis peers and manifest
    merger). Returns True when the stages moved. ``settings``: Scrapy ``Settings``."""
    wanted = settings.get("NEWSARCHIVE_ITEM_PROCESS")
    on = (os.cpu_count() or 1) > 1 if wanted in (None, "", "auto") else settings.getbool("NEWSARCHIVE_ITEM_PROCESS")
    stages = settings.getdict("ITEM_PIPELINES")
    if not on or distributed or not stages or OFFLOAD_PIPELINE in stages:
        return False
    settings.set("NEWSARCHIVE_ITEM_STAGES", stages, priority="cmdline")
    settings.set("ITEM_PIPELINES", {OFFLOAD_PIPELINE: 100}, priority="cmdline")
    return True


class ItemFeed(scrapy.Spider):
    """Yields the items read from ``inp`` (frames, see the module docstring) until EOF;
    sends ``ready`` on ``out`` once the item stages are open, and ``ack`` as items
    finish. Item errors are recorded as the crawl's spider records them
    (``newsarchive/errors/item_<Exception>``)."""

    name = "item_process"

    def __init__(self, inp: BinaryIO, out: BinaryIO, **kwargs: Any):
        super().__init__(**kwargs)
        self.inp = inp
        self.out = out
        self._finished = 0
        self._ack_due = False

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        for signal_ in (signals.item_scraped, signals.item_dropped):
            crawler.signals.connect(spider.on_item_done, signal_)
        crawler.signals.connect(spider.on_item_error, signals.item_error)
        crawler.signals.connect(spider.on_closed, signals.spider_closed)
        return spider

    def send(self, obj: Any) -> None:
        """Write one frame to the crawl process (reactor thread only)."""
        self.out.write(frame(obj))
        self.out.flush()

    def on_item_done(self, *args: Any, **kwargs: Any) -> None:
        self._finished += 1
        if not self._ack_due:
            # One ack a reactor turn for all the items finished in it.
            self._ack_due = True
            asyncio.get_running_loop().call_soon(self._ack)

    def _ack(self) -> None:
        self._ack_due = False
        n, self._finished = self._finished, 0
        if n:
            self.send(("ack", n))

    def on_item_error(self, item, response, spider, failure):
        record_error(self.crawler.stats, f"item_{failure.type.__name__}",
                     item.get("url") if hasattr(item, "get") else None)
        self.on_item_done()

    def on_closed(self, spider, reason):
        if reason != "finished":
            self.send(("close", reason))

    async def start(self):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def reader() -> None:
            # Blocking reads off the reactor thread; each frame is handed over to it.
            while True:
                obj = read_frame(self.inp)
                loop.call_soon_threadsafe(queue.put_nowait, obj)
                if obj is None:
                    return

        threading.Thread(target=reader, name="item-feed", daemon=True).start()
        self.send(("ready",))
        while (obj := await queue.get()) is not None:
            yield obj[1]


def child_settings(crawl: dict) -> dict:
    """The item process's settings: the crawl's (a dict), with the stages of
    ``NEWSARCHIVE_ITEM_STAGES`` as its pipelines, and no downloads, spider or
    downloader middlewares, WARC capture, extensions but core stats, or stats dump (the
    crawl process dumps the merged stats)."""
    out = dict(crawl)
    out.update({
        "ITEM_PIPELINES": crawl.get("NEWSARCHIVE_ITEM_STAGES") or {},
        "NEWSARCHIVE_ITEM_PROCESS": False,
        "WARC_ENABLED": False,
        "EXTENSIONS": {},
        "EXTENSIONS_BASE": {"scrapy.extensions.corestats.CoreStats": 0},
        "DOWNLOADER_MIDDLEWARES": {},
        "DOWNLOADER_MIDDLEWARES_BASE": {},
        "SPIDER_MIDDLEWARES": {},
        "SPIDER_MIDDLEWARES_BASE": {},
        "STATS_DUMP": False,
        "LOG_FILE_APPEND": True,
        "LOG_FORMAT": "%(asctime)s [item process] [%(name)s] %(levelname)s: %(message)s",
        "TELNETCONSOLE_ENABLED": False,
        "CLOSESPIDER_TIMEOUT": 0, "CLOSESPIDER_ITEMCOUNT": 0, "CLOSESPIDER_PAGECOUNT": 0,
        "CLOSESPIDER_ERRORCOUNT": 0,
    })
    return out


#: The item process's own Scrapy bookkeeping, not merged into the crawl's stats.
OWN_STATS = ("start_time", "finish_time", "finish_reason", "elapsed_time_seconds", "item_scraped_count",
             "memusage/", "scheduler/", "response_received_count")


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Run the item stages over the items of ``inp`` (see the module docstring)."""
    from scrapy.crawler import CrawlerProcess
    from scrapy.settings import Settings

    from crawler.logsafe import protect_log

    crawl = read_frame(inp)
    if crawl is None:
        return
    settings = Settings()
    settings.setdict(child_settings(crawl), priority="cmdline")
    process = CrawlerProcess(settings)
    protect_log()
    crawler = process.create_crawler(ItemFeed)
    process.crawl(crawler, inp=inp, out=out)
    process.start(install_signal_handlers=False)
    stats = {k: v for k, v in crawler.stats.get_stats().items() if not k.startswith(OWN_STATS)}
    out.write(frame(("done", stats, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
    out.flush()


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: EOF on stdin still ends the child
        pass
    if os.getppid() != parent:  # the parent died before the call above
        os._exit(1)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if len(sys.argv) > 1:
        _die_with_parent(int(sys.argv[1]))
    # Frames go out on the original stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
