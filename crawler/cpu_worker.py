"""The CPU worker process (``python -m crawler.cpu_worker``), driven by
:class:`crawler.cpu_pool.CpuPool`.

It runs only the pure steps named in :data:`STEPS`. Frames on stdin and stdout are a
4-byte big-endian length and a pickle: ``(task_id, step, args)`` in,
``(task_id, ok, result_or_exception)`` out. Pickles come only from the crawl process
that started this one, over its own pipe. EOF on stdin (the crawl ended or died)
ends the worker; SIGINT and SIGTERM are ignored (the crawl process decides when
to stop, then closes the pipe).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, BinaryIO, Callable

from crawler.frames import frame, read_frame

def _build_batch(*args: Any) -> Any:
    # pyarrow is imported on the first batch, not when the worker starts.
    from crawler.dataset.batches import build_batch

    return build_batch(*args)


def validate_and_sign(record: dict, shingle_size: int, num_perm: int) -> tuple[list, bytes | None]:
    """The validate stage's check of ``record`` and, when it passes, the MinHash
    signature of its title, lead and body (:func:`crawler.neardup.signature_bytes`):
    ``(violations, signature bytes or None)``. One worker round trip for an article
    instead of two (the text crosses the pipe once; bench/ANALYSIS.md)."""
    from crawler.neardup import signature_bytes
    from crawler.schema import validate_stage

    violations = validate_stage(record)
    if violations:
        return violations, None
    return violations, signature_bytes(record.get("title"), record.get("lead"), record.get("body"),
                                       shingle_size, num_perm)


def _steps() -> dict[str, Callable[..., Any]]:
    from crawler.neardup import signature_bytes
    from crawler.schema import validate_stage
    from crawler.warc.outlinks import outlink_fields

    # The record gate's full check is not here on purpose: nothing between dedup and
    # publish may wait (pipelines/validate.py, RecordGatePipeline).
    return {
        "signature": signature_bytes,
        "outlinks": outlink_fields,
        "validate_stage": validate_stage,
        "validate_and_sign": validate_and_sign,
        "build_batch": _build_batch,
    }


#: Step names the crawl may ask for (the same names :class:`CpuPool` runs in-process).
STEPS = ("signature", "outlinks", "validate_stage", "validate_and_sign", "build_batch")


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Answer frames from ``inp`` on ``out`` until EOF."""
    steps = _steps()
    while True:
        request = read_frame(inp)
        if request is None:
            return
        task_id, step, args = request
        try:
            reply = (task_id, True, steps[step](*args))
        except Exception as exc:  # returned to the caller, who raises it
            reply = (task_id, False, exc)
        try:
            data = frame(reply)
        except Exception as exc:  # an unpicklable exception: send its text
            data = frame((task_id, False, RuntimeError(repr(exc))))
        out.write(data)
        out.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Frames go out on the original stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
