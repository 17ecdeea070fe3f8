"""Where things go in the store (DESIGN.md, "Store layout"). One place, so the
local folder and the bucket always agree."""

from __future__ import annotations

import re

from crawler.store import safe_key

#: Major version of the published record schema; a breaking change bumps it and
#: the dataset moves to a new ``v{N}/`` prefix.
SCHEMA_MAJOR = 1

DATASET_PREFIX = f"dataset/articles/v{SCHEMA_MAJOR}/"

#: Per-run manifests (``{run_id}.json``), written last by each run.
MANIFEST_PREFIX = f"{DATASET_PREFIX}_manifests/"

#: The one dataset object that is replaced in place: it names the newest manifest.
LATEST_KEY = f"{DATASET_PREFIX}_latest"

_PART = re.compile(r"/published_date=([^/]+)/part-(.+)-(\d{5})\.(jsonl\.gz|parquet)$")

_TS14 = re.compile(r"-(\d{14})-")


def warc_key(filename: str) -> str:
    """``warc/YYYY/MM/DD/<filename>`` for a WARC (or its ``.cdxj``), dated by the
    14-digit UTC timestamp in the IIPC-style file name. Raises ValueError when the
    name has no timestamp."""
    m = _TS14.search(filename)
    if not m:
        raise ValueError(f"WARC file name without a 14-digit timestamp: {filename!r}")
    ts = m.group(1)
    return safe_key(f"warc/{ts[:4]}/{ts[4:6]}/{ts[6:8]}/{filename}")


def dataset_key(published_date: str, run_id: str, batch: int, ext: str = "jsonl.gz") -> str:
    """``dataset/articles/v1/published_date=YYYY-MM-DD/part-<run_id>-<batch:05d>.<ext>``.
    ``published_date`` ``unknown`` is used for records without a date."""
    return safe_key(f"{DATASET_PREFIX}published_date={published_date}/part-{run_id}-{batch:05d}.{ext}")


def parse_dataset_key(key: str) -> dict | None:
    """``{"published_date", "run_id", "batch", "format"}`` of a dataset object key
    made by :func:`dataset_key`, or None for any other key."""
    m = _PART.search(key)
    if not m or not key.startswith(DATASET_PREFIX):
        return None
    return {"published_date": m.group(1), "run_id": m.group(2), "batch": int(m.group(3)), "format": m.group(4)}


def manifest_key(run_id: str) -> str:
    """``dataset/articles/v1/_manifests/<run_id>.json``."""
    return safe_key(f"{MANIFEST_PREFIX}{run_id}.json")


def quarantine_key(run_id: str, batch: int) -> str:
    """``quarantine/<run_id>/part-<batch:05d>.jsonl.gz``."""
    return safe_key(f"quarantine/{run_id}/part-{batch:05d}.jsonl.gz")


def report_key(run_id: str) -> str:
    """``runs/<run_id>/report.json``."""
    return safe_key(f"runs/{run_id}/report.json")
