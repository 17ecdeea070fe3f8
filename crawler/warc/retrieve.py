"""Finding and reading captures in a store (local folder or S3) through the
CDXJ indexes stored beside the WARC files.

Every read of a record is ONE ranged read of its gzip member
(``Store.get_bytes(key, (offset, length))`` → an HTTP ``Range`` request on S3),
so getting a page never transfers the rest of its WARC file. A revisit record
costs a second ranged read, for the original it refers to.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from crawler.warc.cdxj import CDXJ_SUFFIX, CdxjEntry, parse_cdxj, url_key

WARC_PREFIX = "warc/"
WARC_EXT = ".warc.gz"


class RetrievalError(Exception):
    """A capture, index or record could not be found or read."""


@dataclass
class LoadedRecord:
    """One WARC record read from the store: its WARC headers, HTTP headers
    (``None`` for non-HTTP records) and the payload exactly as stored."""

    entry: CdxjEntry
    rec_type: str
    rec_headers: object  # warcio StatusAndHeaders
    http_headers: object | None
    payload: bytes

    def header(self, name: str) -> str | None:
        """A WARC header of the record (``None`` when absent)."""
        return self.rec_headers.get_header(name)  # type: ignore[attr-defined]


def warc_date_to_timestamp(value: str) -> str:
    """``2026-11-29T13:44:02.123456Z`` → ``20261129134402`` (CDXJ resolution)."""
    from warcio.timeutils import iso_date_to_timestamp

    return iso_date_to_timestamp(value)


def parse_when(value: str) -> str:
    """A user's ``--at``/``--since`` value → 14-digit UTC timestamp.

    Accepts a timestamp prefix (``2026``, ``20261129``, ``20261129134402``) or an
    ISO 8601 date/time (``2026-11-29``, ``2026-11-29T13:44:02Z``, with offset).
    Missing digits are padded with the earliest moment.

    Raises:
        ValueError: neither form.
    """
    v = value.strip()
    if v.isdigit() and 4 <= len(v) <= 14:
        return v + "0101000000"[len(v) - 4 :]
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a timestamp (YYYY[MMDDhhmmss]) or ISO 8601 date: {value!r}") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y%m%d%H%M%S")


class StoreReader(io.RawIOBase):
    """A read-only, forward-only stream over one stored object, read in ranged
    chunks through the public :class:`~crawler.store.Store` API (bounded memory
    for a 1 GB WARC on S3)."""

    CHUNK = 8 << 20

    def __init__(self, store, key: str):
        self.store = store
        self.key = key
        self.pos = 0
        self.buf = b""
        self.eof = False

    def readable(self) -> bool:
        """Always True (io.RawIOBase protocol)."""
        return True

    def readinto(self, b) -> int:
        """Fill ``b`` from the current chunk, fetching the next one when empty;
        0 at the end of the object."""
        if not self.buf and not self.eof:
            from crawler.store import StoreError

            try:
                chunk = self.store.get_bytes(self.key, (self.pos, self.CHUNK))
            except StoreError:
                if self.pos == 0:
                    raise
                chunk = b""  # S3 answers 416 for a range starting at the end
            self.pos += len(chunk)
            self.eof = len(chunk) < self.CHUNK
            self.buf = chunk
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def open_object(store, key: str) -> io.BufferedReader:
    """A buffered binary stream of a stored object."""
    return io.BufferedReader(StoreReader(store, key), buffer_size=1 << 20)


class StoreArchive:
    """The captures of one store, from its CDXJ indexes (loaded once, lazily).

    Args:
        store: a :class:`crawler.store.Store`.
        on_read: optional callable ``(key, offset, length)`` told of every ranged
            record read (used by tests and ``--verbose``).
    """

    def __init__(self, store, on_read=None):
        self.store = store
        self.on_read = on_read
        self._entries: list[CdxjEntry] | None = None
        self._by_key: dict[str, list[CdxjEntry]] = {}

    # ------------------------------------------------------------- listing
    def keys(self) -> list[str]:
        """Every key under ``warc/``, sorted."""
        return self.store.list(WARC_PREFIX)

    def warc_keys(self) -> list[str]:
        """Keys of the WARC files under ``warc/``."""
        return [k for k in self.keys() if k.endswith(WARC_EXT)]

    def index_keys(self) -> list[str]:
        """Keys of the CDXJ indexes under ``warc/``."""
        return [k for k in self.keys() if k.endswith(WARC_EXT + CDXJ_SUFFIX)]

    def entries(self) -> list[CdxjEntry]:
        """Every capture in every CDXJ index of the store.

        Raises:
            RetrievalError: an index is not CDXJ.
        """
        if self._entries is None:
            entries: list[CdxjEntry] = []
            for key in self.index_keys():
                text = self.store.get_bytes(key).decode("utf-8")
                try:
                    entries.extend(parse_cdxj(text, warc_key=key[: -len(CDXJ_SUFFIX)]))
                except ValueError as exc:
                    raise RetrievalError(f"{self.store.describe(key)}: {exc}") from None
            entries.sort(key=lambda e: (e.urlkey, e.timestamp))
            self._entries = entries
            for e in entries:
                self._by_key.setdefault(e.urlkey, []).append(e)
        return self._entries

    def captures(self, url: str) -> list[CdxjEntry]:
        """Captures of ``url`` (matched by SURT key, so ``http``/``https`` and
        ``www.`` variants match), oldest first."""
        self.entries()
        return sorted(self._by_key.get(url_key(url), []), key=lambda e: (e.timestamp, e.key, e.offset))

    def closest(self, url: str, at: str | None = None) -> CdxjEntry:
        """The capture of ``url`` closest in time to ``at`` (14-digit), the
        latest when ``at`` is None. Ties go to the earlier capture.

        Raises:
            RetrievalError: no capture of ``url``.
        """
        caps = self.captures(url)
        if not caps:
            raise RetrievalError(f"no capture of {url} in {self.store.url}")
        if at is None:
            return caps[-1]
        target = int(at)
        return min(caps, key=lambda e: (abs(int(e.timestamp) - target), e.timestamp))

    # ------------------------------------------------------------- reading
    def read(self, entry: CdxjEntry) -> LoadedRecord:
        """Read the record of ``entry`` with ONE ranged read.

        Raises:
            RetrievalError: the bytes are not one WARC record.
        """
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        from crawler.store import StoreError

        if self.on_read:
            self.on_read(entry.key, entry.offset, entry.length)
        try:
            blob = self.store.get_bytes(entry.key, (entry.offset, entry.length))
        except StoreError as exc:
            raise RetrievalError(str(exc)) from None
        if len(blob) != entry.length:
            raise RetrievalError(
                f"{self.store.describe(entry.key)}: got {len(blob)} bytes at {entry.offset}, index says {entry.length}"
            )
        try:
            for rec in ArchiveIterator(io.BytesIO(blob)):
                return LoadedRecord(entry, rec.rec_type, rec.rec_headers, rec.http_headers, rec.raw_stream.read())
        except ArchiveLoadFailed as exc:
            raise RetrievalError(f"{self.store.describe(entry.key)} at {entry.offset}: {exc}") from None
        raise RetrievalError(f"{self.store.describe(entry.key)} at {entry.offset}: no WARC record")

    def find_original(self, refers_to_uri: str, refers_to_date: str, digest: str | None) -> CdxjEntry | None:
        """The full capture a revisit refers to: same URL (SURT), same second as
        ``WARC-Refers-To-Date`` and, when given, the same payload digest; failing
        an exact date, the closest non-revisit capture with that digest."""
        ts = warc_date_to_timestamp(refers_to_date)
        candidates = [e for e in self.captures(refers_to_uri) if not e.is_revisit]
        if digest:
            candidates = [e for e in candidates if e.digest == digest]
        exact = [e for e in candidates if e.timestamp == ts]
        if exact:
            return exact[0]
        if digest and candidates:
            return min(candidates, key=lambda e: abs(int(e.timestamp) - int(ts)))
        return None

    def resolve(self, record: LoadedRecord) -> LoadedRecord | None:
        """For a revisit, the original record (one more ranged read); ``None``
        for a revisit whose original is not in the store. Other records: themselves."""
        if record.rec_type != "revisit":
            return record
        uri = record.header("WARC-Refers-To-Target-URI")
        date = record.header("WARC-Refers-To-Date")
        if not uri or not date:
            return None
        profile = record.header("WARC-Profile") or ""
        digest = record.header("WARC-Payload-Digest") if profile.endswith("identical-payload-digest") else None
        original = self.find_original(uri, date, digest)
        return self.read(original) if original else None

    # ------------------------------------------------------------ copying
    def materialize(self, keys: list[str], dest: Path) -> list[Path]:
        """Make the WARC files ``keys`` available as local files in ``dest``
        under their basenames: symlinks for a local store, downloads (streamed)
        otherwise."""
        from crawler.store import LocalStore

        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for key in keys:
            target = dest / Path(key).name
            if target.exists() or target.is_symlink():
                target.unlink()
            if isinstance(self.store, LocalStore):
                os.symlink(self.store.describe(key), target)
            else:
                with open_object(self.store, key) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            out.append(target)
        return out
