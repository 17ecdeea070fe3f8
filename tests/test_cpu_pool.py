"""The crawl's worker processes for pure CPU-bound steps (crawler/cpu_pool.py): results
equal the in-process ones, step errors reach the caller, and a worker that dies costs
speed but no result. Runs a scenario under Scrapy's asyncio reactor in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crawler.cpu_pool import CpuPool

ROOT = Path(__file__).resolve().parents[1]

SCENARIO = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    from scrapy.utils.reactor import install_reactor
    install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    from twisted.internet import reactor, task
    from scrapy.utils.defer import deferred_from_coro
    from scrapy.utils.test import get_crawler

    from crawler.cpu_pool import CpuPool
    from crawler.neardup import NearDuplicateIndex, signature_bytes
    from crawler.schema import validate_stage
    from crawler.warc.outlinks import outlink_fields

    BODY = ["Sáng 17/10, Hội Nông dân tỉnh Tuyên Quang tổ chức hội nghị.", "Đồng chí Chủ tịch phát biểu."]
    HTML = b'<html><body><a href="/chinh-tri/">x</a><img src="https://cdn.test/a.jpg"></body></html>'
    OUT_ARGS = ("https://baotuyenquang.com.vn/a.html", "text/html", HTML, [], None)

    async def scenario():
        out = {}
        crawler = get_crawler(settings_dict={"NEWSARCHIVE_CPU_WORKERS": 1})
        pool = CpuPool.for_crawler(crawler)
        idx = NearDuplicateIndex()
        sig = await pool.run("signature", "Tiêu đề", "Sapo", BODY, idx.shingle_size, idx.num_perm)
        out["worker_pid_differs"] = pool._procs[0].transport.pid != os.getpid()
        # NEWSARCHIVE_HELPER_NICE (default 10): the worker queues behind the reactor.
        out["worker_nicer_by"] = os.getpriority(os.PRIO_PROCESS, pool._procs[0].transport.pid) - os.getpriority(os.PRIO_PROCESS, 0)
        level = CpuPool.for_crawler(get_crawler(settings_dict={"NEWSARCHIVE_CPU_WORKERS": 1, "NEWSARCHIVE_HELPER_NICE": 0}))
        await level.run("validate_stage", {})
        out["level_nicer_by"] = os.getpriority(os.PRIO_PROCESS, level._procs[0].transport.pid) - os.getpriority(os.PRIO_PROCESS, 0)
        level.close()
        out["signature_equal"] = sig == signature_bytes("Tiêu đề", "Sapo", BODY, idx.shingle_size, idx.num_perm)
        out["signature_len"] = len(sig)
        out["outlinks"] = await pool.run("outlinks", *OUT_ARGS)
        out["outlinks_equal"] = out["outlinks"] == outlink_fields(*OUT_ARGS)
        violations = await pool.run("validate_stage", {"title": ""})
        out["violations_equal"] = violations == validate_stage({"title": ""}) and bool(violations)
        try:
            await pool.run("signature", "t", "l", 123, 5, 128)
        except TypeError as exc:
            out["error"] = "TypeError"
        # Kill the worker with steps in flight: they are answered in-process.
        pending = [asyncio.ensure_future(pool.run("signature", "t", "l", [f"đoạn {i} " * 50], 5, 128)) for i in range(20)]
        await asyncio.sleep(0)  # every step sent
        os.kill(pool._procs[0].transport.pid, signal.SIGKILL)
        results = []
        for d in pending:
            results.append(await d)
        out["after_kill_equal"] = results == [signature_bytes("t", "l", [f"đoạn {i} " * 50], 5, 128) for i in range(20)]
        out["broken"] = crawler.stats.get_value("newsarchive/cpu_pool/broken")
        out["workers_after_kill"] = pool.workers
        # Started with the engine (engine_started), before any step is asked for.
        from scrapy import signals
        crawler5 = get_crawler(settings_dict={"NEWSARCHIVE_CPU_WORKERS": 1})
        pool5 = CpuPool.for_crawler(crawler5)
        out["procs_before_engine"] = len(pool5._procs)
        crawler5.signals.send_catch_log(signals.engine_started)
        out["procs_after_engine"] = len(pool5._procs)
        pool5.start()  # idempotent
        out["procs_after_start_again"] = len(pool5._procs)
        pool5.close()
        # A fresh pool, closed: steps run in-process, no worker started.
        pool2 = CpuPool(1)
        await pool2.run("signature", "a", "b", ["c"], 5, 128)
        pool2.close()
        out["closed_runs_here"] = (await pool2.run("validate_stage", {})) == validate_stage({})
        # A worker that cannot be started (fork fails): the step runs here, counted.
        crawler3 = get_crawler(settings_dict={"NEWSARCHIVE_CPU_WORKERS": 1})
        pool3 = CpuPool.for_crawler(crawler3)
        def no_fork():
            raise OSError(12, "Cannot allocate memory")
        pool3._spawn = no_fork
        out["no_fork_runs_here"] = (await pool3.run("validate_stage", {})) == validate_stage({})
        out["no_fork_broken"] = (pool3.workers, crawler3.stats.get_value("newsarchive/cpu_pool/broken"))
        print(json.dumps(out))

    task.react(lambda _reactor: deferred_from_coro(scenario()))
    """
)


def test_worker_steps_equal_in_process_steps_and_survive_a_dead_worker(tmp_path):
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "worker_pid_differs": True,
        "worker_nicer_by": min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10) - os.getpriority(os.PRIO_PROCESS, 0),
        "level_nicer_by": 0,
        "signature_equal": True,
        "signature_len": 8 * 128,
        "outlinks": {"outlink": ["https://baotuyenquang.com.vn/chinh-tri/ L a/@href", "https://cdn.test/a.jpg E img/@src"]},
        "outlinks_equal": True,
        "violations_equal": True,
        "error": "TypeError",
        "after_kill_equal": True,
        "broken": 1,
        "workers_after_kill": 0,
        "procs_before_engine": 0,
        "procs_after_engine": 1,
        "procs_after_start_again": 1,
        "closed_runs_here": True,
        "no_fork_runs_here": True,
        "no_fork_broken": [0, 1],
    }
    assert "CPU worker process ended" in proc.stderr


def test_the_worker_offers_exactly_the_listed_steps():
    from crawler.cpu_worker import STEPS, _steps

    assert tuple(_steps()) == STEPS


def test_worker_count_setting():
    assert CpuPool(0).workers == 0
    with pytest.raises(ValueError):
        CpuPool(-1)


def test_lower_priority_raises_the_nice_value_and_never_raises():
    from crawler.priority import lower_priority

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        base = os.getpriority(os.PRIO_PROCESS, child.pid)
        assert lower_priority(child.pid, 3) is True
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, base + 3)
        assert lower_priority(child.pid, 50) is True  # capped by the kernel's maximum
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19
        assert lower_priority(child.pid, 0) is False
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19
    finally:
        child.kill()
        child.wait()
    assert lower_priority(child.pid, 5) is False  # gone (reaped): refused, not raised
