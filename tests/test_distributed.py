"""Distributed crawling (README, "Distributed crawling"): three ``newsarchive crawl
--redis`` processes of one run share the frontier, the dupefilter and the state in a
real redis-server; their union equals a single-process crawl; killing one mid-crawl
loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT, crawl_args, load_expected, newsarchive_env, read_jsonl_gz, run_newsarchive

EXPECTED = load_expected()
FAST = ["-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=INFO", "-s", "NEWSARCHIVE_REDIS_IDLE_SECONDS=1"]
#: Heartbeat TTL of the kill test (a short one finds the killed process sooner). The
#: other crawls keep the production 15 s: on a loaded 2-core machine a live process
#: can miss a 4 s heartbeat, be taken for dead and have its requests fetched again.
KILL_TTL = ["-s", "NEWSARCHIVE_REDIS_HEARTBEAT_TTL=4"]
#: Database number the tests own (flushed before use).
REDIS_DB = int(os.environ.get("NEWSARCHIVE_TEST_REDIS_DB", "13"))
#: Run bookkeeping: differs between any two crawls.
BOOKKEEPING = ("run_id", "fetched_at", "warc")
F11 = "/xa-hoi/y-te/tiem-vac-xin-phong-covid-19-cho-nguoi-dan-vung-sau-vung-xa-147903.html"


def _answers(port: int = 6379) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url():
    """A redis-server on 127.0.0.1:6379 (started here when none answers; the Makefile's
    ``redis`` target installs Debian's package), database 13 flushed."""
    if not _answers():
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("no redis-server answers on 127.0.0.1:6379 and none is installed (make redis)")
        subprocess.run([exe, "--port", "6379", "--save", "", "--appendonly", "no", "--daemonize", "yes"], check=True)
        for _ in range(50):
            if _answers():
                break
            time.sleep(0.1)
    from redis import Redis

    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    Redis.from_url(url).flushdb()
    return url


def records(store: Path) -> list[dict]:
    out = []
    for path in sorted((store / "dataset").rglob("*.jsonl.gz")):
        out.extend(read_jsonl_gz(path.read_bytes()))
    return out


def start(args: list[str], proxy: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "newsarchive"), *crawl_args(args)], cwd=ROOT, env=newsarchive_env(proxy),
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))


def distributed(base: Path, proxy: str, redis_url: str, run_id: str, n: int = 3, kill_after: int | None = None,
                replica=None):
    """``n`` processes of run ``run_id`` into one store; returns (exit codes, logs). With
    ``kill_after``, the second process is SIGKILLed once the replica logged that many
    requests."""
    procs, logs = [], []
    for i in range(n):
        log = base / f"p{i}.log"
        logs.append(log)
        procs.append(start(["crawl", "--store", str(base / "archive"), "--state-dir", str(base / f"state{i}"),
                            "--redis", redis_url, "--run-id", run_id, "--mode", "full", *FAST,
                            *(KILL_TTL if kill_after is not None else [])], proxy, log))
    if kill_after is not None:
        deadline = time.time() + 120
        while len(replica.requests) < kill_after and time.time() < deadline:
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGKILL)
    codes = [p.wait(timeout=300) for p in procs]
    return codes, [log.read_text() for log in logs]


@pytest.fixture(scope="module")
def crawls(replica, redis_url, tmp_path_factory):
    """A single-process crawl and a three-process crawl of the replica (fresh state)."""
    from redis import Redis

    Redis.from_url(redis_url).flushdb()
    base = tmp_path_factory.mktemp("distributed")
    replica.reset()
    single = run_newsarchive(["crawl", "--store", str(base / "single" / "archive"), "--state-dir",
                              str(base / "single" / "state"), "--mode", "full", *FAST], replica.proxy_url)
    assert single.returncode == 0, single.stderr[-3000:]
    single_requests = list(replica.requests)
    replica.reset()
    (base / "multi").mkdir()
    codes, logs = distributed(base / "multi", replica.proxy_url, redis_url, "20260101T000000Z-dist")
    return {"single": records(base / "single" / "archive"), "multi": records(base / "multi" / "archive"),
            "codes": codes, "logs": logs, "requests": list(replica.requests), "single_requests": single_requests, "store": base / "multi" / "archive"}


def strip(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in BOOKKEEPING}


