"""Crawl state kept between runs: which articles exist, under which URLs, with which
content digests, versions and MinHash signatures, and what each fetched article page
answered last time (status, ``ETag``, ``Last-Modified``, sitemap ``<lastmod>``).

One interface (:class:`State`) and one backend today, :class:`SQLiteState` (one file in
``--state-dir``); :func:`open_state` picks the backend from a URL so a Redis backend can
be added beside it without touching the pipelines or the spider.

Publication protocol (the contract with the publish stage, HELPERS.md): everything a run
records about a new or updated article is *pending* until the publish stage has made
the article's record durable and calls :meth:`State.mark_published` with its key.
:meth:`State.recover`, called when a run opens the state, drops whatever a previous run
recorded but never marked published (it was killed before its batch was written), so
that run's articles count as not known and are fetched and emitted again.

The SQLite schema carries a version number (``PRAGMA user_version``). Older versions
(1: the first release; 2: no per-version near-duplicate link) are migrated to version 3
in place, in one transaction; a database from
a newer release raises :class:`StateError` rather than being guessed at. Every public
write is one transaction on a WAL journal: a crash mid-write leaves the last committed
state (``synchronous=NORMAL``: a process crash loses nothing committed; a power cut may
lose the last transactions, which only makes the next run fetch those pages again).
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ContextManager

SCHEMA_VERSION = 3

#: Schema version 1, as the first release created it (kept for the migration and its test).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS articles (
    article_key     TEXT PRIMARY KEY,   -- canonical URL
    article_id      TEXT,
    content_sha256  TEXT NOT NULL,
    version         INTEGER NOT NULL,
    first_seen      TEXT NOT NULL,
    last_seen       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS article_urls (
    url             TEXT PRIMARY KEY,
    article_key     TEXT NOT NULL REFERENCES articles(article_key)
);
CREATE TABLE IF NOT EXISTS digests (
    content_sha256  TEXT PRIMARY KEY,
    article_key     TEXT NOT NULL REFERENCES articles(article_key)
);
"""

#: Version 1 -> 2: article dates and near-duplicate links, one row per version (with its
#: MinHash signature and publication flag), and per-URL fetch validators.
MIGRATE_V1_V2 = """
ALTER TABLE articles ADD COLUMN published_at TEXT;        -- the article's own date (ISO 8601)
ALTER TABLE articles ADD COLUMN near_duplicate_of TEXT;   -- article_id of the original
CREATE TABLE versions (
    article_key     TEXT NOT NULL,
    version         INTEGER NOT NULL,
    content_sha256  TEXT NOT NULL,
    previous_sha256 TEXT,
    minhash         BLOB,               -- uint64 little-endian hash values
    minhash_params  TEXT,               -- e.g. "words5-p128-s1": what the signature was built with
    published       INTEGER NOT NULL DEFAULT 0,
    run_id          TEXT,
    recorded_at     TEXT NOT NULL,
    PRIMARY KEY (article_key, version)
);
CREATE INDEX versions_pending ON versions(published) WHERE published = 0;
CREATE TABLE pages (
    url             TEXT PRIMARY KEY,   -- the URL as requested
    article_key     TEXT,               -- the article it served (NULL: not linked yet, gone, quarantined)
    status          INTEGER NOT NULL,   -- last status other than 304
    etag            TEXT,
    last_modified   TEXT,               -- HTTP date, verbatim
    sitemap_lastmod TEXT,               -- W3C datetime, verbatim
    location        TEXT,               -- absolute redirect target (3xx)
    pending         INTEGER NOT NULL DEFAULT 0,
    first_seen      TEXT NOT NULL,
    last_checked    TEXT NOT NULL,
    run_id          TEXT
);
CREATE INDEX pages_pending ON pages(pending) WHERE pending = 1;
CREATE INDEX pages_article ON pages(article_key);
INSERT INTO versions (article_key, version, content_sha256, published, recorded_at)
    SELECT article_key, version, content_sha256, 1, last_seen FROM articles;
"""

