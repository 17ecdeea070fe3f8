"""Downloader middleware that records every HTTP exchange into WARC 1.1 files.

Enable it between HttpCompressionMiddleware (590) and CookiesMiddleware (700)::

    DOWNLOADER_MIDDLEWARES = {
        "crawler.middlewares.warc_capture.WarcCaptureMiddleware": 650,
    }
    DEFAULT_REQUEST_HEADERS = {"Accept-Encoding": "gzip, deflate, br", ...}

Why 650: in response order it runs *before* HttpCompressionMiddleware (so it
sees the body still content-encoded, with its ``Content-Encoding``) and before
RedirectMiddleware (600) and RetryMiddleware (550) (so every 3xx and every
retried 5xx is recorded, not only the final response). Headers that
middlewares above 650 (Cookies 700, HttpProxy 750) add in ``process_request``
are set on the *same* Request object, so by the time ``process_response``
runs they are present and get recorded (credentials excepted, see below).

What is recorded (per response, including robots.txt, 3xx, 4xx, 5xx):
a ``request`` record rebuilt from the Request and a ``response`` record
rebuilt from the Response. Scrapy has already dropped some wire detail, so
the records are a faithful *reconstruction*, stated in the warcinfo record:

* status line = ``response.protocol`` (``None``/HTTP/2 → ``HTTP/1.1``) +
  status + the standard reason phrase (:class:`http.HTTPStatus`);
* header names in Scrapy's normalised case; ``Transfer-Encoding`` removed
  because the stored body is de-chunked; ``Content-Length`` set to the
  stored entity length (except HEAD / 1xx / 204 / 304, where the body is
  empty by definition and the server's value is kept);
* ``Authorization`` and ``Proxy-Authorization`` are never recorded; userinfo
  is stripped from the URL;
* a ``Host`` header is added from the URL when Scrapy did not set one (the
  HTTP client adds it on the wire);
* ``WARC-Date`` = time the request was sent (now − ``download_latency``).

Not recorded: responses served from HttpCacheMiddleware (flag ``cached``:
not a network exchange), non-HTTP(S) schemes, and downloads that end in an
exception (timeouts, DNS errors) because there is no response.

Truncation (``WARC-Truncated``, ISO 28500:2017 §5.13): a body stopped at
``DOWNLOAD_MAXSIZE`` by :mod:`crawler.middlewares.maxsize`
(``meta[TRUNCATED_META]`` = the limit) is recorded as its first ``limit``
bytes with ``length``; Scrapy's ``dataloss`` flag (connection lost before the
announced length) gives ``disconnect``; ``download_stopped`` (another
``StopDownload``) gives ``unspecified``.

Metadata: each full response is followed by a ``metadata`` record (WARC 1.1
§6.7, ``WARC-Concurrent-To`` = the response) with ``via`` (the redirecting or
referring URL), ``fetchTimeMs`` and one ``outlink: <url> <hop> <context>``
line per link in the page (Heritrix style; see :mod:`crawler.warc.outlinks`).
A revisit gets none (``WARC_METADATA_REVISITS`` = True writes one with ``via``
and ``fetchTimeMs``): its outlinks are those of the record it refers to and its
referrer is in its request record's ``Referer``, while a metadata record would
cost as much as the revisit itself.

Revisits (``WARC_REVISITS``, default True): the payload digest of every
response is looked up in the payload-digest index
(:class:`crawler.warc.digests.PayloadDigestIndex`, a SQLite file beside
``WARC_DIR``, i.e. ``<state-dir>/warc-digests.sqlite``, or
``WARC_DIGEST_INDEX``). When the same payload is already archived in this
store under the same URL (this run or an earlier one; with
``WARC_REVISITS_URL_AGNOSTIC`` = True under any URL) a ``revisit`` record
(profile identical-payload-digest, ``WARC-Refers-To-Target-URI``,
``WARC-Refers-To-Date``, ``WARC-Refers-To``) replaces the response: HTTP
headers kept, body not stored. A 304 answer is recorded as a revisit with the
server-not-modified profile referring to the URL's latest full capture (or as
a plain response when there is none). Empty and truncated bodies, and non-GET
exchanges, are always stored in full.

Pointer: ``request.meta["warc"]`` (== ``response.meta["warc"]``) is set to
``{"file", "offset", "length", "payload_digest", "record_id", "warc_date",
"record_type"}`` of the record holding the page's bytes: the response record
just written, or — when a revisit was written — the original response it
refers to (same URL and payload bytes, maybe in an earlier file), with
the revisit itself under ``"revisit"`` (``{"file", "offset", "length",
"record_id"}``). ``file`` is the final name of a WARC file (renamed from
``.open`` when closed). After a redirect the meta dict is copied to the new
request and the last response's pointer wins.

CDXJ: every closed file is indexed into ``<file>.cdxj`` beside it
(:func:`crawler.warc.cdxj.write_cdxj`, off the reactor thread) before the
closed-file hook runs, so uploaders ship both. At start-up, ``.open`` files of
a killed run are recovered and closed files left behind (upload failed, or the
process died before uploading) are put through the same hook.

Where the writing happens: building records, digesting, compressing, the digest
index and listing outlinks are :class:`crawler.warc.session.CaptureSession`'s work.
It runs in the WARC writer process (:mod:`crawler.warc.sink`) when the crawl may use
CPU workers (``NEWSARCHIVE_CPU_WORKERS`` > 0) and ``WARC_WRITER_PROCESS`` is True,
else on a single-worker executor thread ("warc-writer"); never on the reactor
thread. One writer serialises writes, which keeps offsets and rollover consistent.
``process_response`` awaits the write, so the pointer is in ``meta`` before the
response reaches the spider. If the writer process dies, the crawl stops with finish
reason ``warc_writer_failed`` (stat ``warc/writer_failed``).

Closed-file hook (for uploading to object storage): whenever a file is
closed and renamed (rollover, crawl end, or recovery of an orphan ``.open``
file at start-up), :meth:`WarcCaptureMiddleware.on_file_closed` runs on the
reactor thread and

1. appends ``str(path)`` to stats ``warc/closed_files`` and bumps ``warc/files``;
2. sends the Scrapy signal :data:`warc_file_closed` with ``path`` (a
   :class:`pathlib.Path`) and ``spider``; async handlers are awaited;
3. calls ``crawler.newsarchive_on_warc_closed(path)`` if that attribute is
   set; an awaitable/Deferred result is awaited.

Hook errors are logged (stat ``warc/hook_errors``), never raised. Handlers
run on the reactor: do blocking uploads via
:func:`scrapy.utils.asyncio.run_in_thread`. Files closed at crawl end are
handled inside the ``spider_closed`` handler, so they complete before the
crawl finishes.

Settings: ``WARC_ENABLED`` (True), ``WARC_DIR`` (``state/warc-tmp``),
``WARC_PREFIX`` ("NEWSARCHIVE"), ``WARC_MAX_SIZE`` (1e9 bytes),
``WARC_OPERATOR``, ``WARC_DESCRIPTION``, ``WARC_RECOVER_ON_START`` (True),
``WARC_REVISITS`` (True), ``WARC_REVISITS_URL_AGNOSTIC`` (False),
``WARC_METADATA`` (True), ``WARC_METADATA_REVISITS`` (False),
``WARC_DIGEST_INDEX``, ``WARC_WRITER_PROCESS`` (True),
``WARC_REQUISITES_REFETCH`` (False: a page requisite already captured in this
store is not fetched again, see :meth:`WarcCaptureMiddleware.process_request`),
plus ``USER_AGENT``, ``ROBOTSTXT_OBEY``, ``NEWSARCHIVE_CONTACT_URL``,
``NEWSARCHIVE_RUN_ID``, ``NEWSARCHIVE_STORE`` and the politeness settings for
the warcinfo record.

Stats: ``warc/records``, ``warc/bytes`` (compressed bytes incl. warcinfo),
``warc/exchanges``, ``warc/revisits``, ``warc/revisits/not_modified``,
``warc/files``, ``warc/closed_files``, ``warc/indexed``,
``warc/index_errors``, ``warc/recovered_files``, ``warc/leftover_files``,
``warc/requisites/already_archived``,
``warc/errors``, ``warc/hook_errors``, ``warc/skipped/cached``,
``warc/skipped/scheme``, ``warc/truncated``, ``warc/disk_full``, ``warc/writer_failed``.

Write failures (disk full …): the file is rolled back, ``warc/errors`` is
bumped, any stale ``meta["warc"]`` is removed and the exception is raised
from ``process_response`` — the response does not reach the spider, so no
item exists without its WARC record.
"""

