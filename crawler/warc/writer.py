"""Rolling WARC 1.1 file writer (ISO 28500:2017) built on warcio.

Layout of every file produced here:

* file name ``{prefix}-{YYYYmmddHHMMSS}-{serial:05d}-{host}-{pid}.warc.gz``
  (IIPC/Heritrix-style; timestamp is the UTC time the file was opened),
  written as ``<name>.open`` and renamed to ``<name>`` only once it is
  complete, so a consumer never picks up a half-written file;
* the first record is a ``warcinfo`` record (WARC 1.1 §6.2) describing the
  software, format and crawl policy;
* then, per HTTP exchange, a ``response`` (§6.4) or ``revisit`` (§6.7.2)
  record followed by its ``request`` record (§6.6), Heritrix's order; the
  request carries ``WARC-Concurrent-To`` (§5.7) naming the response's
  ``WARC-Record-ID``; a ``metadata`` record (§6.7) may follow;
* every record is its own gzip member (WARC 1.1 Annex D.2, "record-at-time
  compression"), so ``(offset, length)`` of a member addresses exactly one
  record and can be read with a ranged GET / ``seek`` + one gzip member.

Thread-safety: a :class:`WarcFileWriter` is meant to be owned by ONE thread
(the middleware uses a single-worker executor, which also keeps offsets in
write order). Every public method additionally takes an internal lock, so
accidental use from two threads serialises instead of corrupting the file,
but callers should not rely on interleaving order across threads.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import logging
import os
import re
import socket
import threading
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping

from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

logger = logging.getLogger(__name__)

OPEN_SUFFIX = ".open"
WARC_SUFFIX = ".warc.gz"
WARC_1_1_SPEC_URL = (
    "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"
)

# Recovery reads the file in chunks of this size; it is bounded so a 1 GB
# .open file does not need 1 GB of memory.
_RECOVERY_CHUNK = 1 << 20

#: zlib level of each record's gzip member. warcio's own wrapper uses 9, which
#: costs about twice the CPU of 6 for under 1 % smaller files here: most of a
#: record is a payload the server already gzipped (bench/ANALYSIS.md).
GZIP_LEVEL = 6


def sha1_base32_digest(data: bytes) -> str:
    """Return ``"sha1:" + BASE32(SHA-1(data))``, the digest form warcio writes.

    This is the labelled-digest syntax of WARC 1.1 §5.8/§5.9
    (``algorithm ":" digest-value``) with the customary base32 encoding.
    """
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def _package_version(name: str) -> str:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def software_string() -> str:
    """``newsarchive/<v> warcio/<v> scrapy/<v>`` for the warcinfo ``software`` field."""
    return " ".join(
        f"{pkg}/{_package_version(pkg)}" for pkg in ("newsarchive", "warcio", "scrapy")
    )


@dataclass(frozen=True)
class RecordPointer:
    """Location of one record inside a closed (renamed) WARC file.

    Attributes:
        file: final file name (basename, never the ``.open`` name).
        offset: byte offset of the record's gzip member in the file.
        length: byte length of that gzip member (compressed bytes).
        payload_digest: ``WARC-Payload-Digest`` of the record
            (``sha1:BASE32`` over the HTTP entity exactly as stored, i.e.
            still content-encoded, never chunked).
        record_id: ``WARC-Record-ID`` (``<urn:uuid:…>``); use it as
            ``concurrent_to`` for :meth:`WarcFileWriter.write_metadata`.
        warc_date: the record's ``WARC-Date`` (ISO 8601 UTC, ``Z``).
        record_type: ``WARC-Type`` of the record (``response``, ``revisit``,
            ``metadata``).
    """

    file: str
    offset: int
    length: int
    payload_digest: str
    record_id: str = ""
    warc_date: str = ""
    record_type: str = "response"

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable) with all attributes."""
        return asdict(self)


#: WARC 1.1 §6.7.2 revisit profiles.
PROFILE_IDENTICAL_PAYLOAD = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
PROFILE_SERVER_NOT_MODIFIED = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"


