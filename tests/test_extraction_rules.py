"""Extraction rules on synthetic pages of the portal's template: the fallback chain for
fields the profile misses, dates never guessed, modified_at, soft 404s, cleaning inside
the content block, bylines and charsets."""

from __future__ import annotations

import pytest

from crawler.bylines import parse_byline
from crawler.encoding import decode_html
from crawler.extract import extract_article
from crawler.sites import get_profile

PROFILE = get_profile("baotuyenquang")
URL = "https://baotuyenquang.com.vn/xa-hoi/giao-duc/bai-thu-nghiem-190001.html"
LD_TEMPLATE = ('<script type="application/ld+json">{{"@context": "https://schema.org", "@type": "NewsArticle", '
               '"headline": "Tiêu đề JSON-LD", "datePublished": "{published}", "dateModified": "{modified}", '
               '"author": {{"@type": "Person", "name": "{author}"}}, "articleSection": "Giáo dục"}}</script>')


def page(*, head: str = "", title: str | None = "Học sinh Tuyên Quang khai giảng",
         date: str | None = "Ngày xuất bản: 05/09/2023 07:30:00 SA", content: str | None = None,
         sapo: str = "Sáng 5/9, hơn 200 nghìn học sinh bước vào năm học mới.") -> bytes:
    """An article page in the desktop template; ``None`` leaves a block out."""
    if content is None:
        content = ('<p>Tại Trường THPT Chuyên, lễ khai giảng diễn ra trang trọng.</p>'
                   '<p style="text-align: right;"><strong>Ngọc Hà</strong></p>')
    parts = [f"<html lang='vi'><head><meta charset='utf-8'>{head}</head><body>",
             "<div class='breadcrumb'><a itemprop='name'>Trang chủ</a><a itemprop='name'>Xã hội</a>"
             "<a itemprop='name'>Giáo dục</a></div><div class='detail-main'>"]
    if title is not None:
        parts.append(f"<h1 class='title-detail'>{title}</h1>")
    if date is not None:
        parts.append(f"<span class='date-detail'>{date}</span>")
    parts.append(f"<div class='sapo-detail'><strong>{sapo}</strong></div><div class='content-detail'>{content}</div>")
    parts.append("<div class='box-tags'><a>Giáo dục</a></div></div></body></html>")
    return "".join(parts).encode("utf-8")


def run(body: bytes, ctype: str = "text/html; charset=utf-8"):
    return extract_article(PROFILE, URL, body, ctype)


def ld(published="2023-09-05T07:30:00+07:00", modified="2023-09-05T07:30:00+07:00", author="Ngọc Hà") -> str:
    return LD_TEMPLATE.format(published=published, modified=modified, author=author)


# ---------------------------------------------------------------- fallback for missed fields


def test_profile_fields_win_and_say_so() -> None:
    ex = run(page(head=ld(author="Người Khác")))
    rec = ex.record
    assert rec["title"] == "Học sinh Tuyên Quang khai giảng" and rec["authors"] == ["Ngọc Hà"]
    assert rec["published_at"] == "2023-09-05T07:30:00+07:00"
    assert rec["extracted_by"] == {
        "title": "profile", "lead": "profile", "body": "profile", "authors": "profile", "source": "profile",
        "published_at": "profile", "modified_at": "json-ld", "images": "profile", "tags": "profile",
        "section": "profile", "language": "profile",
    }
    assert "json_ld_headline_disagrees_with_page" in ex.warnings


def test_missing_headline_and_byline_come_from_json_ld() -> None:
    content = "<p>Tại Trường THPT Chuyên, lễ khai giảng diễn ra trang trọng.</p>"
    rec = run(page(head=ld(author="Theo TTXVN"), title=None, content=content)).record
    assert rec["title"] == "Tiêu đề JSON-LD" and rec["extracted_by"]["title"] == "json-ld"
    assert (rec["authors"], rec["source"]) == ([], "TTXVN")
    assert rec["extracted_by"]["authors"] == rec["extracted_by"]["source"] == "json-ld"


