"""Spool → store without a crawl: outages, crashes at every step of a batch,
resumed and crashed runs, conflicts; and what verify/export make of the result."""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow.parquet as pq
import pytest

from crawler.dataset.batches import build_batch
from crawler.dataset.manifest import (
    build_manifest, list_manifests, load_manifest, manifest_bytes, manifest_chunks, read_latest,
)
from crawler.dataset.publisher import DatasetPublisher, RunFinalized
from crawler.dataset.reader import latest_versions, verify
from crawler.dataset.spool import Spool, SpoolError
from crawler.layout import LATEST_KEY, manifest_key
from crawler.store import LocalStore, StoreError
from tests.test_arrow_schema import record_today


class FlakyStore(LocalStore):
    """A folder store that can be switched off (every call raises StoreError) and
    that counts conditional creates that really created something."""

    def __init__(self, root):
        super().__init__(root)
        self.down = False
        self.created: list[str] = []

    def _check(self):
        if self.down:
            raise StoreError("S3 put failed: Could not connect to the endpoint URL")

    def put_new(self, key, data, content_type=None):
        self._check()
        obj = super().put_new(key, data, content_type)
        if obj.created:
            self.created.append(key)
        return obj

    def put_bytes(self, key, data, content_type=None):
        self._check()
        return super().put_bytes(key, data, content_type)

    def exists(self, key):
        self._check()
        return super().exists(key)


def article(i: int, version: int = 1, run: str = "R1", day: str = "2019-10-17") -> dict:
    return record_today(article_id=str(i), url=f"https://baotuyenquang.com.vn/a-{i}.html", version=version,
                        published_at=f"{day}T10:00:00+07:00", run_id=run)


def stage(spool: Spool, run: str, batch: int, records: list[dict], quarantine=()) -> None:
    built = build_batch(run, batch, records, list(quarantine))
    spool.stage(run, batch, built.objects, [r["url"] for r in records])


@pytest.fixture
def env(tmp_path):
    store = FlakyStore(tmp_path / "archive")
    spool = Spool(tmp_path / "state" / "spool")
    return store, spool, DatasetPublisher(store, spool)


def dataset_ids(store) -> list[tuple]:
    out = []
    for key in list_manifests(store):
        for o in load_manifest(store, key)[0]["objects"]:
            if o["kind"] == "dataset" and o["format"] == "parquet":
                t = pq.read_table(store.root / o["key"])
                out += list(zip(t.column("article_id").to_pylist(), t.column("version").to_pylist()))
    return sorted(out)


def test_outage_keeps_batches_spooled_and_the_next_drain_publishes_each_once(env):
    store, spool, publisher = env
    assert spool.start_run("R1", "2026-11-29T10:00:00+00:00") == 0
    stage(spool, "R1", 0, [article(1), article(2)])
    assert publisher.drain("R1").stored  # batch 0 reaches the store
    store.down = True
    stage(spool, "R1", 1, [article(3)], [{"reason": "empty_body", "url": "https://x/q"}])
    stage(spool, "R1", 2, [article(4, day="2024-01-18")])
    spool.finish_run("R1", "2026-11-29T10:05:00+00:00")
    result = publisher.drain("R1")
    assert isinstance(result.unavailable, StoreError) and result.manifests == []
    assert [p.batch for p in spool.pending()] == [1, 2]
    store.down = False
    assert not store.exists(manifest_key("R1"))  # no manifest while objects are missing
    # The next run (another run id) drains first: R1 is finished, so it is finalized.
    assert spool.start_run("R2", "2026-11-29T11:00:00+00:00") == 0
    result = publisher.drain("R2")
    assert result.unavailable is None and result.manifests == [manifest_key("R1")]
    assert spool.pending() == [] and [r["run_id"] for r in spool.runs()] == ["R2"]
    manifest, sha = load_manifest(store, manifest_key("R1"))
    assert manifest["run_status"] == "finished"
    assert manifest["totals"] == {"records": 4, "quarantined": 1, "objects": 7, "bytes": manifest["totals"]["bytes"],
                                  "batches": 3, "partitions": 2}
    assert read_latest(store) == {"manifest": manifest_key("R1"), "run_id": "R1",
                                  "size": (store.root / manifest_key("R1")).stat().st_size, "sha256": sha}
    assert dataset_ids(store) == [("1", 1), ("2", 1), ("3", 1), ("4", 1)]
    assert len(store.created) == len(set(store.created)) == 8  # 7 objects + manifest, each created once
    assert publisher.drain("R2").stored == []  # nothing left: a second drain does nothing
    report = verify(store)
    assert report.problems == [] and (report.manifests, report.objects, report.records) == (1, 7, 4)


