"""Scheduling priority of the crawl's helper processes (the CPU worker, the WARC writer).

The crawl process's reactor thread is the crawl's bottleneck: it downloads, runs the
spider and carries every item, on one core, while its helpers work through queues
that can wait. When the helpers and the reactor want the same core, the kernel's
fair scheduler makes the reactor wait its turn (measured on a 3,000-article crawl:
0.66 ms of run-queue wait a page, /proc/<pid>/task/<tid>/schedstat, bench/ANALYSIS.md).
A higher nice value for the helpers lets the reactor go first; a helper still gets
any core the reactor leaves idle, so nothing starves on a machine that is not
overloaded. See setpriority(2) and sched(7) ("nice value").
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

__all__ = ["lower_priority"]


def lower_priority(pid: int, increment: int) -> bool:
    """Raise process ``pid``'s nice value by ``increment`` (capped by the kernel at 19).

    Returns True if the priority changed; False when ``increment`` <= 0 or the call is
    refused (no ``os.setpriority`` on this platform, the process is gone, or not
    permitted). A refusal is logged at DEBUG and never raised: priority is a speed
    matter, never a result.
    """
    if increment <= 0:
        return False
    try:
        current = os.getpriority(os.PRIO_PROCESS, pid)
        os.setpriority(os.PRIO_PROCESS, pid, min(19, current + increment))
    except (AttributeError, OSError) as exc:
        logger.debug("cannot lower the priority of process %s: %s", pid, exc)
        return False
    return True
