"""crawler/fingerprints.py: the compact fingerprint set behind Scrapy's dupefilter and
the spider's URL sets — the same answers as a Python set, at 16 bytes an entry."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scrapy import Request
from scrapy.dupefilters import RFPDupeFilter
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler

from crawler import settings as project_settings
from crawler.fingerprints import CompactDupeFilter, FingerprintSet, UrlSet, url_fingerprint
from crawler.spiders.portal import PortalSpider

ARTICLE = "https://baotuyenquang.com.vn/chinh-tri/xay-dung-dang/dang-bo-thi-tran-na-hang-chu-trong-cong-tac-phat-trien-dang-vien-127836.html"

fingerprint = st.binary(min_size=16, max_size=20)
operation = st.tuples(st.sampled_from(["add", "discard", "contains"]), fingerprint)


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=120), st.integers(min_value=1, max_value=9))
def test_the_set_answers_as_a_python_set_through_merges_and_removals(ops, merge_every):
    fps, model = FingerprintSet(merge_every=merge_every), set()
    for op, fp in ops:
        key = fp[:16]
        if op == "add":
            fps.add(fp)
            model.add(key)
        elif op == "discard":
            fps.discard(fp)
            model.discard(key)
        else:
            assert (fp in fps) == (key in model)
        assert len(fps) == len(model)
    assert list(fps) == sorted(model)


def test_fingerprints_with_the_same_high_half_are_told_apart():
    high = b"\xff" * 8  # above 2**63: numpy must keep it an unsigned 64-bit value
    a, b, c = high + b"\x00" * 8, high + b"\x00" * 7 + b"\x01", high + b"\xff" * 8
    fps = FingerprintSet(merge_every=1)
    fps.add(c)
    fps.add(a)
    assert a in fps and c in fps and b not in fps
    fps.discard(c)
    assert c not in fps and a in fps and len(fps) == 1


def test_a_merged_entry_costs_sixteen_bytes():
    fps = FingerprintSet(hashlib.sha1(str(i).encode()).digest() for i in range(100_000))
    list(fps)  # merges what is left in the recent set
    assert len(fps) == 100_000
    assert fps.nbytes == 1_600_000
    assert hashlib.sha1(b"99999").digest() in fps
    assert hashlib.sha1(b"100000").digest() not in fps


def test_a_short_fingerprint_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes, got 15"):
        FingerprintSet().add(b"x" * 15)
    with pytest.raises(ValueError, match="merge_every"):
        FingerprintSet(merge_every=0)


def test_url_sets_hold_urls_by_their_blake2b_digest():
    urls = UrlSet()
    urls.add(ARTICLE)
    urls.add(ARTICLE)
    assert ARTICLE in urls and len(urls) == 1
    assert ARTICLE + "?utm_source=x" not in urls
    assert url_fingerprint(ARTICLE) == hashlib.blake2b(ARTICLE.encode(), digest_size=16).digest()
    urls.discard(ARTICLE)
    assert ARTICLE not in urls and len(urls) == 0


def _requests():
    # The fingerprinter canonicalises (query order, fragment): 5 requests, 3 distinct.
    return [
        Request(ARTICLE),
        Request(ARTICLE + "#binh-luan"),
        Request("https://baotuyenquang.com.vn/tim-kiem?q=na+hang&page=2"),
        Request("https://baotuyenquang.com.vn/tim-kiem?page=2&q=na+hang"),
        Request("https://baotuyenquang.com.vn/robots.txt"),
    ]


def _dupefilter(cls, jobdir=None):
    values = {}
    if jobdir is not None:
        values["JOBDIR"] = str(jobdir)
    return cls.from_crawler(get_crawler(PortalSpider, settings_dict=values))


def test_the_compact_dupefilter_filters_what_scrapy_s_filters():
    ours, scrapys = _dupefilter(CompactDupeFilter), _dupefilter(RFPDupeFilter)
    seen = [ours.request_seen(r) for r in _requests()]
    assert seen == [scrapys.request_seen(r) for r in _requests()] == [False, True, False, True, False]
    assert isinstance(ours._fingerprints, FingerprintSet) and len(ours._fingerprints) == 3


def test_the_compact_dupefilter_reads_and_writes_scrapy_s_jobdir_file(tmp_path):
    first = _dupefilter(CompactDupeFilter, tmp_path)
    assert [first.request_seen(r) for r in _requests()] == [False, True, False, True, False]
    first.close("shutdown")
    # Scrapy's own filter reads our requests.seen, and ours reads it back.
    again = _dupefilter(RFPDupeFilter, tmp_path)
    assert all(again.request_seen(r) for r in _requests())
    again.close("finished")
    ours = _dupefilter(CompactDupeFilter, tmp_path)
    assert all(ours.request_seen(r) for r in _requests())
    assert not ours.request_seen(Request("https://baotuyenquang.com.vn/xa-hoi/"))
    ours.close("finished")


def test_the_project_settings_use_the_compact_dupefilter():
    values = Settings()
    values.setmodule(project_settings)
    assert values["DUPEFILTER_CLASS"] == "crawler.fingerprints.CompactDupeFilter"
