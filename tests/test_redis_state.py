"""The crawl state on Redis (distributed crawls): the same publication protocol as
SQLite, per process — what a dead process recorded and never published is dropped,
with the URLs to fetch again; a live peer's pending work is left alone."""

from __future__ import annotations

from redis import Redis

from crawler.redis_state import RedisState, alive_key
from crawler.state import State, open_state
from tests.test_distributed import redis_url  # noqa: F401 (fixture)

KEY = "https://baotuyenquang.com.vn/a-b-123456.html"
OTHER = "https://baotuyenquang.com.vn/c-d-654321.html"


def test_open_state_gives_the_redis_backend(redis_url, tmp_path):  # noqa: F811
    Redis.from_url(redis_url).flushdb()
    state = open_state(redis_url, tmp_path, "w1")
    assert isinstance(state, RedisState) and isinstance(state, State)
    assert state.worker == "w1" and state.count() == 0


def test_a_dead_process_unpublished_work_is_dropped_and_its_urls_returned(redis_url):  # noqa: F811
    r = Redis.from_url(redis_url)
    r.flushdb()
    live, dead = RedisState(redis_url, "live"), RedisState(redis_url, "dead")
    r.set(alive_key("live"), "1")
    dead.record(KEY, "123456", "11" * 32, 1, minhash=b"\1" * 8, minhash_params="p")
    dead.add_url(KEY, KEY)
    dead.add_url(KEY.replace("//", "//m."), KEY)
    dead.record_page(KEY, 200, pending=True, run_id="r")
    dead.link_page(KEY, KEY)
    live.record(OTHER, "654321", "22" * 32, 1)
    # Only the first claimer records an article as new.
    assert dead.claim(KEY) and not live.claim(KEY) and live.claimant(KEY) == "dead"
    assert live.by_digest("11" * 32).article_key == KEY
    assert live.signature_updates("p", 0) == ([(KEY, b"\1" * 8)], 1)
    assert live.signature(KEY, "p") == b"\1" * 8 and live.signature(KEY, "q") is None
    assert live.recover() == {"articles_dropped": 1, "versions_dropped": 1, "pages_dropped": 1}
    assert live.by_key(KEY) is None and live.by_digest("11" * 32) is None and live.page(KEY) is None
    assert list(live.signatures("p")) == [] and live.signature(KEY, "p") is None and live.claim(KEY)
    # The live process's pending article stays; publishing it commits it.
    assert live.by_key(OTHER).published is False
    live.mark_published([OTHER])
    assert live.by_key(OTHER).published is True


def test_recover_worker_returns_the_urls_to_fetch_again(redis_url):  # noqa: F811
    Redis.from_url(redis_url).flushdb()
    dead = RedisState(redis_url, "dead")
    dead.record(KEY, "123456", "11" * 32, 1)
    dead.add_url(KEY, KEY)
    dead.add_url(KEY.replace("//", "//m."), KEY)
    dead.mark_published([KEY])
    dead.record(KEY, "123456", "33" * 32, 2, previous_sha256="11" * 32)  # an update, never published
    got = RedisState(redis_url, "peer").recover_worker("dead")
    assert got["versions_dropped"] == 1 and got["articles_dropped"] == 0
    assert got["urls"] == sorted([KEY, KEY.replace("//", "//m.")])
    known = dead.by_key(KEY)
    assert (known.version, known.content_sha256, known.published) == (1, "11" * 32, True)


def test_a_sitemap_lastmod_read_before_another_process_fetches_the_page_reaches_its_row(redis_url):  # noqa: F811
    """Process A reads the sitemap before process B fetches the page (the sitemap's own
    request for it is dropped by the shared dupefilter): B's row still gets the lastmod,
    so the next run does not fetch the page again for a lastmod it already has."""
    Redis.from_url(redis_url).flushdb()
    reader, fetcher = RedisState(redis_url, "a"), RedisState(redis_url, "b")
    reader.note_lastmod(KEY, "2025-06-04", "r2")
    reader.note_lastmod(OTHER, "2030-01-01", "another-run")
    fetcher.record_page(KEY, 404, run_id="r2")
    fetcher.record_page(OTHER, 404, run_id="r2")
    assert reader.page(KEY).sitemap_lastmod == "2025-06-04"
    assert reader.page(OTHER).sitemap_lastmod is None  # another run's sitemap
    # A lastmod the fetcher knew itself wins; a 304 takes a waiting one too.
    fetcher.record_page(KEY, 404, sitemap_lastmod="2025-06-05", run_id="r2")
    assert reader.page(KEY).sitemap_lastmod == "2025-06-05"
    fetcher.record_page(KEY, 200, pending=False, run_id="r3")
    reader.note_lastmod(KEY, "2025-07-01", "r3")  # fetched in r3 already: the row at once
    assert fetcher.page(KEY).sitemap_lastmod == "2025-07-01"
