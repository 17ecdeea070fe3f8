"""The ``portal`` spider: discovers a news portal's articles from its home page,
section listings (with pagination), RSS feeds and sitemaps, and turns each
article page into an :class:`~crawler.items.ArticleItem` through the site
profile (or a :class:`~crawler.items.QuarantineItem` with the reason).

Which hosts are crawled and what is an article are the profile's business
(``crawler/sites``); robots.txt is obeyed by Scrapy's RobotsTxtMiddleware; every
response, whatever its kind, is archived by the WARC capture middleware before
it reaches this spider.

Incremental mode (``NEWSARCHIVE_MODE``, the default): hub pages (home, listings,
feeds, sitemaps) are always fetched; an article URL goes through
:class:`crawler.incremental.IncrementalPolicy` (fetch if new, conditional re-check if
young or its sitemap ``<lastmod>`` moved, else skip), and a listing page whose article
links are all settled does not follow its pagination. Resuming after a kill needs no
JOBDIR: what the killed run did not publish is not known, so re-discovery from the
home page, listings and sitemaps fetches it again.

Memory stays flat with the portal's size (bench/ANALYSIS.md): the sitemaps list every
article, so their URLs are not all turned into Requests at once. Child sitemaps are read
two at a time and their entries wait here as ``(url, lastmod)`` strings; a first batch
of requests goes out when a sitemap is read, the next ones only when the scheduler runs
dry (``scheduler_empty``), so it holds tens of requests, not one per article. A distributed crawl (shared Redis frontier)
keeps the eager way: its reliability rule wants a response's follow-ups in the shared
queue before the response counts as done, and the queue is not in this process's memory.
Links are read from the blocks the profile names (:meth:`SiteProfile.link_regions`), not
from the menus and sidebars every page repeats.
"""

from __future__ import annotations

import gzip
import io
import re
from collections import OrderedDict, deque
from datetime import datetime, timezone
from urllib.parse import urldefrag, urljoin, urlsplit

import scrapy
from lxml import etree
from protego import Protego
from scrapy import signals
from scrapy.exceptions import DontCloseSpider, IgnoreRequest
from scrapy.linkextractors import IGNORED_EXTENSIONS, LinkExtractor
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.sitemap import Sitemap

from crawler.extract import extract_article
from crawler.fingerprints import UrlSet
from crawler.incremental import IncrementalPolicy
from crawler.items import ArticleItem, QuarantineItem, content_sha256
from crawler.layout import warc_key
from crawler.report import record_error
from crawler.requisites import css_requisites, html_requisites
from crawler.sites import get_profile

#: Feeds are pages to read here, not binaries to skip.
DENY_EXTENSIONS = [e for e in IGNORED_EXTENSIONS if e != "rss"]

#: Largest decompressed sitemap we read (bytes): a gzip bomb stops here.
SITEMAP_MAX_BYTES = 50 * 1024 * 1024

#: Listing pagination links (``/trang-2.html``, ``/page/2/``, ``?page=2``); a profile may
#: set its own ``pagination_re``.
PAGINATION_RE = re.compile(r"(?:/trang-\d+\.html|/page/\d+/?)$|[?&](?:page|p|trang)=\d+(?:&|$)", re.IGNORECASE)


#: Sitemap requests handed to the scheduler at a time when it runs dry (lazy feeding).
SITEMAP_FEED_BATCH = 64

#: Scheduler priority of the sitemaps themselves when fed lazily (pages: 0).
SITEMAP_PRIORITY = 10
#: Child sitemaps fetched at once when fed lazily, and the number of waiting entries
#: under which the next ones are fetched: two sitemaps' entries (``(url, lastmod)``
#: strings, about 250 bytes each) wait in memory at most.
SITEMAPS_IN_FLIGHT = 2
SITEMAP_LOW_WATER = 1000

#: Sitemap ``<lastmod>`` values kept for pages that may still be in flight (lazy feeding):
#: entries are fed only when the scheduler is empty, so a page linked elsewhere is either
#: answered already (``State.note_lastmod`` covers it) or among the last few hundred.
LASTMOD_MEMORY = 5000


def release_parsed(response) -> None:
    """Drop a response's decoded text and its lxml tree (Scrapy caches both on the
    response on first use); they are rebuilt if anything asks again. Scrapy keeps
    a response until its item is through the pipelines, and the tree is most of its
    memory: ~300 KiB for a 30 KiB article page, against ~100 KiB for the bytes and
    the text (bench/ANALYSIS.md)."""
    for name in ("_cached_selector", "_cached_ubody"):  # TextResponse's caches (Scrapy 2.19)
        if getattr(response, name, None) is not None:
            setattr(response, name, None)