@pytest.mark.parametrize("crash_after", ["some_objects", "all_objects", "ledger"])
def test_a_crash_at_any_point_of_an_upload_is_repaired_by_the_next_drain(env, crash_after):
    store, spool, publisher = env
    spool.start_run("R1", "2026-11-29T10:00:00+00:00")
    stage(spool, "R1", 0, [article(1), article(2, day="2020-01-01")])
    [pending] = spool.pending()
    # Simulate the upload as far as the crash let it go.
    n = {"some_objects": 2, "all_objects": 4, "ledger": 4}[crash_after]
    for entry in pending.entries[:n]:
        store.put_new(entry["key"], pending.data(entry))
    if crash_after == "ledger":  # ledger written, batch folder not yet removed
        ledger = spool.root / "R1" / "committed.jsonl"
        ledger.write_text("".join(json.dumps({k: v for k, v in e.items() if k not in ("offset", "content_type")}) + "\n"
                                  for e in pending.entries) + '{"torn')
    spool.finish_run("R1", "2026-11-29T10:01:00+00:00")
    result = publisher.drain(None)
    assert result.conflicts == [] and result.unavailable is None
    manifest = load_manifest(store, manifest_key("R1"))[0]
    assert [o["key"] for o in manifest["objects"]] == sorted(e["key"] for e in pending.entries)
    assert verify(store).problems == []
    assert dataset_ids(store) == [("1", 1), ("2", 1)]


def test_manifest_written_but_spool_not_cleared_counts_as_done(env):
    store, spool, publisher = env
    spool.start_run("R1", "2026-11-29T10:00:00+00:00")
    stage(spool, "R1", 0, [article(1)])
    spool.finish_run("R1", "2026-11-29T10:01:00+00:00")
    saved = spool.root.parent / "saved"
    shutil.copytree(spool.root, saved)
    publisher.drain(None)
    shutil.rmtree(spool.root)
    shutil.copytree(saved, spool.root)  # as if the crash came before the spool was cleared
    result = DatasetPublisher(store, Spool(spool.root)).drain(None)
    assert result.conflicts == [] and result.manifests == [manifest_key("R1")]
    assert len(list_manifests(store)) == 1 and verify(store).problems == []


def test_crashed_run_is_finalized_as_interrupted_and_a_resumed_run_continues_its_numbering(env):
    store, spool, publisher = env
    spool.start_run("R1", "2026-11-29T10:00:00+00:00")
    stage(spool, "R1", 0, [article(1)])
    stage(spool, "R1", 1, [article(2)])
    # R1 was killed. Resuming the same run id goes on after its last batch...
    assert spool.start_run("R1", "2026-11-29T10:30:00+00:00") == 2
    assert publisher.drain("R1").manifests == []  # still running: no manifest yet
    assert spool.start_run("R1", "2026-11-29T10:40:00+00:00") == 2
    # ...while a run under another id finalizes it as interrupted.
    spool.start_run("R2", "2026-11-29T11:00:00+00:00")
    assert publisher.drain("R2").manifests == [manifest_key("R1")]
    assert load_manifest(store, manifest_key("R1"))[0]["run_status"] == "interrupted"
    with pytest.raises(RunFinalized):
        publisher.check_run_open("R1")
    publisher.check_run_open("R2")


def test_conflicting_object_blocks_only_its_run(env):
    store, spool, publisher = env
    for run, start in (("R1", "10"), ("R2", "11")):
        spool.start_run(run, f"2026-11-29T{start}:00:00+00:00")
        stage(spool, run, 0, [article(int(start), run=run)])
        spool.finish_run(run, f"2026-11-29T{start}:05:00+00:00")
    [pending] = spool.pending("R1")
    store.put_new(pending.entries[1]["key"], b"someone else's bytes")
    result = publisher.drain(None)
    assert len(result.conflicts) == 1 and "exists with other content" in result.conflicts[0]
    assert result.manifests == [manifest_key("R2")]
    assert [r["run_id"] for r in spool.runs()] == ["R1"] and len(spool.pending("R1")) == 1
    assert (store.root / pending.entries[1]["key"]).read_bytes() == b"someone else's bytes"


