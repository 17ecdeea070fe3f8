"""robots.txt for requests that wait for it (crawler/middlewares/robotstxt.py, issue 8).

Several requests to one host reach the middleware while its robots.txt is being
fetched, as when a process joins a distributed crawl and pops a batch from the shared
queue: every one of them must be checked against the parsed file (RFC 9309 §2.2.2)."""

from __future__ import annotations

import asyncio

import pytest
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware as ScrapyRobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, TextResponse
from scrapy.utils.test import get_crawler

from crawler import settings as project_settings
from crawler.middlewares.robotstxt import RobotsTxtMiddleware
from tests.conftest import PORTAL

HOST = "https://baotuyenquang.com.vn"
ROBOTS = (PORTAL / "site" / "baotuyenquang.com.vn" / "robots.txt").read_bytes()
#: A popped batch: allowed and disallowed paths mixed, disallowed ones late.
BATCH = ["/", "/xa-hoi/", "/lien-he.html", "/admin/login.html", "/kinh-te/",
         "/tim-kiem/?q=H%C3%A1t+Then&type=tag", "/du-lich/", "/Ajax/CountView.ashx"]
DISALLOWED = {"/admin/login.html", "/tim-kiem/?q=H%C3%A1t+Then&type=tag", "/Ajax/CountView.ashx"}


class SlowEngine:
    """``engine.download_async`` answering robots.txt only when ``release`` is set;
    records what it was asked."""

    def __init__(self, body: bytes = ROBOTS, status: int = 200):
        self.release = asyncio.Event()
        self.body, self.status = body, status
        self.downloads: list[str] = []

    async def download_async(self, request):
        self.downloads.append(request.url)
        await self.release.wait()
        return TextResponse(request.url, status=self.status, body=self.body, request=request)


async def check_batch(cls) -> tuple[dict[str, str], list[str], dict]:
    """Send :data:`BATCH` through middleware ``cls`` while robots.txt is in flight;
    returns ({path: "allowed" | "forbidden"}, robots.txt downloads, stats)."""
    crawler = get_crawler(settings_dict={"ROBOTSTXT_OBEY": True, "USER_AGENT": project_settings.USER_AGENT})
    crawler.engine = SlowEngine()
    mw = cls.from_crawler(crawler)
    tasks = [asyncio.ensure_future(mw.process_request(Request(HOST + path))) for path in BATCH]
    await asyncio.sleep(0)  # every request is now waiting for robots.txt
    crawler.engine.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        assert r is None or isinstance(r, IgnoreRequest), r
    verdicts = {p: "forbidden" if isinstance(r, IgnoreRequest) else "allowed" for p, r in zip(BATCH, results)}
    return verdicts, crawler.engine.downloads, crawler.stats.get_stats()


def test_every_request_waiting_for_robots_txt_is_checked():
    verdicts, downloads, stats = asyncio.run(check_batch(RobotsTxtMiddleware))
    assert {p for p, v in verdicts.items() if v == "forbidden"} == DISALLOWED
    assert downloads == [HOST + "/robots.txt"]  # fetched once for the whole batch
    assert stats["robotstxt/forbidden"] == 3
    assert stats["robotstxt/request_count"] == 1


def test_requests_after_the_parse_are_checked_too():
    async def run():
        crawler = get_crawler(settings_dict={"ROBOTSTXT_OBEY": True})
        crawler.engine = SlowEngine()
        crawler.engine.release.set()
        mw = RobotsTxtMiddleware.from_crawler(crawler)
        assert await mw.process_request(Request(HOST + "/xa-hoi/")) is None  # fetches robots.txt
        with pytest.raises(IgnoreRequest):
            await mw.process_request(Request(HOST + "/admin/login.html"))
        return crawler.engine.downloads

    assert asyncio.run(run()) == [HOST + "/robots.txt"]


def test_scrapys_own_middleware_still_lets_late_waiters_through():
    """Why the subclass exists: Scrapy 2.19 hands only the first waiting request the
    parser. When this fails, Scrapy has fixed it: drop crawler/middlewares/robotstxt.py
    and its line in crawler/settings.py."""
    verdicts, _, _ = asyncio.run(check_batch(ScrapyRobotsTxtMiddleware))
    assert {p for p, v in verdicts.items() if v == "forbidden"} == set()


@pytest.mark.parametrize("name,order", [("crawler.middlewares.robotstxt.RobotsTxtMiddleware", 100),
                                        ("scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware", None)])
def test_the_project_uses_the_fixed_middleware_in_scrapys_place(name, order):
    assert project_settings.DOWNLOADER_MIDDLEWARES[name] == order


@pytest.mark.parametrize("status", [500, 503])
def test_a_robots_txt_answering_5xx_disallows_the_whole_host(status):
    """RFC 9309 2.3.1.4: unreachable means complete disallow (Scrapy would allow all)."""
    async def run():
        crawler = get_crawler(settings_dict={"ROBOTSTXT_OBEY": True})
        crawler.engine = SlowEngine(body=b"<html>Service Unavailable</html>", status=status)
        crawler.engine.release.set()
        mw = RobotsTxtMiddleware.from_crawler(crawler)
        refused = []
        for path in ("/", "/xa-hoi/", "/admin/login.html"):
            with pytest.raises(IgnoreRequest):
                await mw.process_request(Request(HOST + path))
            refused.append(path)
        return refused, crawler.stats.get_stats()

    refused, stats = asyncio.run(run())
    assert refused == ["/", "/xa-hoi/", "/admin/login.html"]
    assert stats["newsarchive/robots/unreachable"] == 1
    assert stats["robotstxt/forbidden"] == 3


def test_a_robots_txt_answering_404_allows_everything():
    """RFC 9309 2.3.1.3: unavailable (4xx) means no rules."""
    async def run():
        crawler = get_crawler(settings_dict={"ROBOTSTXT_OBEY": True})
        crawler.engine = SlowEngine(body=b"<html>Not Found</html>", status=404)
        crawler.engine.release.set()
        mw = RobotsTxtMiddleware.from_crawler(crawler)
        return [await mw.process_request(Request(HOST + p)) for p in ("/", "/admin/login.html")], \
            crawler.stats.get_stats()

    results, stats = asyncio.run(run())
    assert results == [None, None]
    assert "newsarchive/robots/unreachable" not in stats


def test_a_robots_txt_that_cannot_be_fetched_disallows_the_whole_host_for_waiting_requests():
    class FailingEngine(SlowEngine):
        async def download_async(self, request):
            self.downloads.append(request.url)
            await self.release.wait()
            raise ConnectionRefusedError("Connection was refused by other side: 111")

    async def run():
        crawler = get_crawler(settings_dict={"ROBOTSTXT_OBEY": True})
        crawler.engine = FailingEngine()
        mw = RobotsTxtMiddleware.from_crawler(crawler)
        tasks = [asyncio.ensure_future(mw.process_request(Request(HOST + p))) for p in BATCH]
        await asyncio.sleep(0)
        crawler.engine.release.set()
        return await asyncio.gather(*tasks, return_exceptions=True), crawler

    results, crawler = asyncio.run(run())
    assert all(isinstance(r, IgnoreRequest) for r in results), results
    assert crawler.engine.downloads == [HOST + "/robots.txt"]
    assert crawler.stats.get_value("newsarchive/robots/unreachable") == 1