from __future__ import annotations

import asyncio
import errno
import http
import inspect
import logging
import os
import queue
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import urlsplit, urlunsplit

from scrapy import signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.utils.asyncio import is_asyncio_available
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from crawler.middlewares.maxsize import TRUNCATED_META
from crawler.warc.cdxj import ensure_cdxj, remove_orphan_index_temps
from crawler.cpu_pool import CpuPool
from crawler.warc.digests import PayloadDigestIndex
from crawler.warc.outlinks import reads_links
from crawler.warc.session import CaptureSession, SessionConfig, outlink_args
from crawler.warc.sink import WarcSink, WarcSinkError
from crawler.warc.writer import WarcFileWriter, recover_open_files

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Request, Response

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Scrapy signal sent when a WARC file is closed and renamed.
#: Handler kwargs: ``path`` (:class:`pathlib.Path`), ``spider``.
warc_file_closed = object()

#: Request headers that carry credentials; never written to a WARC.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})

# Hop-by-hop framing that no longer describes the stored (de-chunked) body.
_DROP_RESPONSE_HEADERS = frozenset({"transfer-encoding"})

_DEFAULT_PORTS = {"http": 80, "https": 443}

# Response flags set by Scrapy's HTTP handlers → WARC-Truncated (§5.13).
# "partial" is NOT here: it marks a close-delimited body (no Content-Length,
# not chunked), which is complete per RFC 9112 §6.3.
_TRUNCATION_FLAGS = {"dataloss": "disconnect", "download_stopped": "unspecified"}

