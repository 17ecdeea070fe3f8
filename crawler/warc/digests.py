"""Payload-digest index: which payloads the archive already holds, for revisits.

One small SQLite file in the state directory (default
``<state-dir>/warc-digests.sqlite``), kept apart from ``state.sqlite`` so its
schema can evolve on its own. It maps a payload digest (``sha1:BASE32``, the
``WARC-Payload-Digest`` of a ``response`` record) to the capture that first
archived it, and a URL to its latest full capture. The capture writer asks it,
for every new response, whether the payload is already archived; if so it
writes a ``revisit`` record (WARC 1.1 §6.7.2, profile *identical-payload-digest*)
that names the original through ``WARC-Refers-To-Target-URI``,
``WARC-Refers-To-Date`` and ``WARC-Refers-To``, instead of the full body.

Durability rule: a capture is only *committed* (written to SQLite) once the
WARC file holding it is closed (renamed from ``.open``). Until then it is
*staged* in temporary tables of this process's connection (on disk, not in
memory), still visible to lookups in the same process. A process
killed mid-file therefore never leaves an index entry pointing at a record that
recovery later cut off; recovery re-adds the records that survived
(:meth:`PayloadDigestIndex.add_from_warc`).

Captures are scoped by the store they are uploaded to (``store`` column), so a
revisit never refers to a record that only exists in another store.

Thread-safety: one internal lock serialises every call; the capture middleware
calls it from its writer thread and (for cheap look-ups) the reactor thread.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS captures (
    store           TEXT NOT NULL,      -- normalised store URL the WARC goes to
    digest          TEXT NOT NULL,      -- WARC-Payload-Digest, sha1:BASE32
    url             TEXT NOT NULL,      -- WARC-Target-URI
    warc_date       TEXT NOT NULL,      -- WARC-Date (ISO 8601 UTC)
    record_id       TEXT NOT NULL,      -- WARC-Record-ID, <urn:uuid:...>
    status          INTEGER NOT NULL,   -- HTTP status of the response
    file            TEXT NOT NULL,      -- WARC file name (basename)
    offset          INTEGER NOT NULL,
    length          INTEGER NOT NULL,
    PRIMARY KEY (store, digest, url)
);
CREATE INDEX IF NOT EXISTS captures_by_url ON captures (store, url, warc_date);
-- URLs archived by a revisit only (their payload sits under another URL)
CREATE TABLE IF NOT EXISTS revisited_urls (
    store           TEXT NOT NULL,
    url             TEXT NOT NULL,
    PRIMARY KEY (store, url)
);
"""


_COLUMNS = "digest, url, warc_date, record_id, status, file, offset, length"

# Captures written to still-open files (see "Durability rule"), per connection.
_STAGING = f"""
CREATE TEMP TABLE staged (seq INTEGER PRIMARY KEY, {_COLUMNS});
CREATE INDEX temp.staged_by_digest ON staged (digest, url);
CREATE INDEX temp.staged_by_url ON staged (url, warc_date);
CREATE INDEX temp.staged_by_file ON staged (file);
CREATE TEMP TABLE staged_revisits (file TEXT NOT NULL, url TEXT NOT NULL, PRIMARY KEY (file, url));
CREATE INDEX temp.staged_revisits_by_url ON staged_revisits (url);
"""


@dataclass(frozen=True)
class Capture:
    """A full (``response``) capture of a payload.

    ``warc_date`` is the record's ``WARC-Date``; ``file``/``offset``/``length``
    locate its gzip member (``file`` is the WARC's basename, turned into a
    store key with :func:`crawler.layout.warc_key`).
    """

    digest: str
    url: str
    warc_date: str
    record_id: str
    status: int
    file: str
    offset: int
    length: int


def normalise_store_url(url: str | os.PathLike[str]) -> str:
    """The store URL as :func:`crawler.store.open_store` would name it, without
    opening it (no S3 client, no ``mkdir``): ``s3://bucket/prefix`` stays as is
    (trailing slash removed), a folder or ``file://`` URL becomes an absolute path."""
    url = os.fspath(url)
    if url.startswith("s3://"):
        return url.rstrip("/")
    if url.startswith("file://"):
        url = url[len("file://") :]
    return str(Path(url).resolve())


