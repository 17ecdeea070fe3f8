"""Worker processes for the crawl's pure, CPU-bound steps.

A crawl is one Python process, and its Python code takes turns on one core (the
GIL): the reactor thread (Scrapy, the spider, the item pipelines) and its helper
threads slow each other down while the machine's other cores idle. Steps that are
pure functions of their arguments — the MinHash signature of an article
(pipelines/dedup.py), the validate stage's schema check (pipelines/validate.py), the
outlinks of a page for its WARC ``metadata`` record when the WARC writer runs on a
thread (crawler/middlewares/warc_capture.py), a dataset batch's files
(pipelines/publish.py) — run in a worker process (:mod:`crawler.cpu_worker`), and
the crawl process only pickles arguments and results (bench/ANALYSIS.md has the
measurements). The WARC writer has a process of its own (:mod:`crawler.warc.sink`),
and so do the item stages (:mod:`crawler.item_process`, with a pool of its own).

The workers are child processes of the reactor (``reactor.spawnProcess``) that
speak length-prefixed pickles over their stdin/stdout: no helper threads and no
``multiprocessing`` machinery on the crawl's side (``ProcessPoolExecutor``'s manager
and feeder threads cost the reactor more than the steps it took away, measured), and
no re-import of the caller's ``__main__``.

Setting ``NEWSARCHIVE_CPU_WORKERS``: number of worker processes; default 1 on a
machine with more than one CPU, else 0. With 0 every step runs in-process, as
before; the results are the same either way (each step is a pure function).
``NEWSARCHIVE_HELPER_NICE`` (default 10): added to the workers' nice value, so the
reactor thread does not wait behind them for a core (:mod:`crawler.priority`).

Workers start with the engine (or on first use) and ignore SIGINT/SIGTERM; they
exit when the crawl closes their stdin (engine stopped) or dies. If a worker dies,
its unanswered steps are run in-process, the run goes on without workers, and
``newsarchive/cpu_pool/broken`` is counted: a worker costs speed, never a result.

Waiting for a worker reorders items (and responses): only stages whose outcome does
not depend on order use it. Nothing between dedup and publish may (see
:class:`pipelines.validate.RecordGatePipeline`).
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

from scrapy import signals
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from crawler.frames import FrameReader, frame
from crawler.priority import lower_priority

logger = logging.getLogger(__name__)

__all__ = ["CpuPool", "default_workers"]

def default_workers() -> int:
    """1 worker process when the machine has more than one CPU, else 0 (in-process)."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


class _Worker(ProcessProtocol):
    """One worker process: frames out on its stdin, replies parsed from its stdout."""

    def __init__(self, pool: "CpuPool"):
        self.pool = pool
        self.pending: dict[int, tuple[Deferred, str, tuple]] = {}
        self._frames = FrameReader()
        self.ended = False

    def send(self, task_id: int, step: str, args: tuple, d: Deferred) -> None:
        self.pending[task_id] = (d, step, args)
        self.transport.write(frame((task_id, step, args)))

    def outReceived(self, data: bytes) -> None:
        for task_id, ok, value in self._frames.feed(data):
            d, _step, _args = self.pending.pop(task_id)
            if ok:
                d.callback(value)
            else:
                d.errback(value)

    def processEnded(self, reason: Any) -> None:
        self.ended = True
        self.pool._worker_ended(self, reason)


