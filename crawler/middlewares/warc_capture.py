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

Threading: compressing records and listing outlinks take time, so every write
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
``WARC_REVISITS`` (True), ``WARC_REVISITS_URL_AGNOSTIC`` (False),
``WARC_METADATA`` (True), ``WARC_METADATA_REVISITS`` (False),
``WARC_DIGEST_INDEX``,
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
``warc/skipped/scheme``, ``warc/truncated``.

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
from crawler.warc.cdxj import ensure_cdxj
from crawler.warc.digests import Capture, PayloadDigestIndex
from crawler.cpu_pool import CpuPool
from crawler.warc.outlinks import outlink_fields, reads_links
from crawler.warc.writer import (
    PROFILE_IDENTICAL_PAYLOAD,
    PROFILE_SERVER_NOT_MODIFIED,
    RecordPointer,
    Revisit,
    WarcFileWriter,
    recover_open_files,
    sha1_base32_digest,
)

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
    revisits and the closed-file hook.
    """

    def __init__(
        self,
        crawler: "Crawler",
        writer: WarcFileWriter,
        index: PayloadDigestIndex | None = None,
        revisits: bool = True,
        metadata: bool = True,
    ) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.writer = writer
        self._disk_full = False  # WARC folder full: the crawl is being stopped
        self.index = index
        self.revisits = revisits and index is not None
        self.metadata = metadata
        self.refetch_requisites = crawler.settings.getbool("WARC_REQUISITES_REFETCH", False)
        self.metadata_revisits = crawler.settings.getbool("WARC_METADATA_REVISITS", False)
        self.url_agnostic = crawler.settings.getbool("WARC_REVISITS_URL_AGNOSTIC", False)
        # Files closed on the writer thread are queued here and handed to
        # on_file_closed() on the reactor thread after the job completes.
        self._closed: queue.SimpleQueue[Path] = queue.SimpleQueue()
        writer.on_close = self._writer_closed
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warc-writer")
        self._warned_zstd = False
        self._shut_down = False
        #: Worker process that lists outlinks (None: the writer thread lists them).
        pool = CpuPool.for_crawler(crawler)
        self.pool = pool if pool.workers else None

    @classmethod
    def from_crawler(cls, crawler: "Crawler") -> "WarcCaptureMiddleware":
        """Build from settings; raise :class:`NotConfigured` if ``WARC_ENABLED`` is false."""
        s = crawler.settings
        if not s.getbool("WARC_ENABLED", True):
            raise NotConfigured("WARC_ENABLED is False")
        directory = Path(s.get("WARC_DIR") or "state/warc-tmp")
        writer = WarcFileWriter(
            directory,
            prefix=s.get("WARC_PREFIX") or "NEWSARCHIVE",
            host=socket.gethostname(),
            max_size=s.getint("WARC_MAX_SIZE", 1_000_000_000),
            warcinfo=warcinfo_fields(s),
        )
        index = None
        revisits = s.getbool("WARC_REVISITS", True)
        if revisits:
            # Beside WARC_DIR: the CLI puts WARC_DIR at <state-dir>/warc.
            index_path = s.get("WARC_DIGEST_INDEX") or directory.resolve().parent / "warc-digests.sqlite"
            index = PayloadDigestIndex(index_path, s.get("NEWSARCHIVE_STORE") or "archive")
        mw = cls(crawler, writer, index, revisits, s.getbool("WARC_METADATA", True))
        if s.getbool("WARC_RECOVER_ON_START", True):
            # Closed files still here were never uploaded (upload failed, or the
            # process died first); .open files are orphans of a killed run.
            leftover = sorted(directory.glob("*.warc.gz"))
            recovered = recover_open_files(directory)
            for path in recovered:
                logger.warning("recovered orphan WARC file %s", path)
            for path in leftover:
                logger.warning("WARC file %s was left by an earlier run; indexing and uploading it", path)
            for path in sorted(set(leftover) | set(recovered)):
                if index is not None:
                    index.add_from_warc(path)
                mw._closed.put(path)
            if recovered:
                mw.stats.inc_value("warc/recovered_files", len(recovered))
            if leftover:
                mw.stats.inc_value("warc/leftover_files", len(leftover))
        crawler.signals.connect(mw.spider_closed, signal=signals.spider_closed)
        return mw

    def _stop_on_full_disk(self, exc: OSError, url: str) -> None:
        """The WARC folder is full (or over quota / the file size limit): every
        later page would fail the same way, so stop the crawl once, with a clear
        message and finish reason ``warc_disk_full`` (exit code 1). The file being
        written was rolled back to its last whole record; closed files are intact;
        pages not archived were not extracted, so the next run fetches them again."""
        self.stats.inc_value("warc/disk_full")
        if self._disk_full:
            return
        self._disk_full = True
        logger.error(
            "WARC folder %s is full (%s) while archiving %s: stopping the crawl; "
            "WARC files already closed are valid, free space and run again to finish",
            self.writer.directory, exc.strerror or exc, url,
        )
        try:
            engine = self.crawler.engine
        except (AttributeError, RuntimeError):  # not crawling (Scrapy 2.19 raises before the engine exists)
            engine = None
        if engine is not None:
            asyncio.ensure_future(engine.close_spider_async(reason="warc_disk_full"))

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

    async def _in_worker_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` in a thread of the reactor's/loop's pool (not the writer
        thread: indexing a 1 GB file must not hold up writes)."""
        if is_asyncio_available():
            return await asyncio.to_thread(fn, *args)
        return await maybe_deferred_to_future(deferToThread(fn, *args))

    def _writer_closed(self, path: Path) -> None:
        # Writer thread: the file is complete and renamed, so its captures can
        # be committed to the digest index before anyone hears of the file.
        if self.index is not None:
            self.index.commit_file(path.name)
        self._closed.put(path)

    def _revisit_for(self, kwargs: dict[str, Any], digest: str) -> tuple[Revisit | None, Capture | None]:
        """The revisit to write instead of a response (and the capture it refers
        to), or ``(None, None)`` for a full response. Writer thread."""
        if self.index is None:
            return None, None
        url = kwargs["url"]
        if kwargs["status"] == 304:
            prev = self.index.latest_for_url(url)
            if prev is None:
                return None, None
            return Revisit(PROFILE_SERVER_NOT_MODIFIED, prev.url, prev.warc_date, prev.record_id), None
        if (
            not self.revisits
            or not kwargs["body"]
            or kwargs["truncated"]
            or kwargs["request_method"] != "GET"
        ):
            return None, None
        original = self.index.lookup(digest, url, any_url=self.url_agnostic)
        if original is None:
            return None, None
        return Revisit(PROFILE_IDENTICAL_PAYLOAD, original.url, original.warc_date, original.record_id), original

    @staticmethod
    def _outlink_args(kwargs: dict[str, Any], context: dict[str, Any]) -> tuple:
        encodings = [v for k, v in kwargs["response_headers"] if k.lower() == "content-encoding"]
        return (kwargs["url"], context.get("content_type"), kwargs["body"], encodings, context.get("location"))

    @classmethod
    def _metadata_fields(cls, kwargs: dict[str, Any], context: dict[str, Any], full: bool) -> dict[str, Any]:
        fields: dict[str, Any] = {"via": context.get("via"), "fetchTimeMs": context.get("fetchTimeMs")}
        if not full:
            return fields
        outlinks = context.get("outlinks")  # listed by the worker process already
        fields.update(outlinks if outlinks is not None else outlink_fields(*cls._outlink_args(kwargs, context)))
        return fields

    def _write_job(
        self, kwargs: dict[str, Any], context: dict[str, Any]
    ) -> tuple[RecordPointer, Capture | None, int, int]:
        # Runs on the writer thread; deltas are exact because it is the only
        # thread touching the writer.
        b0, r0 = self.writer.total_bytes, self.writer.total_records
        digest = sha1_base32_digest(kwargs["body"])
        revisit, original = self._revisit_for(kwargs, digest)
        write_metadata = self.metadata and (revisit is None or self.metadata_revisits)
        metadata = self._metadata_fields(kwargs, context, revisit is None) if write_metadata else None
        ptr = self.writer.write_exchange(**kwargs, revisit=revisit, metadata=metadata)
        if revisit is not None and self.index is not None:
            self.index.stage_revisit(kwargs["url"], ptr.file)
        elif self.index is not None and kwargs["body"] and not kwargs["truncated"]:
            self.index.stage(
                Capture(
                    digest=digest,
                    url=kwargs["url"],
                    warc_date=ptr.warc_date,
                    record_id=ptr.record_id,
                    status=kwargs["status"],
                    file=ptr.file,
                    offset=ptr.offset,
                    length=ptr.length,
                )
            )
        return ptr, original, self.writer.total_bytes - b0, self.writer.total_records - r0

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
    def process_request(self, request: "Request") -> None:
        """Drop a page requisite (``meta["page_requisite"]``) whose URL already
        has a full capture in this store: requisites are fetched once, not every
        run (``WARC_REQUISITES_REFETCH`` = True fetches them again; unchanged
        ones then become revisits)."""
        if (
            request.meta.get("page_requisite")
            and not self.refetch_requisites
            and self.index is not None
            and self.index.has_url(target_uri(request.url))
        ):
            self.stats.inc_value("warc/requisites/already_archived")
            raise IgnoreRequest(f"page requisite already archived: {request.url}")
        return None

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
        if self.metadata and self.pool is not None and (reads_links(context.get("content_type")) or context.get("location")):
            # Listed for every response, though a revisit's metadata record names none:
            # the writer thread decides revisits, and the worker's time is not ours.
            try:
                context["outlinks"] = await self.pool.run("outlinks", *self._outlink_args(kwargs, context))
            except Exception as exc:  # never lose the capture over its outlinks
                logger.warning("listing the outlinks of %s failed: %r", response.url, exc)
                context["outlinks"] = {"outlinkError": repr(exc)[:300], "outlink": []}
        try:
            ptr, original, nbytes, nrecords = await self._in_writer_thread(self._write_job, kwargs, context)
        except Exception as exc:
            self.stats.inc_value("warc/errors")
            meta.pop("warc", None)  # never leave a previous hop's pointer behind
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                self._stop_on_full_disk(exc, response.url)
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
            _paths, nbytes, nrecords = await self._in_writer_thread(self._close_job)
            self.stats.inc_value("warc/bytes", nbytes)
            self.stats.inc_value("warc/records", nrecords)
        finally:
            await self._drain_closed()
            self._executor.shutdown(wait=True)
            if self.index is not None:
                self.index.close()
        logger.info(
            "WARC writer closed (%s files total, %.2fs)",
            self.stats.get_value("warc/files", 0),
            time.monotonic() - t0,
        )
