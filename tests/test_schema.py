"""The record schema (schemas/article.schema.json), the item class, and the clean,
validate and record-gate stages that hold records to it."""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from crawler.items import INTERNAL_FIELDS, ArticleItem, QuarantineItem, content_sha256
from crawler.schema import (
    PIPELINE_FIELDS,
    RECORD_FIELDS,
    SCHEMA,
    SCHEMA_ID,
    SCHEMA_VERSION,
    quarantine_reason,
    validate_record,
    validate_stage,
)
from pipelines.clean import clean_article
from pipelines.validate import RecordGatePipeline, ValidatePipeline

ROOT = Path(__file__).resolve().parent.parent
GOLD = [json.loads(line) for line in (ROOT / "tests/fixtures/portal/gold/articles.jsonl").read_text("utf-8").splitlines()]
SEED = next(g for g in GOLD if g["article_id"] == "127836")

#: The record fields HELPERS.md lists as the shared contract (schema v1), in its order.
CONTRACT = ("article_id site url canonical_url urls section title lead body text authors source published_at "
            "modified_at images tags language word_count content_sha256 version previous_sha256 near_duplicate_of "
            "fetched_at run_id warc extracted_by").split()


class Stats:
    def __init__(self):
        self.values: dict[str, int] = {}

    def inc_value(self, key, count=1, start=0):
        self.values[key] = self.values.get(key, start) + count


def seed_record() -> dict:
    """A complete, valid record built from the seed article's gold values."""
    body = SEED["body"]
    return {
        "article_id": SEED["article_id"], "site": "baotuyenquang", "url": SEED["canonical_url"],
        "canonical_url": SEED["canonical_url"], "urls": SEED["urls_seen"], "section": SEED["section"],
        "title": SEED["title"], "lead": SEED["lead"], "body": body, "text": "\n\n".join(body),
        "authors": SEED["authors"], "source": SEED["source"], "published_at": SEED["published_at"],
        "modified_at": None, "images": SEED["images"], "tags": SEED["tags"], "language": "vi",
        "word_count": len(" ".join(body).split()),
        "content_sha256": content_sha256(SEED["title"], SEED["lead"], body), "version": 1,
        "previous_sha256": None, "near_duplicate_of": None, "fetched_at": "2026-11-29T13:30:00+00:00",
        "run_id": "20261129T133000Z-1a2b", "warc": {"file": "warc/2026/11/29/x.warc.gz", "offset": 0, "length": 1234},
        "extracted_by": {f: "profile" for f in ("title", "lead", "body", "authors", "source", "published_at",
                                                "images", "tags", "section", "language")} | {"modified_at": None},
    }


# ---------------------------------------------------------------- the schema file


def test_schema_is_valid_2020_12_and_versioned() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert re.fullmatch(r"\d+\.\d+\.\d+", SCHEMA_VERSION) and SCHEMA_VERSION == "1.0.1"
    assert SCHEMA_ID.endswith("/" + SCHEMA_VERSION)
    assert all(SCHEMA["properties"][f].get("description") for f in RECORD_FIELDS)


def test_schema_fields_are_exactly_the_contract() -> None:
    assert list(RECORD_FIELDS) == CONTRACT
    assert SCHEMA["required"] == CONTRACT and SCHEMA["additionalProperties"] is False


def test_item_class_has_every_record_field_and_nothing_else() -> None:
    assert set(ArticleItem.fields) - INTERNAL_FIELDS == set(CONTRACT)
    assert set(PIPELINE_FIELDS) < set(CONTRACT)


def test_seed_record_is_valid() -> None:
    assert validate_record(seed_record()) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": " padded "}, "title"),
        ({"published_at": "2019-10-17T22:56:00Z"}, "published_at"),
        ({"published_at": "17/10/2019 10:56:00 CH"}, "published_at"),
        ({"modified_at": "2019-10-17"}, "modified_at"),
        ({"images": [{"url": "/media/x.jpg", "caption": None}]}, "images"),
        ({"images": [{"url": "https://a/x.jpg"}]}, "images"),
        ({"body": ["ok", ""]}, "body"),
        ({"language": "vi-VN"}, "language"),
        ({"word_count": -1}, "word_count"),
        ({"version": 0}, "version"),
        ({"content_sha256": "ABC"}, "content_sha256"),
        ({"warc": {"file": "x", "offset": 0}}, "warc"),
        ({"extracted_by": {"title": "guess"}}, "extracted_by"),
        ({"fetched_at": "2026-11-29T20:30:00+07:00"}, "fetched_at"),
        ({"urls": []}, "urls"),
        ({"unexpected": 1}, ""),
    ],
)
def test_schema_rejects(change: dict, field: str) -> None:
    record = seed_record() | change
    assert field in {v.field for v in validate_record(record)}


