"""Scrapy settings of newsarchive: production defaults that also work offline.

Every value can be overridden with ``-s NAME=VALUE`` (``scrapy crawl`` or
``newsarchive crawl``). Proxies come from the standard ``http_proxy`` /
``https_proxy`` environment variables (HttpProxyMiddleware).
"""

from crawler import __version__

BOT_NAME = "newsarchive"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

# --- newsarchive -----------------------------------------------------------
NEWSARCHIVE_SITE = "baotuyenquang"
NEWSARCHIVE_STORE = "archive"          # folder, file:// or s3://bucket/prefix
NEWSARCHIVE_STATE_DIR = "state"
NEWSARCHIVE_RUN_ID = "manual"
NEWSARCHIVE_BATCH_SIZE = 500
NEWSARCHIVE_BATCH_SECONDS = 60        # publish records that waited this long
NEWSARCHIVE_STORE_RETRY_SECONDS = 300  # after a store failure, batches wait in the spool this long
# S3 (crawler/store.py store_options): retries, encryption, storage class, multipart.
NEWSARCHIVE_S3_RETRY_MODE = "standard"  # or "adaptive" (botocore)
NEWSARCHIVE_S3_MAX_ATTEMPTS = 5
NEWSARCHIVE_S3_SSE = ""                # e.g. "AES256" or "aws:kms"; empty: the bucket's default
NEWSARCHIVE_S3_SSE_KMS_KEY_ID = ""
NEWSARCHIVE_S3_STORAGE_CLASS = ""      # e.g. "STANDARD_IA"; empty: STANDARD
NEWSARCHIVE_S3_MULTIPART_THRESHOLD = 8 * 1024 * 1024
NEWSARCHIVE_CONTACT_URL = "https://github.com/newsarchive/newsarchive"
NEWSARCHIVE_MODE = "incremental"       # or "full" (README, "Incremental crawls")
NEWSARCHIVE_RECHECK_DAYS = 7           # known articles younger than this are re-checked
NEWSARCHIVE_STATE_URL = ""             # empty: <state dir>/state.sqlite
NEWSARCHIVE_NEARDUP_THRESHOLD = 0.7    # estimated Jaccard similarity (crawler/neardup.py)
NEWSARCHIVE_SHINGLE_SIZE = 5           # words per shingle
NEWSARCHIVE_OBEY_CRAWL_DELAY = True    # robots.txt Crawl-delay as the per-host delay floor
NEWSARCHIVE_MAX_CRAWL_DELAY = 60.0
# Helper processes (CPU worker, WARC writer) run this much nicer than the crawl, so
# the reactor thread never queues behind them for a core (crawler/priority.py).
NEWSARCHIVE_HELPER_NICE = 10
NEWSARCHIVE_MALLOC_TRIM_SECONDS = 10.0   # give freed C-heap pages back (crawler/extensions/malloc_trim.py)

# --- politeness --------------------------------------------------------------
# The CLI rebuilds it from NEWSARCHIVE_CONTACT_URL when only the contact is overridden.
USER_AGENT_TEMPLATE = "newsarchive/{version} (+{contact}; archival crawler)"
USER_AGENT = USER_AGENT_TEMPLATE.format(version=__version__, contact=NEWSARCHIVE_CONTACT_URL)
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 1.0                   # floor; robots.txt Crawl-delay raises it per host
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
# Scrapy starts this many tasks for every callback's output (default 100); a page
# gives one article and its links, so 100 tasks per page were pure overhead (5 % of
# the crawl's CPU, bench/ANALYSIS.md).
CONCURRENT_ITEMS = 8
RETRY_TIMES = 2
REDIRECT_MAX_TIMES = 5
DOWNLOAD_MAXSIZE = 32 * 1024 * 1024
DOWNLOAD_WARNSIZE = 8 * 1024 * 1024

# Scrapy 2.18+ advertises zstd, which warcio and pywb cannot decode; archived
# responses must stay replayable.
DEFAULT_REQUEST_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "vi,en;q=0.5",
    "Accept-Encoding": "gzip, deflate, br",
}

# A news archive needs no session cookies, and the cookie middleware's public
# suffix lookup (tldextract) tries the network on first use.
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
# Scrapy 2.19's remote control runs code sent to a local HTTP port (token-guarded);
# a cron crawler needs no such door.
REMOTE_CONTROL_ENABLED = False

# --- components ----------------------------------------------------------------
DOWNLOADER_MIDDLEWARES = {
    # Before robots.txt (100): a private address is not even asked for robots.txt.
    "crawler.middlewares.ssrf_guard.SsrfGuardMiddleware": 60,
    # Scrapy's, but every request that waits for robots.txt is checked against it
    # (Scrapy 2.19 lets all but the first waiter through; crawler/middlewares/robotstxt.py).
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawler.middlewares.robotstxt.RobotsTxtMiddleware": 100,
    # After RobotsTxtMiddleware (100): robots.txt Crawl-delay per host.
    "crawler.middlewares.politeness.CrawlDelayMiddleware": 120,
    # Between WARC capture and RedirectMiddleware (600): every article URL's answer
    # (each redirect hop too) goes into the incremental state.
    "crawler.incremental.PageRecorderMiddleware": 640,
    # Above HttpCompressionMiddleware (590) and below Redirect (600) in response
    # order: sees the bytes as sent, and every redirect.
    "crawler.middlewares.warc_capture.WarcCaptureMiddleware": 650,
    # Just after WARC capture in response order: a body stopped at DOWNLOAD_MAXSIZE is
    # archived (WARC-Truncated: length), then dropped before anything parses it.
    "crawler.middlewares.maxsize.MaxsizeTruncationMiddleware": 645,
    # Just before RedirectMiddleware (600): a redirect back into its own chain is a
    # loop, reported (the dupefilter would drop it silently).
    "crawler.middlewares.redirect_loop.RedirectLoopMiddleware": 610,
}
EXTENSIONS = {
    "crawler.extensions.warc_upload.WarcUploadExtension": 500,
    "crawler.extensions.malloc_trim.MallocTrimExtension": 510,
}
# Scrapy's request dupefilter, its seen fingerprints at 16 bytes a request
# (crawler/fingerprints.py); --redis replaces it with the shared one.
DUPEFILTER_CLASS = "crawler.fingerprints.CompactDupeFilter"
ITEM_PIPELINES = {
    "pipelines.clean.CleanPipeline": 100,
    "pipelines.validate.ValidatePipeline": 200,
    "pipelines.dedup.DedupPipeline": 300,
    # Full record schema on every record about to be published (pipelines/validate.py).
    "pipelines.validate.RecordGatePipeline": 850,
    "pipelines.publish.PublishPipeline": 900,
}

WARC_ENABLED = True
WARC_PREFIX = "NEWSARCHIVE"
WARC_MAX_SIZE = 1_000_000_000
WARC_OPERATOR = ""
WARC_PAGE_REQUISITES = True            # same-site images/CSS/JS of article pages, for replay
WARC_REVISITS = True                   # revisit records for payloads already archived

LOG_LEVEL = "INFO"

# The item stages above run in a process of their own (crawler/item_process.py) when
# the machine has more than one CPU ("auto"), unless set False; ``newsarchive crawl``
# moves them there (NEWSARCHIVE_ITEM_STAGES) at start. Items the crawl may hand over
# before it waits for the stages to catch up:
NEWSARCHIVE_ITEM_PROCESS = "auto"
NEWSARCHIVE_ITEM_PROCESS_BACKLOG = 200
