"""Dedup stage: one article under several URLs, the canonical page winning, and
versions across runs with the state kept on disk (SQLite)."""

from __future__ import annotations

from scrapy.statscollectors import MemoryStatsCollector

from crawler.items import ArticleItem, content_sha256
from crawler.sites import get_profile
from pipelines.dedup import DedupPipeline
from pipelines.publish import PublishPipeline

CANON = "https://baotuyenquang.com.vn/chinh-tri/thoi-su/chuan-bi-chu-dao-dai-hoi-dang-bo-cap-co-so-nhiem-ky-2020-2025-132450.html"
ALIASES = [
    CANON + "?fbclid=IwAR2Zk8Qx0vT3Lr6pFhYw1mN4cB7dE9sJ2aU5oK8gH1iV3xZ0qR6tY4uP7wS",
    CANON + "?zarsrc=31&utm_source=zalo&utm_medium=zalo&utm_campaign=zalo",
    CANON.replace("/thoi-su/", "/xay-dung-dang/"),
    CANON.replace("//baotuyenquang", "//m.baotuyenquang"),
]


class _Crawler:
    def __init__(self, tmp_path):
        from scrapy.settings import Settings

        self.settings = Settings({"NEWSARCHIVE_STATE_DIR": str(tmp_path), "NEWSARCHIVE_SITE": "baotuyenquang"})
        self.stats = MemoryStatsCollector(self)


def item(url, title="Chuẩn bị chu đáo", body=("Đoạn một.", "Đoạn hai."), section=("Chính trị", "Thời sự")):
    return ArticleItem(
        article_id="132450", url=url, canonical_url=CANON, title=title, lead="Sapo.", body=list(body),
        section=list(section), content_sha256=content_sha256(title, "Sapo.", list(body)),
    )


def open_pipeline(tmp_path):
    crawler = _Crawler(tmp_path)
    pipeline = DedupPipeline.from_crawler(crawler)
    pipeline.open_spider()
    return pipeline, crawler.stats


def test_one_article_under_five_urls_gives_one_new_and_four_duplicates(tmp_path):
    dedup, stats = open_pipeline(tmp_path)
    outcomes = [dedup.process_item(item(u))["dedup"]["status"] for u in [ALIASES[2], CANON, *ALIASES[:2], ALIASES[3]]]
    assert outcomes == ["new", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert dedup.state.urls_of(get_profile("baotuyenquang").canonicalize_url(CANON)) == sorted([CANON, *ALIASES])
    assert stats.get_value("newsarchive/dedup/new") == 1


def test_the_canonical_page_replaces_an_alternate_page_in_the_batch(tmp_path):
    dedup, stats = open_pipeline(tmp_path)
    publisher = PublishPipeline("unused", "R", 500, "baotuyenquang", stats)
    publisher.add_article(dedup.process_item(item(ALIASES[2], section=("Chính trị", "Xây dựng Đảng"))))
    publisher.add_article(dedup.process_item(item(CANON)))
    (record,) = publisher.records.values()
    assert record["section"] == ["Chính trị", "Thời sự"]
    assert record["url"] == CANON
    assert record["urls"] == sorted([CANON, ALIASES[2]])


def test_same_text_under_another_canonical_url_is_a_duplicate(tmp_path):
    dedup, _ = open_pipeline(tmp_path)
    dedup.process_item(item(CANON))
    other = item("https://baotuyenquang.com.vn/copy-999.html")
    other["canonical_url"] = "https://baotuyenquang.com.vn/copy-999.html"
    assert dedup.process_item(other)["dedup"]["status"] == "duplicate"


def test_versions_across_runs(tmp_path):
    dedup, _ = open_pipeline(tmp_path)
    first = dedup.process_item(item(CANON))
    assert (first["dedup"]["status"], first["version"]) == ("new", 1)
    dedup.close_spider()

    dedup, _ = open_pipeline(tmp_path)  # a later run, same state directory
    assert dedup.process_item(item(CANON))["dedup"]["status"] == "duplicate"
    changed = dedup.process_item(item(CANON, body=("Đoạn một.", "Đoạn hai, đã sửa.")))
    assert changed["dedup"]["status"] == "updated"
    assert changed["version"] == 2
    assert changed["previous_sha256"] == first["content_sha256"]
    # A stale alternate URL with other text is not a third version.
    stale = dedup.process_item(item(ALIASES[3], body=("Cũ.",)))
    assert stale["dedup"]["status"] == "duplicate"