def test_three_processes_all_exit_0(crawls):
    assert crawls["codes"] == [0, 0, 0], "\n".join(log[-2000:] for log in crawls["logs"])


def test_union_equals_single_process_crawl(crawls):
    multi = {r["article_id"]: strip(r) for r in crawls["multi"]}
    single = {r["article_id"]: strip(r) for r in crawls["single"]}
    assert sorted(multi) == sorted(EXPECTED["article_ids"])
    assert len(multi) == 26
    for aid, record in single.items():
        assert multi[aid] == record, aid


def test_no_article_recorded_twice(crawls):
    ids = Counter(r["article_id"] for r in crawls["multi"])
    assert [i for i, n in ids.items() if n > 1] == []
    assert len(crawls["multi"]) == 26


def test_each_process_did_a_share_of_the_work(crawls):
    # Every process fetched pages: the frontier really is shared.
    fetched = [int(next(line.split("'downloader/response_count': ")[1].split(",")[0]
                        for line in log.splitlines() if "'downloader/response_count': " in line))
               for log in crawls["logs"]]
    assert all(n > 1 for n in fetched), fetched


def test_no_url_fetched_twice(crawls):
    """Each URL is fetched as often as by one process: once, but F11 (500, 500, then
    200: retries) and F13's redirect loop (followed until Scrapy's redirect limit).
    robots.txt: each process reads it (Scrapy's robots middleware, not the frontier)."""
    def counts(log):
        return Counter(r["url"] for r in log if not r["path"].endswith("/robots.txt"))

    multi, single = counts(crawls["requests"]), counts(crawls["single_requests"])
    assert multi == single
    assert {u: n for u, n in multi.items() if n > 1 and not u.endswith(F11) and "181276" not in u} == {}
    assert multi[next(u for u in multi if u.endswith(F11))] == 3  # 500, 500, 200
    # robots.txt: at most once per process and host (Scrapy's robots middleware), plus
    # once for its Sitemap: lines (the spider's start(), through the shared dupefilter).
    robots = Counter(r["host"] for r in crawls["requests"] if r["path"].endswith("/robots.txt"))
    assert robots["baotuyenquang.com.vn"] == 3 + 1
    assert robots["m.baotuyenquang.com.vn"] <= 3


def _disallowed(url: str) -> bool:
    return "/admin/" in url or "/tim-kiem/" in url or "/Ajax/" in url


def test_robots_disallowed_paths_are_never_fetched(crawls):
    """A process joining the crawl pops a batch of requests before it has robots.txt;
    each of them is checked once it is parsed (crawler/middlewares/robotstxt.py)."""
    assert [r["url"] for r in crawls["single_requests"] + crawls["requests"] if _disallowed(r["url"])] == []


def test_one_run_manifest_covers_every_process(crawls):
    manifests = list((crawls["store"] / "dataset").rglob("_manifests/*.json"))
    assert [m.name for m in manifests] == ["20260101T000000Z-dist.json"]
    manifest = json.loads(manifests[0].read_text())
    assert manifest["run_status"] == "finished"
    assert manifest["totals"]["records"] == 26
    parts = {o["key"] for o in manifest["objects"]}
    on_disk = {str(p.relative_to(crawls["store"])) for p in crawls["store"].rglob("part-*")}
    assert parts == on_disk


def test_the_run_report_merges_every_process(crawls):
    report = json.loads((crawls["store"] / "runs" / "20260101T000000Z-dist" / "report.json").read_text())
    assert report["processes"] == "merged"
    assert report["articles"]["published"] == 26
    assert report["articles"]["new"] + report["articles"]["near_duplicate"] == 26
    manifest = json.loads((crawls["store"] / report["dataset_manifest"]).read_text())
    assert report["dataset_objects"] == len(manifest["objects"]) == len(
        [p for p in crawls["store"].rglob("part-*") if p.is_file()])
    # Each article met counts once, however many processes met it (a sum gave 62).
    assert report["incremental"]["article_urls_discovered"] == 32