def test_spool_refuses_unsafe_run_ids(tmp_path):
    spool = Spool(tmp_path / "spool")
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(SpoolError):
            spool.start_run(bad, "t")


def published_store(env) -> FlakyStore:
    """R1 (v1 of articles 1, 2) and R2 (v2 of article 2, new article 3)."""
    store, spool, publisher = env
    spool.start_run("R1", "2026-11-29T10:00:00+00:00")
    stage(spool, "R1", 0, [article(1), article(2, day="2024-01-18")])
    spool.finish_run("R1", "2026-11-29T10:01:00+00:00")
    spool.start_run("R2", "2026-11-30T10:00:00+00:00")
    stage(spool, "R2", 0, [article(2, version=2, run="R2", day="2024-01-18"), article(3, run="R2", day="2025-01-01")])
    spool.finish_run("R2", "2026-11-30T10:01:00+00:00")
    publisher.drain(None)
    return store


def test_export_keeps_the_latest_version_since_a_date(env):
    store = published_store(env)
    table, read = latest_versions(store)
    assert read == 4
    assert list(zip(table.column("article_id").to_pylist(), table.column("version").to_pylist())) == [
        ("1", 1), ("2", 2), ("3", 1)]
    table, read = latest_versions(store, since=__import__("datetime").date(2024, 1, 18))
    assert read == 3 and table.column("article_id").to_pylist() == ["2", "3"]
    assert read_latest(store)["run_id"] == "R2"


def test_verify_finds_tampering_missing_objects_and_duplicates(env):
    store = published_store(env)
    assert verify(store).problems == []
    manifest = load_manifest(store, manifest_key("R1"))[0]
    jsonl = next(o for o in manifest["objects"] if o["format"] == "jsonl.gz" and o["published_date"] == "2024-01-18")
    parquet = next(o for o in manifest["objects"] if o["format"] == "parquet" and o["published_date"] == "2019-10-17")
    (store.root / jsonl["key"]).write_bytes(b"not gzip")
    (store.root / parquet["key"]).unlink()
    problems = verify(store).problems
    assert any(p.startswith(jsonl["key"]) and "size" in p for p in problems)
    assert any(p.startswith(jsonl["key"]) and "sha256" in p for p in problems)
    assert any(p.startswith(parquet["key"]) and "missing" in p for p in problems)
    # A record published by two runs is found too (here: R3 republishing R1's article 1).
    store2 = FlakyStore(store.root.parent / "other")
    spool2 = Spool(store.root.parent / "spool2")
    for run in ("R1", "R3"):
        spool2.start_run(run, f"2026-12-0{run[1]}T10:00:00+00:00")
        stage(spool2, run, 0, [article(1, run=run)])
        spool2.finish_run(run, "t")
    DatasetPublisher(store2, spool2).drain(None)
    assert [p for p in verify(store2).problems if "published twice" in p] == [
        "record ('baotuyenquang', '1', 1) published twice: "
        "dataset/articles/v1/published_date=2019-10-17/part-R1-00000.parquet and "
        "dataset/articles/v1/published_date=2019-10-17/part-R3-00000.parquet"]
    (store2.root / LATEST_KEY).write_text('{"manifest": "dataset/articles/v1/_manifests/R9.json"}')
    assert any(p.startswith("_latest names") for p in verify(store2).problems)


