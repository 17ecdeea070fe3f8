"""The crawl state on SQLite: schema versions and the v1 -> v2 migration, the
publication protocol (pending until ``mark_published``, dropped by ``recover``), page
rows, thread use, and a crash in the middle of writing."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from crawler.state import SCHEMA_V1, SCHEMA_VERSION, SQLiteState, State, StateError, open_state

KEY = "https://baotuyenquang.com.vn/a-b-123456.html"
OTHER = "https://baotuyenquang.com.vn/c-d-654321.html"


def make_v1(path) -> None:
    """A state file as the first release wrote it."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V1)
    db.execute("INSERT INTO articles VALUES (?,?,?,?,?,?)", (KEY, "123456", "aa" * 32, 2, "2026-01-01", "2026-01-02"))
    db.execute("INSERT INTO article_urls VALUES (?,?)", (KEY.replace("//", "//m."), KEY))
    db.execute("INSERT INTO digests VALUES (?,?)", ("aa" * 32, KEY))
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()


def test_a_version_1_state_is_migrated_in_place(tmp_path):
    path = tmp_path / "state.sqlite"
    make_v1(path)
    state = SQLiteState(path)
    assert state.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    known = state.by_key(KEY)
    # What version 1 knew is kept, and counts as published (it ran before the protocol).
    assert (known.article_id, known.content_sha256, known.version, known.published) == ("123456", "aa" * 32, 2, True)
    assert state.by_digest("aa" * 32).article_key == KEY
    assert state.urls_of(KEY) == [KEY.replace("//", "//m.")]
    assert state.recover() == {"articles_dropped": 0, "versions_dropped": 0, "pages_dropped": 0}
    tables = {r[0] for r in state.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"articles", "article_urls", "digests", "versions", "pages"} <= tables
    state.close()
    # Opening it again is a no-op.
    assert SQLiteState(path).by_key(KEY).version == 2


def test_a_state_from_a_newer_release_is_refused(tmp_path):
    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StateError, match="schema version 99"):
        SQLiteState(path)


def test_a_file_that_is_not_a_database_is_a_state_error(tmp_path):
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"not a database at all, but long enough to have a header" * 20)
    with pytest.raises(StateError):
        SQLiteState(path)


def test_open_state_picks_the_backend(tmp_path):
    state = open_state(None, tmp_path)
    assert isinstance(state, SQLiteState) and isinstance(state, State)
    assert state.path == tmp_path / "state.sqlite"
    state.close()
    other = open_state(f"sqlite:///{tmp_path}/elsewhere.sqlite", tmp_path)  # //// = absolute
    assert other.path == tmp_path / "elsewhere.sqlite"
    other.close()
    with pytest.raises(StateError, match="unsupported state URL"):
        open_state("mongodb://127.0.0.1:27017/0", tmp_path)
    with pytest.raises(StateError, match="cannot open state"):  # redis:// -> RedisState (nothing on port 1)
        open_state("redis://127.0.0.1:1/0", tmp_path)


def test_recorded_but_unpublished_articles_are_dropped_on_recovery(tmp_path):
    state = SQLiteState(tmp_path / "s.sqlite")
    state.record(KEY, "123456", "11" * 32, 1, published_at="2021-07-04T16:20:00+07:00", minhash=b"\0" * 8,
                 minhash_params="p")
    state.add_url(KEY, KEY)
    state.record(OTHER, "654321", "22" * 32, 1)
    assert not state.by_key(KEY).published
    state.mark_published([KEY])
    assert state.by_key(KEY).published
    state.record(KEY, "123456", "33" * 32, 2, previous_sha256="11" * 32)  # an update, never published
    assert state.recover() == {"articles_dropped": 1, "versions_dropped": 2, "pages_dropped": 0}
    assert state.by_key(OTHER) is None and state.by_digest("22" * 32) is None
    known = state.by_key(KEY)
    assert (known.version, known.content_sha256, known.published) == (1, "11" * 32, True)
    assert state.by_digest("33" * 32) is None
    assert list(state.signatures("p")) == [(KEY, b"\0" * 8)]
    # One article's signature: the current version's, and only with the same params.
    assert state.signature(KEY, "p") == b"\0" * 8
    assert state.signature(KEY, "other") is None and state.signature(OTHER, "p") is None
    state.record(KEY, "123456", "44" * 32, 2, previous_sha256="11" * 32, minhash=b"\2" * 8, minhash_params="p")
    assert state.signature(KEY, "p") == b"\2" * 8