def test_missing_title_everywhere_is_no_title() -> None:
    assert run(page(title=None)).quarantine == "no_title"


def test_missing_date_line_comes_from_metadata() -> None:
    rec = run(page(head=ld(published="2023-09-05T07:30:00+07:00"), date=None)).record
    assert rec["published_at"] == "2023-09-05T07:30:00+07:00"
    assert rec["extracted_by"]["published_at"] == "json-ld"
    og = '<meta property="article:published_time" content="2023-09-05T00:30:00Z">'
    rec = run(page(head=og, date=None)).record
    assert rec["published_at"] == "2023-09-05T07:30:00+07:00"
    assert rec["extracted_by"]["published_at"] == "opengraph"


def test_unreadable_date_line_is_reported_not_replaced() -> None:
    """The page shows a date that cannot be read: JSON-LD's (12-hour-buggy on this CMS,
    F26) is not used instead; the quarantine detail names what was shown."""
    ex = run(page(head=ld(), date="Ngày xuất bản: hôm qua lúc 7 giờ"))
    assert ex.record is None and ex.quarantine == "unreadable_date"
    assert "published_at: page: 'Ngày xuất bản: hôm qua lúc 7 giờ'" in ex.detail


def test_no_date_anywhere_is_unreadable_date() -> None:
    assert run(page(date=None)).quarantine == "unreadable_date"


# ---------------------------------------------------------------- modified_at


def test_modified_at_from_json_ld() -> None:
    rec = run(page(head=ld(published="2023-09-05T07:30:00+07:00", modified="2023-09-06T10:00:00+07:00"))).record
    assert rec["modified_at"] == "2023-09-06T10:00:00+07:00"


def test_modified_equal_to_published_in_json_ld_takes_the_page_clock() -> None:
    """186915-style CMS bug: JSON-LD says 12:05 for both dates, the page 12:05 SA."""
    head = ld(published="2023-09-05T12:05:00+07:00", modified="2023-09-05T12:05:00+07:00")
    rec = run(page(head=head, date="Ngày xuất bản: 05/09/2023 12:05:00 SA")).record
    assert rec["published_at"] == rec["modified_at"] == "2023-09-05T00:05:00+07:00"


def test_modified_before_published_is_dropped_with_a_warning() -> None:
    og = '<meta property="article:modified_time" content="2020-01-01T00:00:00+07:00">'
    ex = run(page(head=og))
    assert ex.record["modified_at"] is None and "modified_before_published" in ex.warnings


def test_no_modified_date_is_null() -> None:
    rec = run(page()).record
    assert rec["modified_at"] is None and rec["extracted_by"]["modified_at"] is None


# ---------------------------------------------------------------- soft 404


@pytest.mark.parametrize("headline", ["Bài viết không tồn tại hoặc đã bị xóa", "Không tìm thấy trang",
                                      "404 - Not Found", "Lỗi 404", "Page not found"])
def test_soft_404_article_template(headline: str) -> None:
    body = page(title=headline, sapo="", content="<p>Mời bạn đọc các tin khác.</p>")
    assert run(body).quarantine == "soft_404"


def test_soft_404_error_markup_without_template() -> None:
    body = (b"<html><head><title>Tin tuc</title></head><body><div class='page-404'><p>Trang ban tim "
            b"khong co.</p></div></body></html>")
    assert run(body).quarantine == "soft_404"


def test_articles_that_mention_not_found_words_are_articles() -> None:
    long_body = "".join(f"<p>Đoạn {i}: hồ sơ cho thấy doanh nghiệp không tồn tại trên thực tế, cơ quan chức năng "
                        f"đang xác minh.</p>" for i in range(6))
    for headline in ("404 hộ dân được hỗ trợ làm nhà", "Không tồn tại doanh nghiệp ma trên địa bàn"):
        ex = run(page(title=headline, content=long_body))
        assert ex.record is not None and ex.record["title"] == headline, (headline, ex)


