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
exception (timeouts, DNS errors, ``DOWNLOAD_MAXSIZE`` cancels) because
there is no response.

Pointer: ``request.meta["warc"]`` (== ``response.meta["warc"]``) is set to
``{"file", "offset", "length", "payload_digest", "record_id", "warc_date"}``
of the response record; ``file`` is the final name of a file in ``WARC_DIR``
(it is renamed from ``.open`` when closed). After a redirect the meta dict is
copied to the new request and the last response's pointer wins.

Threading: warcio compresses with zlib level 9 (~14 MB/s), so every write
runs on a single-worker executor thread ("warc-writer"), never on the
reactor thread. One worker serialises writes, which keeps offsets and
rollover consistent. ``process_response`` awaits the write, so the pointer
is in ``meta`` before the response reaches the spider.

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
plus ``USER_AGENT`` and ``ROBOTSTXT_OBEY`` for the warcinfo record.

Stats: ``warc/records``, ``warc/bytes`` (compressed bytes incl. warcinfo),
``warc/exchanges``, ``warc/files``, ``warc/closed_files``,
``warc/recovered_files``, ``warc/errors``, ``warc/hook_errors``,
``warc/skipped/cached``, ``warc/skipped/scheme``, ``warc/truncated``.

Write failures (disk full …): the file is rolled back, ``warc/errors`` is
bumped, any stale ``meta["warc"]`` is removed and the exception is raised
from ``process_response`` — the response does not reach the spider, so no
item exists without its WARC record.
"""

from __future__ import annotations

import asyncio
import http
import inspect
import logging
import queue
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import urlsplit, urlunsplit

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import is_asyncio_available
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

from crawler.warc.writer import RecordPointer, WarcFileWriter, recover_open_files

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
    "WARC-Date is the time the request was sent."
)


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
    resp_headers = _headers_list(response.headers, _DROP_RESPONSE_HEADERS)
    if not _body_forbidden(method, response.status):
        _set_header(resp_headers, "Content-Length", str(len(body)))

    truncated = None
    for flag, why in _TRUNCATION_FLAGS.items():
        if flag in response.flags:
            truncated = why
            break

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
        "ip_address": str(response.ip_address) if response.ip_address else None,
        "fetched_at": fetched_at,
        "truncated": truncated,
    }


class WarcCaptureMiddleware:
    """Record every HTTP response (and its request) into rolling WARC 1.1 files.

    See the module docstring for placement, settings, stats, pointer format
    and the closed-file hook.
    """

    def __init__(self, crawler: "Crawler", writer: WarcFileWriter) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.writer = writer
        # Files closed on the writer thread are queued here and handed to
        # on_file_closed() on the reactor thread after the job completes.
        self._closed: queue.SimpleQueue[Path] = queue.SimpleQueue()
        writer.on_close = self._closed.put
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warc-writer")
        self._warned_zstd = False
        self._shut_down = False

    @classmethod
    def from_crawler(cls, crawler: "Crawler") -> "WarcCaptureMiddleware":
        """Build from settings; raise :class:`NotConfigured` if ``WARC_ENABLED`` is false."""
        s = crawler.settings
        if not s.getbool("WARC_ENABLED", True):
            raise NotConfigured("WARC_ENABLED is False")
        directory = Path(s.get("WARC_DIR") or "state/warc-tmp")
        info = {
            "operator": s.get("WARC_OPERATOR"),
            "robots": "obey" if s.getbool("ROBOTSTXT_OBEY") else "ignore",
            "http-header-user-agent": s.get("USER_AGENT"),
            "description": s.get("WARC_DESCRIPTION"),
            "notes": WARCINFO_NOTES,
        }
        writer = WarcFileWriter(
            directory,
            prefix=s.get("WARC_PREFIX") or "NEWSARCHIVE",
            host=socket.gethostname(),
            max_size=s.getint("WARC_MAX_SIZE", 1_000_000_000),
            warcinfo=info,
        )
        mw = cls(crawler, writer)
        if s.getbool("WARC_RECOVER_ON_START", True):
            recovered = recover_open_files(directory)
            for path in recovered:
                logger.warning("recovered orphan WARC file %s", path)
                mw._closed.put(path)
            if recovered:
                mw.stats.inc_value("warc/recovered_files", len(recovered))
        crawler.signals.connect(mw.spider_closed, signal=signals.spider_closed)
        return mw

    # ------------------------------------------------------------ threading
    async def _in_writer_thread(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run ``fn`` on the single writer thread and await its result."""
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

    def _write_job(self, kwargs: dict[str, Any]) -> tuple[RecordPointer, int, int]:
        # Runs on the writer thread; deltas are exact because it is the only
        # thread touching the writer.
        b0, r0 = self.writer.total_bytes, self.writer.total_records
        ptr = self.writer.write_exchange(**kwargs)
        return ptr, self.writer.total_bytes - b0, self.writer.total_records - r0

    def _close_job(self) -> tuple[list[Path], int, int]:
        b0, r0 = self.writer.total_bytes, self.writer.total_records
        paths = self.writer.close()
        return paths, self.writer.total_bytes - b0, self.writer.total_records - r0

    async def _drain_closed(self) -> None:
        while True:
            try:
                path = self._closed.get_nowait()
            except queue.Empty:
                return
            await self.on_file_closed(path)

    # ----------------------------------------------------------- middleware
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
        try:
            ptr, nbytes, nrecords = await self._in_writer_thread(self._write_job, kwargs)
        except Exception:
            self.stats.inc_value("warc/errors")
            meta.pop("warc", None)  # never leave a previous hop's pointer behind
            logger.exception("WARC write failed for %s", response.url)
            raise
        finally:
            await self._drain_closed()

        self.stats.inc_value("warc/exchanges")
        self.stats.inc_value("warc/records", nrecords)
        self.stats.inc_value("warc/bytes", nbytes)
        meta["warc"] = {
            "file": ptr.file,
            "offset": ptr.offset,
            "length": ptr.length,
            "payload_digest": ptr.payload_digest,
            "record_id": ptr.record_id,
            "warc_date": ptr.warc_date,
        }
        return response

    # --------------------------------------------------------------- hooks
    async def on_file_closed(self, path: Path) -> None:
        """Publish a closed, renamed WARC file (stats, signal, optional callable).

        Runs on the reactor thread. See the module docstring for the contract.
        """
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
            _paths, nbytes, nrecords = await self._in_writer_thread(self._close_job)
            self.stats.inc_value("warc/bytes", nbytes)
            self.stats.inc_value("warc/records", nrecords)
        finally:
            await self._drain_closed()
            self._executor.shutdown(wait=True)
        logger.info(
            "WARC writer closed (%s files total, %.2fs)",
            self.stats.get_value("warc/files", 0),
            time.monotonic() - t0,
        )