class PayloadDigestIndex:
    """The payload-digest index on one SQLite file (see module docstring).

    Args:
        path: the SQLite file (created with its folder if missing).
        store: the store URL captures are scoped to (normalised here).

    Raises:
        sqlite3.DatabaseError: the file is not a database, or was written by a
            newer schema (``PRAGMA user_version`` above :data:`SCHEMA_VERSION`).
    """

    def __init__(self, path: str | os.PathLike[str], store: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store = normalise_store_url(store)
        self._lock = threading.RLock()
        # Used from the writer thread and the reactor thread, always under _lock.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self.db.close()
            raise sqlite3.DatabaseError(
                f"{self.path} has schema version {version}; this newsarchive knows up to {SCHEMA_VERSION}"
            )
        with self.db:
            self.db.executescript(_SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # Staged captures live in TEMP tables of this connection: private to this
        # process, dropped with it, and on disk rather than in memory (a crawl's WARC
        # file holds tens of thousands of captures before it rolls over).
        self.db.execute("PRAGMA temp_store=FILE")
        self.db.executescript(_STAGING)

    # ------------------------------------------------------------ look-ups
    def lookup(self, digest: str, url: str, any_url: bool = False) -> Capture | None:
        """The capture a new response with payload ``digest`` at ``url`` should
        refer to, or ``None`` when the payload is not archived yet.

        By default only a capture of the same URL counts (Heritrix's classic
        deduplication: replay tools resolve it most reliably, and a page's
        bytes stay under its own URL). ``any_url`` also accepts the earliest
        capture of the payload under another URL (a URL-agnostic revisit,
        WARC 1.1 §6.7.2), when there is none under this one. A committed capture
        comes before a staged one."""
        with self._lock:
            row = self.db.execute(
                f"SELECT {_COLUMNS} FROM captures "
                "WHERE store=? AND digest=? ORDER BY (url=?) DESC, warc_date ASC LIMIT 1",
                (self.store, digest, url),
            ).fetchone()
            committed = Capture(*row) if row else None
            if committed is not None and committed.url == url:
                return committed
            row = self.db.execute(
                f"SELECT {_COLUMNS} FROM temp.staged WHERE digest=? ORDER BY (url=?) DESC, seq ASC LIMIT 1",
                (digest, url),
            ).fetchone()
        staged = Capture(*row) if row else None
        if staged is not None and staged.url == url:
            return staged
        if not any_url:
            return None
        return committed or staged

    def latest_for_url(self, url: str) -> Capture | None:
        """The latest full capture of ``url`` (for ``server-not-modified``
        revisits of a 304 answer), or ``None``."""
        with self._lock:
            candidates = [
                Capture(*r)
                for r in (
                    self.db.execute(
                        f"SELECT {_COLUMNS} FROM temp.staged WHERE url=? ORDER BY warc_date DESC, seq ASC LIMIT 1",
                        (url,),
                    ).fetchone(),
                    self.db.execute(
                        f"SELECT {_COLUMNS} FROM captures WHERE store=? AND url=? ORDER BY warc_date DESC LIMIT 1",
                        (self.store, url),
                    ).fetchone(),
                )
                if r
            ]
        return max(candidates, key=lambda c: c.warc_date) if candidates else None

    def has_url(self, url: str) -> bool:
        """True when ``url`` is archived in this store, as a full capture or a
        revisit (committed or staged)."""
        if self.latest_for_url(url) is not None:
            return True
        with self._lock:
            row = self.db.execute("SELECT 1 FROM temp.staged_revisits WHERE url=? LIMIT 1", (url,)).fetchone()
            if row is None:
                row = self.db.execute(
                    "SELECT 1 FROM revisited_urls WHERE store=? AND url=?", (self.store, url)
                ).fetchone()
        return row is not None

    # -------------------------------------------------------------- writes
    def stage(self, capture: Capture) -> None:
        """Remember a capture written to a still-open file (see module docstring)."""
        c = capture
        with self._lock:
            self.db.execute(
                f"INSERT INTO temp.staged ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                (c.digest, c.url, c.warc_date, c.record_id, c.status, c.file, c.offset, c.length),
            )

    def stage_revisit(self, url: str, file: str) -> None:
        """Remember that ``url`` was archived as a revisit in a still-open file
        (for :meth:`has_url`; a revisit is never an original)."""
        with self._lock:
            self.db.execute("INSERT OR IGNORE INTO temp.staged_revisits VALUES (?,?)", (file, url))

    def commit_file(self, file: str) -> int:
        """Commit the captures staged for ``file`` (its name, now closed); returns
        how many full captures."""
        with self._lock:
            with self.db:
                self.db.execute("BEGIN")
                n = self.db.execute("SELECT count(*) FROM temp.staged WHERE file=?", (file,)).fetchone()[0]
                self.db.execute(
                    f"INSERT OR IGNORE INTO captures SELECT ?, {_COLUMNS} FROM temp.staged WHERE file=? ORDER BY seq",
                    (self.store, file),
                )
                self.db.execute(
                    "INSERT OR IGNORE INTO revisited_urls SELECT ?, url FROM temp.staged_revisits "
                    "WHERE file=? ORDER BY url",
                    (self.store, file),
                )
                self._unstage(file)
        return n

    def discard_file(self, file: str) -> None:
        """Forget staged captures of a file that will never be closed."""
        with self._lock:
            with self.db:
                self.db.execute("BEGIN")
                self._unstage(file)

    def _unstage(self, file: str) -> None:
        self.db.execute("DELETE FROM temp.staged WHERE file=?", (file,))
        self.db.execute("DELETE FROM temp.staged_revisits WHERE file=?", (file,))

    def _insert(self, captures: list[Capture]) -> None:
        if not captures:
            return
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR IGNORE INTO captures VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (self.store, c.digest, c.url, c.warc_date, c.record_id, c.status, c.file, c.offset, c.length)
                    for c in captures
                ],
            )

    def add_from_warc(self, path: str | os.PathLike[str]) -> int:
        """Commit every indexable ``response`` record (and the URLs of revisit
        records) of a closed WARC file (used for files recovered or left over
        from a killed run); returns the number of full captures added. Unreadable trailing data is logged and ignored."""
        from warcio.archiveiterator import ArchiveIterator

        path = Path(path)
        captures: list[Capture] = []
        revisited: set[str] = set()
        try:
            with open(path, "rb") as fh:
                it = ArchiveIterator(fh)
                for rec in it:
                    if rec.rec_type == "revisit":
                        revisited.add(rec.rec_headers.get_header("WARC-Target-URI"))
                    if rec.rec_type != "response" or rec.http_headers is None:
                        continue
                    digest = rec.rec_headers.get_header("WARC-Payload-Digest")
                    size = sum(len(b) for b in iter(lambda: rec.raw_stream.read(1 << 16), b""))
                    it.read_to_end(rec)
                    if not digest or size == 0:
                        continue
                    captures.append(
                        Capture(
                            digest=digest,
                            url=rec.rec_headers.get_header("WARC-Target-URI"),
                            warc_date=rec.rec_headers.get_header("WARC-Date"),
                            record_id=rec.rec_headers.get_header("WARC-Record-ID"),
                            status=int(rec.http_headers.get_statuscode() or 0),
                            file=path.name,
                            offset=it.get_record_offset(),
                            length=it.get_record_length(),
                        )
                    )
        except Exception:  # noqa: BLE001 - a damaged file only loses its revisit chances
            logger.exception("could not read %s for the payload-digest index", path)
        with self._lock:
            self._insert(captures)
            with self.db:
                self.db.executemany(
                    "INSERT OR IGNORE INTO revisited_urls VALUES (?,?)",
                    [(self.store, u) for u in sorted(revisited) if u],
                )
        return len(captures)

    def count(self) -> int:
        """Committed captures in this store."""
        with self._lock:
            return self.db.execute("SELECT count(*) FROM captures WHERE store=?", (self.store,)).fetchone()[0]

    def close(self) -> None:
        """Close the database (staged, uncommitted captures are dropped)."""
        with self._lock:
            self.db.close()
