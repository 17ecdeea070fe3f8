"""Replay of archived HTTP exchanges: the download side of ``newsarchive reprocess``.

Rebuilding the dataset from WARC runs the *same* Scrapy crawl as ``newsarchive
crawl`` — the ``portal`` spider, every downloader middleware (robots.txt, retry,
redirect, HTTP compression) and every item pipeline — with one difference: the
``http``/``https`` download handler is :class:`WarcReplayHandler`, which answers each
request from the WARC files instead of the network. So the archived robots.txt,
redirects, 404s and 500s steer the replay exactly as they steered the crawl.

Two steps:

1. :func:`build_index` streams every WARC file of the sources once (warcio; an S3
   object is read as a stream, never loaded whole) and writes a CDXJ index: one
   line per ``response`` (or ``revisit``) record, ``<SURT> <timestamp14> {json}``
   with the record's URL, status, ``WARC-Date``, payload digest, record id and its
   location (source, key, offset, length). Bodies are not kept in memory.
2. :class:`WarcReplayHandler` loads that index and, per request, reads the one
   record it needs (a seek, or a ranged GET on S3) and rebuilds the response from
   the stored bytes: the status line and header bytes as archived, the body still
   content-encoded (``HttpCompressionMiddleware`` decodes it, as in the crawl).

Which capture answers a request (:func:`replay_sequence`): a URL archived once is
answered by that capture every time. A URL captured several times (retries of a 5xx
within one crawl, or several crawls in one store) is answered by its *latest
answer* — the last capture whose status is not a retryable error
(``RETRY_HTTP_CODES``) — preceded by the retryable captures right before it (at most
``RETRY_TIMES``): the first request of the URL gets the first of those, the retry
the next, and so on, and any request after the end gets the latest answer again.
One crawl's ``500, 500, 200`` (FAULTS F11) replays as ``500, 500, 200`` and gives
the same retry statistics; a store holding several crawls rebuilds each article
from its latest capture. ``304`` captures (answers to conditional requests, which a
replay never sends) are not used. A URL with no capture raises ``IgnoreRequest``
(stat ``newsarchive/replay/not_archived``): a replay never goes to the network.

The response's ``meta["warc"]`` is the pointer of the archived record that answered
it (file, offset, length, payload digest, record id, ``WARC-Date``) — the same
pointer the capture middleware set during the crawl, so a rebuilt record points at
the original response record.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import os
from collections import defaultdict
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Iterable, Iterator
from urllib.parse import urlsplit

from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Headers
from scrapy.responsetypes import responsetypes
from scrapy.utils.asyncio import run_in_thread
from w3lib.url import canonicalize_url
from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import ChunkedDataReader

from crawler.layout import warc_key
from crawler.middlewares.maxsize import TRUNCATED_META
from crawler.middlewares.warc_capture import target_uri
from crawler.store import LocalStore, S3Store, Store, StoreError, open_store

logger = logging.getLogger(__name__)

WARC_SUFFIXES = (".warc.gz", ".warc")

#: Record types that can answer a request.
_ANSWER_TYPES = ("response", "revisit")

#: Revisit profile whose payload is an earlier record's (WARC 1.1 §6.7.2).
_IDENTICAL_PAYLOAD = "identical-payload-digest"


class ReplayError(Exception):
    """WARC sources that cannot be listed or read, or an unreadable index."""


# --------------------------------------------------------------------- sources
@dataclass(frozen=True)
class WarcSource:
    """A WARC folder or prefix: ``store`` (a :class:`~crawler.store.Store` rooted
    there), ``keys`` (the WARC files under it, relative, sorted) and ``skipped``
    (WARC files whose name has no 14-digit timestamp: a record's pointer could not
    name their archive key, ``warc/YYYY/MM/DD/<name>``)."""

    url: str
    store: Store
    keys: tuple[str, ...]
    skipped: tuple[str, ...] = ()


def open_sources(urls: Iterable[str]) -> list[WarcSource]:
    """Resolve ``--warc`` arguments: a local folder, ``s3://bucket/prefix``, or one
    WARC file (local path or S3 key). Files not ending in ``.warc.gz``/``.warc``
    are ignored; open ``.open`` files (still being written) too.

    Raises :class:`ReplayError` for an unreadable source or when no WARC file is found.
    """
    sources = []
    for url in urls:
        url = os.fspath(url)
        try:
            if url.endswith(WARC_SUFFIXES):
                parent, _, name = url.rstrip("/").rpartition("/")
                store = open_store(parent or ".")
                keys = (name,) if store.exists(name) else ()
                if not keys:
                    raise ReplayError(f"no such WARC file: {url}")
            else:
                store = open_store(url)
                keys = tuple(k for k in store.list("") if k.endswith(WARC_SUFFIXES))
        except StoreError as exc:
            raise ReplayError(f"cannot list WARC files in {url}: {exc}") from exc
        named = tuple(k for k in keys if warc_store_key(PurePosixPath(k).name))
        skipped = tuple(k for k in keys if k not in named)
        sources.append(WarcSource(url, store, named, skipped))
    if not any(s.keys for s in sources):
        raise ReplayError("no WARC files (*.warc.gz, *.warc) in " + ", ".join(map(str, urls)))
    return sources


def open_stream(store: Store, key: str) -> IO[bytes]:
    """A readable binary stream of the whole object ``key``: a local file, or the
    body of an S3 GET read as it arrives (the object is never held in memory)."""
    if isinstance(store, LocalStore):
        return open(store.root / key, "rb")
    if isinstance(store, S3Store):
        from botocore.exceptions import BotoCoreError, ClientError

        full = f"{store.prefix}/{key}" if store.prefix else key
        try:
            return store.client.get_object(Bucket=store.bucket, Key=full)["Body"]
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"S3 get s3://{store.bucket}/{full} failed: {exc}") from exc
    return io.BytesIO(store.get_bytes(key))


# ----------------------------------------------------------------------- index
@dataclass
class Capture:
    """One archived answer for a URL (a ``response`` or ``revisit`` record).

    ``source``: index into the list of sources; ``key``: the WARC file relative to
    it; ``offset``/``length``: the record's gzip member (bytes); ``warc_date``: its
    ``WARC-Date`` (ISO 8601, as written); ``refers_to``: for an identical-payload
    revisit, the payload digest whose response record holds the body."""

    url: str
    status: int
    warc_date: str
    source: int
    key: str
    offset: int
    length: int
    payload_digest: str | None
    record_id: str | None
    record_type: str = "response"
    refers_to: str | None = None

    @property
    def file(self) -> str:
        """Base name of the WARC file (what the capture middleware's pointer holds)."""
        return PurePosixPath(self.key).name

    def sort_key(self) -> tuple:
        return (self.warc_date, self.source, self.key, self.offset)


def _warc_date_key(value: str | None) -> str:
    # WARC-Date is ISO 8601 UTC ("2026-11-29T13:30:00Z" or with a fraction); a
    # normalised form sorts correctly as text whatever precision each record has.
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y%m%d%H%M%S%f")
    except ValueError:
        return value


def iter_captures(stream: IO[bytes], source: int, key: str) -> Iterator[Capture]:
    """Every ``response``/``revisit`` record of one WARC stream with an HTTP status."""
    it = ArchiveIterator(stream)
    for record in it:
        if record.rec_type not in _ANSWER_TYPES:
            continue
        headers = record.rec_headers
        url = (headers.get_header("WARC-Target-URI") or "").strip().strip("<>")
        profile = headers.get_header("WARC-Profile") or ""
        http = record.http_headers
        status = http.get_statuscode() if http is not None else None
        refers_to = None
        if record.rec_type == "revisit":
            if _IDENTICAL_PAYLOAD not in profile:
                continue  # server-not-modified: an answer to a conditional request
            refers_to = headers.get_header("WARC-Payload-Digest")
        if not url or not status or not status.isdigit():
            continue
        it.read_to_end(record)
        yield Capture(
            url=url,
            status=int(status),
            warc_date=headers.get_header("WARC-Date") or "",
            source=source,
            key=key,
            offset=it.get_record_offset(),
            length=it.get_record_length(),
            payload_digest=headers.get_header("WARC-Payload-Digest"),
            record_id=headers.get_header("WARC-Record-ID"),
            record_type=record.rec_type,
            refers_to=refers_to,
        )


def _surt(url: str) -> str:
    try:
        from surt import surt

        return surt(url)
    except Exception:  # noqa: BLE001 - the key only orders the file; the URL is in the JSON
        return url


def build_index(sources: list[WarcSource], path: Path) -> dict[str, int]:
    """Stream every WARC file of ``sources`` and write a CDXJ index to ``path``.

    Lines are ``<SURT> <YYYYmmddHHMMSS> <json>`` sorted by SURT then capture time;
    the JSON holds the :class:`Capture` fields plus ``sources`` on a first
    ``!meta`` line (the source URLs, so the index alone can reopen them).
    Returns counts: ``files``, ``captures``, ``urls``, ``unreadable_files``.
    A file that cannot be read to the end is logged and counted, its records up
    to the damage are kept (warcio stops at the first bad member).
    """
    lines = []
    files = unreadable = 0
    for i, source in enumerate(sources):
        for key in source.keys:
            files += 1
            try:
                with closing(open_stream(source.store, key)) as stream:
                    for cap in iter_captures(stream, i, key):
                        ts = _warc_date_key(cap.warc_date)[:14]
                        lines.append(f"{_surt(cap.url)} {ts} " + json.dumps(asdict(cap), ensure_ascii=False))
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the rebuild
                unreadable += 1
                logger.error("cannot read WARC %s/%s: %s", source.url, key, exc)
    lines.sort()
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"sources": [s.url for s in sources]}
    with open(path, "w", encoding="utf-8") as f:
        f.write("!meta 0 " + json.dumps(meta, ensure_ascii=False) + "\n")
        for line in lines:
            f.write(line + "\n")
    urls = {json.loads(line.split(" ", 2)[2])["url"] for line in lines}
    return {"files": files, "captures": len(lines), "urls": len(urls), "unreadable_files": unreadable}