# ---------------------------------------------------------------- cleaning in the content block


def test_content_block_cleaning() -> None:
    content = (
        "<p>&nbsp;</p><p>Tại\u200b Trường&nbsp;THPT &amp; THCS, l&agrave;n s&oacute;ng “vui”\u00ad.</p>"
        "<div class='box-share'><a href='https://www.facebook.com/sharer/sharer.php?u=x'>Chia sẻ</a></div>"
        "<table class='image center'><tr><td><img src='/media/images/2023/09/a.jpg'></td></tr>"
        "<tr><td class='image_desc'><em>Học sinh dự lễ.</em></td></tr></table>"
        "<p>\u00a0</p><p>" + "e\u0302\u0301".join(["Ti", "p theo"]) + "</p>"
        "<div class='box-related'><a href='/x-123456.html'>Tin liên quan khác</a></div>"
        "<p style='text-align: right;'><em>Tin, ảnh: Thu Hà</em></p>"
    )
    rec = run(page(content=content)).record
    assert rec["body"] == ["Tại Trường THPT & THCS, làn sóng “vui”.", "Tiếp theo"]
    assert rec["images"] == [{"url": "https://baotuyenquang.com.vn/media/images/2023/09/a.jpg", "caption": "Học sinh dự lễ."}]
    assert rec["authors"] == ["Thu Hà"] and rec["source"] is None
    assert rec["text"] == "Tại Trường THPT & THCS, làn sóng “vui”.\n\nTiếp theo" and rec["word_count"] == 10


# ---------------------------------------------------------------- bylines and charsets


@pytest.mark.parametrize(
    ("byline", "authors", "source"),
    [("Tin, ảnh: Minh Đức", ["Minh Đức"], None), ("Tin và ảnh: Minh Đức", ["Minh Đức"], None),
     ("Bài, ảnh: Hà Huế", ["Hà Huế"], None), ("Thu Hà - Minh Đức", ["Thu Hà", "Minh Đức"], None),
     ("Nhóm PV", ["Nhóm PV"], None), ("Theo TTXVN", [], "TTXVN"), ("(TTV)", [], "TTV"),
     ("Thanh Hà (TTV)", ["Thanh Hà"], "TTV")],
)
def test_byline_variants_in_pages(byline: str, authors: list[str], source: str | None) -> None:
    """Every F24 variant, through the page (right-aligned last paragraph), not only the
    parser."""
    assert parse_byline(byline) == (authors, source)
    content = f"<p>Nội dung bài.</p><p align='right'><b>{byline}</b></p>"
    rec = run(page(content=content)).record
    assert (rec["authors"], rec["source"]) == (authors, source)
    assert byline not in rec["body"]


def test_charset_labelled_utf8_but_cyrillic_cp1251_is_detected() -> None:
    text = "Добро пожаловать на сайт новостей. Сегодня в городе прошёл праздник. " * 5
    body = f"<html><head><meta charset='utf-8'></head><body><p>{text}</p></body></html>".encode("cp1251")
    d = decode_html(body, "text/html; charset=utf-8")
    assert d.encoding == "cp1251" and d.warnings == ["charset_mismatch", "charset_detected"]
    assert text.strip() in d.text


def test_charset_page_cut_mid_character_stays_utf8() -> None:
    d = decode_html("<p>Cá lă".encode()[:-1], "text/html; charset=utf-8")
    assert d.encoding == "utf-8" and d.warnings == ["decode_errors"]


def test_charset_bom_then_header_iso_8859_1_over_utf8() -> None:
    body = page()
    assert decode_html(b"\xef\xbb\xbf" + body, "text/html; charset=windows-1252").encoding == "utf-8"
    rec = run(body, "text/html; charset=iso-8859-1").record
    assert rec["title"] == "Học sinh Tuyên Quang khai giảng"
