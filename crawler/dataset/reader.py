"""Reading the published dataset back through a store: manifests, verification,
and the "latest version of each article" export.

Everything starts from the manifests, so a run whose objects are not all in the
store yet (still spooled, or being written) is never read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crawler.dataset.manifest import ENTRY_FIELDS, list_manifests, load_manifest, read_latest
from crawler.layout import DATASET_PREFIX, manifest_key, parse_dataset_key
from crawler.store import Store, StoreError
from pipelines.arrow_schema import FIELDS, PUBLISHED_TZ, SCHEMA, records_to_table, schema_differences

#: Columns that identify one record of the dataset (an article at a version).
RECORD_KEY = ("site", "article_id", "version")


def load_manifests(store: Store) -> list[dict]:
    """Every manifest in the store, oldest run first (by ``started_at``).
    Raises StoreError when the store cannot be listed or read."""
    manifests = [load_manifest(store, key)[0] for key in list_manifests(store)]
    return sorted(manifests, key=lambda m: (m.get("started_at") or "", m["run_id"]))


def read_parquet(store: Store, key: str) -> pa.Table:
    """One Parquet object of the dataset as an Arrow table."""
    return pq.read_table(pa.BufferReader(store.get_bytes(key)))


def jsonl_records(data: bytes) -> list[dict]:
    """Records of a gzip JSON Lines object. Raises ValueError / OSError (bad gzip)."""
    return [json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines() if line]


def partition_objects(store: Store, published_date: str) -> Iterator[bytes]:
    """The JSON Lines objects of one ``published_date`` partition in the store,
    newest key last, manifest or not (a run in progress has none yet). Lazy: each
    object is read when the caller asks for it. Raises StoreError."""
    prefix = f"{DATASET_PREFIX}published_date={published_date}/"
    for key in sorted(store.list(prefix)):
        info = parse_dataset_key(key)
        if info is not None and info["format"] == "jsonl.gz":
            yield store.get_bytes(key)


def find_record(objects: Iterable[bytes], site: str, article_id: str, version: int) -> dict | None:
    """The record (``site``, ``article_id``, ``version``) in the first of ``objects``
    (gzip JSON Lines blobs) that holds it, or None. Raises ValueError / OSError on a
    corrupt object."""
    for data in objects:
        for record in jsonl_records(data):
            if (record.get("article_id") == article_id and record.get("version") == version
                    and record.get("site") == site):
                return record
    return None


@dataclass
class VerifyReport:
    """Outcome of :func:`verify`: ``problems`` (empty = the dataset is sound),
    counts of what was checked, and ``unlisted`` dataset keys no manifest names
    (runs still spooled or in progress; not a problem)."""

    problems: list[str] = field(default_factory=list)
    manifests: int = 0
    objects: int = 0
    records: int = 0
    unlisted: list[str] = field(default_factory=list)


def _check_object(store: Store, run_id: str, entry: dict, problems: list[str]) -> list[tuple] | None:
    """Check one manifest entry; return the record keys it holds (None if unreadable)."""
    key = entry.get("key", "?")
    try:
        data = store.get_bytes(key)
    except StoreError as exc:
        problems.append(f"{key}: missing or unreadable ({exc})")
        return None
    if len(data) != entry.get("size"):
        problems.append(f"{key}: size {len(data)} != manifest {entry.get('size')}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.get("sha256"):
        problems.append(f"{key}: sha256 {digest} != manifest {entry.get('sha256')}")
    if entry.get("kind") == "quarantine":
        try:
            rows = jsonl_records(data)
        except (ValueError, OSError) as exc:
            problems.append(f"{key}: unreadable JSON Lines ({exc})")
            return None
        if len(rows) != entry.get("records"):
            problems.append(f"{key}: {len(rows)} entries != manifest {entry.get('records')}")
        if any(not isinstance(r, dict) or not r.get("reason") for r in rows):
            problems.append(f"{key}: a quarantine entry without a reason")
        return []
    parsed = parse_dataset_key(key)
    if parsed is None or parsed["run_id"] != run_id or parsed["batch"] != entry.get("batch") \
            or parsed["published_date"] != entry.get("published_date") or parsed["format"] != entry.get("format"):
        problems.append(f"{key}: key does not match its manifest entry (run {run_id})")
    try:
        if entry.get("format") == "parquet":
            table = pq.read_table(pa.BufferReader(data))
            for diff in schema_differences(table.schema):
                problems.append(f"{key}: schema: {diff}")
        else:
            rows = jsonl_records(data)
            odd = [r for r in rows if not isinstance(r, dict) or set(r) != set(FIELDS)]
            if odd:
                problems.append(f"{key}: {len(odd)} line(s) without exactly the schema's fields")
                return None
            table = records_to_table(rows)  # raises when a value does not fit its column
    except (ValueError, TypeError, OSError, pa.ArrowException) as exc:
        problems.append(f"{key}: unreadable or off-schema ({type(exc).__name__}: {exc})")
        return None
    if table.num_rows != entry.get("records"):
        problems.append(f"{key}: {table.num_rows} records != manifest {entry.get('records')}")
    if table.num_rows and set(table.column("run_id").to_pylist()) != {run_id}:
        problems.append(f"{key}: records of another run than {run_id}")
    if table.num_rows and entry.get("published_date") != "unknown":
        local_dates = pc.strftime(table.column("published_at"), format="%Y-%m-%d").to_pylist()
        if set(local_dates) != {entry.get("published_date")}:
            problems.append(f"{key}: published_at outside partition {entry.get('published_date')}")
    return list(zip(*(table.column(c).to_pylist() for c in RECORD_KEY)))


def verify(store: Store) -> VerifyReport:
    """Check every object of every manifest: it exists, has the manifest's size,
    SHA-256 and record count, and fits the schema (Parquet schema equal to
    :data:`~pipelines.arrow_schema.SCHEMA`; JSON Lines records with exactly its
    fields and convertible to it). Also: the JSON Lines and Parquet objects of a
    partition hold the same records, the totals add up, ``_latest`` names an
    existing manifest by its SHA-256, and no record (site, article, version) is
    published twice. Raises StoreError when the store cannot be listed."""
    report = VerifyReport()
    problems = report.problems
    seen: dict[tuple, str] = {}
    listed: set[str] = set()
    manifest_shas: dict[str, str] = {}
    for mkey in list_manifests(store):
        try:
            manifest, sha = load_manifest(store, mkey)
        except (StoreError, ValueError) as exc:
            problems.append(f"{mkey}: unreadable manifest ({exc})")
            continue
        manifest_shas[mkey] = sha
        report.manifests += 1
        run_id = manifest.get("run_id", "?")
        if mkey != manifest_key(run_id):
            problems.append(f"{mkey}: names run {run_id}")
        objects = manifest.get("objects", [])
        by_format: dict[tuple, dict[str, list]] = {}
        for entry in objects:
            if any(f not in entry for f in ENTRY_FIELDS):
                problems.append(f"{mkey}: entry without {ENTRY_FIELDS}: {entry}")
                continue
            listed.add(entry["key"])
            report.objects += 1
            keys = _check_object(store, run_id, entry, problems)
            if keys is None or entry["kind"] != "dataset":
                continue
            by_format.setdefault((entry["published_date"], entry["batch"]), {})[entry["format"]] = keys
            if entry["format"] == "parquet":
                report.records += len(keys)
                for k in keys:
                    if k in seen:
                        problems.append(f"record {k} published twice: {seen[k]} and {entry['key']}")
                    seen[k] = entry["key"]
        for (day, batch), formats in sorted(by_format.items()):
            if sorted(formats.get("parquet", [])) != sorted(formats.get("jsonl.gz", [])):
                problems.append(f"{mkey}: JSON Lines and Parquet of {day} batch {batch} hold different records")
        totals = manifest.get("totals", {})
        parquet = [e for e in objects if e.get("kind") == "dataset" and e.get("format") == "parquet"]
        expect = {"objects": len(objects), "records": sum(e.get("records", 0) for e in parquet),
                  "bytes": sum(e.get("size", 0) for e in objects)}
        for name, value in expect.items():
            if totals.get(name) != value:
                problems.append(f"{mkey}: totals.{name} {totals.get(name)} != {value}")
    latest = read_latest(store)
    if latest is None and manifest_shas:
        problems.append("_latest is missing")
    elif latest is not None and (latest.get("manifest") not in manifest_shas
                                 or manifest_shas[latest["manifest"]] != latest.get("sha256")):
        problems.append(f"_latest names {latest.get('manifest')} with sha256 {latest.get('sha256')}, not in the store")
    report.unlisted = sorted(
        k for k in store.list(DATASET_PREFIX) if parse_dataset_key(k) is not None and k not in listed
    )
    return report


def latest_versions(store: Store, since: date | None = None) -> tuple[pa.Table, int]:
    """The latest version of every article published on or after ``since``
    (local date, +07:00), from every manifest's Parquet objects: one row per
    (site, article_id), the highest ``version`` (then the latest ``fetched_at``),
    ordered by ``published_at`` then ``article_id``. Returns ``(table, records
    read)``. Raises StoreError."""
    tables = []
    for manifest in load_manifests(store):
        for entry in manifest["objects"]:
            if entry["kind"] != "dataset" or entry["format"] != "parquet":
                continue
            if since is not None and (entry["published_date"] == "unknown"
                                      or entry["published_date"] < since.isoformat()):
                continue
            tables.append(read_parquet(store, entry["key"]))
    table = pa.concat_tables(tables).cast(SCHEMA) if tables else SCHEMA.empty_table()
    read = table.num_rows
    if since is not None and table.num_rows:
        start = pa.scalar(datetime.fromisoformat(f"{since.isoformat()}T00:00:00{PUBLISHED_TZ}"),
                          type=SCHEMA.field("published_at").type)
        table = table.filter(pc.greater_equal(table.column("published_at"), start))
    best: dict[tuple, tuple] = {}
    columns = [table.column(c).to_pylist() for c in ("site", "article_id", "version", "fetched_at")]
    for i, (site, article_id, version, fetched_at) in enumerate(zip(*columns)):
        rank = (version, fetched_at)
        key = (site, article_id)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, i)
    table = table.take(sorted(i for _, i in best.values()))
    order = pc.sort_indices(table, sort_keys=[("published_at", "ascending"), ("article_id", "ascending")])
    return table.take(order), read