@dataclass(frozen=True)
class Revisit:
    """What a ``revisit`` record refers to (WARC 1.1 §6.7.2, §5.16–5.18).

    Attributes:
        profile: :data:`PROFILE_IDENTICAL_PAYLOAD` (the payload is identical to
            the referred record's; the body is not stored again) or
            :data:`PROFILE_SERVER_NOT_MODIFIED` (a 304 answer to a conditional
            request; there is no payload).
        refers_to_uri: ``WARC-Refers-To-Target-URI`` of the original capture.
        refers_to_date: its ``WARC-Date``.
        refers_to_id: its ``WARC-Record-ID`` (``WARC-Refers-To``), "" if unknown.
    """

    profile: str
    refers_to_uri: str
    refers_to_date: str
    refers_to_id: str = ""


class _ExactHeaders(StatusAndHeaders):
    """HTTP header block serialised byte-for-byte as latin-1.

    warcio's default ``compute_headers_buffer`` %-encodes any non-ASCII
    header value (RFC 8187 style), which would silently change what the
    server sent (e.g. raw UTF-8 in ``Content-Disposition``). Scrapy hands us
    header bytes, which we decode as latin-1; re-encoding as latin-1 gives the
    original bytes back. Only if a caller passes characters outside latin-1
    do we fall back to warcio's behaviour.
    """

    def compute_headers_buffer(self, header_filter: Any = None) -> None:
        try:
            self.headers_buff = self.to_str(header_filter).encode("latin-1") + b"\r\n"
        except UnicodeEncodeError:
            super().compute_headers_buffer(header_filter)


def _warc_date(dt: datetime) -> str:
    """WARC-Date (WARC 1.1 §5.4) in UTC with microseconds (1.1 allows fractions)."""
    if dt.tzinfo is None:
        # Naive datetimes are taken to be UTC already (documented contract).
        utc = dt
    else:
        utc = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return datetime_to_iso_date(utc, use_micros=True)


def _warc_fields(fields: Mapping[str, Any]) -> bytes:
    """Encode ``application/warc-fields`` (WARC 1.1 §6.2 / §6.7).

    A list/tuple value produces one line per element (e.g. ``outlink``).
    ``None``/empty values are skipped. CR/LF inside values are replaced by a
    space so a value cannot inject extra fields.
    """
    out = io.BytesIO()
    for name, value in fields.items():
        values: Iterable[Any] = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is None or v == "":
                continue
            if isinstance(v, datetime):
                v = _warc_date(v)
            text = re.sub(r"[\r\n]+", " ", str(v))
            out.write(f"{name}: {text}\r\n".encode("utf-8"))
    return out.getvalue()


