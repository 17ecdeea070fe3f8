"""crawler/extensions/malloc_trim.py: the crawl gives freed C-heap pages back to the system."""

from __future__ import annotations

import pytest
from scrapy.exceptions import NotConfigured
from scrapy.utils.test import get_crawler

from crawler.extensions.malloc_trim import MallocTrimExtension, load_malloc_trim, resident_bytes, trim
from crawler.spiders.portal import PortalSpider

malloc_trim = load_malloc_trim()
needs_glibc = pytest.mark.skipif(malloc_trim is None, reason="this C library has no malloc_trim")


@needs_glibc
def test_freed_heap_pages_go_back_to_the_system():
    # 100,000 blocks of ~1 KB come from malloc's heap (above Python's 512-byte small-object
    # allocator); keeping the last one pins the heap's top, so free() alone returns nothing.
    blocks = [bytes(1000) + bytes([i % 256]) for i in range(100_000)]
    last = blocks[-1]
    del blocks
    before = resident_bytes()
    released = trim(malloc_trim)
    assert released >= 50 * 2**20
    assert resident_bytes() <= before - 50 * 2**20
    assert last[-1] == 99_999 % 256


@needs_glibc
def test_each_tick_trims_and_counts():
    crawler = get_crawler(PortalSpider, settings_dict={"NEWSARCHIVE_MALLOC_TRIM_SECONDS": 5})
    crawler.stats.open_spider()
    ext = MallocTrimExtension.from_crawler(crawler)
    assert ext.interval == 5.0
    blocks = [bytes(1000) + bytes([i % 256]) for i in range(50_000)]
    last = blocks[-1]
    del blocks
    ext.tick()
    ext.tick()
    assert crawler.stats.get_value("newsarchive/memory/trims") == 2
    assert crawler.stats.get_value("newsarchive/memory/trimmed_bytes") >= 25 * 2**20
    assert last


def test_an_interval_of_zero_turns_it_off():
    crawler = get_crawler(PortalSpider, settings_dict={"NEWSARCHIVE_MALLOC_TRIM_SECONDS": 0})
    with pytest.raises(NotConfigured, match="is 0"):
        MallocTrimExtension.from_crawler(crawler)
