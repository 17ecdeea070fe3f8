"""The Arrow schema of the published article record (schema v1) and the record →
Arrow → Parquet conversion.

One explicit schema, not inference: every batch gets the same column types
whatever its records happen to hold (a batch where every ``lead`` is null is
still a string column), so a dataset of many files reads as one table in
pyarrow, pandas and DuckDB. The field list is the shared contract of
``HELPERS.md`` ("Record fields (schema v1)") and ``schemas/article.schema.json``;
``tests/test_arrow_schema.py`` holds the two together.

Type choices (documented for consumers in DATASET.md):

* ``published_at``, ``modified_at``: ``timestamp[us, tz="+07:00"]``. The JSON
  record's ISO 8601 strings carry ``+07:00``; as timestamps they sort, filter and
  compare as instants in pandas (``datetime64[us, UTC+07:00]``), pyarrow and
  DuckDB (``TIMESTAMP WITH TIME ZONE``) with no parsing. A fixed offset, not
  ``Asia/Ho_Chi_Minh``, so no reader needs a time-zone database.
* ``fetched_at``: ``timestamp[us, tz="UTC"]``.
* ``extracted_by``: ``map<string, string>`` (field name → method).
* Fields a record does not carry are null (``text``, ``word_count``,
  ``modified_at``, ``near_duplicate_of``, ``extracted_by`` are produced by later
  pipeline stages; records from before them stay readable).
"""

from __future__ import annotations

import io
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

#: Bumped with :data:`crawler.layout.SCHEMA_MAJOR` on a breaking change; a new
#: nullable field is a minor change (same ``v1/`` prefix).
SCHEMA_VERSION = "1.0.1"  # = "x-schema-version" of schemas/article.schema.json

PUBLISHED_TZ = "+07:00"

_image = pa.struct([pa.field("url", pa.string()), pa.field("caption", pa.string())])
_warc = pa.struct([pa.field("file", pa.string()), pa.field("offset", pa.int64()), pa.field("length", pa.int64())])

#: The published record, in contract order. ``nullable=False`` marks what the
#: pipeline guarantees (validate + dedup stages); everything else may be null.
SCHEMA = pa.schema(
    [
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("site", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("canonical_url", pa.string()),
        pa.field("urls", pa.list_(pa.string())),
        pa.field("section", pa.list_(pa.string())),
        pa.field("title", pa.string(), nullable=False),
        pa.field("lead", pa.string()),
        pa.field("body", pa.list_(pa.string())),
        pa.field("text", pa.string()),
        pa.field("authors", pa.list_(pa.string())),
        pa.field("source", pa.string()),
        pa.field("published_at", pa.timestamp("us", tz=PUBLISHED_TZ), nullable=False),
        pa.field("modified_at", pa.timestamp("us", tz=PUBLISHED_TZ)),
        pa.field("images", pa.list_(_image)),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("language", pa.string()),
        pa.field("word_count", pa.int32()),
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("previous_sha256", pa.string()),
        pa.field("near_duplicate_of", pa.string()),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("warc", _warc, nullable=False),
        pa.field("extracted_by", pa.map_(pa.string(), pa.string())),
    ],
    metadata={"newsarchive.schema": f"article/{SCHEMA_VERSION}"},
)

#: Record field names in schema order.
FIELDS: tuple[str, ...] = tuple(SCHEMA.names)

_FIELD_SET = frozenset(FIELDS)

#: Fields held as ISO 8601 strings in JSON and as timestamps in Arrow.
TIMESTAMP_FIELDS = frozenset(f.name for f in SCHEMA if pa.types.is_timestamp(f.type))

PARQUET_COMPRESSION = "zstd"

#: Columns whose min/max statistics go into the Parquet footer: the ones readers
#: filter on (ids, times, versions). Statistics of the text columns would hold
#: whole bodies as min and max, doubling a small file for no query's benefit.
PARQUET_STATISTICS = ("article_id", "site", "url", "published_at", "modified_at", "fetched_at", "version",
                      "word_count", "language", "content_sha256", "run_id")


def normalize_record(record: dict) -> tuple[dict, list[str]]:
    """The record restricted to the schema's fields in schema order, missing
    fields set to None; returns ``(record, unknown_field_names)`` so the caller
    can report fields the schema does not know instead of dropping them silently."""
    unknown = sorted(k for k in record if k not in _FIELD_SET)
    return {name: record.get(name) for name in FIELDS}, unknown


def _timestamp(value, field: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(value)
    if parsed is not None and parsed.utcoffset() is None:
        # Arrow would read a naive time as UTC: refuse rather than shift it 7 hours.
        raise ValueError(f"{field}: time without a UTC offset: {value!r}")
    return parsed


def arrow_row(record: dict) -> dict:
    """A normalized record with its ISO 8601 strings parsed for Arrow.
    Raises ValueError for an unreadable or offset-less time."""
    row = dict(record)
    for name in TIMESTAMP_FIELDS:
        row[name] = _timestamp(row.get(name), name)
    return row


def records_to_table(records: list[dict]) -> pa.Table:
    """Records (dicts with the schema's fields) as an Arrow table of :data:`SCHEMA`.

    Raises ``ValueError`` / ``pyarrow.ArrowException`` (``ArrowInvalid``,
    ``ArrowTypeError``) when a value does not fit its column (a null in a
    non-nullable field, a string where a list belongs, an unreadable time)."""
    rows = [arrow_row(normalize_record(r)[0]) for r in records]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    table.validate(full=True)
    for field in SCHEMA:
        if not field.nullable and table.column(field.name).null_count:
            raise ValueError(f"null in non-nullable field {field.name!r}")
    return table


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as one Parquet file: zstd, plain encoding (a dictionary page costs
    more than it saves in files of a day's articles, and zstd takes the
    repetition), statistics for :data:`PARQUET_STATISTICS`. The same table always
    gives the same bytes with this pyarrow version (no timestamps in the file
    metadata), so a re-sent batch has the same SHA-256."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=PARQUET_COMPRESSION, use_dictionary=False,
                   write_statistics=list(PARQUET_STATISTICS))
    return sink.getvalue()


def schema_differences(schema: pa.Schema) -> list[str]:
    """How ``schema`` differs from :data:`SCHEMA` (names, order, types,
    nullability; metadata ignored). Empty when equal."""
    if schema.equals(SCHEMA, check_metadata=False):
        return []
    problems = []
    if list(schema.names) != list(SCHEMA.names):
        problems.append(f"columns {list(schema.names)} != {list(SCHEMA.names)}")
    for field in SCHEMA:
        if field.name in schema.names:
            other = schema.field(field.name)
            if not other.type.equals(field.type):
                problems.append(f"{field.name}: type {other.type} != {field.type}")
            elif other.nullable != field.nullable:
                problems.append(f"{field.name}: nullable {other.nullable} != {field.nullable}")
    return problems or ["schema differs"]