def test_page_rows_follow_their_article(tmp_path):
    state = SQLiteState(tmp_path / "s.sqlite")
    state.record_page(KEY, 200, etag='"e1"', last_modified="Mon, 02 Jun 2025 23:20:00 GMT", pending=True, run_id="r1")
    state.record(KEY, "123456", "11" * 32, 1, published_at="2025-06-03T06:20:00+07:00")
    state.link_page(KEY, KEY)
    page = state.page(KEY)
    assert (page.status, page.etag, page.pending, page.article_key, page.published_at) == (
        200, '"e1"', True, KEY, "2025-06-03T06:20:00+07:00")
    state.mark_published([KEY])
    assert state.page(KEY).pending is False
    # A 304 keeps what the page served and records the sitemap's lastmod.
    state.record_page(KEY, 304, sitemap_lastmod="2025-06-03T06:20:00+07:00", run_id="r2")
    page = state.page(KEY)
    assert (page.status, page.etag, page.sitemap_lastmod, page.pending) == (200, '"e1"', "2025-06-03T06:20:00+07:00", False)
    # note_lastmod only touches pages fetched in that run.
    state.note_lastmod(KEY, "2030-01-01", "another-run")
    assert state.page(KEY).sitemap_lastmod == "2025-06-03T06:20:00+07:00"
    state.note_lastmod(KEY, "2025-06-04", "r2")
    assert state.page(KEY).sitemap_lastmod == "2025-06-04"


def test_a_quarantined_page_is_committed_by_its_url_and_pending_pages_are_dropped(tmp_path):
    state = SQLiteState(tmp_path / "s.sqlite")
    state.record_page(KEY, 200, pending=True)
    state.record_page(OTHER, 200, pending=True)
    state.record_page(OTHER + "?gone", 404)
    state.mark_published([KEY])  # the quarantine batch holding KEY's entry was written
    assert state.recover()["pages_dropped"] == 1
    assert state.page(KEY).pending is False
    assert state.page(OTHER) is None
    assert state.page(OTHER + "?gone").status == 404


def test_a_duplicate_page_of_a_published_article_is_committed_at_once(tmp_path):
    state = SQLiteState(tmp_path / "s.sqlite")
    state.record(KEY, "123456", "11" * 32, 1)
    state.mark_published([KEY])
    alias = KEY.replace("//", "//m.")
    state.record_page(alias, 200, pending=True)
    state.link_page(alias, KEY)
    assert state.page(alias).pending is False


def test_the_state_can_be_used_from_the_publish_thread(tmp_path):
    state = SQLiteState(tmp_path / "s.sqlite")
    state.record(KEY, "123456", "11" * 32, 1)
    errors = []

    def publish():
        try:
            state.mark_published([KEY])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=publish)
    t.start()
    t.join()
    assert errors == [] and state.by_key(KEY).published


CRASH_WRITER = """
import sys
from crawler.state import SQLiteState
state = SQLiteState(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    key = f"https://baotuyenquang.com.vn/x-{100000 + i}.html"
    state.record(key, str(100000 + i), f"{i:064x}", 1, minhash=bytes(1024), minhash_params="p")
    state.add_url(key, key)
    state.record_page(key, 200, etag=f'"{i}"', pending=True)
    state.link_page(key, key)
    if i % 2:
        state.mark_published([key])
    i += 1
"""


def test_a_crash_in_the_middle_of_writing_leaves_a_consistent_state(tmp_path):
    path = tmp_path / "state.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)  # hundreds of transactions in, then the power goes
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    state = SQLiteState(path)
    assert state.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    written = state.count()
    assert written > 50
    dropped = state.recover()
    # Every article left is a published one, with its version, digest, URL and page.
    db = state.db
    assert db.execute("SELECT count(*) FROM versions WHERE published=0").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM pages WHERE pending=1").fetchone()[0] == 0
    left = state.count()
    assert left == db.execute("SELECT count(*) FROM versions").fetchone()[0]
    assert left == db.execute("SELECT count(*) FROM digests").fetchone()[0]
    assert left == db.execute("SELECT count(*) FROM article_urls").fetchone()[0]
    assert left == db.execute("SELECT count(*) FROM pages").fetchone()[0]
    assert abs(left - dropped["articles_dropped"]) <= 2  # every other one was published
    assert left + dropped["articles_dropped"] == written