def load_index(path: Path) -> tuple[list[str], list[Capture]]:
    """``(source URLs, captures)`` from an index written by :func:`build_index`."""
    sources: list[str] = []
    captures = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _ts, blob = line.rstrip("\n").split(" ", 2)
                if key == "!meta":
                    sources = json.loads(blob)["sources"]
                else:
                    captures.append(Capture(**json.loads(blob)))
    except (OSError, ValueError, TypeError) as exc:
        raise ReplayError(f"unreadable replay index {path}: {exc}") from exc
    return sources, captures


# ---------------------------------------------------------------------- policy
def replay_sequence(captures: list[Capture], retry_codes: frozenset[int], retry_times: int) -> list[Capture]:
    """The captures that answer successive requests of one URL (see the module
    docstring): the latest non-retryable answer, after at most ``retry_times``
    retryable captures right before it; with no such answer, the last
    ``retry_times + 1`` retryable ones. ``304`` captures are never used."""
    ordered = sorted((c for c in captures if c.status != 304), key=Capture.sort_key)
    if not ordered:
        return []
    last = next((i for i in range(len(ordered) - 1, -1, -1) if ordered[i].status not in retry_codes), None)
    if last is None:
        return ordered[-(retry_times + 1):]
    first = last
    while first > 0 and last - first < retry_times and ordered[first - 1].status in retry_codes:
        first -= 1
    return ordered[first : last + 1]


