"""Moves spooled batches into the store and finalizes runs (manifest last).

:meth:`DatasetPublisher.drain` is the only code that writes dataset objects:
for every run in the spool, oldest first, it creates each pending batch's
objects with conditional writes, records them in the run's ledger, drops the
batch from the spool, and — once a run is closed (or crashed) and nothing of it
is pending — writes its manifest and moves ``_latest``. Draining twice is
harmless: an object already in the store with the same SHA-256 counts as done,
so every spooled record is published exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from crawler.dataset.manifest import write_manifest
from crawler.dataset.spool import PendingBatch, Spool
from crawler.layout import manifest_key
from crawler.store import ObjectConflict, Store, StoreError

logger = logging.getLogger(__name__)


class RunFinalized(StoreError):
    """The run id already has a manifest in the store: nothing more can be added
    to that run (pick another ``--run-id``)."""


@dataclass
class DrainResult:
    """What one :meth:`DatasetPublisher.drain` did. ``stored``: manifest entries
    (with ``run_id``) of objects now in the store; ``manifests``: keys written;
    ``conflicts``: messages of keys holding other bytes; ``unavailable``: the
    store error that stopped the drain (None when the store answered)."""

    stored: list[dict] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    unavailable: StoreError | None = None


class DatasetPublisher:
    """Spool → store. ``store``: a :class:`~crawler.store.Store`; ``spool``: a
    :class:`~crawler.dataset.spool.Spool`. Not thread-safe: call from one thread
    at a time (the pipeline uses a single worker)."""

    def __init__(self, store: Store, spool: Spool):
        self.store = store
        self.spool = spool
        #: ``finalize(run, entries) -> manifest key or None`` (``entries``: the run's
        #: :class:`~crawler.dataset.spool.Ledger`) replaces writing the
        #: manifest of a run; a distributed crawl merges its processes' parts
        #: (crawler/distributed.py, :class:`RunManifestMerger`).
        self.finalize = None

    def check_run_open(self, run_id: str) -> None:
        """Raise :class:`RunFinalized` when ``run_id`` has a manifest in the store
        and the spool does not hold it (a finished run cannot take more objects).
        Raises StoreError when the store cannot be asked."""
        if self.spool.run_info(run_id) is None and self.store.exists(manifest_key(run_id)):
            raise RunFinalized(f"run {run_id} is complete in {self.store.describe(manifest_key(run_id))}")

    def upload(self, pending: PendingBatch) -> list[dict]:
        """Create every object of a pending batch, then commit it in the spool.
        Raises :class:`ObjectConflict` (the batch stays pending) or StoreError."""
        stored = []
        for entry in pending.entries:
            data = pending.data(entry)
            obj = self.store.put_new(entry["key"], data, entry.get("content_type"))
            if obj.sha256 != entry["sha256"] or obj.size != entry["size"]:
                raise StoreError(f"spooled {entry['key']} does not match its ledger entry")
            stored.append({k: v for k, v in entry.items() if k not in ("offset", "content_type")})
        self.spool.commit(pending, stored)
        return stored

    def drain(self, current_run: str | None = None) -> DrainResult:
        """Publish everything pending in the spool; finalize every run that is
        closed (``finished``) or crashed (``running`` but not ``current_run``).
        Stops at the first store error other than a conflict (the store is
        unreachable: the rest stays spooled). A conflicting run stays in the spool
        unfinalized, for an operator; other runs go on."""
        result = DrainResult()
        for run in self.spool.runs():
            run_id = run["run_id"]
            # Read the status before listing batches: a run seen closed here has
            # staged its last batch already, so finalizing below misses nothing.
            closing = run.get("status") == "finished" or run_id != current_run
            try:
                for pending in self.spool.pending(run_id):
                    for entry in self.upload(pending):
                        result.stored.append({**entry, "run_id": run_id})
                if closing and not self.spool.pending(run_id):
                    if self.finalize is not None and run_id == current_run:
                        key = self.finalize(run, self.spool.ledger(run_id))
                        if key:
                            result.manifests.append(key)
                        self.spool.remove_run(run_id)
                        continue
                    stored, totals = write_manifest(self.store, run, self.spool.ledger(run_id), self.spool.root)
                    result.manifests.append(stored.key)
                    self.spool.remove_run(run_id)
                    logger.info("run %s: manifest %s (%d records)", run_id, stored.key, totals["records"])
            except ObjectConflict as exc:
                logger.error("run %s stays in the spool: %s", run_id, exc)
                result.conflicts.append(str(exc))
            except StoreError as exc:
                result.unavailable = exc
                break
        return result
