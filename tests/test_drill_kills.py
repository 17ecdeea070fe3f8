"""Process drill: ten crawls of the replica killed with SIGKILL at random moments
(seeded, so a failing trial can be rerun alone), each followed by a resumed run on
the same state and store. After each resume the dataset equals the gold, every WARC
file is valid (``warc check``: digests, headers, indexes) and no (article_id,
version) is published twice.

Slow (two crawls a trial): ``slow_drill``, run by ``make drills`` only. The three
fixed kill points of tests/test_resume.py run in ``make test``."""

from __future__ import annotations

import json
import random
import signal
import subprocess

import pytest

from crawler.cli import main
from tests.conftest import BIN, crawl_until, load_expected, load_gold, read_jsonl_gz, run_newsarchive

GOLD = load_gold()
EXPECTED = load_expected()
V1 = EXPECTED["updated_articles"][0]["v1"]
FAST = ["-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=INFO", "-s", "WARC_MAX_SIZE=200000"]
GOLD_FIELDS = ("canonical_url", "section", "published_at", "authors", "source", "images", "tags", "language",
               "title", "lead", "body")
SEED = 20261129
#: (trial, requests seen by the replica before the kill, extra sleep in seconds):
#: the kill lands anywhere from the robots.txt fetch to the last pages.
TRIALS = [(i, rnd.randint(2, 85), rnd.random() * 0.2) for rnd in [random.Random(SEED)] for i in range(10)]


def records_in(store, folder: str) -> list[dict]:
    out = []
    for path in sorted((store / folder).rglob("*.jsonl.gz")):
        out.extend(read_jsonl_gz(path.read_bytes()))
    return out


@pytest.mark.slow_drill
@pytest.mark.drill("process: 10 random SIGKILLs, resume")
@pytest.mark.parametrize(("trial", "after", "extra"), TRIALS, ids=[f"kill{t}-at{a}" for t, a, _ in TRIALS])
def test_random_sigkill_then_resume_equals_gold(replica, tmp_path, trial, after, extra, drill_trial):
    store, state = tmp_path / "archive", tmp_path / "state"
    args = ["crawl", "--store", str(store), "--state-dir", str(state), *FAST]
    replica.reset()
    proc = crawl_until(replica, [*args, "--run-id", "killed"], tmp_path / "killed.log", after, extra)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL

    resumed = run_newsarchive([*args, "--run-id", "resumed"], replica.proxy_url)

    records = records_in(store, "dataset")
    keys = [(r["article_id"], r["version"]) for r in records]
    drill_trial.duplicates = len(keys) - len(set(keys))
    drill_trial.lost = len(set(EXPECTED["article_ids"]) - {a for a, _ in keys})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert drill_trial.duplicates == 0, sorted(keys)
    assert drill_trial.lost == 0
    latest = {}
    for r in sorted(records, key=lambda r: r["version"]):
        latest[r["article_id"]] = r
    assert sorted(latest) == sorted(EXPECTED["article_ids"])
    for aid, r in latest.items():
        gold = dict(GOLD[aid])
        if aid == "185230" and r["title"] == V1["title"]:
            gold.update({"title": V1["title"], "body": V1["body"]})  # F04: v1 or v2 by where the kill fell
        assert {f: r[f] for f in GOLD_FIELDS} == {f: gold[f] for f in GOLD_FIELDS}, aid
    assert {a: r["near_duplicate_of"] for a, r in latest.items() if r["near_duplicate_of"]} == {"157890": "146233"}
    quarantined = sorted((q["url"], q["reason"]) for q in records_in(store, "quarantine"))
    assert quarantined == sorted((q["url"], q["reason"]) for q in EXPECTED["quarantine"])

    # Every WARC file closed, indexed and valid; nothing left open locally.
    assert not list(store.rglob("*.open"))
    assert sorted(p.name for p in (state / "warc").iterdir()) == []
    for path in store.rglob("*.warc.gz"):
        check = subprocess.run([str(BIN / "warcio"), "check", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, (path, check.stdout)
    assert main(["warc", "check", str(store)]) == 0
    report = json.loads((state / "runs" / "resumed.json").read_text())
    assert report["failed_checks"] == []