class CpuPool:
    """Runs the steps of :data:`crawler.cpu_worker.STEPS` in worker processes (or
    in-process with ``workers=0``), awaited on the reactor thread.

    Exceptions raised by a step are raised to the caller unchanged. Use
    :meth:`for_crawler` in components: one pool per crawler, closed when its engine
    stops.

    Raises:
        ValueError: ``workers`` < 0.
    """

    def __init__(self, workers: int, stats: Any = None, nice: int = 0):
        if workers < 0:
            raise ValueError(f"NEWSARCHIVE_CPU_WORKERS must be >= 0, got {workers}")
        self.workers = workers
        self.stats = stats
        self.nice = nice
        self._procs: list[_Worker] = []
        self._ids = itertools.count()
        self._closed = False
        self._local: dict[str, Callable[..., Any]] | None = None

    @classmethod
    def for_crawler(cls, crawler: Any) -> "CpuPool":
        """The crawler's pool, made on the first call (``NEWSARCHIVE_CPU_WORKERS``)."""
        pool = getattr(crawler, "newsarchive_cpu_pool", None)
        if pool is None:
            workers = crawler.settings.getint("NEWSARCHIVE_CPU_WORKERS", default_workers())
            pool = cls(workers, crawler.stats, crawler.settings.getint("NEWSARCHIVE_HELPER_NICE", 10))
            crawler.newsarchive_cpu_pool = pool
            if workers:
                # Started with the engine, not at first use: the worker's imports (numpy,
                # datasketch, the schema) then overlap robots.txt and the first
                # downloads instead of holding up the first article.
                crawler.signals.connect(pool.start, signal=signals.engine_started)
                crawler.signals.connect(pool.close, signal=signals.engine_stopped)
        return pool

    # ------------------------------------------------------------------ steps
    def run_here(self, step: str, *args: Any) -> Any:
        """``step(*args)`` in this process."""
        if self._local is None:
            from crawler.cpu_worker import _steps

            self._local = _steps()
        return self._local[step](*args)

    async def run(self, step: str, *args: Any) -> Any:
        """``step(*args)`` in a worker process (the least busy), awaited."""
        d = self.submit(step, *args)
        if d is None:
            return self.run_here(step, *args)
        return await maybe_deferred_to_future(d)

    def submit(self, step: str, *args: Any) -> Deferred | None:
        """``step(*args)`` sent to a worker process: a Deferred of its result (fired on
        the reactor thread), or None when no worker runs (no reactor, no workers, pool
        closed), and the caller runs the step itself."""
        worker = self._worker()
        if worker is None:
            return None
        d: Deferred = Deferred()
        worker.send(next(self._ids), step, args, d)
        return d

    # ---------------------------------------------------------------- workers
    def start(self) -> None:
        """Start every worker process now (they start on first use otherwise); does
        nothing without a running reactor, with 0 workers or once closed."""
        while len(self._procs) < self.workers and self._worker() is not None:
            pass

    def _worker(self) -> _Worker | None:
        if self._closed or not self.workers:
            return None
        from twisted.internet import reactor

        if not reactor.running:  # type: ignore[attr-defined]
            return None  # no reactor to hear the worker (a component driven by hand)
        if len(self._procs) < self.workers:
            try:
                self._procs.append(self._spawn())
            except OSError as exc:  # fork failed (memory, process limit): carry on in-process
                self._broken_at_start(exc)
                return None
        return min(self._procs, key=lambda w: len(w.pending))

    def _spawn(self) -> _Worker:
        from twisted.internet import reactor

        worker = _Worker(self)
        env = dict(os.environ)
        # The worker imports this package the way this process did, installed or not.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            worker, sys.executable, [sys.executable, "-m", "crawler.cpu_worker"], env=env,
            childFDs={0: "w", 1: "r", 2: 2},
        )
        lower_priority(transport.pid, self.nice)
        return worker

    def _broken_at_start(self, exc: OSError) -> None:
        self.workers = 0
        logger.error("cannot start a CPU worker process (%s); running those steps in-process", exc)
        if self.stats is not None:
            self.stats.inc_value("newsarchive/cpu_pool/broken")
        for worker in self._procs:
            if worker.transport is not None:
                worker.transport.closeStdin()

    def _worker_ended(self, worker: _Worker, reason: Any) -> None:
        if worker in self._procs:
            self._procs.remove(worker)
        pending, worker.pending = worker.pending, {}
        if not self._closed or pending:
            self.workers = 0
            logger.error("CPU worker process ended (%s); running those steps in-process from now on",
                         getattr(reason, "value", reason))
            if self.stats is not None:
                self.stats.inc_value("newsarchive/cpu_pool/broken")
        for d, step, args in pending.values():
            try:
                value = self.run_here(step, *args)
            except Exception as exc:
                d.errback(exc)
            else:
                d.callback(value)

    def close(self) -> None:
        """Close the workers' stdin (they exit); later steps run in-process. Idempotent."""
        self._closed = True
        for worker in self._procs:
            if not worker.ended and worker.transport is not None:
                worker.transport.closeStdin()
