"""crawler/middlewares/maxsize.py without a network: the signal handlers and the
middleware hooks on hand-made requests (the served case is in test_hostile_input.py)."""

from __future__ import annotations

import pytest
from scrapy import Request
from scrapy.exceptions import IgnoreRequest, StopDownload
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler

from crawler.middlewares.maxsize import TRUNCATED_META, MaxsizeTruncationMiddleware


def _mw(maxsize: int = 100) -> MaxsizeTruncationMiddleware:
    return MaxsizeTruncationMiddleware.from_crawler(get_crawler(settings_dict={"DOWNLOAD_MAXSIZE": maxsize}))


def _feed(mw, request, chunks) -> int:
    """Send ``chunks`` through bytes_received; the number of chunks taken before the stop."""
    for i, chunk in enumerate(chunks):
        try:
            mw.bytes_received(chunk, request, None)
        except StopDownload as stop:
            assert stop.fail is False  # a Response with the bytes so far, not an error
            return i + 1
    return len(chunks)


def test_a_streamed_body_stops_at_the_chunk_that_passes_the_limit():
    mw = _mw(100)
    req = Request("https://h.test/big")
    mw.headers_received({}, "twisted.web.iweb.UNKNOWN_LENGTH", req, None)
    assert "download_maxsize" not in req.meta  # nothing announced: Scrapy's own limit left alone
    assert _feed(mw, req, [b"a" * 40, b"b" * 60, b"c" * 1, b"d" * 50]) == 3  # 40, 100 (= limit), 101
    assert req.meta[TRUNCATED_META] == 100
    resp = HtmlResponse(req.url, body=b"a" * 40 + b"b" * 60 + b"c", request=req, flags=["download_stopped"])
    with pytest.raises(IgnoreRequest, match=r"DOWNLOAD_MAXSIZE \(100 B\)"):
        mw.process_response(req, resp)
    assert TRUNCATED_META not in req.meta
    assert mw.stats.get_value("newsarchive/maxsize/truncated") == 1


def test_an_announced_oversize_is_read_up_to_the_limit_and_the_meta_limit_restored():
    mw = _mw(100)
    req = Request("https://h.test/big")
    mw.headers_received({}, 5000, req, None)
    # The handler refuses when Content-Length > meta["download_maxsize"]: lifted to 5000.
    assert req.meta["download_maxsize"] == 5000
    assert mw.limit_for(req) == 100  # the real limit still applies to the counting
    assert _feed(mw, req, [b"x" * 64, b"x" * 64]) == 2
    assert "download_maxsize" not in req.meta and req.meta[TRUNCATED_META] == 100  # restored: came from the setting


def test_a_request_limit_is_honoured_and_put_back_after_a_failure():
    mw = _mw(100)
    req = Request("https://h.test/big", meta={"download_maxsize": 10})
    mw.headers_received({}, 50, req, None)
    assert req.meta["download_maxsize"] == 50 and mw.limit_for(req) == 10
    # a timeout mid-body: RetryMiddleware (below) must copy the real limit into the retry
    assert mw.process_exception(req, TimeoutError()) is None
    assert req.meta["download_maxsize"] == 10 and TRUNCATED_META not in req.meta


def test_bodies_within_the_limit_and_no_limit_pass_untouched():
    mw = _mw(100)
    req = Request("https://h.test/ok")
    mw.headers_received({}, 100, req, None)
    assert _feed(mw, req, [b"x" * 50, b"x" * 50]) == 2 and TRUNCATED_META not in req.meta
    resp = HtmlResponse(req.url, body=b"x" * 100, request=req)
    assert mw.process_response(req, resp) is resp
    unlimited = _mw(0)
    req = Request("https://h.test/huge")
    unlimited.headers_received({}, 10**9, req, None)
    assert _feed(unlimited, req, [b"x" * 1000] * 3) == 3 and "download_maxsize" not in req.meta


def test_it_sits_just_after_warc_capture_in_response_order():
    from crawler import settings

    dmw = settings.DOWNLOADER_MIDDLEWARES
    mine = dmw["crawler.middlewares.maxsize.MaxsizeTruncationMiddleware"]
    warc = dmw["crawler.middlewares.warc_capture.WarcCaptureMiddleware"]
    # process_response runs from high to low: WARC capture first, then this, then the rest.
    enabled = {k: p for k, p in dmw.items() if p is not None}  # None: a Scrapy middleware switched off
    assert mine < warc and all(p < mine for k, p in enabled.items()
                               if p < warc and not k.endswith("MaxsizeTruncationMiddleware"))