def test_content_rule_and_reasons() -> None:
    photo_only = seed_record() | {"body": [], "text": "", "word_count": 0}
    assert validate_record(photo_only) == []  # F18: images are content
    empty = photo_only | {"images": [], "lead": None}
    assert quarantine_reason(validate_record(empty)) == "no_content"
    assert quarantine_reason(validate_record(seed_record() | {"title": ""})) == "no_title"
    assert quarantine_reason(validate_record(seed_record() | {"published_at": None})) == "unreadable_date"
    assert quarantine_reason(validate_record(seed_record() | {"warc": None})) == "no_warc_record"
    assert quarantine_reason(validate_record(seed_record() | {"tags": [""]})) == "invalid_tags"


def test_stage_schema_lets_dedup_fields_be_missing_only() -> None:
    record = {k: v for k, v in seed_record().items() if k not in PIPELINE_FIELDS}
    assert validate_stage(record) == []
    assert {v.field for v in validate_record(record)} == set(PIPELINE_FIELDS)
    assert {v.field for v in validate_stage(record | {"version": "1"})} == {"version"}
    assert {v.field for v in validate_stage({k: v for k, v in record.items() if k != "text"})} == {"text"}


# ---------------------------------------------------------------- clean stage


def test_clean_stage_rules() -> None:
    nfd_title = unicodedata.normalize("NFD", "Khám sàng lọc tim bẩm sinh")
    item = ArticleItem(
        title=nfd_title + "\u200b", lead="\u00a0Sáng\u00a0 5/9,\u00adhọc\u2060 sinh ", source=None,
        body=["\u00a0", "Tại\u200b Trường  THPT\n Chuyên", "\u200b\u200c", unicodedata.normalize("NFD", "Hà Giang")],
        authors=["Hà Huế", "Hà\u00a0Huế"], tags=["Giáo dục", " "], section=["Xã hội", "Giáo dục"],
        images=[{"url": "https://baotuyenquang.com.vn/a.jpg", "caption": "\u00a0"},
                {"url": "https://baotuyenquang.com.vn/b.jpg", "caption": "Học\u00a0sinh "}],
    )
    clean_article(item)
    assert item["title"] == "Khám sàng lọc tim bẩm sinh" and unicodedata.is_normalized("NFC", item["title"])
    assert item["lead"] == "Sáng 5/9,học sinh"
    assert item["body"] == ["Tại Trường THPT Chuyên", "Hà Giang"]  # NBSP-only/zero-width-only dropped
    assert item["text"] == "Tại Trường THPT Chuyên\n\nHà Giang" and item["word_count"] == 6
    assert item["authors"] == ["Hà Huế"] and item["tags"] == ["Giáo dục"]
    assert [i["caption"] for i in item["images"]] == [None, "Học sinh"]


def test_clean_does_not_decode_entities_twice() -> None:
    item = ArticleItem(title="AT&amp;T &lt;p&gt;", body=["x &amp;lt; y"], authors=[], tags=[], section=[], images=[])
    clean_article(item)
    assert item["title"] == "AT&amp;T &lt;p&gt;" and item["body"] == ["x &amp;lt; y"]


# ---------------------------------------------------------------- validate stage and record gate


def item_from(record: dict, drop: tuple[str, ...] = PIPELINE_FIELDS) -> ArticleItem:
    return ArticleItem(**{k: v for k, v in record.items() if k not in drop}, warnings=[])


def test_validate_stage_passes_a_good_item_and_counts_it() -> None:
    stats = Stats()
    item = item_from(seed_record())
    assert ValidatePipeline(stats).process_item(item) is item
    assert stats.values == {"newsarchive/validate/ok": 1}


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"title": ""}, "no_title"), ({"published_at": "hôm qua"}, "unreadable_date"),
     ({"body": [], "images": [], "lead": None}, "no_content"), ({"warc": None}, "no_warc_record"),
     ({"article_id": ""}, "no_article_id"), ({"canonical_url": "javascript:void(0)"}, "invalid_canonical_url")],
)
def test_validate_stage_quarantines_with_the_reason(change: dict, reason: str) -> None:
    stats = Stats()
    out = ValidatePipeline(stats).process_item(item_from(seed_record() | change))
    assert isinstance(out, QuarantineItem)
    assert out["reason"] == reason and out["url"] == SEED["canonical_url"]
    assert out["warc"] == change.get("warc", seed_record()["warc"]) and out["detail"]
    assert stats.values == {"newsarchive/validate/quarantined": 1, f"newsarchive/validate/quarantine/{reason}": 1}


def test_record_gate_checks_the_complete_record() -> None:
    stats = Stats()
    gate = RecordGatePipeline(stats, "baotuyenquang")
    complete = item_from(seed_record(), drop=())
    assert gate.process_item(complete) is complete
    missing_version = item_from(seed_record(), drop=("version",))
    out = gate.process_item(missing_version)
    assert isinstance(out, QuarantineItem) and out["reason"] == "invalid_version"
    assert "version: missing" in out["detail"]
    # Duplicates are not published as records: they pass untouched.
    dup = item_from(seed_record(), drop=("version", "urls"))
    dup["dedup"] = {"status": "duplicate", "article_key": "k", "canonical_page": False}
    assert gate.process_item(dup) is dup
    assert stats.values["newsarchive/validate/quarantine/invalid_version"] == 1


