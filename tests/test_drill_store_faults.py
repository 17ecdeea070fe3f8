"""Store drill: S3 answers ``503 SlowDown``, ``500 InternalError``, times out, resets
the connection in the middle of an upload and loses the answer of a write that did
land — through a fault-injecting proxy (tests/drills/s3_fault_proxy.py) in front of
the moto server. Scattered faults are retried (botocore, 3 attempts); a burst longer
than the retry budget makes the batches spool (exit 3); the next run, with a healthy
store, publishes the spool. ``dataset verify`` passes and, counting records by
(article_id, version) over every Parquet object, nothing is missing or published twice."""

from __future__ import annotations

import io
import json
import os
import subprocess

import pyarrow.parquet as pq
import pytest

from tests.conftest import BIN, ROOT, load_expected, run_newsarchive, s3_client
from tests.drills.s3_fault_proxy import S3FaultProxy

EXPECTED = load_expected()
BUCKET = "fault-drill"
STORE = f"s3://{BUCKET}/na"
BURST = range(30, 48)  # write requests 30..47 all fail: longer than any retry budget


def plan(n: int, method: str, path: str) -> str | None:
    if n in BURST:
        return "slowdown"
    return {3: "slowdown", 5: "internal", 8: "timeout", 11: "reset", 14: "lost_response",
            19: "slowdown", 23: "internal", 55: "reset", 60: "lost_response"}.get(n)


@pytest.mark.drill("store: 503/500/timeout/reset/lost answer, retry, spool")
def test_store_faults_are_retried_then_spooled_and_nothing_is_lost_or_doubled(replica, moto_s3, tmp_path,
                                                                               drill_trial):
    admin = s3_client(moto_s3)
    admin.create_bucket(Bucket=BUCKET)
    proxy = S3FaultProxy(int(moto_s3["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]), plan, timeout_hold=3).start()
    env = {**moto_s3, "AWS_ENDPOINT_URL": proxy.url}
    state = tmp_path / "state"
    args = ["crawl", "--store", STORE, "--state-dir", str(state), "--batch-size", "4", "-s", "DOWNLOAD_DELAY=0",
            "-s", "NEWSARCHIVE_S3_MAX_ATTEMPTS=3", "-s", "NEWSARCHIVE_S3_READ_TIMEOUT=1.5",
            "-s", "NEWSARCHIVE_S3_CONNECT_TIMEOUT=2"]
    try:
        replica.reset()
        first = run_newsarchive([*args, "--run-id", "F1"], replica.proxy_url, extra_env=env)
        injected = dict(proxy.injected)
        proxy.plan = lambda n, m, p: None  # the store is healthy again
        replica.reset()
        second = run_newsarchive([*args, "--run-id", "F2"], replica.proxy_url, extra_env=env)
    finally:
        proxy.stop()
    assert set(injected) == {"slowdown", "internal", "timeout", "reset", "lost_response"}, injected
    r1 = json.loads((state / "runs" / "F1.json").read_text())
    assert first.returncode == 3, first.stderr[-3000:]  # the burst outlasted the retries: spooled
    assert r1["errors"]["publish_spooled"] > 0
    assert second.returncode == 0, second.stderr[-3000:]

    seen = []
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="na/dataset/"):
        for o in page.get("Contents", []):
            if o["Key"].endswith(".parquet"):
                t = pq.read_table(io.BytesIO(admin.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()))
                seen += zip(t.column("article_id").to_pylist(), t.column("version").to_pylist())
    drill_trial.duplicates = len(seen) - len(set(seen))
    drill_trial.lost = len(set(EXPECTED["article_ids"]) - {a for a, _ in seen})
    assert drill_trial.duplicates == 0, sorted(seen)
    assert drill_trial.lost == 0
    assert not (state / "spool").exists() or not list((state / "spool").rglob("*.parquet"))

    verify = subprocess.run([str(BIN / "newsarchive"), "dataset", "verify", "--store", STORE], cwd=ROOT,
                            env={**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                                 **moto_s3, "no_proxy": "127.0.0.1,localhost"},
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "0 problems" in verify.stdout
