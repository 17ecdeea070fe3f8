"""Oversized bodies: keep the first ``DOWNLOAD_MAXSIZE`` bytes for the WARC, then drop
the page (issue 7: "an oversized page stops at DOWNLOAD_MAXSIZE with a warning and a
WARC record of what was received").

Scrapy 2.19's HTTP/1.1 handler enforces ``DOWNLOAD_MAXSIZE`` by failing the download
(``_ScrapyAgent._cb_bodyready`` raises ``DownloadCancelledError`` when
``Content-Length`` is over the limit, before reading a byte; ``_ResponseReader``
cancels with the same error once the streamed bytes pass it and empties its buffer).
No :class:`~scrapy.http.Response` exists on either path, so nothing could be archived.
This component uses Scrapy's public download-stopping hooks instead of a copy of the
private handler code:

* ``bytes_received`` (signal): bytes are counted per request; when the count passes the
  limit the handler raises :class:`~scrapy.exceptions.StopDownload` ``(fail=False)``,
  which makes Scrapy return a Response with the bytes received so far (flag
  ``download_stopped``) instead of an error. ``request.meta[TRUNCATED_META]`` is set
  to the limit; the body may hold up to one network chunk (≤ 64 KiB) beyond it, which
  :class:`~crawler.middlewares.warc_capture.WarcCaptureMiddleware` cuts off, so the
  record's payload is the first ``limit`` bytes with ``WARC-Truncated: length``
  (ISO 28500:2017 §5.13, "length": exceeds configured max length).
* ``headers_received`` (signal): when ``Content-Length`` already announces more than the
  limit, Scrapy would refuse before reading. The limit the handler reads from
  ``meta["download_maxsize"]`` is lifted to the announced length for this request, so
  the body streams into ``bytes_received`` above and stops at the limit as well. Why
  read a prefix rather than record the headers with an empty payload: that is what web
  archivists get from Heritrix (``max-length-bytes``) and wget ``--warc-file``, which
  truncate at the limit whatever the length header says; the record then has the same
  shape whether or not the server announced its size, and a prefix of a page still
  replays (partly) while an empty payload shows nothing. The cost, ``limit`` bytes of
  bandwidth, is what an unannounced body of the same size costs anyway.
* ``process_response`` (downloader middleware, priority 645: in response order just
  after WARC capture at 650, before everything else): a truncated response is dropped
  with :class:`~scrapy.exceptions.IgnoreRequest` whose message names
  ``DOWNLOAD_MAXSIZE``, so the spider's errback reports it under ``download_maxsize``
  (like a gzip bomb stopped while decompressing) and the incremental state, the
  redirect/retry middlewares and the spider never see the partial page: nothing is
  parsed, and the next run tries again. ``meta["download_maxsize"]`` is restored here
  and in ``process_exception`` (a timeout mid-body), before RetryMiddleware (550) copies
  the meta into a retry.

A gzip bomb is not affected: its compressed body is under the limit, arrives whole and
is stopped by HttpCompressionMiddleware while decompressing (``meta["download_maxsize"]``
is untouched for it).

Settings: ``DOWNLOAD_MAXSIZE`` (bytes; 0 = no limit: nothing to do), overridable per
request with ``meta["download_maxsize"]`` as in Scrapy.
Stats: ``newsarchive/maxsize/truncated`` (responses cut at the limit).
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import IgnoreRequest, StopDownload

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Request, Response

logger = logging.getLogger(__name__)

#: ``request.meta`` key set on a download stopped at the limit: the limit in bytes
#: (the WARC capture stores ``body[:limit]`` with ``WARC-Truncated: length``).
TRUNCATED_META = "newsarchive_truncated_at"

# meta key holding the request's own download_maxsize while it is lifted; _NOT_SET
# records that the limit came from the setting (the meta key is removed again).
_LIFTED_META = "newsarchive_maxsize_lifted"
_NOT_SET = "setting"


class MaxsizeTruncationMiddleware:
    """Downloader middleware (priority 645) plus ``headers_received`` /
    ``bytes_received`` signal handlers; see the module docstring."""

    def __init__(self, crawler: "Crawler", maxsize: int) -> None:
        self.stats = crawler.stats
        self.maxsize = maxsize
        # Bytes received so far per download; weak keys: a request that ends in any
        # way (even one this middleware never sees again) leaves no entry behind.
        self._received: weakref.WeakKeyDictionary[Request, int] = weakref.WeakKeyDictionary()

    @classmethod
    def from_crawler(cls, crawler: "Crawler") -> "MaxsizeTruncationMiddleware":
        mw = cls(crawler, crawler.settings.getint("DOWNLOAD_MAXSIZE"))
        crawler.signals.connect(mw.headers_received, signal=signals.headers_received)
        crawler.signals.connect(mw.bytes_received, signal=signals.bytes_received)
        return mw

    def limit_for(self, request: "Request") -> int:
        """The request's byte limit (0 = none): its own ``download_maxsize`` (the
        lifted one's original while lifted), else ``DOWNLOAD_MAXSIZE``."""
        meta = request.meta
        if _LIFTED_META in meta:
            original = meta[_LIFTED_META]
            return self.maxsize if original == _NOT_SET else int(original)
        return int(meta.get("download_maxsize", self.maxsize) or 0)

    # ------------------------------------------------------------- signals
    def headers_received(self, headers: Any, body_length: Any, request: "Request", spider: Any) -> None:
        limit = self.limit_for(request)
        self._received[request] = 0
        if not limit or not isinstance(body_length, int) or body_length <= limit:
            return
        logger.warning(
            "%s announces %d bytes, over DOWNLOAD_MAXSIZE (%d B): archiving the first %d bytes only",
            request.url, body_length, limit, limit,
        )
        request.meta.setdefault(_LIFTED_META, request.meta.get("download_maxsize", _NOT_SET))
        request.meta["download_maxsize"] = body_length

    def bytes_received(self, data: bytes, request: "Request", spider: Any) -> None:
        limit = self.limit_for(request)
        if not limit:
            return
        received = self._received.get(request, 0) + len(data)
        self._received[request] = received
        if received <= limit:
            return
        request.meta[TRUNCATED_META] = limit
        self._restore(request)
        raise StopDownload(fail=False)

    # ----------------------------------------------------------- middleware
    def process_response(self, request: "Request", response: "Response") -> "Response":
        self._restore(request)
        limit = request.meta.pop(TRUNCATED_META, None)
        if limit is None:
            return response
        self.stats.inc_value("newsarchive/maxsize/truncated")
        logger.warning(
            "%s is over DOWNLOAD_MAXSIZE (%d B): the first %d bytes are archived "
            "(WARC-Truncated: length), the page is not processed", response.url, limit, limit,
        )
        raise IgnoreRequest(f"body over DOWNLOAD_MAXSIZE ({limit} B): {response.url}")

    def process_exception(self, request: "Request", exception: BaseException) -> None:
        self._restore(request)
        request.meta.pop(TRUNCATED_META, None)
        return None

    @staticmethod
    def _restore(request: "Request") -> None:
        """Put the request's ``download_maxsize`` back after a lift (idempotent):
        HttpCompressionMiddleware and retries must see the real limit."""
        meta = request.meta
        if _LIFTED_META not in meta:
            return
        original = meta.pop(_LIFTED_META)
        if original == _NOT_SET:
            meta.pop("download_maxsize", None)
        else:
            meta["download_maxsize"] = original
