"""The Arrow schema of the record and the batch serialization: contract fields,
types that readers want, nulls for fields other stages add later, determinism."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawler.dataset.batches import build_batch
from pipelines.arrow_schema import FIELDS, SCHEMA, SCHEMA_VERSION, parquet_bytes, records_to_table, schema_differences
from tests.conftest import load_gold

ROOT = Path(__file__).resolve().parent.parent

#: HELPERS.md, "Record fields (schema v1) — the shared contract", in its order.
CONTRACT = (
    "article_id", "site", "url", "canonical_url", "urls", "section", "title", "lead", "body", "text",
    "authors", "source", "published_at", "modified_at", "images", "tags", "language", "word_count",
    "content_sha256", "version", "previous_sha256", "near_duplicate_of", "fetched_at", "run_id", "warc",
    "extracted_by",
)

SEED = load_gold()["127836"]


def record_today(**extra) -> dict:
    """A record as the pipeline publishes it before issue 4's new fields exist."""
    rec = {k: SEED[k] for k in ("article_id", "canonical_url", "section", "title", "lead", "body", "authors",
                                "source", "published_at", "images", "tags", "language")}
    rec.update(
        site="baotuyenquang", url=SEED["canonical_url"], urls=SEED["urls_seen"], fetched_at="2026-11-29T13:46:35+00:00",
        content_sha256="ab" * 32, version=1, previous_sha256=None, run_id="R1",
        warc={"file": "warc/2026/11/29/X-20261129134635-00000-h.warc.gz", "offset": 23450, "length": 10761},
    )
    rec.update(extra)
    return rec


def test_schema_fields_are_the_contract_in_order():
    assert FIELDS == CONTRACT


def test_schema_fields_equal_the_json_schema():
    path = ROOT / "schemas" / "article.schema.json"
    schema = json.loads(path.read_text())
    assert set(schema["properties"]) == set(FIELDS)
    assert schema["x-schema-version"] == SCHEMA_VERSION


def test_record_of_today_converts_with_nulls_for_later_fields():
    table = records_to_table([record_today()])
    row = table.to_pylist()[0]
    for name in ("text", "word_count", "modified_at", "near_duplicate_of", "extracted_by"):
        assert row[name] is None, name
    assert row["title"] == SEED["title"]
    assert row["body"] == SEED["body"]
    assert row["authors"] == ["Hà Huế"]
    # Same instant, shown in +07:00: 22:56 local is 15:56 UTC.
    assert row["published_at"] == datetime(2019, 10, 17, 22, 56, tzinfo=timezone(timedelta(hours=7)))
    assert row["published_at"].utcoffset() == timedelta(hours=7)
    assert row["fetched_at"] == datetime(2026, 11, 29, 13, 46, 35, tzinfo=timezone.utc)
    assert row["images"] == SEED["images"]
    assert row["warc"] == {"file": "warc/2026/11/29/X-20261129134635-00000-h.warc.gz", "offset": 23450, "length": 10761}


def test_record_with_later_fields_keeps_their_types():
    text = "\n\n".join(SEED["body"])
    rec = record_today(text=text, word_count=len(text.split()), modified_at="2019-10-18T08:00:00+07:00",
                       near_duplicate_of="146233", extracted_by={"title": "profile", "lead": "json-ld"})
    table = records_to_table([rec])
    assert table.schema.field("extracted_by").type == pa.map_(pa.string(), pa.string())
    row = table.to_pylist()[0]
    assert row["word_count"] == 572
    assert row["text"].startswith("Ông Ma Thế Hải")
    assert sorted(row["extracted_by"]) == [("lead", "json-ld"), ("title", "profile")]
    assert row["modified_at"].isoformat() == "2019-10-18T08:00:00+07:00"


@pytest.mark.parametrize(
    "change, message",
    [({"title": None}, "title"), ({"published_at": "2019-10-17T22:56:00"}, "offset"),
     ({"published_at": "17/10/2019"}, "isoformat"), ({"version": "one"}, "convert .one. with type str")],
)
def test_records_that_do_not_fit_raise(change, message):
    with pytest.raises((ValueError, pa.ArrowException), match=message):
        records_to_table([record_today(**change)])


