"""Unit tests of the text rules: normalisation (F07/F08), Vietnamese dates (F25),
bylines (F24) and HTML decoding (F09, F15)."""

from __future__ import annotations

import codecs
import json
import unicodedata
from pathlib import Path

import pytest

from crawler.bylines import parse_byline
from crawler.dates import parse_vn_datetime
from crawler.encoding import decode_html, ends_inside_utf8_sequence, is_valid_utf8
from crawler.text import normalize_text

PORTAL = Path(__file__).parent / "fixtures/portal"


# ---------------------------------------------------------------- normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # entities (F08)
        ("n&agrave;y ti&#7871;p &ldquo;A&rdquo; S&aacute;ch &amp; Thiết bị",
         "này tiếp “A” Sách & Thiết bị"),
        ("trang trọng.&nbsp; Sau", "trang trọng. Sau"),
        # zero-width characters are deleted, not replaced by a space (F08)
        ("hân hoan\u200b khai giảng", "hân hoan khai giảng"),
        ("\u200bTại Trường", "Tại Trường"),
        ("a\u200cb\u200dc\u2060d\ufeffe", "abcde"),
        ("soft\u00adhyphen", "softhyphen"),
        # NBSP and every other whitespace collapse to one space, then strip
        ("\u00a0Học\u00a0sinh  Tuyên\tQuang\n\r mới\u00a0", "Học sinh Tuyên Quang mới"),
        ("\u2003em\u202fspace\u3000ideographic", "em space ideographic"),
        ("\u00a0", ""),
        ("", ""),
        # nothing else is touched: quotes, dashes, typos stay
        ("cán bộ, họi viên – “x”", "cán bộ, họi viên – “x”"),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalize_text_nfd_to_nfc() -> None:
    """F07: decomposed Vietnamese (e + U+0302 + U+0301) becomes precomposed."""
    nfc = "Khám sàng lọc tim bẩm sinh miễn phí"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    assert normalize_text(nfd) == nfc
    assert unicodedata.is_normalized("NFC", normalize_text(nfd))


def test_normalize_text_order_entity_then_nfc() -> None:
    """An entity that decodes to a combining mark is composed with its base letter."""
    assert normalize_text("e&#770;&#769;") == "ế"


def test_normalize_text_none_and_parser_text() -> None:
    assert normalize_text(None) == ""
    # Text already decoded by an HTML parser must not be decoded twice.
    assert normalize_text("AT&amp;T", decode_entities=False) == "AT&amp;T"
    assert normalize_text("AT&amp;T") == "AT&T"


# ---------------------------------------------------------------- parse_vn_datetime

F25_CASES = [
    # FAULTS.md F25, every listed case
    ("Ngày xuất bản: 02/09/2025 12:05:00 SA", "2025-09-02T00:05:00+07:00"),  # 186915
    ("Ngày xuất bản: 02/06/2021 12:20:00 SA", "2021-06-02T00:20:00+07:00"),  # 145540
    ("Ngày xuất bản: 26/09/2019 12:30:00 SA", "2019-09-26T00:30:00+07:00"),  # 127201
    ("Ngày xuất bản: 05/03/2020 12:15:00 CH", "2020-03-05T12:15:00+07:00"),  # 132450
    ("Ngày xuất bản: 30/09/2022 12:40:00 CH", "2022-09-30T12:40:00+07:00"),  # 158960
    ("Ngày xuất bản: 18/12/2020 12:45:00 CH", "2020-12-18T12:45:00+07:00"),  # 135118
    ("Ngày xuất bản: 21/08/2024 12:55:00 CH", "2024-08-21T12:55:00+07:00"),  # 179105
    # the seed article and ordinary a.m./p.m. times
    ("17/10/2019 10:56:00 CH", "2019-10-17T22:56:00+07:00"),
    ("Ngày xuất bản: 17/10/2019 10:56:00 CH", "2019-10-17T22:56:00+07:00"),
    ("08/11/2020 07:30:00 SA", "2020-11-08T07:30:00+07:00"),
    ("14/06/2022 03:20:00 CH", "2022-06-14T15:20:00+07:00"),
    ("17/10/2019 10:56:00 ch", "2019-10-17T22:56:00+07:00"),
    ("17/10/2019 10:56 PM", "2019-10-17T22:56:00+07:00"),
]

