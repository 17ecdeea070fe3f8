"""Ship each closed WARC file and its CDXJ index to the store under
``warc/YYYY/MM/DD/`` and delete the local copies only once the stored objects
are verified (size and SHA-256: :meth:`crawler.store.Store.put_file` reads them
back).

A failed upload keeps the files in ``WARC_DIR`` and is counted in
``warc/upload_errors`` (the CLI turns that into exit code 3), so a WARC is never
lost to a store outage; the next run finds them there and uploads them (see
:mod:`crawler.middlewares.warc_capture`, "leftover" files). Invariant: a closed
``*.warc.gz`` directly in ``WARC_DIR`` has not been uploaded yet.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.threads import deferToThread

from crawler.layout import warc_key
from crawler.middlewares.warc_capture import warc_file_closed
from crawler.store import open_store
from crawler.warc.cdxj import ensure_cdxj

logger = logging.getLogger(__name__)

#: Sub-folder of ``WARC_DIR`` where ``WARC_KEEP_LOCAL`` keeps uploaded files.
UPLOADED_DIR = "uploaded"


def upload_warc(store, path: Path, keep_local: bool = False) -> str:
    """Upload the closed WARC file ``path``, then its ``.cdxj`` index (made
    here when missing), each verified by the store; return the WARC's store key.

    The WARC goes first, so an index in the store always has its WARC. Then the
    local files are deleted, or with ``keep_local`` moved to ``uploaded/`` beside
    them. Raises :class:`~crawler.store.StoreError` (store) or ``OSError`` /
    warcio errors (indexing an unreadable file); the local files stay then.
    """
    key = warc_key(path.name)
    index = ensure_cdxj(path)
    store.put_file(path, key, "application/warc")
    store.put_file(index, warc_key(index.name), "application/x-cdxj")
    if keep_local:
        kept = path.parent / UPLOADED_DIR
        kept.mkdir(exist_ok=True)
        os.replace(index, kept / index.name)
        os.replace(path, kept / path.name)
    else:
        index.unlink(missing_ok=True)
        path.unlink()
    return key


class WarcUploadExtension:
    """Scrapy extension: listens to ``warc_file_closed`` and uploads off the reactor
    thread. Settings: ``NEWSARCHIVE_STORE``, ``WARC_KEEP_LOCAL`` (False: delete the
    local copies once verified in the store; True: move them to
    ``WARC_DIR/uploaded/``), ``WARC_ENABLED``. Stats: ``warc/uploaded`` (list of
    keys), ``warc/upload_errors``."""

    def __init__(self, crawler, store_url: str, keep_local: bool):
        self.crawler = crawler
        self.stats = crawler.stats
        self.store = open_store(store_url)
        self.keep_local = keep_local
        crawler.signals.connect(self.file_closed, signal=warc_file_closed)

    @classmethod
    def from_crawler(cls, crawler):
        s = crawler.settings
        if not s.getbool("WARC_ENABLED", True):
            raise NotConfigured("WARC capture is off")
        return cls(crawler, s.get("NEWSARCHIVE_STORE", "archive"), s.getbool("WARC_KEEP_LOCAL", False))

    async def file_closed(self, path: Path, spider=None):
        try:
            key = await maybe_deferred_to_future(deferToThread(upload_warc, self.store, Path(path), self.keep_local))
        except Exception as exc:  # noqa: BLE001 - StoreError, OSError, unreadable WARC: keep it, count it
            self.stats.inc_value("warc/upload_errors")
            logger.error("WARC %s kept locally, upload failed: %s", path, exc)
            return
        uploaded = list(self.stats.get_value("warc/uploaded") or [])
        uploaded.append(key)
        self.stats.set_value("warc/uploaded", uploaded)