#: Version 2 -> 3: the near-duplicate link of each version, so that dropping an
#: unpublished version (:meth:`State.recover`) restores the link its predecessor was
#: published with (a link learned later is published as a version of its own).
MIGRATE_V2_V3 = """
ALTER TABLE versions ADD COLUMN near_duplicate_of TEXT;
UPDATE versions SET near_duplicate_of = (SELECT a.near_duplicate_of FROM articles a
    WHERE a.article_key = versions.article_key AND a.version = versions.version);
"""


class StateError(Exception):
    """The state cannot be opened: unknown schema version, unreadable file, unknown backend."""


@dataclass(frozen=True)
class KnownArticle:
    """A stored article: key (canonical URL), id, current digest and version, its date,
    the id of the article it is a near-duplicate of, and whether that current version
    has been published."""

    article_key: str
    article_id: str | None
    content_sha256: str
    version: int
    published_at: str | None = None
    near_duplicate_of: str | None = None
    published: bool = True


@dataclass(frozen=True)
class KnownPage:
    """What a URL answered the last time it was fetched. ``status`` is the last status
    other than 304; ``pending`` is True while the article it served is not published;
    ``published_at`` is the date of that article (None when there is none)."""

    url: str
    article_key: str | None
    status: int
    etag: str | None
    last_modified: str | None
    sitemap_lastmod: str | None
    location: str | None
    pending: bool
    last_checked: str
    published_at: str | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class State(ABC):
    """The crawl state interface the pipelines and the spider use. Backends: SQLite
    (:class:`SQLiteState`); a Redis backend implements the same methods."""

    # -- lifecycle ------------------------------------------------------------
    @abstractmethod
    def recover(self) -> dict[str, int]:
        """Drop what earlier runs recorded but never marked published; return counts
        ``{"articles_dropped", "versions_dropped", "pages_dropped"}``."""

    @abstractmethod
    def close(self) -> None: ...

    def transaction(self) -> ContextManager[Any]:
        """A context whose writes commit together, or not at all (SQLite: one
        transaction; nested ones join it). Backends whose writes are each atomic
        and shared with other processes as they happen (Redis) make it a no-op."""
        return nullcontext()

    # -- articles -------------------------------------------------------------
    @abstractmethod
    def by_key(self, article_key: str) -> KnownArticle | None:
        """The article stored under ``article_key`` (canonical URL), or None."""

    @abstractmethod
    def by_digest(self, content_sha256: str) -> KnownArticle | None:
        """The article that first had this content digest, or None."""

    @abstractmethod
    def record(self, article_key: str, article_id: str | None, content_sha256: str, version: int, *,
               previous_sha256: str | None = None, published_at: str | None = None,
               near_duplicate_of: str | None = None, minhash: bytes | None = None,
               minhash_params: str | None = None, run_id: str | None = None) -> None:
        """Store (or replace) ``version`` of the article, unpublished, in one transaction.
        ``near_duplicate_of`` is that version's link (it replaces the article's)."""

    @abstractmethod
    def set_near_duplicate_of(self, article_key: str, original_id: str | None) -> None:
        """Set the near-duplicate link of the article's current version (which must not
        be published yet: a published record cannot change)."""

    @abstractmethod
    def add_url(self, url: str, article_key: str) -> None:
        """Remember that ``url`` served the article ``article_key``."""

    @abstractmethod
    def urls_of(self, article_key: str) -> list[str]:
        """Every URL known to have served the article, sorted."""

    @abstractmethod
    def signatures(self, minhash_params: str) -> Iterator[tuple[str, bytes]]:
        """``(article_key, signature)`` of every article's current version whose
        signature was built with ``minhash_params``."""

    @abstractmethod
    def signature(self, article_key: str, minhash_params: str) -> bytes | None:
        """The signature of the article's current version if it was built with
        ``minhash_params``, else ``None`` (what :meth:`signatures` gives for this key)."""

    @abstractmethod
    def mark_published(self, keys: Iterable[str]) -> None:
        """Everything recorded for these keys is durable in the store now. ``keys`` are
        article keys (``item["dedup"]["article_key"]``) and, for quarantine entries, the
        quarantined page's URL."""

    # -- pages ----------------------------------------------------------------
    @abstractmethod
    def page(self, url: str) -> KnownPage | None:
        """What ``url`` answered last time, or None."""

    @abstractmethod
    def record_page(self, url: str, status: int, *, etag: str | None = None, last_modified: str | None = None,
                    location: str | None = None, sitemap_lastmod: str | None = None, pending: bool = False,
                    run_id: str | None = None) -> None:
        """Store a fetch of ``url``. A 304 only refreshes the check time (and the
        sitemap lastmod), keeping what the page last served."""

    @abstractmethod
    def link_page(self, url: str, article_key: str) -> None:
        """``url`` served ``article_key``: the page row stays pending until that article
        is published (at once when it already is)."""

    @abstractmethod
    def note_lastmod(self, url: str, lastmod: str, run_id: str) -> None:
        """A sitemap gives ``lastmod`` for ``url``; kept only when ``url`` was fetched in
        run ``run_id`` (so the lastmod never runs ahead of what was fetched)."""

    @abstractmethod
    def count(self) -> int:
        """Number of articles."""

    def claim(self, article_key: str) -> bool:
        """True when this process may record ``article_key`` as a new article. One
        process per state here; a shared backend lets only the first claimer win."""
        return True


