"""newsarchive: Scrapy crawler and archival pipeline for the Tuyên Quang news portal."""

__version__ = "0.1.0"
