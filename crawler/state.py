"""Crawl state kept between runs: which articles exist, under which URLs, with which
content digest and version. SQLite by default (one file in ``--state-dir``).

The schema carries a version number (``PRAGMA user_version``) so a later release
can migrate it; opening a database from a newer release raises
:class:`StateError` rather than guessing. Writes are transactional (WAL
journal), so a crash mid-write leaves the last committed state.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 1

_SCHEMA = """
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


class StateError(Exception):
    """The state database cannot be opened or is from an unknown schema version."""


@dataclass(frozen=True)
class KnownArticle:
    """A stored article: its key (canonical URL), id, digest and version number."""

    article_key: str
    article_id: str | None
    content_sha256: str
    version: int


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SQLiteState:
    """The state store on one SQLite file. Not shared between threads: one crawl
    process uses it from the reactor thread only."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database {self.path} has schema version {version}; "
                f"this newsarchive knows up to {SCHEMA_VERSION}"
            )
        with self.db:
            self.db.executescript(_SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    def _row(self, row) -> KnownArticle | None:
        return KnownArticle(*row) if row else None

    def by_key(self, article_key: str) -> KnownArticle | None:
        """The article stored under ``article_key`` (canonical URL), or None."""
        return self._row(
            self.db.execute(
                "SELECT article_key, article_id, content_sha256, version FROM articles WHERE article_key=?",
                (article_key,),
            ).fetchone()
        )

    def by_digest(self, content_sha256: str) -> KnownArticle | None:
        """The article that first had this content digest, or None."""
        return self._row(
            self.db.execute(
                "SELECT a.article_key, a.article_id, a.content_sha256, a.version FROM digests d "
                "JOIN articles a USING (article_key) WHERE d.content_sha256=?",
                (content_sha256,),
            ).fetchone()
        )

    def record(self, article_key: str, article_id: str | None, content_sha256: str, version: int) -> None:
        """Store (or update to) this version of the article, in one transaction."""
        now = _now()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO articles VALUES (?,?,?,?,?,?) ON CONFLICT(article_key) DO UPDATE SET "
                "content_sha256=excluded.content_sha256, version=excluded.version, last_seen=excluded.last_seen",
                (article_key, article_id, content_sha256, version, now, now),
            )
            self.db.execute(
                "INSERT OR IGNORE INTO digests VALUES (?,?)", (content_sha256, article_key)
            )

    def add_url(self, url: str, article_key: str) -> None:
        """Remember that ``url`` served the article ``article_key``."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO article_urls VALUES (?,?)", (url, article_key))

    def urls_of(self, article_key: str) -> list[str]:
        """Every URL known to have served the article, sorted."""
        rows = self.db.execute(
            "SELECT url FROM article_urls WHERE article_key=? ORDER BY url", (article_key,)
        ).fetchall()
        return [r[0] for r in rows]

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM articles").fetchone()[0]
