"""One batch of records → the objects that carry it: per ``published_date``
partition a gzip JSON Lines file and a Parquet file (same records, same order),
plus the batch's quarantine entries as gzip JSON Lines.

Everything here is deterministic: the same records give the same bytes, so a
batch re-sent after a crash lands on its key with the same SHA-256.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from itertools import groupby

import pyarrow as pa

from crawler.layout import dataset_key, quarantine_key
from pipelines.arrow_schema import normalize_record, parquet_bytes, records_to_table

JSONL_TYPE = "application/gzip"  # what S3 clients expect for .gz; the format is in the key
PARQUET_TYPE = "application/vnd.apache.parquet"


def jsonl_gz(records: list[dict]) -> bytes:
    """Records as gzip-compressed JSON Lines (UTF-8, sorted keys, one object a
    line, gzip mtime 0 so the bytes depend on the records only)."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    return gzip.compress(text.encode("utf-8"), mtime=0)


def published_date(record: dict) -> str:
    """The partition of a record: the local (+07:00) date of ``published_at``,
    ``unknown`` when there is none (validation quarantines those first)."""
    value = record.get("published_at")
    return value[:10] if isinstance(value, str) and len(value) >= 10 else "unknown"


@dataclass
class BatchObject:
    """One object of a batch: ``key`` in the store, ``kind`` (``dataset`` |
    ``quarantine``), ``format`` (``jsonl.gz`` | ``parquet``), ``published_date``
    (None for quarantine), ``batch`` number, ``records`` it holds, the bytes."""

    key: str
    kind: str
    format: str
    published_date: str | None
    batch: int
    records: int
    data: bytes
    content_type: str

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def entry(self) -> dict:
        """The manifest entry of this object (everything but the bytes)."""
        return {
            "key": self.key, "kind": self.kind, "format": self.format, "published_date": self.published_date,
            "batch": self.batch, "records": self.records, "size": self.size, "sha256": self.sha256,
        }


@dataclass
class BuiltBatch:
    """:func:`build_batch`'s result: the objects, the schema's unknown field names
    seen (dropped from the records), and how many records went to quarantine
    because they did not fit the Arrow schema."""

    objects: list[BatchObject]
    unknown_fields: list[str] = field(default_factory=list)
    rejected: int = 0

    @property
    def records(self) -> int:
        return sum(o.records for o in self.objects if o.kind == "dataset" and o.format == "parquet")

    @property
    def quarantined(self) -> int:
        return sum(o.records for o in self.objects if o.kind == "quarantine")


def _fits(record: dict) -> str | None:
    """None when the record converts to the Arrow schema, else the reason."""
    try:
        records_to_table([record])
    except (ValueError, TypeError, pa.ArrowException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _reject(record: dict, reason: str) -> dict:
    return {
        "reason": "dataset_schema", "detail": reason[:500], "url": record.get("url"),
        "article_id": record.get("article_id"), "warc": record.get("warc"),
        "fetched_at": record.get("fetched_at"), "run_id": record.get("run_id"),
    }


def build_batch(run_id: str, batch: int, records: list[dict], quarantine: list[dict]) -> BuiltBatch:
    """Serialize batch ``batch`` of run ``run_id``.

    Records are cut to the schema's fields (missing ones null); a record that
    does not fit the Arrow schema is not dropped but becomes a quarantine entry
    with reason ``dataset_schema``. Within a partition records are ordered by
    ``(article_id, url)``. Keys come from :mod:`crawler.layout`."""
    unknown: set[str] = set()
    normalized = []
    for record in records:
        rec, extra = normalize_record(record)
        unknown.update(extra)
        normalized.append(rec)
    quarantine = list(quarantine)
    normalized.sort(key=lambda r: (published_date(r), str(r.get("article_id") or ""), str(r.get("url") or "")))
    try:
        # One table for the batch, sliced per partition (zero-copy): building a
        # table costs the same for one record as for fifty.
        whole = records_to_table(normalized)
    except (ValueError, TypeError, pa.ArrowException):
        whole = None
    objects: list[BatchObject] = []
    rejected = 0
    start = 0
    for date, group in groupby(normalized, key=published_date):
        recs = list(group)
        if whole is not None:
            table = whole.slice(start, len(recs))
            start += len(recs)
        else:
            # Find the records at fault; the others still publish.
            good = []
            for rec in recs:
                reason = _fits(rec)
                if reason is None:
                    good.append(rec)
                else:
                    quarantine.append(_reject(rec, reason))
                    rejected += 1
            recs = good
            if not recs:
                continue
            table = records_to_table(recs)
        objects.append(BatchObject(dataset_key(date, run_id, batch, "jsonl.gz"), "dataset", "jsonl.gz", date, batch,
                                   len(recs), jsonl_gz(recs), JSONL_TYPE))
        objects.append(BatchObject(dataset_key(date, run_id, batch, "parquet"), "dataset", "parquet", date, batch,
                                   len(recs), parquet_bytes(table), PARQUET_TYPE))
    if quarantine:
        objects.append(BatchObject(quarantine_key(run_id, batch), "quarantine", "jsonl.gz", None, batch,
                                   len(quarantine), jsonl_gz(quarantine), JSONL_TYPE))
    return BuiltBatch(objects, sorted(unknown), rejected)