OTHER_SHAPES = [
    ("Thứ năm, 17/10/2019 - 22:56", "2019-10-17T22:56:00+07:00"),
    ("Thứ Năm, 17/10/2019, 09:05", "2019-10-17T09:05:00+07:00"),
    ("22:56 17/10/2019", "2019-10-17T22:56:00+07:00"),
    ("10:56 CH, 17/10/2019", "2019-10-17T22:56:00+07:00"),
    ("2019-10-17T22:56:00+07:00", "2019-10-17T22:56:00+07:00"),
    ("2019-10-17T15:56:00Z", "2019-10-17T22:56:00+07:00"),
    ("2019-10-17T15:56:00+00:00", "2019-10-17T22:56:00+07:00"),
    ("2019-10-17T22:56:00", "2019-10-17T22:56:00+07:00"),  # naive ISO = local time
    ("Thu, 17 Oct 2019 22:56:00 +0700", "2019-10-17T22:56:00+07:00"),  # RSS pubDate
    ("\u00a017/10/2019\u00a010:56:00\u00a0CH ", "2019-10-17T22:56:00+07:00"),
]

UNREADABLE = [
    None,
    "",
    "   ",
    "Ngày xuất bản:",
    "hôm qua",
    "17/10/2019",              # no time: would be a guess
    "2019-10-17",              # idem
    "31/02/2020 10:00:00 SA",  # impossible date
    "17/10/2019 13:00:00 CH",  # contradictory clock
    "17/10/2019 00:30:00 CH",
    "17/10/2019 25:00",
    "17/10/2019 10:61",
    "2019-13-01T10:00:00",
]


@pytest.mark.parametrize(("raw", "expected"), F25_CASES + OTHER_SHAPES)
def test_parse_vn_datetime(raw: str, expected: str) -> None:
    assert parse_vn_datetime(raw) == expected


@pytest.mark.parametrize("raw", UNREADABLE)
def test_parse_vn_datetime_unreadable(raw: str | None) -> None:
    assert parse_vn_datetime(raw) is None


def test_twelve_hour_clock_round_trip() -> None:
    """Every minute of a day written as .NET vi-VN ``hh:mm:ss tt`` maps back to itself."""
    for h24 in range(24):
        h12 = h24 % 12 or 12
        tt = "SA" if h24 < 12 else "CH"
        got = parse_vn_datetime(f"01/01/2024 {h12:02d}:07:00 {tt}")
        assert got == f"2024-01-01T{h24:02d}:07:00+07:00"


# ---------------------------------------------------------------- parse_byline

F24_CASES = [
    ("Bài, ảnh: Hà Huế", ["Hà Huế"], None),
    ("Thanh Phúc", ["Thanh Phúc"], None),
    ("Thu Hà - Minh Đức", ["Thu Hà", "Minh Đức"], None),
    ("Theo TTXVN", [], "TTXVN"),
    ("(TTV)", [], "TTV"),
    ("Thanh Hà (TTV)", ["Thanh Hà"], "TTV"),
    ("Nhóm PV", ["Nhóm PV"], None),
    ("Ảnh: Đức Long", ["Đức Long"], None),
]

OTHER_BYLINES = [
    ("Bài và ảnh: Thu Hà", ["Thu Hà"], None),
    ("Bài: Thu Hà; Ảnh: Minh Đức", ["Thu Hà", "Minh Đức"], None),
    ("Thu Hà, Minh Đức", ["Thu Hà", "Minh Đức"], None),
    ("Thu Hà – Minh Đức", ["Thu Hà", "Minh Đức"], None),
    ("Thu Hà và Minh Đức", ["Thu Hà", "Minh Đức"], None),
    ("Nguồn: VOV", [], "VOV"),
    ("Thanh Hà (theo TTXVN)", ["Thanh Hà"], "TTXVN"),
    ("Bài, ảnh:\u00a0Hà\u00a0Huế\u200b", ["Hà Huế"], None),
    ("Thu Hà - Thu Hà", ["Thu Hà"], None),
    ("", [], None),
    ("\u00a0", [], None),
    (None, [], None),
]


@pytest.mark.parametrize(("raw", "authors", "source"), F24_CASES + OTHER_BYLINES)
def test_parse_byline(raw: str | None, authors: list[str], source: str | None) -> None:
    assert parse_byline(raw) == (authors, source)


# ---------------------------------------------------------------- decode_html

