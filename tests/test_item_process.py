"""The item stages in a process of their own (crawler/item_process.py,
pipelines/offload.py): the same records as in-process, the crawl's stats and report
from both processes, and what a dead item process or a killed crawl leaves."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from scrapy.settings import Settings
from scrapy.statscollectors import MemoryStatsCollector

from crawler.item_process import OFFLOAD_PIPELINE, child_settings, route_item_stages
from pipelines.offload import merge_stats
from tests.conftest import crawl_until, load_expected, read_jsonl_gz, run_newsarchive

EXPECTED = load_expected()
FAST = ["-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=INFO"]
#: Fields that differ between two crawls of the same pages.
PER_RUN = ("run_id", "fetched_at", "warc")
STAGES = {"pipelines.clean.CleanPipeline": 100, "pipelines.publish.PublishPipeline": 900}


def records(store: Path, folder: str = "dataset") -> list[dict]:
    out = []
    for path in sorted((store / folder).rglob("*.jsonl.gz")):
        out.extend(read_jsonl_gz(path.read_bytes()))
    return out


def item_process_of(pid: int, timeout: float = 30) -> int:
    """The pid of crawl ``pid``'s item process (waits for it to start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"crawler.item_process" in cmdline:
                return int(child)
        time.sleep(0.05)
    raise AssertionError(f"no item process under {pid}")