def test_canonical_page_replacing_a_copy_brings_every_content_field() -> None:
    """The m. copy is met first, the canonical page later (a duplicate in dedup): the
    published record takes all its page-derived fields from the canonical page, the
    new ones (text, word_count, modified_at, extracted_by) included."""
    from pipelines.publish import PublishPipeline

    publisher = PublishPipeline("unused", "run", 500, "baotuyenquang", Stats())
    canonical = seed_record()
    copy = canonical | {"url": canonical["url"].replace("https://", "https://m."), "body": canonical["body"][:1],
                        "modified_at": None, "extracted_by": canonical["extracted_by"] | {"tags": None}}
    copy |= {"text": copy["body"][0], "word_count": len(copy["body"][0].split())}
    key = canonical["canonical_url"]
    publisher.add_article(_with_dedup(copy, "new", key, False))
    publisher.add_article(_with_dedup(canonical | {"modified_at": "2019-10-18T08:00:00+07:00"}, "duplicate", key, True))
    record = publisher.records[key]
    assert record["body"] == canonical["body"] and record["text"] == canonical["text"]
    assert record["word_count"] == canonical["word_count"] and record["modified_at"] == "2019-10-18T08:00:00+07:00"
    assert record["extracted_by"] == canonical["extracted_by"]
    assert validate_record(record | {"urls": record["urls"]}) == []


def _with_dedup(record: dict, status: str, key: str, canonical_page: bool) -> ArticleItem:
    item = item_from(record, drop=())
    item["urls"] = [record["url"]]
    item["dedup"] = {"status": status, "article_key": key, "canonical_page": canonical_page}
    return item


# -- the fast path (fastjsonschema) judges as jsonschema does ------------------------
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=False) | st.sampled_from(
        ["", " ", "x", "127836", "2019-10-17T22:56:00+07:00", "2019-10-17", "vi", "https://baotuyenquang.com.vn/a.html",
         "ab" * 32, "AB" * 32, "Tuyên Quang", "profile", "jsonld"]),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.sampled_from(["url", "caption", "file", "offset", "length", "title", "x"]), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated_seed(draw) -> dict:
    record = copy.deepcopy(seed_record())  # its lists are the gold's own
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from([*RECORD_FIELDS, "surprise"]))
        target, key = record, field
        if isinstance(record.get(field), dict) and record[field] and draw(st.booleans()):
            target, key = record[field], draw(st.sampled_from(sorted(record[field])))  # warc.offset, extracted_by.title …
        elif isinstance(record.get(field), list) and record[field] and draw(st.booleans()):
            target, key = record[field], draw(st.integers(0, len(record[field]) - 1))  # body[2], images[0] …
        if isinstance(target, dict) and draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        elif draw(st.booleans()):
            target[key] = draw(_VALUES)
        else:
            target[key] = draw(_alike(target[key] if key in target or isinstance(target, list) else None))
    return record


def _alike(value):
    """Values of the same JSON type as ``value`` (so that some mutants stay valid)."""
    strings = st.sampled_from(["", " ", "x", "127836", "2019-10-17T22:56:00+07:00", "ab" * 32, "vi", "profile",
                               "https://baotuyenquang.com.vn/a.html"]) | st.text(max_size=4)
    if isinstance(value, bool) or value is None:
        return st.none() | st.booleans() | strings
    if isinstance(value, (int, float)):
        return st.integers(-2, 5) | st.just(1.0) | st.just(2.5) | st.booleans()
    if isinstance(value, str):
        return strings
    if isinstance(value, list):
        items = st.sampled_from(value) if value else strings
        return st.lists(items, max_size=3) | st.lists(items, max_size=3).map(tuple)
    if isinstance(value, dict):
        return st.fixed_dictionaries({k: st.just(v) | _VALUES for k, v in value.items()})
    return _VALUES


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_seed(), st.sampled_from(["record", "stage"]))
def test_the_compiled_check_accepts_exactly_what_jsonschema_accepts(record: dict, kind: str) -> None:
    from fastjsonschema import JsonSchemaException

    from crawler.schema import _is_valid, _validator

    try:
        _is_valid(kind)(copy.deepcopy(record))
        fast = True
    except (JsonSchemaException, TypeError):  # TypeError: an unhashable value met an enum
        fast = False
    assert fast == (not list(_validator(kind).iter_errors(record))), record


def test_violations_are_still_named_when_the_fast_path_refuses() -> None:
    record = copy.deepcopy(seed_record())
    record.update(title="", version=True, urls=("https://baotuyenquang.com.vn/a.html",))
    assert {v.field for v in validate_record(record)} == {"title", "version"}  # a tuple is an array