F09_FILE = (
    PORTAL / "site/baotuyenquang.com.vn/kinh-te/nong-nghiep/"
    "yen-son-chuyen-doi-dat-lua-kem-hieu-qua-sang-trong-cay-co-gia-tri-cao-156233.html"
)


def test_decode_html_f09_header_disagrees_with_meta() -> None:
    """F09: header iso-8859-1, meta utf-8, bytes utf-8 -> utf-8 plus ``charset_mismatch``."""
    body = F09_FILE.read_bytes()
    route_ct = next(
        r["headers"]["Content-Type"]
        for r in json.loads((PORTAL / "routes.json").read_text(encoding="utf-8"))
        if r.get("file") and r["file"].endswith("-156233.html")
    )
    assert "iso-8859-1" in route_ct
    # What header-wins decoding (Scrapy/w3lib) would produce: mojibake.
    assert "YÃªn SÆ¡n" in body.decode("cp1252", "replace")
    d = decode_html(body, route_ct)
    assert d.encoding == "utf-8"
    assert d.warnings == ["charset_mismatch"]
    assert "Yên Sơn chuyển đổi đất lúa kém hiệu quả" in d.text
    assert "YÃªn" not in d.text


def test_decode_html_header_agrees() -> None:
    body = '<html><head><meta charset="utf-8"></head><body>Tuyên Quang</body></html>'.encode()
    d = decode_html(body, "text/html; charset=utf-8")
    assert (d.encoding, d.warnings) == ("utf-8", [])
    assert "Tuyên Quang" in d.text


def test_decode_html_bom_wins() -> None:
    text = "<html><body>Hà Giang</body></html>"
    d = decode_html(codecs.BOM_UTF8 + text.encode(), "text/html; charset=iso-8859-1")
    assert (d.text, d.encoding) == (text, "utf-8")
    d16 = decode_html(codecs.BOM_UTF16_LE + text.encode("utf-16-le"), None)
    assert (d16.text, d16.encoding) == (text, "utf-16-le")


def test_decode_html_real_legacy_charset_is_respected() -> None:
    """Bytes that are not UTF-8 keep their declared single-byte charset."""
    # (only letters cp1258 has precomposed, so the str encodes directly)
    body = "<html><head><meta charset=windows-1258></head><body>Sơn Dương, Hà</body></html>".encode("cp1258")
    d = decode_html(body, "text/html")
    assert d.encoding == "cp1258"
    assert "Sơn Dương, Hà" in d.text and d.warnings == []


def test_decode_html_latin1_header_on_utf8_bytes_without_meta() -> None:
    body = "<html><body>Yên Sơn</body></html>".encode()
    d = decode_html(body, "text/html; charset=ISO-8859-1")
    assert d.encoding == "utf-8" and "Yên Sơn" in d.text
    assert d.warnings == ["charset_mismatch"]


def test_decode_html_nothing_declared() -> None:
    d = decode_html("<p>Tuyên Quang</p>".encode(), None)
    assert (d.encoding, d.warnings) == ("utf-8", [])
    legacy = ("<p>" + "Tuyên Quang, Sơn Dương, Hà Giang, Yên Sơn và Hàm Yên. " * 20 + "</p>").encode("cp1258")
    d2 = decode_html(legacy, None)
    assert d2.warnings == ["charset_detected"]
    assert d2.encoding != "utf-8" and "<p>" in d2.text  # best effort, never an exception


def test_decode_html_unknown_charset_and_garbage_never_raise() -> None:
    d = decode_html(b"<p>abc</p>", "text/html; charset=no-such-charset")
    assert d.text == "<p>abc</p>" and "unknown_charset" in d.warnings
    for junk in (b"", b"\xff\xfe\xfd", bytes(range(256)), b"\x00" * 10):
        assert isinstance(decode_html(junk, "text/html; charset=utf-8").text, str)


def test_truncation_helpers() -> None:
    """F15: a body cut inside a multibyte UTF-8 sequence."""
    word = "Cá lăng".encode()
    assert not ends_inside_utf8_sequence(word)
    assert ends_inside_utf8_sequence("lă".encode()[:-1])
    assert ends_inside_utf8_sequence("ấ".encode()[:-1])  # 3-byte char, 2 bytes present
    assert ends_inside_utf8_sequence("ấ".encode()[:-2])
    assert not ends_inside_utf8_sequence(b"")
    assert is_valid_utf8(word) and not is_valid_utf8("Cá lă".encode()[:-1])