def test_the_next_incremental_run_fetches_no_settled_page_again(crawls, replica, redis_url, tmp_path):
    """After the three-process run, an incremental run on the shared state fetches no
    article page again, as after a single-process run: the sitemap's lastmods reached
    the rows of the pages other processes fetched (the 404 and the redirect loop were
    fetched again for a lastmod "moved" before)."""
    replica.reset()
    proc = run_newsarchive(["crawl", "--store", str(crawls["store"]), "--state-dir", str(tmp_path / "state"),
                            "--redis", redis_url, "--run-id", "20260101T000000Z-next", *FAST], replica.proxy_url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "state" / "runs" / "20260101T000000Z-next.json").read_text())
    assert report["incremental"]["rechecked"] == 0 and report["articles"]["published"] == 0
    assert report["incremental"]["article_urls_discovered"] == 32
    assert report["incremental"]["skipped_known"] == 32
    # Only the site's missing yearly sitemap answers 404 (every run asks for it).
    assert report["errors"]["error_rate"] == 0, report["errors"]
    assert report["errors"]["by_type"] == {
        "http_404": {"count": 1, "examples": ["https://baotuyenquang.com.vn/sitemap-2018.xml"]}}


def test_killing_one_process_loses_nothing(replica, redis_url, tmp_path):
    from redis import Redis

    Redis.from_url(redis_url).flushdb()  # a fresh state: the articles are new again
    replica.reset()
    codes, logs = distributed(tmp_path, replica.proxy_url, redis_url, "20260101T000000Z-kill", kill_after=40,
                              replica=replica)
    assert codes[1] == -signal.SIGKILL
    assert codes[0] == 0 and codes[2] == 0, "\n".join(log[-2000:] for log in logs)
    ids = Counter(r["article_id"] for r in records(tmp_path / "archive"))
    assert sorted(ids) == sorted(EXPECTED["article_ids"])
    assert max(ids.values()) == 1
    assert "re-queued" in logs[0] + logs[2]


def test_the_merged_manifest_streams_every_part_in_key_order(redis_url, tmp_path, monkeypatch):
    """Two processes' parts, pushed to Redis in chunks, merge into the manifest a
    single process would write over all their entries (same bytes)."""
    from redis import Redis

    from crawler.dataset.manifest import build_manifest, manifest_bytes
    from crawler.distributed import RunManifestMerger
    from crawler.layout import manifest_key
    from crawler.redis_state import alive_key
    from crawler.store import LocalStore

    server = Redis.from_url(redis_url)
    prefix = f"test-merge-{os.getpid()}"
    monkeypatch.setattr(RunManifestMerger, "ENTRIES_PER_CHUNK", 2)
    first, last = RunManifestMerger(server, prefix, "w1"), RunManifestMerger(server, prefix, "w2")
    store = LocalStore(tmp_path / "archive")
    first.store = last.store = store

    def entries(batch0: int, n: int) -> list[dict]:
        return sorted(({"key": f"dataset/articles/v1/published_date=2026-11-{1 + i % 3:02d}/b{batch0 + i:05d}.parquet",
                        "kind": "dataset", "format": "parquet", "published_date": f"2026-11-{1 + i % 3:02d}",
                        "batch": batch0 + i, "records": 1 + i, "size": 100 + i, "sha256": f"{batch0 + i:064x}",
                        "offset": 3} for i in range(n)), key=lambda e: e["key"])

    mine, theirs = entries(0, 5), entries(1000, 4)
    run = {"run_id": "R-dist", "status": "finished", "started_at": "2026-11-30T06:00:00+00:00",
           "finished_at": "2026-11-30T06:10:00+00:00"}
    server.set(alive_key("w2"), 1, px=15000)  # w2 is alive and still publishing
    for _ in range(2):  # a second try (after a store error) replaces the first part
        assert first.finalize(dict(run, finished_at="2026-11-30T06:05:00+00:00"), lambda: iter(mine)) is None
    assert server.llen(f"{prefix}:manifest_entries:w1") == 3  # 5 entries in chunks of 2
    assert last.finalize(run, lambda: iter(theirs)) == manifest_key("R-dist")
    merged_run = {"run_id": "R-dist", "status": "finished", "started_at": run["started_at"],
                  "finished_at": run["finished_at"], "processes": 2}
    stored = store.get_bytes(manifest_key("R-dist"))
    assert stored == manifest_bytes(build_manifest(merged_run, mine + theirs))
    assert json.loads(stored)["totals"]["records"] == sum(e["records"] for e in mine + theirs) == 25
