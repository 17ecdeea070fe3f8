"""A crawl killed with SIGKILL in the middle of writing a WARC file, then started
again with the same state directory and store, leaves only valid, closed,
indexed WARC files, all uploaded (the orphan ``.open`` file included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crawler.cli import main
from crawler.layout import warc_key
from tests.conftest import ROOT, run_newsarchive

BIN = Path(sys.executable).parent


@pytest.mark.drill("process: SIGKILL mid-WARC write, restart")
def test_sigkill_mid_write_then_restart_recovers_everything(replica, tmp_path):
    store, state = tmp_path / "archive", tmp_path / "state"
    # Small files: some are closed and uploaded before the kill, one is being written.
    args = ["crawl", "--store", str(store), "--state-dir", str(state), "-s", "DOWNLOAD_DELAY=0",
            "-s", "LOG_LEVEL=WARNING", "-s", "WARC_MAX_SIZE=150000"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"http_proxy": replica.proxy_url, "https_proxy": replica.proxy_url, "no_proxy": "127.0.0.1,localhost"})
    replica.reset()
    proc = subprocess.Popen([str(BIN / "newsarchive"), *args, "--run-id", "killed"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    orphan = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            uploaded = list(store.rglob("*.warc.gz.cdxj")) if store.exists() else []
            open_files = list((state / "warc").glob("*.warc.gz.open")) if (state / "warc").exists() else []
            if uploaded and open_files and open_files[0].stat().st_size > 40_000:
                orphan = open_files[0]
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert orphan is not None and proc.returncode == -signal.SIGKILL, "the crawl ended before it could be killed"
    # A kill can land inside a write: cut the last record in half to be sure it did.
    size = orphan.stat().st_size
    with open(orphan, "r+b") as fh:
        fh.truncate(size - 200)
    final_name = orphan.name.removesuffix(".open")
    before = {p.name for p in store.rglob("*.warc.gz")}
    assert final_name not in before

    replica.reset()
    again = run_newsarchive(args + ["--run-id", "restarted"], replica.proxy_url)
    assert again.returncode == 0, again.stderr[-3000:]

    # nothing left locally: recovered, closed, indexed, uploaded, verified, deleted
    assert sorted(p.name for p in (state / "warc").iterdir()) == []
    warcs = sorted(store.rglob("*.warc.gz"))
    assert final_name in {p.name for p in warcs} and before < {p.name for p in warcs}
    recovered = store / warc_key(final_name)
    assert 0 < recovered.stat().st_size < size - 200  # cut back to its last whole record
    for path in warcs:
        assert Path(str(path) + ".cdxj").is_file(), path
        check = subprocess.run([str(BIN / "warcio"), "check", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    assert not list(store.rglob("*.open"))
    assert main(["warc", "check", str(store)]) == 0  # digests, headers, revisits resolvable, indexes complete
    report = json.loads((state / "runs" / "restarted.json").read_text())
    assert warc_key(final_name) in report["warc_files"]
