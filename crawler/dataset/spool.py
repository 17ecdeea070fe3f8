"""The local spool: every dataset batch is written here (fsynced) before it goes
to the store, and stays here until every one of its objects is in the store.

It is also each run's ledger of what reached the store, from which the run's
manifest is built. Layout, under ``<state_dir>/spool/``::

    <run_id>/run.json                  {"run_id", "started_at", "status", "finished_at"}
    <run_id>/committed.jsonl           one manifest entry per object durably in the store
    <run_id>/batches/<NNNNN>/batch.json   a pending batch: its objects' entries + article keys
    <run_id>/batches/<NNNNN>/objects.bin  the objects' bytes, one after another (entry offset/size)

A batch directory appears atomically (written under a temporary name, fsynced,
renamed), so a crash leaves either a whole pending batch or none. The directory
of a run goes away once its manifest is in the store. ``status`` is ``running``
while a crawl holds the run, ``finished`` once it closed; a ``running`` run
found by another run id crashed (the state lock rules out a live one).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crawler.dataset.batches import BatchObject

DATA_FILE = "objects.bin"

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")


class SpoolError(Exception):
    """The spool cannot be written (disk full, permissions) or a run id is unusable."""


def check_run_id(run_id: str) -> str:
    """``run_id`` if it can name a folder and an object key, else :class:`SpoolError`."""
    if not _RUN_ID.match(run_id or ""):
        raise SpoolError(f"run id {run_id!r} must be letters, digits and . _ : + - (at most 128)")
    return run_id


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@dataclass(frozen=True)
class PendingBatch:
    """A staged batch not (wholly) in the store yet: ``entries`` are manifest
    entries plus ``offset`` (in the batch's data file) and ``content_type``."""

    run_id: str
    batch: int
    path: Path
    entries: list[dict]
    article_keys: list[str]

    @property
    def records(self) -> int:
        """Records and quarantine entries it holds (each record counted once, not per format)."""
        return sum(e["records"] for e in self.entries if e["format"] != "parquet")

    def data(self, entry: dict) -> bytes:
        """The bytes of one object of the batch."""
        with open(self.path / DATA_FILE, "rb") as f:
            f.seek(entry["offset"])
            return f.read(entry["size"])


class Spool:
    """The spool folder (see module docstring). One process uses it at a time
    (the state directory's lock); staging (reactor thread) and draining (one
    worker thread) may overlap, which the atomic batch rename makes safe."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        #: Held by whoever stages a batch and then marks it published; pending()
        #: takes it too, so a drain never uploads a batch whose articles are not
        #: marked yet (a crash in that gap would publish them twice).
        self.lock = threading.RLock()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create spool {self.root}: {exc.strerror}") from exc

    # -- runs ---------------------------------------------------------------
    def _run_dir(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def run_info(self, run_id: str) -> dict | None:
        """``run.json`` of a run, or None when the spool holds nothing of it."""
        try:
            return json.loads((self._run_dir(run_id) / "run.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None

    def _write_info(self, run_id: str, info: dict) -> None:
        run_dir = self._run_dir(run_id)
        tmp = run_dir / f".run.json.tmp-{secrets.token_hex(4)}"
        _write_durable(tmp, json.dumps(info, sort_keys=True).encode())
        os.replace(tmp, run_dir / "run.json")
        _fsync_dir(run_dir)

    def start_run(self, run_id: str, started_at: str) -> int:
        """Open (or re-open, for a resumed run id) the run's ledger; remove
        half-staged batches; return the next free batch number."""
        run_dir = self._run_dir(run_id)
        try:
            (run_dir / "batches").mkdir(parents=True, exist_ok=True)
            for tmp in (run_dir / "batches").glob(".tmp-*"):
                shutil.rmtree(tmp, ignore_errors=True)
            info = self.run_info(run_id) or {"run_id": run_id, "started_at": started_at}
            info.update(status="running", finished_at=None)
            self._write_info(run_id, info)
        except OSError as exc:
            raise SpoolError(f"cannot open spool for run {run_id}: {exc.strerror}") from exc
        used = [e["batch"] for e in self.committed(run_id)] + [b.batch for b in self.pending(run_id)]
        return max(used) + 1 if used else 0

    def finish_run(self, run_id: str, finished_at: str) -> None:
        """Mark the run closed: no batch will be added; its manifest may be written
        once nothing of it is pending."""
        info = self.run_info(run_id) or {"run_id": run_id, "started_at": finished_at}
        info.update(status="finished", finished_at=finished_at)
        self._write_info(run_id, info)

    def runs(self) -> list[dict]:
        """``run.json`` of every run in the spool, oldest first (by start time)."""
        infos = []
        for path in self.root.iterdir():
            if path.is_dir() and _RUN_ID.match(path.name):
                info = self.run_info(path.name)
                if info is not None:
                    infos.append(info)
        return sorted(infos, key=lambda i: (i.get("started_at") or "", i["run_id"]))

    def remove_run(self, run_id: str) -> None:
        """Forget a run whose manifest is in the store."""
        shutil.rmtree(self._run_dir(run_id), ignore_errors=True)

    # -- batches --------------------------------------------------------------
    def stage(self, run_id: str, batch: int, objects: list[BatchObject], article_keys: list[str]) -> PendingBatch:
        """Write a batch durably (files and folder fsynced, then an atomic rename).
        Raises :class:`SpoolError` (e.g. disk full); nothing half-written remains."""
        batches = self._run_dir(run_id) / "batches"
        final = batches / f"{batch:05d}"
        tmp = batches / f".tmp-{batch:05d}-{secrets.token_hex(4)}"
        entries = []
        try:
            tmp.mkdir(parents=True)
            # One data file, not one per object: a batch can touch hundreds of
            # partitions, and each file would cost an fsync on the reactor thread.
            offset = 0
            for obj in objects:
                entries.append({**obj.entry(), "offset": offset, "content_type": obj.content_type})
                offset += obj.size
            _write_durable(tmp / DATA_FILE, b"".join(obj.data for obj in objects))
            meta = {"run_id": run_id, "batch": batch, "objects": entries, "article_keys": sorted(article_keys)}
            _write_durable(tmp / "batch.json", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode())
            _fsync_dir(tmp)
            os.rename(tmp, final)
            _fsync_dir(batches)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SpoolError(f"cannot spool batch {batch} of run {run_id}: {exc.strerror or exc}") from exc
        return PendingBatch(run_id, batch, final, entries, sorted(article_keys))

    def pending(self, run_id: str | None = None) -> list[PendingBatch]:
        """Pending batches of one run (or of all runs, oldest run first), by batch number."""
        with self.lock:
            return self._pending(run_id)

    def _pending(self, run_id: str | None) -> list[PendingBatch]:
        run_ids = [run_id] if run_id is not None else [i["run_id"] for i in self.runs()]
        out = []
        for rid in run_ids:
            batches = self._run_dir(rid) / "batches"
            if not batches.is_dir():
                continue
            for path in sorted(batches.iterdir()):
                if path.name.startswith(".") or not (path / "batch.json").is_file():
                    continue
                meta = json.loads((path / "batch.json").read_text("utf-8"))
                out.append(PendingBatch(rid, meta["batch"], path, meta["objects"], meta.get("article_keys", [])))
        return out

    def commit(self, pending: PendingBatch, entries: list[dict]) -> None:
        """Record the batch's objects as in the store (appended and fsynced to
        ``committed.jsonl``), then drop the batch's files. A crash between the two
        leaves the batch pending; re-sending it finds the same bytes in the store."""
        ledger = self._run_dir(pending.run_id) / "committed.jsonl"
        lines = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in entries)
        with open(ledger, "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        shutil.rmtree(pending.path)

    def committed(self, run_id: str) -> list[dict]:
        """Manifest entries of the run's objects in the store, one per key, by key
        (held in memory; :meth:`ledger` streams them)."""
        return list(self.ledger(run_id)())

    def ledger(self, run_id: str) -> "Ledger":
        """The run's ``committed.jsonl`` as a :class:`Ledger`."""
        return Ledger(self._run_dir(run_id) / "committed.jsonl")