WARCINFO_NOTES = (
    "Captured by a Scrapy downloader middleware after the HTTP client parsed "
    "the exchange. Bodies are stored de-chunked but still content-encoded; "
    "Transfer-Encoding is omitted and Content-Length equals the stored entity "
    "length. Status reason phrases and header-name case are reconstructed "
    "(Scrapy normalises them). HTTP/2 exchanges are recorded as HTTP/1.1. "
    "Authorization and Proxy-Authorization request headers are removed. "
    "WARC-Date is the time the request was sent. WARC-IP-Address is the "
    "server's address; it is omitted when the exchange went through a proxy "
    "(the origin's address is then unknown). Revisit records (identical-payload-"
    "digest) replace responses whose payload is already archived in the same "
    "store under the same URL (or any URL with WARC_REVISITS_URL_AGNOSTIC); "
    "304 answers are server-not-modified "
    "revisits. Every file has a CDXJ index beside it in the store."
)

#: Settings described in the warcinfo record (``crawlSetting: NAME=value``).
WARCINFO_SETTINGS = (
    "NEWSARCHIVE_SITE",
    "NEWSARCHIVE_MODE",
    "ROBOTSTXT_OBEY",
    "DOWNLOAD_DELAY",
    "RANDOMIZE_DOWNLOAD_DELAY",
    "CONCURRENT_REQUESTS",
    "CONCURRENT_REQUESTS_PER_DOMAIN",
    "AUTOTHROTTLE_ENABLED",
    "DOWNLOAD_TIMEOUT",
    "DOWNLOAD_MAXSIZE",
    "RETRY_TIMES",
    "REDIRECT_MAX_TIMES",
    "DEPTH_LIMIT",
    "WARC_MAX_SIZE",
    "WARC_PAGE_REQUISITES",
    "WARC_REQUISITES_REFETCH",
    "WARC_REVISITS",
    "WARC_REVISITS_URL_AGNOSTIC",
)


