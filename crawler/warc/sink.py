"""The WARC writer process: a crawl's :class:`~crawler.warc.session.CaptureSession`
in a child process of the reactor (``python -m crawler.warc.sink``).

Why a process: building records (warcio), the payload digest, compressing, the
digest index (SQLite) and listing outlinks are Python work that held the crawl
process's GIL for about a sixth of its time, and handing each exchange to a writer
thread and back cost as much again (bench/ANALYSIS.md). In a process of its own the
writer uses the machine's other core, and a rollover's ``fsync`` never stalls the
crawl. It is the warcprox shape: the writer apart from the crawler.

Protocol (stdin → child, child → stdout): frames of a 4-byte big-endian length and a
pickle. In: ``(call_id, op, args)`` with ``op`` one of ``open`` (a
:class:`~crawler.warc.session.SessionConfig`), ``write`` (``kwargs, context``),
``has_url`` (``url``), ``close``. Out: ``(call_id, ok, value_or_exception,
closed_paths)``, answered in order; ``closed_paths`` are the files closed (renamed
and committed to the index) while answering. Pickles come only from the crawl
process that started the child, over its own pipe.

Lifetime: the child ignores SIGINT and SIGTERM (the crawl decides when to stop:
``close``, then EOF on stdin ends it) and is killed with its parent
(``PR_SET_PDEATHSIG``): a crawl killed mid-write leaves its ``.open`` file to
:func:`~crawler.warc.writer.recover_open_files`, as a writer thread would.

If the child dies, every unanswered and later call raises :class:`WarcSinkError`;
the middleware stops the crawl (finish reason ``warc_writer_failed``).
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, BinaryIO, Callable

from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from crawler.frames import FrameReader, frame, read_frame
from crawler.priority import lower_priority

__all__ = ["WarcSink", "WarcSinkError", "serve"]

_PR_SET_PDEATHSIG = 1


class WarcSinkError(RuntimeError):
    """The WARC writer process is gone (or never started): nothing more can be archived."""


class WarcSink(ProcessProtocol):
    """The crawl's side of the WARC writer process.

    Use :meth:`start` (reactor running), then ``await call(op, *args)``; results
    and exceptions are the :class:`~crawler.warc.session.CaptureSession` method's
    own. ``on_closed(paths)`` runs on the reactor thread, before the reply of the
    call during which the files were closed is delivered.
    """

    def __init__(self, on_closed: Callable[[list[Path]], None]):
        self.on_closed = on_closed
        self.pending: dict[int, Deferred] = {}
        self._ids = itertools.count()
        self._frames = FrameReader()
        self.failure: WarcSinkError | None = None
        self._ended: Deferred = Deferred()

    @classmethod
    def start(cls, config: Any, on_closed: Callable[[list[Path]], None], nice: int = 0) -> "WarcSink":
        """Spawn the process, add ``nice`` to its nice value (:mod:`crawler.priority`)
        and send it ``config`` (a ``SessionConfig``).

        Raises:
            OSError: the process could not be started.
        """
        from twisted.internet import reactor

        sink = cls(on_closed)
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            sink, sys.executable, [sys.executable, "-m", "crawler.warc.sink", str(os.getpid())], env=env,
            childFDs={0: "w", 1: "r", 2: 2},
        )
        lower_priority(transport.pid, nice)
        sink._send("open", (config,))
        return sink

    def _send(self, op: str, args: tuple) -> Deferred:
        d: Deferred = Deferred()
        if self.failure is not None:
            d.errback(self.failure)
            return d
        call_id = next(self._ids)
        self.pending[call_id] = d
        self.transport.write(frame((call_id, op, args)))
        return d

    async def call(self, op: str, *args: Any) -> Any:
        """``CaptureSession.<op>(*args)`` in the process, awaited.

        Raises:
            WarcSinkError: the process is gone.
            Exception: whatever the session method raised (``OSError`` with its errno).
        """
        return await maybe_deferred_to_future(self._send(op, args))

    # ------------------------------------------------------------ protocol
    def outReceived(self, data: bytes) -> None:
        for call_id, ok, value, closed in self._frames.feed(data):
            if closed:
                self.on_closed(closed)
            d = self.pending.pop(call_id)
            if ok:
                d.callback(value)
            else:
                d.errback(value)

    def processEnded(self, reason: Any) -> None:
        if self.failure is None:
            self.failure = WarcSinkError(f"the WARC writer process ended: {getattr(reason, 'value', reason)}")
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.errback(self.failure)
        self._ended.callback(None)

    async def stop(self) -> None:
        """Close the process's stdin (it exits) and wait until it has."""
        if self.failure is None:
            self.failure = WarcSinkError("the WARC writer process was stopped")
            self.transport.closeStdin()
        await maybe_deferred_to_future(self._ended)


# ------------------------------------------------------------------ child
def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Answer frames from ``inp`` on ``out`` until EOF (see the module docstring)."""
    from crawler.warc.session import CaptureSession

    session: CaptureSession | None = None
    try:
        while True:
            request = read_frame(inp)
            if request is None:
                return
            call_id, op, args = request
            try:
                if op == "open":
                    session = CaptureSession(*args)
                    value: Any = None
                elif session is None:
                    raise WarcSinkError("the WARC writer process has no session (its 'open' failed)")
                elif op in ("write", "close", "has_url"):
                    value = getattr(session, op)(*args)
                else:
                    raise ValueError(f"unknown WARC writer call {op!r}")
                reply = (call_id, True, value)
            except Exception as exc:  # returned to the caller, who raises it
                reply = (call_id, False, exc)
            closed = session.take_closed() if session is not None else []
            try:
                data = frame((*reply, closed))
            except Exception:  # an unpicklable exception: send its text
                data = frame((call_id, False, RuntimeError(repr(reply[2])), closed))
            out.write(data)
            out.flush()
    finally:
        if session is not None:
            session.shutdown()


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: EOF on stdin still ends the child
        pass
    if os.getppid() != parent:  # the parent died before the call above
        os._exit(1)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if len(sys.argv) > 1:
        _die_with_parent(int(sys.argv[1]))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s [%(name)s] %(levelname)s: %(message)s (WARC writer process)")
    # Frames go out on the original stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