def test_dataset_commands_on_a_folder_store(env, tmp_path, capsys):
    from crawler.cli import main

    store = published_store(env)
    assert main(["dataset", "verify", "--store", str(store.root)]) == 0
    assert capsys.readouterr().out.strip() == "OK: 2 manifests, 8 objects, 4 records, 0 problems"
    assert main(["dataset", "ls", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in out[1:3]] == [["R1", "finished", "2"], ["R2", "finished", "2"]]
    assert out[-1] == "_latest → R2"
    assert main(["dataset", "export", "--store", str(store.root), "--since", "2024-01-18",
                 "-o", str(tmp_path / "e.parquet")]) == 0
    assert pq.read_table(tmp_path / "e.parquet").column("article_id").to_pylist() == ["2", "3"]
    victim = next(store.root.rglob("part-R2-00000.parquet"))
    victim.write_bytes(victim.read_bytes()[:-10])
    capsys.readouterr()
    assert main(["dataset", "verify", "--store", str(store.root)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM dataset/articles/v1/published_date=" in out and out.strip().endswith("problems")
    assert main(["dataset", "verify", "--store", str(tmp_path / "nowhere")]) == 3
    assert not (tmp_path / "nowhere").exists()


def test_the_streamed_manifest_has_the_bytes_of_the_in_memory_one(env):
    """write_manifest streams the ledger (keys sorted, last line of a key wins, a
    torn last line ignored); its bytes are those of build_manifest + manifest_bytes."""
    store, spool, publisher = env
    spool.start_run("R1", "2026-11-29T10:00:00+00:00")
    days = ["2019-10-17", "2020-02-29", "2018-01-01"]
    for batch in range(4):
        quarantine = [{"reason": "no_title", "url": f"https://baotuyenquang.com.vn/q-{batch}.html"}] if batch % 2 else []
        stage(spool, "R1", batch, [article(10 * batch + i, day=days[(batch + i) % 3]) for i in range(5)], quarantine)
        assert publisher.drain("R1").unavailable is None
    ledger = spool.root / "R1" / "committed.jsonl"
    lines = ledger.read_text("utf-8").splitlines(keepends=True)
    # A batch committed twice (crash after the ledger append, before the spool was
    # cleared), then a line torn by a crash.
    with open(ledger, "a", encoding="utf-8") as f:
        f.writelines(lines[:3])
        f.write(lines[3][:40])
    spool.finish_run("R1", "2026-11-29T10:05:00+00:00")
    by_key = {}
    for line in ledger.read_text("utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        by_key[entry["key"]] = entry
    expected = manifest_bytes(build_manifest(spool.run_info("R1"), by_key.values()))
    assert publisher.drain(None).manifests == [manifest_key("R1")]
    stored = store.get_bytes(manifest_key("R1"))
    assert stored == expected
    manifest = json.loads(stored)
    assert manifest["totals"] == {"records": 20, "quarantined": 2, "objects": len(by_key), "bytes": sum(
        e["size"] for e in by_key.values()), "batches": 4, "partitions": 3}
    assert [o["key"] for o in manifest["objects"]] == sorted(by_key)
    assert read_latest(store)["sha256"] == hashlib.sha256(stored).hexdigest()
    assert not [p for p in spool.root.iterdir() if p.name.startswith(".manifest-")]  # temporary file gone


def test_an_empty_run_streams_an_empty_manifest(env):
    store, spool, publisher = env
    spool.start_run("R0", "2026-11-29T10:00:00+00:00")
    spool.finish_run("R0", "2026-11-29T10:00:01+00:00")
    run = spool.run_info("R0")
    assert publisher.drain(None).manifests == [manifest_key("R0")]
    assert store.get_bytes(manifest_key("R0")) == manifest_bytes(build_manifest(run, []))
    assert json.loads(store.get_bytes(manifest_key("R0")))["objects"] == []


@pytest.mark.parametrize("n", [1, 3])
def test_the_streamed_manifest_escapes_as_json_dumps_does(n):
    """Keys and run fields that JSON must escape (quote, backslash, control
    character) or keeps as UTF-8 (Vietnamese) stream to the same bytes."""
    entries = [{"key": f"dataset/Tuyên \"Quang\"\\{i}\n.parquet", "kind": "dataset", "format": "parquet",
                "published_date": "2026-11-30", "batch": i, "records": i + 1, "size": 100 + i,
                "sha256": f"{i:064x}", "offset": 7} for i in range(n)]
    run = {"run_id": "chạy-1", "status": "finished", "started_at": "2026-11-30T06:00:00+07:00", "finished_at": None}
    streamed = "".join(manifest_chunks(run, lambda: iter(entries))).encode("utf-8")
    assert streamed == manifest_bytes(build_manifest(run, entries))
    assert json.loads(streamed)["objects"][0]["key"] == entries[0]["key"]