def warcinfo_fields(settings: Any) -> dict[str, Any]:
    """The ``warcinfo`` fields (WARC 1.1 §6.2, Annex C) of a crawl: operator and
    contact, user agent, robots policy, run id and the politeness settings."""
    contact = settings.get("NEWSARCHIVE_CONTACT_URL")
    operator = " ".join(x for x in (settings.get("WARC_OPERATOR"), f"<{contact}>" if contact else "") if x)
    crawl_settings = [
        f"{name}={settings.get(name)}" for name in WARCINFO_SETTINGS if settings.get(name) is not None
    ]
    run_id = settings.get("NEWSARCHIVE_RUN_ID")
    return {
        "operator": operator or None,
        "http-header-user-agent": settings.get("USER_AGENT"),
        "robots": "obey" if settings.getbool("ROBOTSTXT_OBEY") else "ignore",
        "isPartOf": f"newsarchive run {run_id}" if run_id else None,
        "description": settings.get("WARC_DESCRIPTION"),
        "crawlSetting": crawl_settings,
        "notes": WARCINFO_NOTES,
    }


def reason_phrase(status: int) -> str:
    """Standard reason phrase for ``status`` or ``""`` if unregistered."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _body_forbidden(method: str, status: int) -> bool:
    """RFC 9110 §6.4.1: no content for HEAD, 1xx, 204, 304."""
    return method.upper() == "HEAD" or 100 <= status < 200 or status in (204, 304)


def _record_protocol(protocol: str | None) -> str:
    if protocol and protocol.upper().startswith("HTTP/1."):
        return protocol.upper()
    # None (unknown) or "h2": the HTTP/2 binary framing cannot be stored as
    # application/http, so record the HTTP/1.1 equivalent (noted in warcinfo).
    return "HTTP/1.1"


def _host_header(parts: Any) -> str:
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def target_uri(url: str) -> str:
    """``WARC-Target-URI`` for ``url``: no fragment (never sent), no userinfo."""
    parts = urlsplit(url)
    netloc = _host_header(parts) if "@" in parts.netloc else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _headers_list(headers: Any, drop: frozenset[str]) -> list[tuple[str, str]]:
    """Scrapy ``Headers`` (bytes → list[bytes]) → ordered ``(str, str)`` pairs.

    latin-1 maps bytes 1:1 to code points, so the writer can re-encode the
    exact bytes the server/client used.
    """
    out: list[tuple[str, str]] = []
    for key, values in headers.items():
        name = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if name.lower() in drop:
            continue
        for value in values or ():
            out.append(
                (name, value.decode("latin-1") if isinstance(value, bytes) else str(value))
            )
    return out


def _set_header(headers: list[tuple[str, str]], name: str, value: str) -> None:
    """Replace the first ``name`` header in place (keeping position), drop others."""
    lname = name.lower()
    out: list[tuple[str, str]] = []
    done = False
    for k, v in headers:
        if k.lower() == lname:
            if not done:
                out.append((k, value))
                done = True
            continue
        out.append((k, v))
    if not done:
        out.append((name, value))
    headers[:] = out


def build_exchange(request: "Request", response: "Response") -> dict[str, Any]:
    """Turn a Scrapy request/response pair into :meth:`WarcFileWriter.write_exchange` kwargs.

    Runs on the reactor thread; only copies data (cheap), never compresses.
    The request record describes ``response.request`` (falling back to
    ``request``) but its target and ``Host`` come from ``response.url``, so
    the request line always matches ``WARC-Target-URI`` even when a
    middleware rewrote the URL for transport and restored it afterwards.
    """
    req = response.request or request
    url = target_uri(response.url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    method = req.method.upper()

    req_headers = _headers_list(req.headers, CREDENTIAL_HEADERS)
    if not any(k.lower() == "host" for k, _ in req_headers):
        req_headers.insert(0, ("Host", _host_header(parts)))
    req_body = req.body or b""
    if req_body and not any(k.lower() == "content-length" for k, _ in req_headers):
        req_headers.append(("Content-Length", str(len(req_body))))

    body = response.body
    truncated = None
    limit = req.meta.get(TRUNCATED_META)
    if limit is not None:
        # Stopped at DOWNLOAD_MAXSIZE (crawler/middlewares/maxsize.py): the body may
        # run one network chunk past the limit; the record keeps exactly the limit.
        body = body[:limit]
        truncated = "length"
    else:
        for flag, why in _TRUNCATION_FLAGS.items():
            if flag in response.flags:
                truncated = why
                break
    resp_headers = _headers_list(response.headers, _DROP_RESPONSE_HEADERS)
    if not _body_forbidden(method, response.status):
        _set_header(resp_headers, "Content-Length", str(len(body)))

    latency = req.meta.get("download_latency")
    now = datetime.now(timezone.utc)
    fetched_at = now - timedelta(seconds=latency) if isinstance(latency, (int, float)) else now

    return {
        "url": url,
        "request_method": method,
        "request_target": target,
        "request_headers": req_headers,
        "request_body": req_body,
        "protocol": _record_protocol(response.protocol),
        "status": int(response.status),
        "reason": reason_phrase(int(response.status)),
        "response_headers": resp_headers,
        "body": body,
        # Through a proxy the connected address is the proxy's, not the server's.
        "ip_address": str(response.ip_address) if response.ip_address and not req.meta.get("proxy") else None,
        "fetched_at": fetched_at,
        "truncated": truncated,
    }


def exchange_context(request: "Request", response: "Response") -> dict[str, Any]:
    """What the ``metadata`` record says about an exchange besides its outlinks:
    ``via`` (the URL that redirected here, else the ``Referer``) and
    ``fetchTimeMs`` (Scrapy's ``download_latency``), plus the response's media
    type and ``Location`` for outlink extraction."""
    req = response.request or request
    redirects = req.meta.get("redirect_urls") or []
    via = redirects[-1] if redirects else None
    if via is None:
        referer = req.headers.get(b"Referer")
        via = referer.decode("latin-1") if referer else None
    latency = req.meta.get("download_latency")
    location = response.headers.get(b"Location")
    ctype = response.headers.get(b"Content-Type")
    return {
        "via": target_uri(via) if via else None,
        "fetchTimeMs": round(latency * 1000) if isinstance(latency, (int, float)) else None,
        "content_type": ctype.decode("latin-1") if ctype else None,
        "location": location.decode("latin-1") if location and 300 <= response.status < 400 else None,
    }


class WarcCaptureMiddleware:
    """Record every HTTP response (and its request) into rolling WARC 1.1 files.

    See the module docstring for placement, settings, stats, pointer format,
    revisits, the writer process and the closed-file hook.
    """

    def __init__(self, crawler: "Crawler", config: SessionConfig) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.config = config
        self._failed = False  # the WARC folder is full or the writer is gone: the crawl is being stopped
        self.metadata = config.metadata
        self.refetch_requisites = crawler.settings.getbool("WARC_REQUISITES_REFETCH", False)
        # Files closed by the writer (thread or process), handed to on_file_closed()
        # on the reactor thread after the call that closed them.
        self._closed: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._warned_zstd = False
        self._shut_down = False
        pool = CpuPool.for_crawler(crawler)
        #: Worker process that lists outlinks when the writer runs on a thread.
        self.pool = pool if pool.workers else None
        self._use_process = bool(pool.workers) and crawler.settings.getbool("WARC_WRITER_PROCESS", True)
        self._sink: WarcSink | None = None
        self._session: CaptureSession | None = None  # the writer-thread alternative
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_crawler(cls, crawler: "Crawler") -> "WarcCaptureMiddleware":
        """Build from settings; raise :class:`NotConfigured` if ``WARC_ENABLED`` is false."""
        s = crawler.settings
        if not s.getbool("WARC_ENABLED", True):
            raise NotConfigured("WARC_ENABLED is False")
        directory = Path(s.get("WARC_DIR") or "state/warc-tmp")
        revisits = s.getbool("WARC_REVISITS", True)
        config = SessionConfig(
            directory=directory,
            prefix=s.get("WARC_PREFIX") or "NEWSARCHIVE",
            host=socket.gethostname(),
            max_size=s.getint("WARC_MAX_SIZE", 1_000_000_000),
            warcinfo=warcinfo_fields(s),
            pid=os.getpid(),
            # Beside WARC_DIR: the CLI puts WARC_DIR at <state-dir>/warc.
            index_path=Path(s.get("WARC_DIGEST_INDEX") or directory.resolve().parent / "warc-digests.sqlite")
            if revisits else None,
            store=s.get("NEWSARCHIVE_STORE") or "archive",
            revisits=revisits,
            url_agnostic=s.getbool("WARC_REVISITS_URL_AGNOSTIC", False),
            metadata=s.getbool("WARC_METADATA", True),
            metadata_revisits=s.getbool("WARC_METADATA_REVISITS", False),
        )
        if config.max_size <= 0:
            raise ValueError("WARC_MAX_SIZE must be > 0")
        directory.mkdir(parents=True, exist_ok=True)
        mw = cls(crawler, config)
        if s.getbool("WARC_RECOVER_ON_START", True):
            # Closed files still here were never uploaded (upload failed, or the
            # process died first); .open files are orphans of a killed run.
            leftover = sorted(directory.glob("*.warc.gz"))
            recovered = recover_open_files(directory)
            for path in remove_orphan_index_temps(directory):
                logger.warning("removed %s, an index left half-written by a killed run", path.name)
            for path in recovered:
                logger.warning("recovered orphan WARC file %s", path)
            for path in leftover:
                logger.warning("WARC file %s was left by an earlier run; indexing and uploading it", path)
            found = sorted(set(leftover) | set(recovered))
            if found and config.index_path is not None:
                index = PayloadDigestIndex(config.index_path, config.store)
                try:
                    for path in found:
                        index.add_from_warc(path)
                finally:
                    index.close()
            for path in found:
                mw._closed.put(path)
            if recovered:
                mw.stats.inc_value("warc/recovered_files", len(recovered))
            if leftover:
                mw.stats.inc_value("warc/leftover_files", len(leftover))
        crawler.signals.connect(mw.spider_closed, signal=signals.spider_closed)
        return mw

    def _stop_crawl(self, reason: str, message: str, *args: Any) -> None:
        """Stop the crawl once with finish ``reason`` (exit code 1): every later
        page would fail the same way. Pages not archived were not extracted, so the
        next run fetches them again."""
        if self._failed:
            return
        self._failed = True
        logger.error(message, *args)
        try:
            engine = self.crawler.engine
        except (AttributeError, RuntimeError):  # not crawling (Scrapy 2.19 raises before the engine exists)
            engine = None
        if engine is not None:
            asyncio.ensure_future(engine.close_spider_async(reason=reason))

    def _stop_on_full_disk(self, exc: OSError, url: str) -> None:
        """The WARC folder is full (or over quota / the file size limit): stop the
        crawl with finish reason ``warc_disk_full``. The file being written was
        rolled back to its last whole record; closed files are intact."""
        self.stats.inc_value("warc/disk_full")
        self._stop_crawl(
            "warc_disk_full",
            "WARC folder %s is full (%s) while archiving %s: stopping the crawl; "
            "WARC files already closed are valid, free space and run again to finish",
            self.config.directory, exc.strerror or exc, url,
        )

    # ------------------------------------------------------------ writer
    @property
    def writer(self) -> WarcFileWriter:
        """The in-process writer (writer-thread mode only).

        Raises:
            RuntimeError: the writer runs in the WARC writer process.
        """
        if self._sink is not None:
            raise RuntimeError("the WARC writer runs in its own process")
        return self._local_session().writer

    def _local_session(self) -> CaptureSession:
        if self._session is None:
            self._session = CaptureSession(self.config)
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warc-writer")
        return self._session

    def _start_writer(self) -> None:
        """The writer process on first use when the reactor runs and CPU workers are
        allowed (``NEWSARCHIVE_CPU_WORKERS``, ``WARC_WRITER_PROCESS``); otherwise a
        writer thread (also when the process cannot be started)."""
        if self._sink is not None or self._session is not None:
            return
        if self._use_process:
            from twisted.internet import reactor

            if reactor.running:  # type: ignore[attr-defined]
                try:
                    self._sink = WarcSink.start(self.config, self._sink_closed, self.pool.nice)
                    return
                except OSError as exc:
                    logger.error("cannot start the WARC writer process (%s); writing on a thread", exc)
        self._local_session()

    def _sink_closed(self, paths: list[Path]) -> None:
        for path in paths:
            self._closed.put(path)

    def _thread_job(self, op: str, *args: Any) -> Any:
        # Writer thread; files closed during the call are queued even when it fails.
        session = self._local_session()
        try:
            return getattr(session, op)(*args)
        finally:
            for path in session.take_closed():
                self._closed.put(path)

    async def _call(self, op: str, *args: Any) -> Any:
        """``CaptureSession.<op>(*args)`` on the writer process or thread, awaited."""
        self._start_writer()
        if self._sink is not None:
            return await self._sink.call(op, *args)
        return await self._in_writer_thread(self._thread_job, op, *args)

    async def _in_writer_thread(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run ``fn`` on the single writer thread and await its result."""
        assert self._executor is not None
        cf: Future[_T] = self._executor.submit(fn, *args, **kwargs)
        if is_asyncio_available():
            return await asyncio.wrap_future(cf)
        # Non-asyncio Twisted reactor: bridge the concurrent Future to a Deferred.
        from twisted.internet import reactor

        d: Deferred[_T] = Deferred()

        def _fire(f: Future[_T]) -> None:
            exc = f.exception()
            if exc is not None:
                d.errback(exc)
            else:
                d.callback(f.result())

        cf.add_done_callback(lambda f: reactor.callFromThread(_fire, f))  # type: ignore[attr-defined]
        return await maybe_deferred_to_future(d)

    async def _in_worker_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` in a thread of the reactor's/loop's pool (not the writer
        thread: indexing a 1 GB file must not hold up writes)."""
        if is_asyncio_available():
            return await asyncio.to_thread(fn, *args)
        return await maybe_deferred_to_future(deferToThread(fn, *args))

    async def _drain_closed(self) -> None:
        while True:
            try:
                path = self._closed.get_nowait()
            except queue.Empty:
                return
            await self.on_file_closed(path)

    # ----------------------------------------------------------- middleware
    def process_request(self, request: "Request") -> Any:
        """Drop a page requisite (``meta["page_requisite"]``) whose URL already
        has a full capture in this store: requisites are fetched once, not every
        run (``WARC_REQUISITES_REFETCH`` = True fetches them again; unchanged
        ones then become revisits). Asks the writer process (a coroutine Scrapy
        awaits) or, on the writer thread's side, the index directly.

        Raises:
            IgnoreRequest: the requisite is already archived.
        """
        if not request.meta.get("page_requisite") or self.refetch_requisites or self.config.index_path is None:
            return None
        self._start_writer()
        if self._sink is not None:
            return self._requisite_check(request)
        self._requisite_verdict(request, self._local_session().has_url(target_uri(request.url)))
        return None

    async def _requisite_check(self, request: "Request") -> None:
        self._requisite_verdict(request, await self._call("has_url", target_uri(request.url)))

    def _requisite_verdict(self, request: "Request", archived: bool) -> None:
        if archived:
            self.stats.inc_value("warc/requisites/already_archived")
            raise IgnoreRequest(f"page requisite already archived: {request.url}")

    async def process_response(self, request: "Request", response: "Response") -> "Response":
        """Write the exchange, set ``request.meta["warc"]``, return ``response`` unchanged.

        Raises:
            OSError (or any writer error): the exchange could not be stored;
            see the module docstring.
        """
        if "cached" in response.flags:
            self.stats.inc_value("warc/skipped/cached")
            return response
        if urlsplit(response.url).scheme not in _DEFAULT_PORTS:
            self.stats.inc_value("warc/skipped/scheme")
            return response

        kwargs = build_exchange(request, response)
        context = exchange_context(request, response)
        if kwargs["truncated"]:
            self.stats.inc_value("warc/truncated")
        if not self._warned_zstd and any(
            k.lower() == "content-encoding" and "zstd" in v.lower()
            for k, v in kwargs["response_headers"]
        ):
            self._warned_zstd = True
            logger.warning(
                "zstd-encoded response recorded (%s); most WARC replay tools cannot "
                "decode it: set Accept-Encoding to 'gzip, deflate, br'",
                response.url,
            )

        meta = request.meta
        self._start_writer()
        if self.metadata and self.pool is not None and self._sink is None and (reads_links(context.get("content_type")) or context.get("location")):
            # Listed for every response, though a revisit's metadata record names none:
            # the writer thread decides revisits, and the worker's time is not ours.
            # (The writer process lists them itself.)
            try:
                context["outlinks"] = await self.pool.run("outlinks", *outlink_args(kwargs, context))
            except Exception as exc:  # never lose the capture over its outlinks
                logger.warning("listing the outlinks of %s failed: %r", response.url, exc)
                context["outlinks"] = {"outlinkError": repr(exc)[:300], "outlink": []}
        try:
            ptr, original, nbytes, nrecords = await self._call("write", kwargs, context)
        except Exception as exc:
            self.stats.inc_value("warc/errors")
            meta.pop("warc", None)  # never leave a previous hop's pointer behind
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                self._stop_on_full_disk(exc, response.url)
            elif isinstance(exc, WarcSinkError):
                self.stats.inc_value("warc/writer_failed")
                self._stop_crawl("warc_writer_failed", "%s while archiving %s: stopping the crawl; closed WARC "
                                 "files are valid, the next run recovers the open one", exc, response.url)
            else:
                logger.exception("WARC write failed for %s", response.url)
            raise
        finally:
            await self._drain_closed()

        self.stats.inc_value("warc/exchanges")
        self.stats.inc_value("warc/records", nrecords)
        self.stats.inc_value("warc/bytes", nbytes)
        pointer = {
            "file": ptr.file,
            "offset": ptr.offset,
            "length": ptr.length,
            "payload_digest": ptr.payload_digest,
            "record_id": ptr.record_id,
            "warc_date": ptr.warc_date,
            "record_type": ptr.record_type,
        }
        if ptr.record_type == "revisit":
            self.stats.inc_value("warc/revisits")
            if original is None:
                self.stats.inc_value("warc/revisits/not_modified")
            else:
                # The page's bytes are in the original response record.
                revisit = {k: pointer[k] for k in ("file", "offset", "length", "record_id", "warc_date")}
                pointer = {
                    "file": original.file,
                    "offset": original.offset,
                    "length": original.length,
                    "payload_digest": original.digest,
                    "record_id": original.record_id,
                    "warc_date": original.warc_date,
                    "record_type": "response",
                    "revisit": revisit,
                }
        meta["warc"] = pointer
        return response

    # --------------------------------------------------------------- hooks
    async def on_file_closed(self, path: Path) -> None:
        """Index a closed, renamed WARC file (CDXJ beside it), then publish it
        (stats, signal, optional callable).

        Runs on the reactor thread; indexing runs in a worker thread. See the
        module docstring for the contract.
        """
        try:
            await self._in_worker_thread(ensure_cdxj, path)
            self.stats.inc_value("warc/indexed")
        except Exception:
            # The file is still uploaded; `newsarchive warc check` will flag it.
            self.stats.inc_value("warc/index_errors")
            logger.exception("CDXJ indexing failed for %s", path)
        self.stats.inc_value("warc/files")
        closed = list(self.stats.get_value("warc/closed_files") or [])
        closed.append(str(path))
        self.stats.set_value("warc/closed_files", closed)
        spider = getattr(self.crawler, "spider", None)
        results = await self.crawler.signals.send_catch_log_async(
            signal=warc_file_closed, path=path, spider=spider
        )
        for _receiver, result in results:
            if isinstance(result, BaseException):
                self.stats.inc_value("warc/hook_errors")
        hook = getattr(self.crawler, "newsarchive_on_warc_closed", None)
        if hook is None:
            return
        try:
            result = hook(path)
            if isinstance(result, Deferred):
                await maybe_deferred_to_future(result)
            elif inspect.isawaitable(result):
                await result
        except Exception:
            self.stats.inc_value("warc/hook_errors")
            logger.exception("newsarchive_on_warc_closed failed for %s", path)

    async def spider_closed(self, spider: Any = None, reason: str | None = None) -> None:
        """Close the current file and publish every closed file before the crawl ends."""
        if self._shut_down:
            return
        self._shut_down = True
        t0 = time.monotonic()
        try:
            if self._sink is not None or self._session is not None:
                _paths, nbytes, nrecords = await self._call("close")
                self.stats.inc_value("warc/bytes", nbytes)
                self.stats.inc_value("warc/records", nrecords)
        finally:
            await self._drain_closed()
            if self._sink is not None:
                await self._sink.stop()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            if self._session is not None:
                self._session.shutdown()
        logger.info(
            "WARC writer closed (%s files total, %.2fs)",
            self.stats.get_value("warc/files", 0),
            time.monotonic() - t0,
        )