class WarcFileWriter:
    """Write HTTP exchanges into size-rolled, gzip-per-record WARC 1.1 files.

    Args:
        directory: where files are written (created if missing).
        prefix: first component of the file name.
        host: host component of the file name; ``-{pid}`` is appended so two
            processes on one host never collide.
        max_size: rollover threshold in bytes (compressed file size). Checked
            after each exchange / metadata record, so a file may exceed it by
            one exchange. Must be > 0.
        warcinfo: extra ``warcinfo`` fields (e.g. ``operator``, ``robots``,
            ``http-header-user-agent``, ``description``); merged over the
            defaults ``software``, ``format``, ``conformsTo``, ``hostname``.
        on_close: called with the final :class:`~pathlib.Path` each time a
            file is closed and renamed (rollover or :meth:`close`). It runs on
            the writer's thread; exceptions are logged, not raised.

    Files are opened lazily on the first write, so closing a writer that has
    written nothing leaves no empty file behind.

    Raises:
        ValueError: ``max_size`` <= 0.
        OSError: from the file system (disk full, permissions…). A failed
            write is rolled back (the file is truncated to where the exchange
            started) before the error propagates, so the file stays valid.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        prefix: str = "NEWSARCHIVE",
        host: str | None = None,
        max_size: int = 1_000_000_000,
        warcinfo: Mapping[str, Any] | None = None,
        on_close: Callable[[Path], None] | None = None,
    ) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be > 0")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        # Host goes into a file name: keep it to safe characters.
        host = host or socket.gethostname()
        self.host = re.sub(r"[^A-Za-z0-9.]+", "_", host)
        self.pid = os.getpid()
        self.max_size = int(max_size)
        self.warcinfo_fields = dict(warcinfo or {})
        self.on_close = on_close

        self._lock = threading.RLock()
        self._serial = 0
        self._fh: BinaryIO | None = None
        self._writer: WARCWriter | None = None
        self._name: str | None = None  # final name of the current file
        self._closed_paths: list[Path] = []

        #: Total compressed bytes appended to all files (incl. warcinfo).
        self.total_bytes = 0
        #: Total records written (incl. warcinfo records).
        self.total_records = 0

    # ------------------------------------------------------------------ files
    @property
    def current_file(self) -> str | None:
        """Final name of the file currently open for writing, or ``None``."""
        return self._name

    def _next_name(self) -> str:
        ts = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        name = f"{self.prefix}-{ts}-{self._serial:05d}-{self.host}-{self.pid}{WARC_SUFFIX}"
        self._serial += 1
        return name

    def _open_new_file(self) -> None:
        while True:
            name = self._next_name()
            final = self.directory / name
            tmp = self.directory / (name + OPEN_SUFFIX)
            if final.exists():
                continue  # same second + serial reused after restart with same pid
            try:
                fh = open(tmp, "xb")  # exclusive create: never clobber
            except FileExistsError:
                continue
            break
        # An advisory lock lets recover_open_files() tell a live file from an
        # orphan left by a killed process (the kernel drops the lock on death).
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fh = fh
        self._name = name
        # warcio serialises each record uncompressed into a buffer; _write_record
        # compresses it as one gzip member in a single zlib call.
        self._buf = io.BytesIO()
        self._writer = WARCWriter(self._buf, gzip=False, warc_version="1.1")
        fields: dict[str, Any] = {
            "software": software_string(),
            "format": "WARC File Format 1.1",
            "conformsTo": WARC_1_1_SPEC_URL,
            "hostname": socket.gethostname(),
        }
        fields.update(self.warcinfo_fields)
        # Own encoding, not warcio's create_warcinfo_record: a list value is one
        # line per element (e.g. several crawlSetting lines).
        payload = _warc_fields(fields)
        record = self._writer.create_warc_record(
            "",
            "warcinfo",
            payload=io.BytesIO(payload),
            length=len(payload),
            warc_content_type="application/warc-fields",
            warc_headers_dict={
                "WARC-Type": "warcinfo",
                "WARC-Record-ID": StatusAndHeadersParser.make_warc_id(),
                "WARC-Filename": name,
                "WARC-Date": _warc_date(datetime.now(timezone.utc)),
            },
        )
        try:
            self._write_record(record)
        except BaseException:
            self._abandon_current_file()
            raise

    def _abandon_current_file(self) -> None:
        """Drop a file whose warcinfo could not be written (nothing of value in it)."""
        fh, name = self._fh, self._name
        self._fh = self._writer = self._name = None
        if fh is not None:
            try:
                fh.close()
            finally:
                if name:
                    (self.directory / (name + OPEN_SUFFIX)).unlink(missing_ok=True)

    def _ensure_open(self) -> None:
        if self._fh is None:
            self._open_new_file()

    def _close_current(self) -> Path | None:
        fh, name = self._fh, self._name
        if fh is None or name is None:
            return None
        self._fh = self._writer = self._name = None
        try:
            fh.flush()
            os.fsync(fh.fileno())  # data durable before the name says "complete"
        finally:
            fh.close()  # also releases the flock
        tmp = self.directory / (name + OPEN_SUFFIX)
        final = self.directory / name
        os.replace(tmp, final)
        self._closed_paths.append(final)
        if self.on_close is not None:
            try:
                self.on_close(final)
            except Exception:  # a hook failure must not lose later records
                logger.exception("WARC on_close callback failed for %s", final)
        return final

    def _maybe_rollover(self) -> None:
        if self._fh is not None and self._fh.tell() >= self.max_size:
            try:
                self._close_current()
            except OSError:
                # The records are already written; failing the caller now
                # would lose their pointer. The file stays ".open" and
                # recover_open_files() finalises it later.
                logger.exception("WARC rollover failed; file left as .open")

    def close(self) -> list[Path]:
        """Close the current file (fsync, rename ``.open`` → final, ``on_close``).

        Returns:
            Every path this writer has closed so far (rollovers included), in
            order. Idempotent; the writer may be written to again afterwards
            (a new file is opened).
        """
        with self._lock:
            self._close_current()
            return list(self._closed_paths)

    # ---------------------------------------------------------------- records
    def _write_record(self, record: Any) -> tuple[int, int]:
        """Write one record as one gzip member (RFC 1952; WARC 1.1 Annex D.2);
        return ``(offset, length)``."""
        assert self._fh is not None and self._writer is not None
        offset = self._fh.tell()
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        self._writer.write_record(record)
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
        with buf.getbuffer() as view:
            member = compressor.compress(view) + compressor.flush()
        self._fh.write(member)
        self._fh.flush()
        length = self._fh.tell() - offset
        self.total_bytes += length
        self.total_records += 1
        return offset, length

    def _rollback(self, start: int) -> None:
        """Truncate the current file to ``start`` after a failed write."""
        if self._fh is None:
            return
        try:
            self._fh.flush()
        except OSError:
            pass
        try:
            self._fh.truncate(start)
            self._fh.seek(start)
        except OSError:
            # Cannot even truncate: give up on this file; recover_open_files()
            # will cut it back to the last whole member later.
            logger.exception("could not roll back WARC file %s", self._name)
            fh, self._fh, self._writer, self._name = self._fh, None, None, None
            try:
                fh.close()
            except OSError:
                pass

    def write_exchange(
        self,
        *,
        url: str,
        request_method: str,
        request_target: str,
        request_headers: list[tuple[str, str]],
        protocol: str | None,
        status: int,
        response_headers: list[tuple[str, str]],
        body: bytes,
        ip_address: str | None,
        fetched_at: datetime,
        reason: str = "",
        request_body: bytes = b"",
        truncated: str | None = None,
        revisit: Revisit | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> RecordPointer:
        """Write a ``response`` + ``request`` record pair for one HTTP exchange
        (a ``revisit`` instead of the ``response`` when ``revisit`` is given),
        followed by a ``metadata`` record when ``metadata`` is given. The
        records are written as one unit: all of them or none.

        Args:
            url: ``WARC-Target-URI`` (absolute, without fragment).
            request_method: e.g. ``"GET"``.
            request_target: origin-form request target (path + ``?query``).
            request_headers: ``(name, value)`` pairs written verbatim, in order.
                The caller is responsible for removing credentials.
            protocol: HTTP version for both start lines, e.g. ``"HTTP/1.1"``;
                ``None`` → ``"HTTP/1.1"``.
            status: HTTP status code (int).
            response_headers: ``(name, value)`` pairs written verbatim; the
                caller must already have removed ``Transfer-Encoding`` and
                made ``Content-Length`` match ``body``.
            body: the response entity exactly as stored: de-chunked but still
                content-coded (gzip/br…); the payload digest is computed over
                these bytes (warcio #74).
            ip_address: ``WARC-IP-Address`` (§5.11) or ``None`` to omit.
            fetched_at: capture time → ``WARC-Date`` of both records (aware
                datetime, or naive meaning UTC); microsecond precision.
            reason: reason phrase; empty → the start line ends ``"<code> "``
                (RFC 9112 §4 allows an empty reason phrase).
            request_body: request entity (POST etc.), default empty.
            truncated: ``WARC-Truncated`` value (§5.13: ``length``, ``time``,
                ``disconnect``, ``unspecified``) if the body is incomplete.
            revisit: write a ``revisit`` record referring to an earlier
                capture: for :data:`PROFILE_IDENTICAL_PAYLOAD` the HTTP headers
                are kept (``Content-Length`` still the entity's) and ``body`` is
                only digested, never stored; for
                :data:`PROFILE_SERVER_NOT_MODIFIED` there is no payload digest.
            metadata: ``application/warc-fields`` of a ``metadata`` record
                (§6.7) with ``WARC-Concurrent-To`` naming the response/revisit
                (see :meth:`write_metadata` for the value forms).

        Returns:
            :class:`RecordPointer` of the RESPONSE (or REVISIT) record. Its
            ``file`` is the final name, valid after the file is closed.

        Raises:
            OSError: write failure (file rolled back to before the response
                record; the exchange is not in the WARC).
        """
        protocol = protocol or "HTTP/1.1"
        warc_date = _warc_date(fetched_at)
        with self._lock:
            self._ensure_open()
            assert self._fh is not None and self._writer is not None
            w = self._writer

            # Insertion order = header order in the file: WARC-Type first
            # reads naturally; warcio keeps positions on replace_header().
            resp_id = StatusAndHeadersParser.make_warc_id()
            resp_warc_headers: dict[str, str] = {
                "WARC-Type": "response",
                "WARC-Record-ID": resp_id,
                "WARC-Date": warc_date,
                "WARC-Target-URI": url,
            }
            if ip_address:
                resp_warc_headers["WARC-IP-Address"] = str(ip_address)
            if truncated:
                resp_warc_headers["WARC-Truncated"] = truncated
            resp_http = _ExactHeaders(
                f"{status} {reason}", list(response_headers), protocol=protocol
            )
            if revisit is None:
                response = w.create_warc_record(
                    url,
                    "response",
                    payload=io.BytesIO(body),
                    length=len(body),
                    http_headers=resp_http,
                    warc_headers_dict=resp_warc_headers,
                )
            else:
                response = self._revisit_record(url, revisit, body, resp_http, resp_warc_headers)

            req_http = _ExactHeaders(
                f"{request_method} {request_target} {protocol}",
                list(request_headers),
                protocol="",
            )
            req_warc_headers = {
                "WARC-Type": "request",
                "WARC-Record-ID": StatusAndHeadersParser.make_warc_id(),
                "WARC-Date": warc_date,
                "WARC-Target-URI": url,
                "WARC-Concurrent-To": resp_id,
            }
            if ip_address:
                req_warc_headers["WARC-IP-Address"] = str(ip_address)
            request = w.create_warc_record(
                url,
                "request",
                payload=io.BytesIO(request_body),
                length=len(request_body),
                http_headers=req_http,
                warc_headers_dict=req_warc_headers,
            )

            meta_record = None
            if metadata is not None:
                meta_record = self._metadata_record(resp_id, url, metadata, warc_date)

            # Heritrix's order (response, request, metadata): cdxj-indexer pairs a
            # request with the response just before it (its referrer goes into
            # the index, which WACZ page detection uses).
            start = self._fh.tell()
            try:
                offset, length = self._write_record(response)
                self._write_record(request)
                if meta_record is not None:
                    self._write_record(meta_record)
            except BaseException:
                self._rollback(start)
                raise
            pointer = RecordPointer(
                file=self._name or "",
                offset=offset,
                length=length,
                payload_digest=response.rec_headers.get_header("WARC-Payload-Digest") or "",
                record_id=resp_id,
                warc_date=warc_date,
                record_type=response.rec_type,
            )
            self._maybe_rollover()
            return pointer

    def _revisit_record(
        self,
        url: str,
        revisit: Revisit,
        body: bytes,
        http_headers: StatusAndHeaders,
        warc_headers: dict[str, str],
    ) -> Any:
        """A ``revisit`` record: HTTP headers only, never the body."""
        assert self._writer is not None
        warc_headers = dict(warc_headers, **{"WARC-Type": "revisit"})
        if revisit.refers_to_id:
            warc_headers["WARC-Refers-To"] = revisit.refers_to_id
        if revisit.profile == PROFILE_IDENTICAL_PAYLOAD:
            # warcio sets WARC-Profile (1.1 URI for a 1.1 writer), Refers-To-* and
            # the payload digest, computed here over the bytes NOT stored.
            return self._writer.create_revisit_record(
                url,
                sha1_base32_digest(body),
                revisit.refers_to_uri,
                revisit.refers_to_date,
                http_headers=http_headers,
                warc_headers_dict=warc_headers,
            )
        record = self._writer.create_warc_record(
            url, "revisit", http_headers=http_headers, warc_headers_dict=warc_headers
        )
        record.rec_headers.add_header("WARC-Profile", revisit.profile)
        record.rec_headers.add_header("WARC-Refers-To-Target-URI", revisit.refers_to_uri)
        record.rec_headers.add_header("WARC-Refers-To-Date", revisit.refers_to_date)
        return record

    def _metadata_record(
        self, concurrent_to: str, url: str, fields: Mapping[str, Any], warc_date: str
    ) -> Any:
        assert self._writer is not None
        payload = _warc_fields(fields)
        return self._writer.create_warc_record(
            url,
            "metadata",
            payload=io.BytesIO(payload),
            length=len(payload),
            warc_content_type="application/warc-fields",
            warc_headers_dict={
                "WARC-Type": "metadata",
                "WARC-Record-ID": StatusAndHeadersParser.make_warc_id(),
                "WARC-Date": warc_date,
                "WARC-Target-URI": url,
                "WARC-Concurrent-To": concurrent_to,
            },
        )

    def write_metadata(
        self,
        concurrent_to: str,
        url: str,
        fields: Mapping[str, Any],
        *,
        when: datetime | None = None,
    ) -> RecordPointer:
        """Write a ``metadata`` record (WARC 1.1 §6.7) about an earlier record.

        Args:
            concurrent_to: ``WARC-Record-ID`` of the record described (usually
                :attr:`RecordPointer.record_id` of a response). Written as
                ``WARC-Concurrent-To``; it may live in an earlier file.
            url: ``WARC-Target-URI`` (same URI as the described record).
            fields: ``application/warc-fields`` content, e.g.
                ``{"outlink": [...], "fetchTimeMs": 123}``; list values give
                one line per element; ``datetime`` values become ISO 8601 UTC.
            when: ``WARC-Date``; default now (UTC).

        Returns:
            :class:`RecordPointer` of the metadata record.
        """
        warc_date = _warc_date(when or datetime.now(timezone.utc))
        with self._lock:
            self._ensure_open()
            assert self._fh is not None and self._writer is not None
            record = self._metadata_record(concurrent_to, url, fields, warc_date)
            start = self._fh.tell()
            try:
                offset, length = self._write_record(record)
            except BaseException:
                self._rollback(start)
                raise
            pointer = RecordPointer(
                file=self._name or "",
                offset=offset,
                length=length,
                payload_digest=record.rec_headers.get_header("WARC-Payload-Digest") or "",
                record_id=record.rec_headers.get_header("WARC-Record-ID"),
                warc_date=warc_date,
                record_type="metadata",
            )
            self._maybe_rollover()
            return pointer

    def __enter__(self) -> "WarcFileWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------- recovery
def _last_whole_member_end(path: Path) -> tuple[int, int]:
    """``(offset, count)``: the byte offset just past the last complete gzip
    member that starts a WARC record, and how many such members precede it.

    Members are validated by decompressing them fully (zlib checks CRC32 and
    ISIZE in the gzip trailer). Scanning stops at the first incomplete or
    corrupt member.
    """
    good_end = 0
    count = 0
    base = 0  # file offset of data[0]
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    head = b""  # first decompressed bytes of the current member
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_RECOVERY_CHUNK)
            if not chunk:
                break
            data = chunk
            while data:
                try:
                    out = d.decompress(data)
                except zlib.error:
                    return good_end, count
                if len(head) < 8:
                    head += out[: 8 - len(head)]
                if d.eof:
                    member_end = base + len(data) - len(d.unused_data)
                    if not head.startswith(b"WARC/"):
                        return good_end, count
                    good_end = member_end
                    count += 1
                    base = member_end
                    data = d.unused_data
                    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    head = b""
                else:
                    base += len(data)
                    data = b""
    return good_end, count


def recover_open_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Repair ``*.warc.gz.open`` files left behind by a killed writer.

    For each ``.open`` file in ``directory`` (not recursive) that is not
    locked by a live writer (see ``flock`` in :class:`WarcFileWriter`):
    truncate it after its last complete gzip member (= last whole record,
    since records are compressed one per member) and rename it to its final
    name. Files with no complete record after the ``warcinfo`` record are
    deleted (nothing was captured). A request record whose response was lost
    may remain at the end; that is still a valid WARC.

    Returns:
        The final paths of recovered files (sorted by name).
    """
    recovered: list[Path] = []
    for tmp in sorted(Path(directory).glob(f"*{WARC_SUFFIX}{OPEN_SUFFIX}")):
        try:
            fh = open(tmp, "r+b")
        except FileNotFoundError:
            continue  # closed by its owner meanwhile
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("skipping %s: still being written by a live process", tmp)
                continue
            end, count = _last_whole_member_end(tmp)
            size = os.fstat(fh.fileno()).st_size
            if count <= 1:  # nothing, or the warcinfo record alone
                logger.warning("deleting %s: no complete WARC record", tmp)
                tmp.unlink()
                continue
            if end < size:
                logger.warning(
                    "truncating %s from %d to %d bytes (partial record)", tmp, size, end
                )
                fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
        final = tmp.with_name(tmp.name[: -len(OPEN_SUFFIX)])
        os.replace(tmp, final)
        recovered.append(final)
    return recovered
