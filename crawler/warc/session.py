"""The WARC writing side of a crawl: one writer, its payload-digest index, and the
rules that turn an HTTP exchange into a ``response`` or a ``revisit`` record.

:class:`CaptureSession` is what :class:`crawler.middlewares.warc_capture.WarcCaptureMiddleware`
hands every exchange to. It holds no reference to Scrapy, so it runs the same on the
middleware's writer thread or in the WARC writer process (:mod:`crawler.warc.sink`);
it is built from a plain, picklable :class:`SessionConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.warc.digests import Capture, PayloadDigestIndex
from crawler.warc.outlinks import outlink_fields
from crawler.warc.writer import (
    PROFILE_IDENTICAL_PAYLOAD,
    PROFILE_SERVER_NOT_MODIFIED,
    RecordPointer,
    Revisit,
    WarcFileWriter,
    sha1_base32_digest,
)

__all__ = ["CaptureSession", "SessionConfig", "outlink_args"]


@dataclass(frozen=True)
class SessionConfig:
    """Everything a :class:`CaptureSession` is built from (settings already read).

    Attributes:
        directory: the WARC folder (``WARC_DIR``).
        prefix, host, max_size, warcinfo: as :class:`~crawler.warc.writer.WarcFileWriter`.
        pid: the process id written into file names: the crawl process's, even when
            the files are written by its WARC writer process.
        index_path: the payload-digest index (SQLite), or ``None``: no revisits.
        store: the store URL captures are scoped to.
        revisits: write ``identical-payload-digest`` revisits.
        url_agnostic: a revisit may refer to a capture under another URL.
        metadata: write a ``metadata`` record after each full response.
        metadata_revisits: also after each revisit.
    """

    directory: Path
    prefix: str = "NEWSARCHIVE"
    host: str | None = None
    max_size: int = 1_000_000_000
    warcinfo: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    index_path: Path | None = None
    store: str = "archive"
    revisits: bool = True
    url_agnostic: bool = False
    metadata: bool = True
    metadata_revisits: bool = False


def outlink_args(kwargs: dict[str, Any], context: dict[str, Any]) -> tuple:
    """The arguments of :func:`crawler.warc.outlinks.outlink_fields` for one exchange
    (``kwargs`` of :func:`build_exchange`, ``context`` of :func:`exchange_context`)."""
    encodings = [v for k, v in kwargs["response_headers"] if k.lower() == "content-encoding"]
    return (kwargs["url"], context.get("content_type"), kwargs["body"], encodings, context.get("location"))


class CaptureSession:
    """One WARC writer and its payload-digest index, used from one thread at a time.

    Args:
        config: see :class:`SessionConfig`.
        writer, index: ready-made ones (tests); otherwise built from ``config``.

    Raises:
        sqlite3.DatabaseError: the index file is unusable (see
            :class:`~crawler.warc.digests.PayloadDigestIndex`).
    """

    def __init__(self, config: SessionConfig, writer: WarcFileWriter | None = None,
                 index: PayloadDigestIndex | None = None) -> None:
        self.config = config
        if writer is None:
            writer = WarcFileWriter(config.directory, prefix=config.prefix, host=config.host,
                                    max_size=config.max_size, warcinfo=config.warcinfo)
            if config.pid is not None:
                writer.pid = config.pid
        if index is None and config.index_path is not None:
            index = PayloadDigestIndex(config.index_path, config.store)
        self.writer = writer
        self.index = index
        self.revisits = config.revisits and index is not None
        #: Files closed (and committed to the index) since :meth:`take_closed`.
        self._closed: list[Path] = []
        writer.on_close = self._writer_closed

    def _writer_closed(self, path: Path) -> None:
        # The file is complete and renamed, so its captures can be committed to the
        # digest index before anyone hears of the file.
        if self.index is not None:
            self.index.commit_file(path.name)
        self._closed.append(path)

    def take_closed(self) -> list[Path]:
        """Files closed since the last call, in order (each once)."""
        closed, self._closed = self._closed, []
        return closed

    def has_url(self, url: str) -> bool:
        """Whether ``url`` has a full capture in this store (closed files or the open one)."""
        return self.index is not None and self.index.has_url(url)

    def _revisit_for(self, kwargs: dict[str, Any], digest: str) -> tuple[Revisit | None, Capture | None]:
        """The revisit to write instead of a response (and the capture it refers
        to), or ``(None, None)`` for a full response."""
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
        original = self.index.lookup(digest, url, any_url=self.config.url_agnostic)
        if original is None:
            return None, None
        return Revisit(PROFILE_IDENTICAL_PAYLOAD, original.url, original.warc_date, original.record_id), original

    @staticmethod
    def _metadata_fields(kwargs: dict[str, Any], context: dict[str, Any], full: bool) -> dict[str, Any]:
        fields: dict[str, Any] = {"via": context.get("via"), "fetchTimeMs": context.get("fetchTimeMs")}
        if not full:
            return fields
        outlinks = context.get("outlinks")  # listed by a CPU worker already
        fields.update(outlinks if outlinks is not None else outlink_fields(*outlink_args(kwargs, context)))
        return fields

    def write(self, kwargs: dict[str, Any], context: dict[str, Any]) -> tuple[RecordPointer, Capture | None, int, int]:
        """Write one exchange (request, response or revisit, maybe metadata).

        Args:
            kwargs: :meth:`WarcFileWriter.write_exchange` arguments (``build_exchange``).
            context: ``via``, ``fetchTimeMs``, ``content_type``, ``location`` and maybe
                ``outlinks`` (``exchange_context``).

        Returns:
            ``(pointer, original, bytes, records)``: the pointer of the record
            written, the capture a revisit refers to (or ``None``), and the
            compressed bytes and records this call added.

        Raises:
            OSError: from the file system (the file is rolled back to its last
            whole record first).
        """
        b0, r0 = self.writer.total_bytes, self.writer.total_records
        digest = sha1_base32_digest(kwargs["body"])
        revisit, original = self._revisit_for(kwargs, digest)
        cfg = self.config
        write_metadata = cfg.metadata and (revisit is None or cfg.metadata_revisits)
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

    def close(self) -> tuple[list[Path], int, int]:
        """Close the current file: ``(every path closed so far, bytes, records)`` added."""
        b0, r0 = self.writer.total_bytes, self.writer.total_records
        paths = self.writer.close()
        return paths, self.writer.total_bytes - b0, self.writer.total_records - r0

    def shutdown(self) -> None:
        """Close the index's database connection (the writer must be closed first)."""
        if self.index is not None:
            self.index.close()
