"""The ``portal`` spider: discovers a news portal's articles from its home page,
section listings (with pagination), RSS feeds and sitemaps, and turns each
article page into an :class:`~crawler.items.ArticleItem` through the site
profile (or a :class:`~crawler.items.QuarantineItem` with the reason).

Which hosts are crawled and what is an article are the profile's business
(``crawler/sites``); robots.txt is obeyed by Scrapy's RobotsTxtMiddleware; every
response, whatever its kind, is archived by the WARC capture middleware before
it reaches this spider.
"""

from __future__ import annotations

import gzip
import io
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

import scrapy
from lxml import etree
from protego import Protego
from scrapy.linkextractors import IGNORED_EXTENSIONS, LinkExtractor
from scrapy.utils.sitemap import Sitemap

from crawler.extract import extract_article
from crawler.items import ArticleItem, QuarantineItem, content_sha256
from crawler.layout import warc_key
from crawler.sites import get_profile

#: Feeds are pages to read here, not binaries to skip.
DENY_EXTENSIONS = [e for e in IGNORED_EXTENSIONS if e != "rss"]

#: Largest decompressed sitemap we read (bytes): a gzip bomb stops here.
SITEMAP_MAX_BYTES = 50 * 1024 * 1024


def _as_list(value) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return list(value)


class PortalSpider(scrapy.Spider):
    """Spider arguments (``-a`` or the CLI): ``site`` (profile name, default
    ``baotuyenquang``), ``start_urls`` and ``allowed_domains`` (comma-separated;
    default the profile's), ``run_id``."""

    name = "portal"

    def __init__(self, site: str | None = None, start_urls=None, allowed_domains=None, **kwargs):
        super().__init__(**kwargs)
        self.site = site
        self._start_urls_arg = _as_list(start_urls)
        self._allowed_domains_arg = _as_list(allowed_domains)

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        s = crawler.settings
        spider.site = spider.site or s.get("NEWSARCHIVE_SITE", "baotuyenquang")
        spider.profile = get_profile(spider.site)
        spider.start_urls = spider._start_urls_arg or list(spider.profile.start_urls)
        spider.allowed_domains = spider._allowed_domains_arg or list(spider.profile.hosts)
        spider.run_id = s.get("NEWSARCHIVE_RUN_ID", "manual")
        # <a>/<area> links, plus <link rel="alternate"> (RSS feeds, the mobile
        # copy); never <link rel="canonical">: it names a page, it does not link one,
        # and an http:// canonical would start a second crawl of the whole site.
        spider.links = LinkExtractor(
            allow_domains=spider.allowed_domains,
            tags=("a", "area"),
            attrs=("href",),
            deny_extensions=DENY_EXTENSIONS,
        )
        spider.alternates = LinkExtractor(
            allow_domains=spider.allowed_domains,
            tags=("link",),
            attrs=("href",),
            restrict_xpaths=('//link[@rel="alternate"]',),
            deny_extensions=DENY_EXTENSIONS,
        )
        return spider

    async def start(self):
        seen_hosts = set()
        for url in self.start_urls:
            yield scrapy.Request(url, callback=self.parse)
            root = "{0.scheme}://{0.netloc}".format(urlsplit(url))
            if root not in seen_hosts:
                seen_hosts.add(root)
                # robots.txt is fetched again here (Scrapy's robots middleware keeps
                # its copy to itself) only to read its Sitemap: lines.
                yield scrapy.Request(root + "/robots.txt", callback=self.parse_robots, dont_filter=True)

    def parse_robots(self, response):
        for sitemap_url in Protego.parse(response.text).sitemaps:
            yield scrapy.Request(urljoin(response.url, sitemap_url), callback=self.parse_sitemap)

    def parse_sitemap(self, response):
        body = response.body
        if body[:2] == b"\x1f\x8b":
            body = gzip.GzipFile(fileobj=io.BytesIO(body)).read(SITEMAP_MAX_BYTES + 1)
            if len(body) > SITEMAP_MAX_BYTES:
                self.crawler.stats.inc_value("newsarchive/sitemap/too_large")
                return
        try:
            sitemap = Sitemap(body)  # lxml with entity resolution off
        except Exception:  # noqa: BLE001 - any malformed XML is counted, not fatal
            self.crawler.stats.inc_value("newsarchive/sitemap/unreadable")
            return
        callback = self.parse_sitemap if sitemap.type == "sitemapindex" else self.parse
        for entry in sitemap:
            loc = entry.get("loc")
            if loc:
                yield scrapy.Request(self.request_url(urljoin(response.url, loc)), callback=callback)

    def parse(self, response):
        ctype = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
        url = response.url
        if "rss" in ctype or url.endswith(".rss") or ("xml" in ctype and b"<rss" in response.body[:512]):
            yield from self.parse_feed(response)
            return
        if "xml" in ctype:
            yield from self.parse_sitemap(response)
            return
        if self.profile.is_article_url(url):
            yield self.article(response)
        if isinstance(response, scrapy.http.HtmlResponse):
            for extractor in (self.links, self.alternates):
                for link in extractor.extract_links(response):
                    yield scrapy.Request(self.request_url(link.url), callback=self.parse)

    def request_url(self, url: str) -> str:
        """The URL to fetch for a link: as linked (tracking parameters included, so
        every address of an article is seen), but on https for a profile whose
        hosts serve https only (``force_https``)."""
        if url.startswith("http://") and getattr(self.profile, "force_https", False):
            host = urlsplit(url).hostname
            if host in self.profile.hosts:
                return "https://" + url[len("http://") :]
        return url

    def parse_feed(self, response):
        parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False)
        try:
            root = etree.fromstring(response.body, parser=parser)
        except etree.XMLSyntaxError:
            root = None
        if root is None:
            self.crawler.stats.inc_value("newsarchive/feed/unreadable")
            return
        for link in root.iterfind(".//item/link"):
            if link.text and link.text.strip():
                yield scrapy.Request(self.request_url(urljoin(response.url, link.text.strip())), callback=self.parse)

    def article(self, response) -> ArticleItem | QuarantineItem:
        """The item for an article page: parsed by the profile, with the page's WARC
        pointer; a page the profile cannot turn into a record is quarantined."""
        pointer = response.meta.get("warc")
        # The response record's WARC-Date is when the page was fetched; a page
        # replayed from WARC (``reprocess``) keeps the time of its original fetch.
        when = datetime.fromisoformat(pointer["warc_date"]) if pointer and pointer.get("warc_date") else None
        fetched_at = (when or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
        warc = None
        if pointer:
            warc = {"file": warc_key(pointer["file"]), "offset": pointer["offset"], "length": pointer["length"]}
        ctype = response.headers.get(b"Content-Type", b"").decode("latin-1") or None
        result = extract_article(self.profile, response.url, response.body, ctype)
        for warning in result.warnings:
            self.crawler.stats.inc_value(f"newsarchive/extract/warning/{warning}")
        if result.record is None:
            self.crawler.stats.inc_value(f"newsarchive/extract/quarantine/{result.quarantine}")
            return QuarantineItem(
                reason=result.quarantine,
                url=response.url,
                article_id=self.profile.article_id(response.url),
                detail="; ".join(result.warnings) or None,
                warc=warc,
                fetched_at=fetched_at,
                run_id=self.run_id,
            )
        rec = result.record
        return ArticleItem(
            **rec,
            site=self.site,
            url=response.url,
            fetched_at=fetched_at,
            content_sha256=content_sha256(rec.get("title"), rec.get("lead"), rec.get("body")),
            run_id=self.run_id,
            warc=warc,
            warnings=result.warnings,
        )
