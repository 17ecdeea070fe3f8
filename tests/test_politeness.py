"""Politeness defaults: robots.txt obeyed with its Crawl-delay (applied per host by
CrawlDelayMiddleware, since Scrapy's RobotsTxtMiddleware ignores it), AutoThrottle on,
two connections per host, and a User-Agent naming the project and the contact URL."""

from __future__ import annotations

import argparse

import pytest
from scrapy.core.downloader import Slot
from scrapy.exceptions import NotConfigured
from scrapy.http import Request, TextResponse
from scrapy.settings import Settings
from scrapy.statscollectors import MemoryStatsCollector

from crawler import __version__
from crawler import settings as project_settings
from crawler.cli import add_crawl_options, build_settings
from crawler.middlewares.politeness import CrawlDelayMiddleware, crawl_delay
from tests.conftest import PORTAL

ROBOTS = (PORTAL / "site" / "baotuyenquang.com.vn" / "robots.txt").read_text(encoding="utf-8")
UA = project_settings.USER_AGENT


def test_the_portal_robots_txt_asks_one_second():
    assert crawl_delay(ROBOTS, UA) == 1.0
    assert crawl_delay(ROBOTS, "AhrefsBot") is None  # its own group: Disallow: / and no delay
    assert crawl_delay("User-agent: *\nDisallow:\n", UA) is None
    assert crawl_delay("User-agent: newsarchive\nCrawl-delay: 2.5\n\nUser-agent: *\nCrawl-delay: 9\n", UA) == 2.5


class FakeDownloader:
    def __init__(self):
        self.slots: dict[str, Slot] = {}
        self.per_slot_settings: dict[str, dict] = {}

    @staticmethod
    def get_slot_key(request):
        return request.url.split("/")[2]


class FakeCrawler:
    def __init__(self, **settings):
        self.settings = Settings({"ROBOTSTXT_OBEY": True, "USER_AGENT": UA, **settings})
        self.stats = MemoryStatsCollector(self)
        self.engine = type("Engine", (), {"downloader": FakeDownloader()})()


def robots_response(host: str, text: str) -> TextResponse:
    url = f"https://{host}/robots.txt"
    return TextResponse(url, body=text.encode(), encoding="utf-8", request=Request(url))


def test_crawl_delay_becomes_the_floor_of_the_hosts_slot():
    crawler = FakeCrawler()
    mw = CrawlDelayMiddleware.from_crawler(crawler)
    downloader = crawler.engine.downloader
    downloader.slots["baotuyenquang.com.vn"] = Slot(2, 0.0, 0.5)
    resp = robots_response("baotuyenquang.com.vn", ROBOTS)
    assert mw.process_response(resp.request, resp) is resp
    slot = downloader.slots["baotuyenquang.com.vn"]
    assert (slot.delay, slot.jitter) == (1.0, 0.0)
    # Slots created later (after the idle-slot clean-up) start from it too.
    assert downloader.per_slot_settings["baotuyenquang.com.vn"] == {"delay": 1.0, "jitter": 0.0}
    assert crawler.stats.get_value("newsarchive/crawl_delay/baotuyenquang.com.vn") == 1.0
    # AutoThrottle lowered the delay after a fast response: the next request raises it again.
    slot.delay = 0.2
    assert mw.process_request(Request("https://baotuyenquang.com.vn/xa-hoi/")) is None
    assert slot.delay == 1.0
    # A longer delay (AutoThrottle backing off) is kept; another host is not touched.
    slot.delay = 3.0
    mw.process_request(Request("https://baotuyenquang.com.vn/"))
    assert slot.delay == 3.0
    downloader.slots["m.baotuyenquang.com.vn"] = Slot(2, 0.0, 0.5)
    mw.process_request(Request("https://m.baotuyenquang.com.vn/"))
    assert downloader.slots["m.baotuyenquang.com.vn"].delay == 0.0


def test_an_excessive_crawl_delay_is_capped():
    crawler = FakeCrawler(NEWSARCHIVE_MAX_CRAWL_DELAY=5)
    mw = CrawlDelayMiddleware.from_crawler(crawler)
    resp = robots_response("example.org", "User-agent: *\nCrawl-delay: 3600\n")
    mw.process_response(resp.request, resp)
    assert crawler.engine.downloader.per_slot_settings["example.org"]["delay"] == 5.0


@pytest.mark.parametrize("settings", [{"NEWSARCHIVE_OBEY_CRAWL_DELAY": False}, {"ROBOTSTXT_OBEY": False}])
def test_crawl_delay_honouring_can_be_turned_off(settings):
    with pytest.raises(NotConfigured):
        CrawlDelayMiddleware.from_crawler(FakeCrawler(**settings))


def test_politeness_defaults():
    s = project_settings
    assert s.ROBOTSTXT_OBEY is True and s.NEWSARCHIVE_OBEY_CRAWL_DELAY is True
    assert s.AUTOTHROTTLE_ENABLED is True
    assert s.CONCURRENT_REQUESTS_PER_DOMAIN == 2
    assert s.DOWNLOAD_DELAY == 1.0
    assert s.DOWNLOADER_MIDDLEWARES["crawler.middlewares.politeness.CrawlDelayMiddleware"] == 120
    assert UA.startswith("newsarchive/") and s.NEWSARCHIVE_CONTACT_URL in UA


def test_the_user_agent_names_the_operators_contact_url():
    parser = argparse.ArgumentParser()
    add_crawl_options(parser)
    args = parser.parse_args(["-s", "NEWSARCHIVE_CONTACT_URL=https://archive.example.org/contact"])
    settings = build_settings(args, "R")
    assert settings.get("USER_AGENT") == f"newsarchive/{__version__} (+https://archive.example.org/contact; archival crawler)"
    args = parser.parse_args(["-s", "USER_AGENT=custom/1.0"])
    assert build_settings(args, "R").get("USER_AGENT") == "custom/1.0"


def test_an_unreachable_robots_txt_means_the_host_is_not_crawled(tmp_path):
    """RFC 9309 2.3.1.4 on a real crawl: the portal's robots.txt answers 503 every time.
    Nothing but robots.txt is fetched from that host, and the run says it failed."""
    import json

    from tests.conftest import run_newsarchive
    from tests.replica.server import ReplicaServer

    root = tmp_path / "portal"
    root.mkdir()
    (root / "site").symlink_to(PORTAL / "site")
    routes = json.loads((PORTAL / "routes.json").read_text("utf-8"))
    robots = [r for r in routes if r["path"] == "/robots.txt" and "host" not in r]
    assert len(robots) == 1
    robots[0]["fail_first"] = 1000
    (root / "routes.json").write_text(json.dumps(routes, ensure_ascii=False), "utf-8")
    server = ReplicaServer(root=root, port=0)
    server.start()
    try:
        proc = run_newsarchive(["crawl", "--store", str(tmp_path / "archive"), "--state-dir", str(tmp_path / "state"),
                                "--run-id", "R1", "-s", "DOWNLOAD_DELAY=0"], server.proxy_url)
        requests = list(server.requests)
    finally:
        server.stop()
    main_host = [r for r in requests if r["host"] == "baotuyenquang.com.vn"]
    assert main_host and {r["path"] for r in main_host} == {"/robots.txt"}
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = json.loads((tmp_path / "state" / "runs" / "R1.json").read_text())
    assert report["errors"]["robots_unreachable"] == 1
    assert any("robots.txt unreachable" in reason for reason in report["failed_checks"])
    assert "robots.txt of baotuyenquang.com.vn is unreachable (HTTP 500)" in proc.stderr, proc.stderr[-3000:]
