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
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from crawler.layout import LATEST_KEY, MANIFEST_PREFIX, SCHEMA_MAJOR, manifest_key
from crawler.store import Store, StoreError, StoredObject
from pipelines.arrow_schema import SCHEMA_VERSION

MANIFEST_FORMAT = "newsarchive/dataset-manifest/1"

#: Fields of a manifest's object entry.
ENTRY_FIELDS = ("key", "kind", "format", "published_date", "batch", "records", "size", "sha256")


def manifest_entry(entry: dict) -> dict:
    """The manifest's fields (:data:`ENTRY_FIELDS`) of a ledger entry."""
    return {k: entry.get(k) for k in ENTRY_FIELDS}


def manifest_totals(entries: Iterable[dict]) -> dict:
    """The ``totals`` of a manifest over its object entries (one pass)."""
    records = quarantined = objects = size = 0
    batches, partitions = set(), set()
    for e in entries:
        objects += 1
        size += e["size"]
        batches.add(e["batch"])
        if e["kind"] == "quarantine":
            quarantined += e["records"]
        elif e["kind"] == "dataset":
            partitions.add(e["published_date"])
            if e["format"] == "parquet":
                records += e["records"]
    return {"records": records, "quarantined": quarantined, "objects": objects, "bytes": size,
            "batches": len(batches), "partitions": len(partitions)}


def _header(run: dict, objects, totals: dict) -> dict:
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
        "totals": totals,
    }


def build_manifest(run: dict, entries: Iterable[dict]) -> dict:
    """The manifest of ``run`` (``run.json`` from the spool) over its stored
    object ``entries``, as a dict held in memory (small runs, tests; a crawl
    writes it with :func:`write_manifest`, which streams). ``run_status`` is
    ``finished`` for a run that closed, ``interrupted`` for one that crashed (its
    unpublished records are emitted again by a later run)."""
    objects = sorted((manifest_entry(e) for e in entries), key=lambda e: e["key"])
    return _header(run, objects, manifest_totals(objects))


def manifest_bytes(manifest: dict) -> bytes:
    """Canonical bytes of a manifest: JSON, sorted keys, indent 1, UTF-8, a final newline."""
    return (json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=1) + "\n").encode("utf-8")


def manifest_chunks(run: dict, entries: Callable[[], Iterable[dict]]) -> Iterator[str]:
    """The manifest of ``run`` as text chunks, byte for byte what
    :func:`manifest_bytes` gives for :func:`build_manifest`, without holding the
    object list: ``entries()`` is called twice (totals, then objects) and must
    yield the run's ledger entries sorted by key, each key once."""
    return _encode(run, entries, manifest_totals(entries()))


#: Stands for the ``objects`` array while the rest of the manifest is encoded.
_OBJECTS_SLOT = "\x00objects\x00"


def _encode(run: dict, entries: Callable[[], Iterable[dict]], totals: dict) -> Iterator[str]:
    # The header is encoded with a placeholder where the array goes; the array is
    # written entry by entry, as json.dumps(indent=1) lays out a list at depth 1
    # (entries at depth 2: each line of an entry's own indent=1 text shifted by two
    # spaces; JSON strings hold no raw newline). Only one entry is held at a time.
    dump = json.JSONEncoder(ensure_ascii=False, sort_keys=True, indent=1).encode
    head, slot, tail = dump(_header(run, _OBJECTS_SLOT, totals)).partition(
        '"objects": ' + dump(_OBJECTS_SLOT))
    if not slot:  # cannot happen: the header's own keys
        raise AssertionError("manifest header without its objects slot")
    yield head + '"objects": '
    first = True
    for entry in entries():
        yield ("[\n" if first else ",\n") + "\n".join("  " + line for line in dump(manifest_entry(entry)).split("\n"))
        first = False
    yield "[]" if first else "\n ]"
    yield tail
    yield "\n"


def write_manifest(
    store: Store, run: dict, entries: Callable[[], Iterable[dict]], tmp_dir: str | Path | None = None
) -> tuple[StoredObject, dict]:
    """Create the run's manifest (never overwriting another), then point
    ``_latest`` at it. ``entries`` as for :func:`manifest_chunks`; the manifest is
    written to a temporary file in ``tmp_dir`` (the system's when None) and
    stored from there, so its size does not count in the crawl's memory.
    Returns ``(stored manifest, totals)``. Raises
    :class:`~crawler.store.StoreError` (also when the temporary file cannot be
    written) / :class:`~crawler.store.ObjectConflict`."""
    key = manifest_key(run["run_id"])
    totals = manifest_totals(entries())
    with tempfile.TemporaryDirectory(prefix=".manifest-", dir=tmp_dir) as tmp:
        path = Path(tmp) / "manifest.json"
        try:
            with open(path, "w", encoding="utf-8") as f:
                for chunk in _encode(run, entries, totals):
                    f.write(chunk)
        except OSError as exc:
            # Like a store that cannot take the write: the run stays spooled, to finish later.
            raise StoreError(f"cannot write the manifest of run {run['run_id']} to {path}: {exc.strerror}") from exc
        stored = store.put_new(key, path, "application/json")
    pointer = {"manifest": key, "run_id": run["run_id"], "size": stored.size, "sha256": stored.sha256}
    store.put_bytes(LATEST_KEY, json.dumps(pointer, sort_keys=True).encode() + b"\n", "application/json")
    return stored, totals


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