class RecentDict(OrderedDict):
    """A dict that forgets its oldest entries beyond ``maxlen`` (memory: ``maxlen`` entries)."""

    def __init__(self, maxlen: int):
        super().__init__()
        self.maxlen = maxlen

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self.maxlen:
            self.popitem(last=False)


def _as_list(value) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return list(value)


class PortalSpider(scrapy.Spider):
    """Spider arguments (``-a`` or the CLI): ``site`` (profile name, default
    ``baotuyenquang``), ``start_urls`` and ``allowed_domains`` (comma-separated;
    default the profile's). Settings: ``NEWSARCHIVE_RUN_ID``, ``NEWSARCHIVE_MODE``
    (``incremental`` or ``full``), ``NEWSARCHIVE_RECHECK_DAYS`` (default 7)."""

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
        # A profile without hosts of its own (generic) stays on the start URLs' hosts.
        spider.allowed_domains = (spider._allowed_domains_arg or list(spider.profile.hosts)
                                  or sorted({urlsplit(u).hostname for u in spider.start_urls} - {None}))
        spider.run_id = s.get("NEWSARCHIVE_RUN_ID", "manual")
        spider.mode = s.get("NEWSARCHIVE_MODE", "incremental")
        spider.recheck_days = s.getfloat("NEWSARCHIVE_RECHECK_DAYS", 7.0)
        spider.pagination_re = getattr(spider.profile, "pagination_re", PAGINATION_RE)
        spider.policy = IncrementalPolicy(None, "full")  # replaced in start(), once the state is open
        spider._requested = UrlSet()  # article URLs requested in this run
        # Canonical URLs of the articles met, of those requested under some URL, and of
        # those incremental mode left out (and did not request under another URL): the
        # run report's counts, by article, as a portal links one under several URLs. A
        # distributed crawl's Coordinator unites them across its processes.
        spider.articles_met = UrlSet()
        spider.articles_fetched = UrlSet()
        spider.articles_skipped = UrlSet()
        # Lazy sitemap feeding (module docstring) unless the frontier is shared in Redis.
        spider.lazy_sitemaps = s.getbool(
            "NEWSARCHIVE_LAZY_SITEMAPS", not str(s.get("SCHEDULER") or "").startswith("crawler.distributed")
        )
        #: Child sitemap URLs not requested yet (lazy feeding), and sitemap requests in flight.
        spider._sitemap_urls: deque[str] = deque()
        spider._sitemaps_in_flight = 0
        #: ``(url, lastmod or None)`` of the sitemap read last, not yet fed (lazy feeding).
        spider._sitemap_entries: deque[tuple[str, str | None]] = deque()
        #: URL -> the sitemap's <lastmod>, for PageRecorderMiddleware whatever order the
        #: sitemap and the page arrive in (bounded when feeding lazily: LASTMOD_MEMORY).
        spider.sitemap_lastmods: dict[str, str] = RecentDict(LASTMOD_MEMORY) if spider.lazy_sitemaps else {}
        crawler.signals.connect(spider.on_spider_error, signals.spider_error)
        crawler.signals.connect(spider.on_item_error, signals.item_error)
        if spider.lazy_sitemaps:
            crawler.signals.connect(spider.on_scheduler_empty, signals.scheduler_empty)
            crawler.signals.connect(spider.on_spider_idle, signals.spider_idle)
            crawler.signals.connect(spider.on_request_dropped, signals.request_dropped)
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
        #: restrict_css selectors -> the link extractor for them (see page_links).
        spider._region_links: dict[tuple[str, ...], LinkExtractor] = {}
        return spider

    async def start(self):
        # The dedup stage opened the state (crawler.newsarchive_state) when the engine
        # was built; without it every URL is fetched.
        self.policy = IncrementalPolicy(
            getattr(self.crawler, "newsarchive_state", None),
            self.mode,
            self.recheck_days,
            canonicalize=self.profile.canonicalize_url,
        )
        seen_hosts = set()
        for url in self.start_urls:
            yield scrapy.Request(url, callback=self.parse, errback=self.on_error)
            root = "{0.scheme}://{0.netloc}".format(urlsplit(url))
            if root not in seen_hosts:
                seen_hosts.add(root)
                # robots.txt is fetched again here (Scrapy's robots middleware keeps
                # its copy to itself) only to read its Sitemap: lines.
                yield scrapy.Request(
                    root + "/robots.txt", callback=self.parse_robots, errback=self.on_error, dont_filter=True
                )

    def parse_robots(self, response):
        for sitemap_url in Protego.parse(response.text).sitemaps:
            url = urljoin(response.url, sitemap_url)
            if self.lazy_sitemaps:
                self._sitemap_urls.append(url)
            else:
                yield scrapy.Request(url, callback=self.parse_sitemap, errback=self.on_error)
        if self.lazy_sitemaps:
            # The sitemaps are read from the start, as they were when fed eagerly, so
            # their <lastmod> values are known for the pages fetched early.
            yield from self.sitemap_requests(SITEMAP_FEED_BATCH)

    # ------------------------------------------------------------ sitemap feeding
    def sitemap_requests(self, limit: int):
        """Up to ``limit`` page requests from the sitemap entries waiting here (lazy
        feeding), preceded by requests for the next child sitemaps while fewer than
        ``SITEMAPS_IN_FLIGHT`` are being fetched and fewer than ``SITEMAP_LOW_WATER``
        entries wait: a few sitemaps' entries in memory at most, whatever the portal's
        size."""
        fed = 0
        while fed < limit:
            if (self._sitemap_urls and self._sitemaps_in_flight < SITEMAPS_IN_FLIGHT
                    and len(self._sitemap_entries) < SITEMAP_LOW_WATER):
                self._sitemaps_in_flight += 1
                # Ahead of the pages waiting, so the sitemaps' <lastmod> values are known
                # for the pages fetched early (as when every sitemap was read at once).
                yield scrapy.Request(self._sitemap_urls.popleft(), callback=self.parse_sitemap,
                                     errback=self.on_error, meta={"sitemap_feed": True}, priority=SITEMAP_PRIORITY)
            elif self._sitemap_entries:
                url, lastmod = self._sitemap_entries.popleft()
                request = self.sitemap_entry_request(url, lastmod)
                if request is not None:
                    fed += 1
                    yield request
            else:
                return

    def feed_sitemaps(self) -> int:
        """Hand the scheduler a batch of sitemap requests; how many."""
        n = 0
        for request in self.sitemap_requests(SITEMAP_FEED_BATCH):
            self.crawler.engine.crawl(request)
            n += 1
        return n

    def on_scheduler_empty(self):
        # Sent when the downloader has room and the scheduler had nothing to give.
        self.feed_sitemaps()

    def on_spider_idle(self, spider):
        # Nothing is in flight any more: a sitemap request that vanished without a
        # callback or errback (none should) cannot be waited for.
        self._sitemaps_in_flight = 0
        if self.feed_sitemaps():
            raise DontCloseSpider

    def on_request_dropped(self, request, spider):
        # The dupefilter dropped a child sitemap already read: the next one may go.
        if request.meta.get("sitemap_feed"):
            self._sitemaps_in_flight = max(0, self._sitemaps_in_flight - 1)

    def sitemap_entry_request(self, url: str, lastmod: str | None) -> scrapy.Request | None:
        """The request for one sitemap ``<url>`` entry (None when incremental mode skips
        it); its ``<lastmod>`` is noted for PageRecorderMiddleware and, for a page this
        run fetched already, in the state."""
        if lastmod and self.profile.is_article_url(url):
            request_url = scrapy.Request(url).url
            self.sitemap_lastmods[request_url] = lastmod
            state = getattr(self.crawler, "newsarchive_state", None)
            if state is not None:
                # For a page this run fetched before reading the sitemap.
                state.note_lastmod(request_url, lastmod, self.run_id)
        return self.follow(url, lastmod)

    # ------------------------------------------------------------------ scheduling
    def follow(self, url: str, lastmod: str | None = None, callback=None) -> scrapy.Request | None:
        """The request for a discovered URL, or None when incremental mode skips it
        (a known article that is not due for a re-check). ``lastmod``: the sitemap's
        ``<lastmod>`` for it."""
        request = scrapy.Request(url, callback=callback or self.parse, errback=self.on_error)
        if not self.profile.is_article_url(request.url):
            return request
        stats = self.crawler.stats
        canonical = self.profile.canonicalize_url(request.url)
        self.articles_met.add(canonical)
        stats.set_value("newsarchive/discovery/article_urls", len(self.articles_met))
        if request.url in self._requested:
            return None  # the scheduler's duplicate filter would drop it anyway
        decision = self.policy.decide(request.url, lastmod)
        if not decision.fetch:
            # Skipped for now; a sitemap <lastmod> met later may still fetch it.
            if canonical not in self.articles_fetched:
                self.articles_skipped.add(canonical)
                stats.set_value("newsarchive/incremental/skipped", len(self.articles_skipped))
            return None
        self._requested.add(request.url)
        self.articles_fetched.add(canonical)
        if canonical in self.articles_skipped:
            self.articles_skipped.discard(canonical)
            stats.set_value("newsarchive/incremental/skipped", len(self.articles_skipped))
        stats.inc_value(f"newsarchive/incremental/fetch/{decision.reason}")
        meta = {}
        if decision.headers:
            meta["handle_httpstatus_list"] = [304]  # "not modified" is an answer, not an error
        return request.replace(headers=decision.headers, meta=meta)

    def is_pagination(self, url: str) -> bool:
        return bool(self.pagination_re.search(url))

    def on_error(self, failure):
        """Errback of every request: failures go to the run report with their URL;
        policy refusals (robots.txt, off-site) are not errors."""
        request = failure.request
        if request.meta.get("sitemap_feed"):
            self._sitemaps_in_flight = max(0, self._sitemaps_in_flight - 1)
        # Distributed crawl: a failed request is finished (it yields nothing).
        done = getattr(self.crawler, "newsarchive_request_done", None)
        if done is not None:
            done(request)
        if failure.check(HttpError):
            kind = f"http_{failure.value.response.status}"
        elif failure.check(IgnoreRequest):
            message = str(failure.value)
            if "max redirections" in message:
                kind = "redirect_limit"  # a chain over REDIRECT_MAX_TIMES (a loop is redirect_loop)
            elif "DOWNLOAD_MAXSIZE" in message:
                kind = "download_maxsize"  # an oversized body (archived truncated), or a gzip bomb
            else:
                return
        else:
            kind = failure.type.__name__
        # A redirect chain is reported under the URL that started it.
        record_error(self.crawler.stats, kind, (request.meta.get("redirect_urls") or [request.url])[0])

    def on_spider_error(self, failure, response, spider):
        record_error(self.crawler.stats, f"spider_{failure.type.__name__}", getattr(response, "url", None))

    def on_item_error(self, item, response, spider, failure):
        record_error(self.crawler.stats, f"item_{failure.type.__name__}", getattr(response, "url", None))

    def parse_sitemap(self, response):
        """A sitemap index or urlset (gzip or not). Feeding lazily, its child sitemaps and
        entries wait here for :meth:`sitemap_requests`; otherwise they are requested now."""
        if response.meta.get("sitemap_feed"):
            self._sitemaps_in_flight = max(0, self._sitemaps_in_flight - 1)
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
        index = sitemap.type == "sitemapindex"
        for entry in sitemap:
            loc = entry.get("loc")
            if not loc:
                continue
            url = self.request_url(urljoin(response.url, loc))
            if index:
                if self.lazy_sitemaps:
                    self._sitemap_urls.append(url)
                else:
                    yield scrapy.Request(url, callback=self.parse_sitemap, errback=self.on_error)
                continue
            lastmod = (entry.get("lastmod") or "").strip() or None
            if self.lazy_sitemaps:
                self._sitemap_entries.append((url, lastmod))
                continue
            request = self.sitemap_entry_request(url, lastmod)
            if request is not None:
                yield request
        if self.lazy_sitemaps:
            # A first batch now (then the next child sitemap, if this one is used up);
            # the rest when the scheduler runs dry.
            yield from self.sitemap_requests(SITEMAP_FEED_BATCH)

    def parse(self, response):
        try:
            yield from self._parse(response)
        finally:
            release_parsed(response)

    def _parse(self, response):
        if response.status == 304:
            return  # unchanged since the last fetch; PageRecorderMiddleware noted it
        ctype = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
        url = response.url
        if "rss" in ctype or url.endswith(".rss") or ("xml" in ctype and b"<rss" in response.body[:512]):
            yield from self.parse_feed(response)
            return
        if "xml" in ctype:
            yield from self.parse_sitemap(response)
            return
        if self.profile.is_article_url(url):
            item = self.article(response)
            if item is not None:
                yield item
            yield from self.page_requisites(response)
        if isinstance(response, scrapy.http.HtmlResponse):
            urls = self.page_links(response)
            # Listings are newest first: once a whole page holds only settled
            # articles, the section's older pages hold nothing new either.
            stop = (
                self.policy.incremental
                and not self.profile.is_article_url(url)
                and all(self.policy.is_settled(u) for u in urls if self.profile.is_article_url(u))
            )
            for link_url in urls:
                if stop and self.is_pagination(link_url):
                    self.crawler.stats.inc_value("newsarchive/incremental/pagination_stopped")
                    continue
                request = self.follow(link_url)
                if request is not None:
                    yield request

    def page_links(self, response) -> list[str]:
        """URLs to follow from an HTML page: ``<a>``/``<area>`` links in the profile's
        link regions (the whole page when it names none or none is on the page), plus
        ``<link rel="alternate">`` from anywhere."""
        extractor = self.links
        regions = self.profile.link_regions(response.url)
        if regions:
            if response.css(", ".join(regions)):
                extractor = self._region_links.get(regions)
                if extractor is None:
                    extractor = self._region_links[regions] = LinkExtractor(
                        allow_domains=self.allowed_domains,
                        tags=("a", "area"),
                        attrs=("href",),
                        deny_extensions=DENY_EXTENSIONS,
                        restrict_css=regions,
                    )
            else:
                # Another template (or a redesign): every link rather than none.
                self.crawler.stats.inc_value("newsarchive/links/whole_page")
        return [
            self.request_url(link.url)
            for ex in (extractor, self.alternates)
            for link in ex.extract_links(response)
        ]

    def page_requisites(self, response):
        """Requests for an article page's same-site images, stylesheets and
        scripts (``WARC_PAGE_REQUISITES``), so the archived page replays as it
        looked. They are archived only: :meth:`parse_requisite` never makes
        items or follows links. Each is fetched once: the dupefilter within a
        run, the WARC middleware across runs (``WARC_REQUISITES_REFETCH``)."""
        if not self.settings.getbool("WARC_PAGE_REQUISITES", True) or not isinstance(
            response, scrapy.http.HtmlResponse
        ):
            return
        for url in html_requisites(response.url, response.body, self.allowed_domains):
            yield self.requisite_request(url)

    def requisite_request(self, url: str) -> scrapy.Request:
        # Below pages in priority: replay needs them, the dataset does not.
        return scrapy.Request(
            self.request_url(url), callback=self.parse_requisite, errback=self.on_error, priority=-10,
            meta={"page_requisite": True},
        )

    def parse_requisite(self, response):
        """A requisite is archived by the WARC middleware; a stylesheet's own
        same-site ``url()``/``@import`` references are requisites too."""
        ctype = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
        if ctype.startswith("text/css") or (not ctype and response.url.endswith(".css")):
            for url in css_requisites(response.url, response.body, self.allowed_domains):
                yield self.requisite_request(url)

    def request_url(self, url: str) -> str:
        """The URL to fetch for a link: as linked (tracking parameters included, so
        every address of an article is seen), but on https for a profile whose
        hosts serve https only (``force_https``). The fragment is dropped: it is never
        sent, and the incremental state knows a page by the URL it requested."""
        url = urldefrag(url)[0]
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
                request = self.follow(self.request_url(urljoin(response.url, link.text.strip())))
                if request is not None:
                    yield request

    def article(self, response) -> ArticleItem | QuarantineItem | None:
        """The item for an article page: parsed by the profile, with the page's WARC
        pointer; a page the profile cannot turn into a record is quarantined. None for a
        page that is not an article when the profile's URL rule is only a guess
        (``url_decides_article`` False, the generic profile): counted, not quarantined."""
        pointer = response.meta.get("warc")
        # The response record's WARC-Date is when the page was fetched; a page
        # replayed from WARC (``reprocess``) keeps the time of its original fetch.
        # For a revisit, the fetch is the revisit record's, not the original's.
        dated = (pointer.get("revisit") or pointer) if pointer else {}
        when = datetime.fromisoformat(dated["warc_date"]) if dated.get("warc_date") else None
        fetched_at = (when or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
        warc = None
        if pointer:
            warc = {"file": warc_key(pointer["file"]), "offset": pointer["offset"], "length": pointer["length"]}
        ctype = response.headers.get(b"Content-Type", b"").decode("latin-1") or None
        result = extract_article(self.profile, response.url, response.body, ctype)
        for warning in result.warnings:
            self.crawler.stats.inc_value(f"newsarchive/extract/warning/{warning}")
        if result.quarantine == "not_an_article" and not self.profile.url_decides_article:
            self.crawler.stats.inc_value("newsarchive/extract/not_an_article_page")
            return None
        if result.record is None:
            self.crawler.stats.inc_value(f"newsarchive/extract/quarantine/{result.quarantine}")
            return QuarantineItem(
                reason=result.quarantine,
                url=response.url,
                article_id=self.profile.article_id(response.url),
                detail=result.detail,
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