def _url_key(url: str) -> str:
    return canonicalize_url(url, keep_fragments=False)


# --------------------------------------------------------------------- records
def _parse_http(block: bytes) -> tuple[str, int, list[tuple[bytes, bytes]]]:
    """``(protocol, status, [(name, value), …])`` of an HTTP response header block
    as stored (bytes kept exactly; obs-fold continuation lines joined)."""
    lines = block.split(b"\r\n")
    protocol, _, rest = lines[0].partition(b" ")
    status = int(rest.split(b" ", 1)[0])
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip())
            continue
        name, _, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    return protocol.decode("latin-1"), status, headers


def read_exchange(store: Store, key: str, offset: int, length: int) -> dict:
    """Read one archived response record and return ``protocol``, ``status``,
    ``headers`` (list of byte pairs), ``body`` (as stored: content-encoded,
    de-chunked), ``ip_address``, ``truncated`` and the record's WARC headers.
    Raises :class:`ReplayError` if the bytes are not one HTTP response record."""
    blob = store.get_bytes(key, (offset, length))
    records = ArchiveIterator(io.BytesIO(blob), no_record_parse=True)
    record = next(iter(records), None)
    if record is None or record.rec_type not in _ANSWER_TYPES:
        raise ReplayError(f"no response record at {key}@{offset}")
    raw = record.raw_stream.read()
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ReplayError(f"no HTTP header block in {key}@{offset}")
    protocol, status, headers = _parse_http(head)
    if any(n.lower() == b"transfer-encoding" and b"chunked" in v.lower() for n, v in headers):
        # Another tool may have stored the body chunked; Scrapy hands spiders de-chunked bodies.
        body = ChunkedDataReader(io.BytesIO(body)).read()
        headers = [(n, v) for n, v in headers if n.lower() != b"transfer-encoding"]
    rec = record.rec_headers
    return {
        "protocol": protocol,
        "status": status,
        "headers": headers,
        "body": body,
        "ip_address": rec.get_header("WARC-IP-Address"),
        "truncated": rec.get_header("WARC-Truncated"),
    }


