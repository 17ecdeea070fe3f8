"""Run manifests and the ``_latest`` pointer.

A manifest (``dataset/articles/v1/_manifests/<run_id>.json``) lists every object
one run put in the store — key, kind, format, partition, batch, record count,
size, SHA-256 — and the run's totals. It is written after all of them, with a
conditional create, and its bytes depend only on its content, so writing it
again after a crash finds the same object. ``_latest`` is then *replaced* (the
one dataset object that is) with ``{"manifest", "run_id", "size", "sha256"}`` of
the newest manifest. Readers that start from manifests never see a run whose
objects are not all there.
"""

from __future__ import annotations

import hashlib
import json

from crawler.layout import LATEST_KEY, MANIFEST_PREFIX, SCHEMA_MAJOR, manifest_key
from crawler.store import Store, StoredObject
from pipelines.arrow_schema import SCHEMA_VERSION

MANIFEST_FORMAT = "newsarchive/dataset-manifest/1"

#: Fields of a manifest's object entry.
ENTRY_FIELDS = ("key", "kind", "format", "published_date", "batch", "records", "size", "sha256")


def build_manifest(run: dict, entries: list[dict]) -> dict:
    """The manifest of ``run`` (``run.json`` from the spool) over its stored
    object ``entries``. ``run_status`` is ``finished`` for a run that closed,
    ``interrupted`` for one that crashed (its unpublished records are emitted
    again by a later run)."""
    objects = sorted(({k: e.get(k) for k in ENTRY_FIELDS} for e in entries), key=lambda e: e["key"])
    dataset = [e for e in objects if e["kind"] == "dataset"]
    parquet = [e for e in dataset if e["format"] == "parquet"]
    return {
        "format": MANIFEST_FORMAT,
        "dataset": "articles",
        "schema_major": SCHEMA_MAJOR,
        "schema_version": SCHEMA_VERSION,
        "run_id": run["run_id"],
        "run_status": "finished" if run.get("status") == "finished" else "interrupted",
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "objects": objects,
        "totals": {
            "records": sum(e["records"] for e in parquet),
            "quarantined": sum(e["records"] for e in objects if e["kind"] == "quarantine"),
            "objects": len(objects),
            "bytes": sum(e["size"] for e in objects),
            "batches": len({e["batch"] for e in objects}),
            "partitions": len({e["published_date"] for e in dataset}),
        },
    }


def manifest_bytes(manifest: dict) -> bytes:
    """Canonical bytes of a manifest (sorted keys, UTF-8)."""
    return (json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=1) + "\n").encode("utf-8")


def write_manifest(store: Store, manifest: dict) -> StoredObject:
    """Create the run's manifest (never overwriting another), then point
    ``_latest`` at it. Raises :class:`~crawler.store.StoreError` /
    :class:`~crawler.store.ObjectConflict`."""
    key = manifest_key(manifest["run_id"])
    stored = store.put_new(key, manifest_bytes(manifest), "application/json")
    pointer = {"manifest": key, "run_id": manifest["run_id"], "size": stored.size, "sha256": stored.sha256}
    store.put_bytes(LATEST_KEY, json.dumps(pointer, sort_keys=True).encode() + b"\n", "application/json")
    return stored


def read_latest(store: Store) -> dict | None:
    """The ``_latest`` pointer, or None when no manifest was written yet."""
    if not store.exists(LATEST_KEY):
        return None
    return json.loads(store.get_bytes(LATEST_KEY))


def list_manifests(store: Store) -> list[str]:
    """Keys of every manifest in the store, sorted."""
    return [k for k in store.list(MANIFEST_PREFIX) if k.endswith(".json")]


def load_manifest(store: Store, key: str) -> tuple[dict, str]:
    """``(manifest, sha256 of its bytes)``. Raises StoreError / ValueError."""
    data = store.get_bytes(key)
    return json.loads(data), hashlib.sha256(data).hexdigest()