class SQLiteState(State):
    """The state on one SQLite file. Safe to call from several threads of one process
    (the publish stage flushes in a worker thread): one connection behind a lock. One
    process at a time: ``newsarchive crawl`` holds the state directory's lock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._tx_depth = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=5000")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        if version > SCHEMA_VERSION:
            self.db.close()
            raise StateError(
                f"state database {self.path} has schema version {version}; "
                f"this newsarchive knows up to {SCHEMA_VERSION}"
            )
        try:
            self._migrate(version)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise StateError(f"cannot migrate state database {self.path}: {exc}") from exc

    def _migrate(self, version: int) -> None:
        if version == SCHEMA_VERSION:
            return
        # executescript() would commit on its own; run the statements one by one inside
        # one transaction so an interrupted migration leaves version 1 intact.
        with self._tx() as db:
            if version == 0:
                has_articles = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='articles'"
                ).fetchone()
                if has_articles:  # created by version 1 code before it set user_version
                    version = 1
                else:
                    for stmt in _statements(SCHEMA_V1):
                        db.execute(stmt)
                    version = 1
            if version == 1:
                for stmt in _statements(MIGRATE_V1_V2):
                    db.execute(stmt)
                version = 2
            if version == 2:
                for stmt in _statements(MIGRATE_V2_V3):
                    db.execute(stmt)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _tx(self):
        with self._lock:
            if self._tx_depth:  # inside transaction(): join it
                self._tx_depth += 1
                try:
                    yield self.db
                finally:
                    self._tx_depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._tx_depth = 1
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
            finally:
                self._tx_depth = 0

    def transaction(self) -> ContextManager[Any]:
        """One SQLite transaction for every write inside (see :meth:`State.transaction`)."""
        return self._tx()

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self.db.execute(sql, params).fetchall()

    # -- lifecycle ------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        with self._tx() as db:
            keys = [r[0] for r in db.execute("SELECT DISTINCT article_key FROM versions WHERE published=0")]
            versions_dropped = db.execute("DELETE FROM versions WHERE published=0").rowcount
            articles_dropped = 0
            for key in keys:
                row = db.execute(
                    "SELECT version, content_sha256, near_duplicate_of FROM versions WHERE article_key=? "
                    "ORDER BY version DESC LIMIT 1",
                    (key,),
                ).fetchone()
                if row is None:
                    db.execute("DELETE FROM articles WHERE article_key=?", (key,))
                    db.execute("DELETE FROM article_urls WHERE article_key=?", (key,))
                    db.execute("DELETE FROM digests WHERE article_key=?", (key,))
                    articles_dropped += 1
                else:
                    db.execute(
                        "UPDATE articles SET version=?, content_sha256=?, near_duplicate_of=? WHERE article_key=?",
                        (row[0], row[1], row[2], key),
                    )
                    db.execute(
                        "DELETE FROM digests WHERE article_key=? AND content_sha256 NOT IN "
                        "(SELECT content_sha256 FROM versions WHERE article_key=?)",
                        (key, key),
                    )
            pages_dropped = db.execute("DELETE FROM pages WHERE pending=1").rowcount
        return {"articles_dropped": articles_dropped, "versions_dropped": versions_dropped, "pages_dropped": pages_dropped}

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # -- articles -------------------------------------------------------------
    _ARTICLE_COLUMNS = (
        "a.article_key, a.article_id, a.content_sha256, a.version, a.published_at, a.near_duplicate_of, "
        "coalesce((SELECT v.published FROM versions v WHERE v.article_key=a.article_key AND v.version=a.version), 1)"
    )

    def _article(self, rows: list[tuple]) -> KnownArticle | None:
        if not rows:
            return None
        key, aid, sha, version, published_at, near, published = rows[0]
        return KnownArticle(key, aid, sha, version, published_at, near, bool(published))

    def by_key(self, article_key: str) -> KnownArticle | None:
        return self._article(
            self._query(f"SELECT {self._ARTICLE_COLUMNS} FROM articles a WHERE a.article_key=?", (article_key,))
        )

    def by_digest(self, content_sha256: str) -> KnownArticle | None:
        return self._article(
            self._query(
                f"SELECT {self._ARTICLE_COLUMNS} FROM digests d JOIN articles a USING (article_key) "
                "WHERE d.content_sha256=?",
                (content_sha256,),
            )
        )

    def record(self, article_key, article_id, content_sha256, version, *, previous_sha256=None, published_at=None,
               near_duplicate_of=None, minhash=None, minhash_params=None, run_id=None) -> None:
        now = _now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO articles (article_key, article_id, content_sha256, version, first_seen, last_seen, "
                "published_at, near_duplicate_of) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(article_key) DO UPDATE SET "
                "content_sha256=excluded.content_sha256, version=excluded.version, last_seen=excluded.last_seen, "
                "article_id=coalesce(articles.article_id, excluded.article_id), "
                "published_at=coalesce(excluded.published_at, articles.published_at), "
                "near_duplicate_of=excluded.near_duplicate_of",
                (article_key, article_id, content_sha256, version, now, now, published_at, near_duplicate_of),
            )
            db.execute(
                "INSERT INTO versions (article_key, version, content_sha256, previous_sha256, minhash, minhash_params, "
                "published, run_id, recorded_at, near_duplicate_of) VALUES (?,?,?,?,?,?,0,?,?,?) "
                "ON CONFLICT(article_key, version) DO UPDATE "
                "SET content_sha256=excluded.content_sha256, minhash=coalesce(excluded.minhash, versions.minhash), "
                "minhash_params=coalesce(excluded.minhash_params, versions.minhash_params), "
                "run_id=excluded.run_id, recorded_at=excluded.recorded_at, "
                "near_duplicate_of=excluded.near_duplicate_of",
                (article_key, version, content_sha256, previous_sha256, minhash, minhash_params, run_id, now,
                 near_duplicate_of),
            )
            db.execute("INSERT OR IGNORE INTO digests VALUES (?,?)", (content_sha256, article_key))

    def set_near_duplicate_of(self, article_key: str, original_id: str | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE articles SET near_duplicate_of=? WHERE article_key=?", (original_id, article_key))
            db.execute(
                "UPDATE versions SET near_duplicate_of=? WHERE article_key=? "
                "AND version=(SELECT version FROM articles WHERE article_key=?)",
                (original_id, article_key, article_key),
            )

    def add_url(self, url: str, article_key: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO article_urls VALUES (?,?)", (url, article_key))

    def urls_of(self, article_key: str) -> list[str]:
        rows = self._query("SELECT url FROM article_urls WHERE article_key=? ORDER BY url", (article_key,))
        return [r[0] for r in rows]

    def signatures(self, minhash_params: str) -> Iterator[tuple[str, bytes]]:
        rows = self._query(
            "SELECT v.article_key, v.minhash FROM versions v JOIN articles a "
            "ON a.article_key=v.article_key AND a.version=v.version "
            "WHERE v.minhash IS NOT NULL AND v.minhash_params=? ORDER BY v.article_key",
            (minhash_params,),
        )
        return iter(rows)

    def signature(self, article_key: str, minhash_params: str) -> bytes | None:
        rows = self._query(
            "SELECT v.minhash FROM versions v JOIN articles a "
            "ON a.article_key=v.article_key AND a.version=v.version "
            "WHERE v.article_key=? AND v.minhash IS NOT NULL AND v.minhash_params=?",
            (article_key, minhash_params),
        )
        return rows[0][0] if rows else None

    def mark_published(self, keys: Iterable[str]) -> None:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return
        with self._tx() as db:
            for i in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                db.execute(f"UPDATE versions SET published=1 WHERE published=0 AND article_key IN ({marks})", chunk)
                db.execute(
                    f"UPDATE pages SET pending=0 WHERE pending=1 AND (article_key IN ({marks}) OR url IN ({marks}))",
                    chunk + chunk,
                )

    def pending_count(self) -> int:
        """Versions recorded but not yet published (for tests and the run report)."""
        return self._query("SELECT count(*) FROM versions WHERE published=0")[0][0]

    # -- pages ----------------------------------------------------------------
    def page(self, url: str) -> KnownPage | None:
        rows = self._query(
            "SELECT p.url, p.article_key, p.status, p.etag, p.last_modified, p.sitemap_lastmod, p.location, "
            "p.pending, p.last_checked, a.published_at FROM pages p LEFT JOIN articles a USING (article_key) "
            "WHERE p.url=?",
            (url,),
        )
        if not rows:
            return None
        r = rows[0]
        return KnownPage(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9])

    def record_page(self, url, status, *, etag=None, last_modified=None, location=None, sitemap_lastmod=None,
                    pending=False, run_id=None) -> None:
        now = _now()
        with self._tx() as db:
            if status == 304:
                db.execute(
                    "UPDATE pages SET last_checked=?, run_id=?, sitemap_lastmod=coalesce(?, sitemap_lastmod), "
                    "etag=coalesce(?, etag), last_modified=coalesce(?, last_modified) WHERE url=?",
                    (now, run_id, sitemap_lastmod, etag, last_modified, url),
                )
                return
            db.execute(
                "INSERT INTO pages (url, article_key, status, etag, last_modified, sitemap_lastmod, location, pending, "
                "first_seen, last_checked, run_id) VALUES (?,NULL,?,?,?,?,?,?,?,?,?) ON CONFLICT(url) DO UPDATE SET "
                "status=excluded.status, etag=excluded.etag, last_modified=excluded.last_modified, "
                "sitemap_lastmod=coalesce(excluded.sitemap_lastmod, pages.sitemap_lastmod), "
                "location=excluded.location, pending=excluded.pending, last_checked=excluded.last_checked, "
                "run_id=excluded.run_id, article_key=CASE WHEN excluded.status=200 THEN pages.article_key END",
                (url, status, etag, last_modified, sitemap_lastmod, location, int(pending), now, now, run_id),
            )

    def link_page(self, url: str, article_key: str) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT v.published FROM articles a JOIN versions v ON v.article_key=a.article_key "
                "AND v.version=a.version WHERE a.article_key=?",
                (article_key,),
            ).fetchone()
            pending = 0 if row and row[0] else 1
            db.execute("UPDATE pages SET article_key=?, pending=? WHERE url=?", (article_key, pending, url))

    def note_lastmod(self, url: str, lastmod: str, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE pages SET sitemap_lastmod=? WHERE url=? AND run_id=?", (lastmod, url, run_id))

    def count(self) -> int:
        return self._query("SELECT count(*) FROM articles")[0][0]


def _statements(script: str) -> list[str]:
    """SQL statements of a script (no semicolons inside our string literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def open_state(url: str | None, state_dir: str | Path, worker: str | None = None) -> State:
    """The state backend for ``url``: empty or ``sqlite:`` -> ``<state_dir>/state.sqlite``;
    ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` (SQLAlchemy's form) ->
    that file; ``redis://host:port/db`` -> :class:`crawler.redis_state.RedisState`
    (``worker``: the process's id in a distributed crawl). Other schemes raise
    :class:`StateError`."""
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        from crawler.redis_state import RedisState

        return RedisState(url, worker)
    if not url or url == "sqlite:":
        return SQLiteState(Path(state_dir) / "state.sqlite")
    if url.startswith("sqlite:///"):
        return SQLiteState(Path(url[len("sqlite:///"):]))
    raise StateError(f"unsupported state URL {url!r} (supported: sqlite:///path; default <state-dir>/state.sqlite)")
