"""The drill table: every test marked ``@pytest.mark.drill("name")`` is one trial of
the drill ``name``; its outcome and what it measured (records lost, records
duplicated) are kept as one row per trial, written as JSON lines to
``test-artifacts/drills.jsonl`` and printed as a table (drill, trials, passed, data
lost, duplicates) at the end of the session. Rows live in the session (not only in
the file), so two pytest sessions running at once do not mix their tables.

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
_ROWS = pytest.StashKey[list]()


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
    session.config.stash[_ROWS] = []


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
    item.config.stash.setdefault(_ROWS, []).append(asdict(trial))


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
    rows = terminalreporter.config.stash.get(_ROWS, [])
    if not rows:
        return
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    terminalreporter.section("failure drills")
    for line in table(rows):
        terminalreporter.write_line(line)