#: WARC-Truncated reason → the Scrapy response flag it was recorded from.
_TRUNCATED_FLAGS = {"disconnect": "dataloss", "unspecified": "download_stopped", "length": "download_stopped"}


class WarcReplayHandler(BaseDownloadHandler):
    """Download handler (``DOWNLOAD_HANDLERS`` for ``http`` and ``https``) that
    answers from WARC records and never opens a connection.

    Settings: ``NEWSARCHIVE_REPLAY_INDEX`` (path of a :func:`build_index` file,
    required), ``RETRY_HTTP_CODES``, ``RETRY_TIMES`` (the capture policy).
    Stats: ``newsarchive/replay/responses``, ``…/not_archived``, ``…/repeated``
    (a URL requested more often than it was captured), ``…/revisits``,
    ``…/errors`` (a record that could not be read: ``IgnoreRequest``).
    Only GET is replayed; other methods are ``IgnoreRequest`` (``…/not_archived``).
    """

    lazy = False

    def __init__(self, crawler, index_path: Path):
        super().__init__(crawler)
        self.stats = crawler.stats
        urls, captures = load_index(index_path)
        self.sources = urls
        self._stores: dict[int, Store] = {}
        retry_codes = frozenset(int(c) for c in crawler.settings.getlist("RETRY_HTTP_CODES"))
        retry_times = crawler.settings.getint("RETRY_TIMES")
        by_url: dict[str, list[Capture]] = defaultdict(list)
        self._by_digest: dict[str, Capture] = {}
        for cap in captures:
            by_url[cap.url].append(cap)
            if cap.record_type == "response" and cap.payload_digest:
                prev = self._by_digest.get(cap.payload_digest)
                if prev is None or cap.sort_key() < prev.sort_key():
                    self._by_digest[cap.payload_digest] = cap
        self._sequences = {
            url: seq for url, caps in by_url.items() if (seq := replay_sequence(caps, retry_codes, retry_times))
        }
        self._canonical = {}
        for url in self._sequences:
            self._canonical.setdefault(_url_key(url), url)
        self._served: dict[str, int] = defaultdict(int)

    @classmethod
    def from_crawler(cls, crawler):
        path = crawler.settings.get("NEWSARCHIVE_REPLAY_INDEX")
        if not path:
            raise NotConfigured("NEWSARCHIVE_REPLAY_INDEX is not set")
        return cls(crawler, Path(path))

    def _store(self, source: int) -> Store:
        if source not in self._stores:
            url = self.sources[source]
            # A single-file source was opened on its folder (open_sources).
            if url.endswith(WARC_SUFFIXES):
                url = url.rstrip("/").rpartition("/")[0] or "."
            self._stores[source] = open_store(url)
        return self._stores[source]

    def capture_for(self, url: str) -> Capture | None:
        """The capture that answers the next request of ``url`` (and count it)."""
        target = target_uri(url)
        if target not in self._sequences:
            target = self._canonical.get(_url_key(target))
            if target is None:
                return None
        seq = self._sequences[target]
        n = self._served[target]
        self._served[target] = n + 1
        if n >= len(seq):
            self.stats.inc_value("newsarchive/replay/repeated")
        return seq[min(n, len(seq) - 1)]

    async def download_request(self, request):
        if request.method.upper() != "GET" or urlsplit(request.url).scheme not in ("http", "https"):
            cap = None
        else:
            cap = self.capture_for(request.url)
        if cap is None:
            self.stats.inc_value("newsarchive/replay/not_archived")
            raise IgnoreRequest(f"not archived: {request.url}")
        try:
            exchange = await run_in_thread(self._read, cap)
        except (StoreError, ReplayError, OSError, ValueError) as exc:
            self.stats.inc_value("newsarchive/replay/errors")
            logger.error("cannot replay %s from %s@%d: %s", request.url, cap.key, cap.offset, exc)
            raise IgnoreRequest(f"unreadable WARC record for {request.url}") from exc
        self.stats.inc_value("newsarchive/replay/responses")
        headers = Headers()
        for name, value in exchange["headers"]:
            headers.appendlist(name, value)
        body = exchange["body"]
        flags = [_TRUNCATED_FLAGS.get(exchange["truncated"], "dataloss")] if exchange["truncated"] else []
        if exchange["truncated"] == "length":
            # Cut at DOWNLOAD_MAXSIZE when crawled: dropped and reported as the crawl did.
            request.meta[TRUNCATED_META] = len(body)
        ip = None
        if exchange["ip_address"]:
            try:
                ip = ipaddress.ip_address(exchange["ip_address"])
            except ValueError:
                ip = None
        request.meta["warc"] = {
            "file": cap.file,
            "offset": cap.offset,
            "length": cap.length,
            "payload_digest": cap.payload_digest,
            "record_id": cap.record_id,
            "warc_date": cap.warc_date if _warc_date_key(cap.warc_date) != cap.warc_date else None,
        }
        request.meta["download_latency"] = 0.0
        respcls = responsetypes.from_args(headers=headers, url=request.url, body=body)
        return respcls(
            url=request.url,
            status=exchange["status"],
            headers=headers,
            body=body,
            flags=flags,
            ip_address=ip,
            protocol=exchange["protocol"],
        )

    def _read(self, cap: Capture) -> dict:
        exchange = read_exchange(self._store(cap.source), cap.key, cap.offset, cap.length)
        if cap.record_type == "revisit":
            self.stats.inc_value("newsarchive/replay/revisits")
            original = self._by_digest.get(cap.refers_to or "")
            if original is None:
                raise ReplayError(f"revisit of {cap.url}: no response record with digest {cap.refers_to}")
            payload = read_exchange(self._store(original.source), original.key, original.offset, original.length)
            exchange["body"] = payload["body"]
            if not exchange["headers"]:
                exchange["headers"] = payload["headers"]
        return exchange


def warc_store_key(filename: str) -> str | None:
    """The archive key a record's pointer names (``warc/YYYY/MM/DD/<name>``), or None
    when the file name carries no timestamp (the spider could not point at it)."""
    try:
        return warc_key(filename)
    except ValueError:
        return None
