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
NEWSARCHIVE_CONTACT_URL = "https://github.com/newsarchive/newsarchive"

# --- politeness --------------------------------------------------------------
USER_AGENT = f"newsarchive/{__version__} (+{NEWSARCHIVE_CONTACT_URL}; archival crawler)"
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 1.0                   # the portal's robots.txt asks Crawl-delay: 1
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

# --- components ----------------------------------------------------------------
DOWNLOADER_MIDDLEWARES = {
    # Above HttpCompressionMiddleware (590) and below Redirect (600) in response
    # order: sees the bytes as sent, and every redirect.
    "crawler.middlewares.warc_capture.WarcCaptureMiddleware": 650,
}
EXTENSIONS = {
    "crawler.extensions.warc_upload.WarcUploadExtension": 500,
}
ITEM_PIPELINES = {
    "pipelines.clean.CleanPipeline": 100,
    "pipelines.validate.ValidatePipeline": 200,
    "pipelines.dedup.DedupPipeline": 300,
    "pipelines.publish.PublishPipeline": 900,
}

WARC_ENABLED = True
WARC_PREFIX = "NEWSARCHIVE"
WARC_MAX_SIZE = 1_000_000_000
WARC_OPERATOR = ""
WARC_PAGE_REQUISITES = True            # same-site images/CSS/JS of article pages, for replay
WARC_REVISITS = True                   # revisit records for payloads already archived

LOG_LEVEL = "INFO"
