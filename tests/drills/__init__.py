"""Failure drills: tests that break things on purpose (kills, store and disk faults,
hostile input) and record per trial what was lost or duplicated (see report.py)."""
