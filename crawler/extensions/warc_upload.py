"""Ship each closed WARC file to the store under ``warc/YYYY/MM/DD/`` and delete
the local copy only once the stored object is verified (size and SHA-256).

A failed upload keeps the file in ``WARC_DIR`` and is counted in
``warc/upload_errors`` (the CLI turns that into exit code 3), so a WARC is never
lost to a store outage.
"""

from __future__ import annotations

import logging
from pathlib import Path

from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.threads import deferToThread

from crawler.layout import warc_key
from crawler.middlewares.warc_capture import warc_file_closed
from crawler.store import StoreError, open_store

logger = logging.getLogger(__name__)


def upload_warc(store, path: Path, keep_local: bool = False) -> str:
    """Upload the closed WARC file ``path`` (and its ``.cdxj`` index when present);
    return the WARC's store key. Raises :class:`~crawler.store.StoreError`."""
    key = warc_key(path.name)
    store.put_file(path, key, "application/warc")
    index = path.with_name(path.name + ".cdxj")
    if index.exists():
        store.put_file(index, warc_key(index.name), "application/x-cdxj")
    if not keep_local:
        path.unlink()
        index.unlink(missing_ok=True)
    return key


class WarcUploadExtension:
    """Scrapy extension: listens to ``warc_file_closed`` and uploads off the reactor
    thread. Settings: ``NEWSARCHIVE_STORE``, ``WARC_KEEP_LOCAL`` (False),
    ``WARC_ENABLED``. Stats: ``warc/uploaded`` (list of keys), ``warc/upload_errors``."""

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
        except (StoreError, OSError) as exc:
            self.stats.inc_value("warc/upload_errors")
            logger.error("WARC %s kept locally, upload failed: %s", path, exc)
            return
        uploaded = list(self.stats.get_value("warc/uploaded") or [])
        uploaded.append(key)
        self.stats.set_value("warc/uploaded", uploaded)
