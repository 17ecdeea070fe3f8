"""Disk drill: the WARC folder (``<state-dir>/warc``) is a 300 kB tmpfs, far less
than one crawl's WARC data. The run stops with a clear message, finish reason
``warc_disk_full`` and exit code 1; the file being written holds only whole records;
then the folder gets room (its files moved onto the normal disk) and the next run
finishes the work: the dataset equals the gold's article ids, no record twice,
every WARC file valid."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from crawler.cli import main
from tests.conftest import BIN, load_expected, read_jsonl_gz, run_newsarchive

EXPECTED = load_expected()
FAST = ["-s", "DOWNLOAD_DELAY=0"]


@pytest.fixture
def small_warc_dir(tmp_path):
    folder = tmp_path / "state" / "warc"
    folder.mkdir(parents=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(folder)], capture_output=True,
                           text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mount.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.mark.drill("disk: WARC folder full, then room")
def test_full_warc_folder_stops_the_run_and_the_next_run_finishes(replica, tmp_path, small_warc_dir, drill_trial):
    store, state = tmp_path / "archive", tmp_path / "state"
    args = ["crawl", "--store", str(store), "--state-dir", str(state), *FAST]
    replica.reset()
    first = run_newsarchive([*args, "--run-id", "full", "--logfile", str(tmp_path / "full.log")], replica.proxy_url)
    assert first.returncode == 1, first.stderr[-3000:]
    assert "FAILED CHECK       the crawl did not finish (warc_disk_full)" in first.stderr
    log = (tmp_path / "full.log").read_text()
    assert log.count("is full (No space left on device)") == 1 and "stopping the crawl" in log
    report = json.loads((state / "runs" / "full.json").read_text())
    assert report["finish_reason"] == "warc_disk_full"
    assert report["pages_fetched"] < 120  # it stopped, it did not fail every remaining page

    # Room: move what is in the small folder onto the normal disk.
    kept = tmp_path / "kept"
    shutil.copytree(small_warc_dir, kept)
    assert subprocess.run(["umount", str(small_warc_dir)]).returncode == 0
    for p in kept.iterdir():
        shutil.move(str(p), small_warc_dir / p.name)

    replica.reset()
    second = run_newsarchive([*args, "--run-id", "room"], replica.proxy_url)
    records = [r for p in sorted((store / "dataset").rglob("*.jsonl.gz")) for r in read_jsonl_gz(p.read_bytes())]
    keys = [(r["article_id"], r["version"]) for r in records]
    drill_trial.duplicates = len(keys) - len(set(keys))
    drill_trial.lost = len(set(EXPECTED["article_ids"]) - {a for a, _ in keys})
    assert second.returncode == 0, second.stderr[-3000:]
    assert drill_trial.duplicates == 0 and drill_trial.lost == 0
    assert sorted(os.listdir(small_warc_dir)) == []  # everything closed and uploaded
    warcs = sorted(store.rglob("*.warc.gz"))
    assert warcs
    for path in warcs:
        check = subprocess.run([str(BIN / "warcio"), "check", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, (path, check.stdout)
    assert main(["warc", "check", str(store)]) == 0
    # Every published record's WARC pointer resolves into a stored file.
    for r in records:
        assert (store / r["warc"]["file"]).is_file(), r["warc"]