def test_parquet_is_deterministic_and_round_trips_the_schema():
    table = records_to_table([record_today(), record_today(article_id="2", url="https://x/2")])
    a, b = parquet_bytes(table), parquet_bytes(records_to_table([record_today(), record_today(article_id="2", url="https://x/2")]))
    assert a == b
    back = pq.read_table(pa.BufferReader(a))
    assert schema_differences(back.schema) == []
    assert back.schema.metadata[b"newsarchive.schema"] == b"article/1.0.1"
    assert pq.ParquetFile(pa.BufferReader(a)).metadata.row_group(0).column(0).compression == "ZSTD"
    assert back.to_pylist() == table.to_pylist()
    # Min/max where readers filter (time, id), none for the text: the body is not copied into the footer.
    columns = {c.path_in_schema: c for c in (pq.ParquetFile(pa.BufferReader(a)).metadata.row_group(0).column(i)
                                             for i in range(len(SCHEMA)))}
    assert columns["article_id"].statistics.min == "127836" and columns["article_id"].statistics.max == "2"
    assert columns["published_at"].is_stats_set and not columns["text"].is_stats_set
    assert not columns["body.list.element"].is_stats_set
    assert "PLAIN_DICTIONARY" not in columns["site"].encodings and "RLE_DICTIONARY" not in columns["site"].encodings


def test_a_partition_sliced_from_the_batch_table_has_the_bytes_of_its_own_table():
    records = [record_today(article_id=str(i), url=f"https://x/{i}", published_at=f"2019-10-1{i % 3}T08:00:00+07:00",
                            authors=["Minh Anh"] * (i % 2), tags=["Na Hang"] * (i % 3)) for i in range(12)]
    built = build_batch("R1", 1, records, [])
    for obj in (o for o in built.objects if o.format == "parquet"):
        own = sorted((r for r in records if r["published_at"][:10] == obj.published_date), key=lambda r: r["article_id"])
        assert obj.data == parquet_bytes(records_to_table(own)), obj.key


def test_schema_differences_names_the_column():
    other = SCHEMA.set(SCHEMA.get_field_index("version"), pa.field("version", pa.int64(), nullable=False))
    assert schema_differences(other) == ["version: type int64 != int32"]


def test_batch_objects_partitions_and_quarantine():
    late = record_today(article_id="2", url="https://x/2", published_at="2024-01-18T17:42:00+07:00")
    bad = record_today(article_id="3", url="https://x/3", version="three")
    odd = record_today(article_id="4", url="https://x/4", surprise=1)
    built = build_batch("R1", 7, [late, record_today(), bad, odd], [{"reason": "empty_body", "url": "https://x/q"}])
    keys = [o.key for o in built.objects]
    assert keys == [
        "dataset/articles/v1/published_date=2019-10-17/part-R1-00007.jsonl.gz",
        "dataset/articles/v1/published_date=2019-10-17/part-R1-00007.parquet",
        "dataset/articles/v1/published_date=2024-01-18/part-R1-00007.jsonl.gz",
        "dataset/articles/v1/published_date=2024-01-18/part-R1-00007.parquet",
        "quarantine/R1/part-00007.jsonl.gz",
    ]
    assert built.records == 3 and built.rejected == 1 and built.unknown_fields == ["surprise"]
    first = [json.loads(line) for line in gzip.decompress(built.objects[0].data).decode().splitlines()]
    assert [r["article_id"] for r in first] == ["127836", "4"]
    assert all(list(r) == sorted(FIELDS) for r in first)  # every field, unknown ones cut
    assert first[0]["published_at"] == "2019-10-17T22:56:00+07:00"  # JSON keeps the string
    quarantined = [json.loads(line) for line in gzip.decompress(built.objects[4].data).decode().splitlines()]
    assert [(q["reason"], q.get("article_id")) for q in quarantined] == [("empty_body", None), ("dataset_schema", "3")]
    assert build_batch("R1", 7, [late, record_today(), bad, odd], [{"reason": "empty_body", "url": "https://x/q"}]
                       ).objects[1].sha256 == built.objects[1].sha256
