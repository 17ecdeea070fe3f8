"""The drill table (tests/drills/report.py): sums per drill, ``-`` for a drill that
does not measure a column, ``?`` when a failed trial did not get to measure."""

from tests.drills.report import table


def test_table_sums_trials_per_drill_and_marks_unmeasured_columns():
    rows = [
        {"drill": "kill", "test": "a", "passed": True, "lost": 0, "duplicates": 0},
        {"drill": "kill", "test": "b", "passed": True, "lost": 0, "duplicates": 1},
        {"drill": "disk", "test": "c", "passed": True, "lost": None, "duplicates": None},
        {"drill": "store", "test": "d", "passed": False, "lost": None, "duplicates": None},
        {"drill": "store", "test": "e", "passed": True, "lost": 2, "duplicates": 0},
    ]
    lines = table(rows)
    assert lines[0].split() == ["drill", "trials", "passed", "data", "lost", "duplicates"]
    assert [line.split() for line in lines[1:]] == [
        ["kill", "2", "2", "0", "1"],
        ["disk", "1", "1", "-", "-"],
        ["store", "2", "1", "2?", "0?"],
    ]
