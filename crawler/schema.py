"""The article record schema (``schemas/article.schema.json``, JSON Schema 2020-12) and
the checks built on it.

Where records are checked (README "Record schema"):

* :func:`validate_stage` — the ``validate`` pipeline stage (200): the whole schema except
  that the fields the later stages add (:data:`PIPELINE_FIELDS`: dedup's ``urls``,
  ``version``, ``previous_sha256``, ``near_duplicate_of``) may still be missing.
* :func:`validate_record` — the complete schema, for a record as it is published; the
  ``RecordGatePipeline`` (850) runs it on every item about to be published.

Each check returns a list of :class:`Violation`; :func:`quarantine_reason` turns them
into the quarantine reason code (``no_title``, ``unreadable_date``, ``no_content`` …).
Extraction (:func:`crawler.extract.extract_article`) quarantines the common cases
itself and is held to the schema by the property tests (tests/test_properties.py).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import fastjsonschema
from jsonschema import Draft202012Validator, validators

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SCHEMA_ID",
    "RECORD_FIELDS",
    "PIPELINE_FIELDS",
    "Violation",
    "validate_record",
    "validate_stage",
    "quarantine_reason",
]

#: The schema file, shipped inside the package (``schemas/article.schema.json`` at the
#: repository root links to it), so a non-editable install finds it too.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "article.schema.json"
SCHEMA: dict = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
#: Semantic version of the record schema (``x-schema-version``), e.g. ``"1.0.0"``.
SCHEMA_VERSION: str = SCHEMA["x-schema-version"]
SCHEMA_ID: str = SCHEMA["$id"]
#: Every field of a published record, in schema order.
RECORD_FIELDS: tuple[str, ...] = tuple(SCHEMA["properties"])
#: Fields the dedup stage fills after ``validate`` has run.
PIPELINE_FIELDS: tuple[str, ...] = ("urls", "version", "previous_sha256", "near_duplicate_of")

#: Field whose violation gives a dedicated quarantine reason.
_REASONS = {
    "title": "no_title",
    "published_at": "unreadable_date",
    "article_id": "no_article_id",
    "warc": "no_warc_record",
}


@dataclass(frozen=True)
class Violation:
    """One schema violation: ``field`` (top-level record field, ``""`` for a rule on the
    whole record, ``"content"`` for the body/image/lead rule) and jsonschema's message."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field or 'record'}: {self.message}"


def _schema(kind: str) -> dict:
    schema = copy.deepcopy(SCHEMA)
    if kind == "stage":
        schema["required"] = [f for f in schema["required"] if f not in PIPELINE_FIELDS]
    return schema


#: A record's arrays may be Python tuples (they are JSON arrays once published):
#: jsonschema's checker is told so, as fastjsonschema's generated code already does.
_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "array", lambda _checker, instance: isinstance(instance, (list, tuple))),
)


@lru_cache(maxsize=None)
def _validator(kind: str):
    return _Validator(_schema(kind))


@lru_cache(maxsize=None)
def _is_valid(kind: str) -> Callable[[dict], Any]:
    """fastjsonschema's compiled form of the schema: raises
    ``JsonSchemaValueException`` at the first violation. Formats are not asserted,
    as with jsonschema without a format checker; no defaults are filled in."""
    return fastjsonschema.compile(_schema(kind), use_formats=False, use_default=False)


def _violations(kind: str, record: Mapping[str, Any]) -> list[Violation]:
    record = dict(record)
    try:
        # Ten times faster than jsonschema on a valid record (every record the gate
        # sees, nearly); jsonschema names the violations of the others, all of them.
        _is_valid(kind)(record)
        return []
    except (fastjsonschema.JsonSchemaException, TypeError):
        pass  # TypeError: the generated code meets an unhashable value in an enum check
    out: list[Violation] = []
    for err in sorted(_validator(kind).iter_errors(record), key=lambda e: list(e.path)):
        if err.path:
            out.append(Violation(str(err.path[0]), err.message[:300]))
        elif err.validator == "required":
            missing = [f for f in err.validator_value if f not in record]
            out.extend(Violation(f, "missing") for f in missing)
        elif err.validator == "anyOf":
            out.append(Violation("content", "no body paragraph, image or lead"))
        else:
            out.append(Violation("", err.message[:300]))
    # ``required`` reports each missing field once per error: keep the first of each.
    return list(dict.fromkeys(out))


def validate_record(record: Mapping[str, Any]) -> list[Violation]:
    """Violations of the full record schema (empty list: valid). ``record`` is the
    published JSON object (no internal pipeline fields)."""
    return _violations("record", record)


def validate_stage(record: Mapping[str, Any]) -> list[Violation]:
    """Violations of the record schema for an item before dedup: the same rules, but
    :data:`PIPELINE_FIELDS` may be missing (when present they are checked)."""
    return _violations("stage", record)


def quarantine_reason(violations: list[Violation]) -> str:
    """Reason code for a list of violations (the first one decides): ``no_title``,
    ``unreadable_date``, ``no_content``, ``no_article_id``, ``no_warc_record``, else
    ``invalid_<field>`` (``invalid_record`` for a rule on the whole record)."""
    if not violations:
        raise ValueError("no violations")
    # The dedicated reasons first, in the order a reader would fix them.
    for field in ("article_id", "title", "published_at", "content", "warc"):
        if any(v.field == field for v in violations):
            return _REASONS.get(field, "no_content")
    first = violations[0].field
    return f"invalid_{first}" if first else "invalid_record"