def gone(pid: int, timeout: float = 15) -> bool:
    """True once ``pid`` has exited (reaped or a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------ settings
def test_stages_move_to_the_item_process_when_it_is_on():
    s = Settings({"ITEM_PIPELINES": STAGES, "NEWSARCHIVE_ITEM_PROCESS": "True"})
    assert route_item_stages(s) is True
    assert s.getdict("ITEM_PIPELINES") == {OFFLOAD_PIPELINE: 100}
    assert s.getdict("NEWSARCHIVE_ITEM_STAGES") == STAGES
    # The child runs the stages themselves, and none of the crawl's downloading parts.
    child = child_settings(s.copy_to_dict())
    assert child["ITEM_PIPELINES"] == STAGES and child["NEWSARCHIVE_ITEM_PROCESS"] is False
    assert child["WARC_ENABLED"] is False and child["DOWNLOADER_MIDDLEWARES"] == {}
    assert route_item_stages(s) is False  # already moved: not twice


@pytest.mark.parametrize(("setting", "stages", "distributed"), [
    ("False", STAGES, False),      # turned off
    ("True", {}, False),           # a bare crawl: nothing to move
    ("True", STAGES, True),        # --redis: the stages stay with the peers' merger
])
def test_stages_stay_in_the_crawl_process(setting, stages, distributed):
    s = Settings({"ITEM_PIPELINES": stages, "NEWSARCHIVE_ITEM_PROCESS": setting})
    assert route_item_stages(s, distributed=distributed) is False
    assert s.getdict("ITEM_PIPELINES") == stages


def test_auto_follows_the_cpu_count(monkeypatch):
    for cpus, moved in ((1, False), (2, True)):
        monkeypatch.setattr(os, "cpu_count", lambda: cpus)
        s = Settings({"ITEM_PIPELINES": STAGES, "NEWSARCHIVE_ITEM_PROCESS": "auto"})
        assert route_item_stages(s) is moved


def test_the_item_process_stats_are_added_to_the_crawl_stats():
    stats = MemoryStatsCollector(type("Crawler", (), {"settings": Settings()})())
    stats.set_value("newsarchive/errors/http_404", 2)
    stats.set_value("newsarchive/error_examples/http_404", ["https://a/1"])
    stats.set_value("log_count/ERROR", 1)
    merge_stats(stats, {
        "newsarchive/dedup/new": 26, "log_count/ERROR": 2, "newsarchive/publish/manifest": "runs/x/manifest.json",
        "newsarchive/error_examples/http_404": ["https://a/1", "https://a/2"], "newsarchive/dedup/ok": True,
    })
    assert stats.get_stats() == {
        "newsarchive/errors/http_404": 2,
        "newsarchive/error_examples/http_404": ["https://a/1", "https://a/2"],
        "log_count/ERROR": 3,
        "newsarchive/dedup/new": 26,
        "newsarchive/publish/manifest": "runs/x/manifest.json",
        "newsarchive/dedup/ok": True,
    }


# ------------------------------------------------------------------ crawls
@pytest.fixture(scope="module")
def two_crawls(replica, tmp_path_factory):
    """The replica crawled with the item stages in their own process (the default on
    these machines) and in the crawl process; {name: (process, store, state)}."""
    out = {}
    for name, extra in (("item_process", []), ("in_process", ["-s", "NEWSARCHIVE_ITEM_PROCESS=False"])):
        base = tmp_path_factory.mktemp(name)
        replica.reset()
        proc = run_newsarchive(["crawl", "--store", str(base / "archive"), "--state-dir", str(base / "state"),
                                "--run-id", name, "--logfile", str(base / "crawl.log"), *FAST, *extra],
                               replica.proxy_url)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = (proc, base / "archive", base / "state")
    return out


def test_the_item_process_publishes_the_same_records_as_the_stages_in_process(two_crawls):
    (_, store, _), (_, store_in, _) = two_crawls["item_process"], two_crawls["in_process"]
    ours = {r["article_id"]: r for r in records(store)}
    theirs = {r["article_id"]: r for r in records(store_in)}
    assert sorted(ours) == sorted(EXPECTED["article_ids"]) and len(records(store)) == 26
    for aid, record in ours.items():
        assert {k: v for k, v in record.items() if k not in PER_RUN} == \
               {k: v for k, v in theirs[aid].items() if k not in PER_RUN}, aid
    key = lambda q: (q["url"], q["reason"])  # noqa: E731
    assert sorted(map(key, records(store, "quarantine"))) == sorted(map(key, records(store_in, "quarantine"))) \
        == sorted(map(key, EXPECTED["quarantine"]))


def test_the_run_report_counts_what_the_item_process_did(two_crawls):
    (_, _, state), (_, _, state_in) = two_crawls["item_process"], two_crawls["in_process"]
    report = json.loads((state / "runs" / "item_process.json").read_text())
    report_in = json.loads((state_in / "runs" / "in_process.json").read_text())
    assert report["articles"] == report_in["articles"]
    assert report["articles"]["published"] == 26 and report["articles"]["quarantined"] == 2
    assert report["dataset_objects"] == report_in["dataset_objects"] > 0
    assert report["dataset_manifest"] and report["exit_code"] == 0 and report["errors"]["item_process_failed"] == 0
    log = (state.parent / "crawl.log").read_text()
    assert "[item process]" in log and "'newsarchive/item_process/peak_rss_kib'" in log
    assert "[item process]" not in (state_in.parent / "crawl.log").read_text()
    # The item process takes the crawl's own settings, not Scrapy's defaults again (a
    # deprecated default set twice warns), and has no downloader middlewares to warn.
    item_warnings = [line for line in log.splitlines() if "[item process]" in line and "WARNING" in line]
    assert item_warnings == []


@pytest.mark.drill("process: item process killed, resume")
def test_a_dead_item_process_fails_the_run_and_the_next_run_publishes_the_rest(replica, tmp_path, drill_trial):
    store, state = tmp_path / "archive", tmp_path / "state"
    args = ["crawl", "--store", str(store), "--state-dir", str(state), *FAST, "-s", "DOWNLOAD_DELAY=0.05"]
    replica.reset()
    proc = crawl_until(replica, [*args, "--run-id", "first"], tmp_path / "first.log", after=40)
    os.kill(item_process_of(proc.pid), signal.SIGKILL)
    assert proc.wait(timeout=120) == 1, (tmp_path / "first.log").read_text()[-3000:]
    report = json.loads((state / "runs" / "first.json").read_text())
    assert report["finish_reason"] == "item_process_failed"
    assert report["errors"]["item_process_failed"] == 1
    assert any("item process" in reason for reason in report["failed_checks"])
    assert "the item process ended before its report" in (tmp_path / "first.log").read_text()

    resumed = run_newsarchive([*args, "--run-id", "second"], replica.proxy_url)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    keys = [(r["article_id"], r["version"]) for r in records(store)]
    drill_trial.duplicates = len(keys) - len(set(keys))
    drill_trial.lost = len(set(EXPECTED["article_ids"]) - {a for a, _ in keys})
    assert drill_trial.duplicates == 0 and drill_trial.lost == 0
    assert sorted({a for a, _ in keys}) == sorted(EXPECTED["article_ids"])


def test_a_killed_crawl_takes_its_item_process_with_it(replica, tmp_path):
    replica.reset()
    proc = crawl_until(replica, ["crawl", "--store", str(tmp_path / "archive"), "--state-dir", str(tmp_path / "state"),
                                 *FAST, "-s", "DOWNLOAD_DELAY=0.05"], tmp_path / "crawl.log", after=20)
    child = item_process_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert gone(child), "the item process outlived its crawl"
