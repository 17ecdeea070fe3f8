"""The drill table: every test marked ``@pytest.mark.drill("name")`` is one trial of
the drill ``name``; its outcome and what it measured (records lost, records
duplicated) are appended as one JSON line to ``test-artifacts/drills.jsonl`` and the
table (drill, trials, passed, data lost, duplicates) is printed at the end of the
session.

A drill test measures through the ``drill_trial`` fixture *before* it asserts::

    drill_trial.lost = len(gold_keys - published_keys)
    drill_trial.duplicates = len(keys) - len(set(keys))

A trial that failed before measuring shows ``?`` (unknown, counted as not passed).
These hooks are imported by tests/conftest.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "test-artifacts" / "drills.jsonl"
_KEY = pytest.StashKey["DrillTrial"]()


@dataclass
class DrillTrial:
    """One trial's measurements; ``None`` = not measured (the test failed first, or
    the drill does not lose data by construction, e.g. a refused request)."""

    drill: str
    test: str
    passed: bool = False
    lost: int | None = None
    duplicates: int | None = None


def _drill_name(item) -> str | None:
    marker = item.get_closest_marker("drill")
    if marker is None:
        return None
    return marker.args[0] if marker.args else item.module.__name__.rsplit(".", 1)[-1]


@pytest.fixture
def drill_trial(request) -> DrillTrial:
    """The current drill trial, to record ``lost``/``duplicates`` into."""
    trial = request.node.stash.get(_KEY, None)
    if trial is None:
        trial = DrillTrial(_drill_name(request.node) or request.node.name, request.node.nodeid)
        request.node.stash[_KEY] = trial
    return trial


def pytest_sessionstart(session):
    # Only the rows of this session go into the table.
    if ARTIFACT.exists():
        ARTIFACT.unlink()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    name = _drill_name(item)
    if name is None or rep.when != "call" and not (rep.when == "setup" and rep.failed):
        return
    trial = item.stash.get(_KEY, None) or DrillTrial(name, item.nodeid)
    trial.drill = name
    trial.passed = rep.passed
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    with open(ARTIFACT, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(trial), ensure_ascii=False) + "\n")


def table(rows: list[dict]) -> list[str]:
    """The table's lines from the JSON rows: one line per drill, sums over trials;
    ``-`` when no trial of the drill measures that column, ``?`` when one failed
    before measuring it."""
    drills: dict[str, dict] = {}
    for row in rows:
        d = drills.setdefault(row["drill"], {"trials": 0, "passed": 0, "lost": [], "duplicates": []})
        d["trials"] += 1
        d["passed"] += bool(row["passed"])
        d["lost"].append(row["lost"])
        d["duplicates"].append(row["duplicates"])

    def total(values, passed_all):
        measured = [v for v in values if v is not None]
        if not measured:
            return "-" if passed_all else "?"
        return str(sum(measured)) + ("" if len(measured) == len(values) or passed_all else "?")

    width = max([len("drill"), *(len(k) for k in drills)])
    lines = [f"{'drill':<{width}}  trials  passed  data lost  duplicates"]
    for name, d in drills.items():
        ok = d["passed"] == d["trials"]
        lines.append(f"{name:<{width}}  {d['trials']:>6}  {d['passed']:>6}  {total(d['lost'], ok):>9}  "
                     f"{total(d['duplicates'], ok):>10}")
    return lines


def pytest_terminal_summary(terminalreporter):
    if not ARTIFACT.exists():
        return
    rows = [json.loads(line) for line in ARTIFACT.read_text(encoding="utf-8").splitlines() if line]
    if not rows:
        return
    terminalreporter.section("failure drills")
    for line in table(rows):
        terminalreporter.write_line(line)