class Ledger:
    """A run's ledger of objects in the store: calling it yields the entries
    sorted by key, each key once (its last line wins), read from disk line by
    line. Only the order of the lines stays in memory (8 bytes an object; the
    keys are held while sorting, the entry dicts never all at once), so a
    manifest over 100,000 objects can be written without holding them. A torn
    last line (crash mid-append) is ignored: its batch is still pending. A
    missing file is an empty ledger."""

    def __init__(self, path: Path):
        self.path = path
        self._offsets: array | None = None

    def _line_offsets(self) -> array:
        """Offsets of the lines to read, in key order."""
        keys: list[str] = []
        offsets = array("q")
        try:
            with open(self.path, "rb") as f:
                offset = 0
                for line in f:
                    try:
                        keys.append(json.loads(line)["key"])
                        offsets.append(offset)
                    except (ValueError, KeyError, TypeError):
                        pass
                    offset += len(line)
        except FileNotFoundError:
            pass
        order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: equal keys stay in file order
        return array("q", (offsets[i] for n, i in enumerate(order)
                           if n + 1 == len(order) or keys[order[n + 1]] != keys[i]))

    def __call__(self) -> Iterator[dict]:
        if self._offsets is None:
            self._offsets = self._line_offsets()
        if not self._offsets:
            return
        with open(self.path, "rb") as f:
            for offset in self._offsets:
                f.seek(offset)
                yield json.loads(f.readline())
