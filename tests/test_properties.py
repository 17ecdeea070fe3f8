"""Property tests (hypothesis): the cleaner and the extractor on random and mangled HTML.

Whatever the input, no exception escapes; the extractor's answer is either a record that,
once the pipeline stages have filled the rest, validates against the record schema, or a
quarantine reason from the documented list. Kept fast: at most 200 examples a test, no
deadline (the first examples pay lxml/trafilatura warm-up).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crawler.extract import QUARANTINE_REASONS, extract_article
from crawler.items import ArticleItem, content_sha256
from crawler.schema import validate_record
from crawler.sites import get_profile
from crawler.text import INVISIBLE_CHARS, normalize_text
from pipelines.clean import clean_article
from pipelines.validate import ValidatePipeline

PORTAL = Path(__file__).parent / "fixtures/portal/site/baotuyenquang.com.vn"
SEED_FILE = PORTAL / "chinh-tri/xay-dung-dang/dang-bo-thi-tran-na-hang-chu-trong-cong-tac-phat-trien-dang-vien-127836.html"
SEED_URL = "https://baotuyenquang.com.vn/chinh-tri/xay-dung-dang/dang-bo-thi-tran-na-hang-chu-trong-cong-tac-phat-trien-dang-vien-127836.html"
SEED = SEED_FILE.read_bytes()
BTQ = get_profile("baotuyenquang")
GENERIC = get_profile("generic")
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KNOWN_REASONS = {r for r in QUARANTINE_REASONS if not r.startswith(("parse_error", "invalid_"))}

# Text with what the cleaner must deal with: Vietnamese in NFC and NFD, combining marks,
# zero-width characters, soft hyphens, NBSP and other spaces, entities, markup characters.
_TRICKY = list(INVISIBLE_CHARS) + ["\u00a0", "\u2003", "\u202f", "\u3000", "\t", "\n", "\r", " ", "&nbsp;",
                                   "&amp;", "&#7871;", "&agrave;", "&lt;p&gt;", "<", ">", "&", "\u0301", "\u0302",
                                   "\u0300", "\u0323", "e\u0302\u0301", "Tuyên Quang", "Hà Huế", "ấ", "ờ"]
TEXT = st.lists(st.one_of(st.sampled_from(_TRICKY), st.text(max_size=8)), max_size=30).map("".join)


# ---------------------------------------------------------------- the cleaner


@FAST
@given(TEXT)
def test_normalize_text_invariants(raw: str) -> None:
    out = normalize_text(raw)
    assert unicodedata.is_normalized("NFC", out)
    assert not any(c in out for c in INVISIBLE_CHARS)
    assert out == out.strip() and "  " not in out
    assert not any(c.isspace() and c != " " for c in out)
    assert normalize_text(out, decode_entities=False) == out  # idempotent



def test_other_whitespace_is_every_white_space_character_but_the_space() -> None:
    # normalize_text's fast path looks for these before it substitutes \s runs.
    import re

    from crawler.text import OTHER_WHITESPACE

    space = re.compile(r"\s")
    every = [chr(c) for c in range(0x110000) if space.fullmatch(chr(c))]
    assert every == [chr(c) for c in range(0x110000) if chr(c).isspace()]
    assert sorted(OTHER_WHITESPACE) == [c for c in every if c != " "]


@FAST
@given(TEXT)
def test_normalize_text_equals_the_plain_rule(raw: str) -> None:
    """The fast paths (search before deleting, only changing white-space runs replaced)
    give what the rule says step by step: delete invisible characters, NFC, every
    white-space run to one space, strip."""
    import html
    import re

    plain = html.unescape(raw).translate({ord(c): None for c in INVISIBLE_CHARS})
    plain = re.sub(r"\s+", " ", unicodedata.normalize("NFC", plain)).strip()
    assert normalize_text(raw) == plain


@FAST
@given(title=TEXT, lead=st.none() | TEXT, body=st.lists(TEXT, max_size=6), tags=st.lists(TEXT, max_size=4),
       captions=st.lists(st.none() | TEXT, max_size=3))
def test_clean_article_invariants(title, lead, body, tags, captions) -> None:
    item = ArticleItem(title=title, lead=lead, body=body, authors=list(tags), source=lead, tags=tags, section=tags,
                       images=[{"url": f"https://x.example/{i}.jpg", "caption": c} for i, c in enumerate(captions)])
    clean_article(item)
    texts = [item["title"] or "", item["lead"] or "", *item["body"], *item["tags"],
             *(i["caption"] or "" for i in item["images"])]
    for t in texts:
        assert t == normalize_text(t, decode_entities=False)
    assert all(item["body"]) and all(item["tags"]) and all(item["authors"])
    assert item["text"] == "\n\n".join(item["body"])
    assert item["word_count"] == len(item["text"].split())


# ---------------------------------------------------------------- the extractor


def _published_record(result, url: str, profile_name: str) -> dict:
    """What the pipeline would publish from an extraction: spider fields, clean stage,
    validate stage (must accept it), dedup's fields."""
    rec = result.record
    item = ArticleItem(
        **rec, site=profile_name, url=url, fetched_at="2026-01-01T00:00:00+00:00",
        content_sha256=content_sha256(rec.get("title"), rec.get("lead"), rec.get("body")),
        run_id="prop", warc={"file": "warc/x.warc.gz", "offset": 0, "length": 1}, warnings=result.warnings,
    )
    clean_article(item)

    class Stats:
        def inc_value(self, *a, **k):
            pass

    validated = ValidatePipeline(Stats()).process_item(item)
    assert isinstance(validated, ArticleItem), dict(validated)
    item.update(urls=[url], version=1)
    return {k: v for k, v in dict(item).items() if k not in ("warnings", "dedup")}


def _check(result, url: str, profile_name: str) -> None:
    event(result.quarantine or "record")  # --hypothesis-show-statistics shows the mix
    assert (result.record is None) != (result.quarantine is None)
    if result.quarantine is not None:
        assert result.quarantine in KNOWN_REASONS or result.quarantine.startswith("parse_error: ")
        return
    record = _published_record(result, url, profile_name)
    assert validate_record(record) == []


@st.composite
def mangled_seed(draw) -> bytes:
    """The seed article page with random cuts, deletions, duplications and insertions."""
    data = bytearray(SEED)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "flip"]))
        i = draw(st.integers(0, len(data)))
        if op == "delete":
            del data[i:i + draw(st.integers(1, 4000))]
        elif op == "insert":
            junk = draw(st.sampled_from([b"<p>", b"</div>", b"<table><tr><td>", b"<!--", b"<script>", b"&nbsp;",
                                         b"\xe1\xba", b"\x00", b"<h1 class='title-detail'>", "Ngày xuất bản".encode(),
                                         b"<p style='text-align:right'>Theo TTXVN</p>", b"<img src='//x'>"]))
            data[i:i] = junk + draw(st.binary(max_size=20))
        elif op == "duplicate":
            j = draw(st.integers(i, min(len(data), i + 3000)))
            data[j:j] = data[i:j]
        elif i < len(data):
            data[i] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        data += b"</html>"  # a cut page that still ends like a whole one
    return bytes(data)


@FAST
@given(mangled_seed(), st.sampled_from([None, "text/html", "text/html; charset=utf-8", "text/html; charset=iso-8859-1"]))
def test_extractor_on_mangled_portal_pages(body: bytes, ctype) -> None:
    _check(extract_article(BTQ, SEED_URL, body, ctype), SEED_URL, "baotuyenquang")


_DATES = st.sampled_from(["17/10/2019 10:56:00 CH", "12:05:00 SA 02/09/2025", "Thứ năm, 17/10/2019 - 22:56",
                          "31/02/2020 10:00:00 SA", "hôm qua", "", "2019-10-17T22:56:00Z", "17/10/2019"])
_BLOCKS = st.sampled_from([
    "<p>{t}</p>", "<p>&nbsp;</p>", "<p style='text-align:right'>{t}</p>", "<p><strong>{t}</strong></p>",
    "<figure><img src='/media/{t}.jpg'><figcaption>{t}</figcaption></figure>", "<table><tr><td>{t}</td></tr></table>",
    "<p style='text-align:center'><img data-src='{t}'></p><p style='text-align:center'><em>{t}</em></p>",
    "<div class='box-related'>{t}</div>", "<iframe src='https://www.youtube.com/embed/x'></iframe><p><em>Video: {t}</em></p>",
    "<div><span><span>{t}</span></span></div>", "<p><a href='{t}'>{t}</a></p>",
])


@st.composite
def template_page(draw) -> bytes:
    """A page in the portal's article template with random field contents."""
    blocks = "".join(draw(_BLOCKS).format(t=draw(TEXT).replace("'", "")) for _ in range(draw(st.integers(0, 6))))
    ld = draw(st.sampled_from(["", '<script type="application/ld+json">{"@type":"NewsArticle","dateModified":"%s",'
                                   '"headline":"%s"}</script>' % (draw(_DATES), draw(TEXT).replace('"', ""))]))
    html = (f"<html lang='{draw(st.sampled_from(['vi', 'vi-VN', 'xx-ſ', '']))}'><head>{ld}</head><body>"
            f"<div class='breadcrumb'><a itemprop='name'>{draw(TEXT)}</a></div><div class='detail-main'>"
            f"<h1 class='title-detail'>{draw(TEXT)}</h1><span class='date-detail'>Ngày xuất bản: {draw(_DATES)}</span>"
            f"<div class='sapo-detail'><strong>{draw(TEXT)}</strong></div><div class='content-detail'>{blocks}</div>"
            f"<div class='box-tags'><a>{draw(TEXT)}</a></div></div></body></html>")
    return html.encode("utf-8")


@FAST
@given(template_page())
def test_extractor_on_random_template_pages(body: bytes) -> None:
    _check(extract_article(BTQ, SEED_URL, body, "text/html; charset=utf-8"), SEED_URL, "baotuyenquang")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template_page(), st.booleans(), st.none() | _DATES)
def test_generic_profile_on_random_pages(body: bytes, og_article: bool, published: str | None) -> None:
    """The generic chain (JSON-LD, OpenGraph, trafilatura, htmldate) on the same pages,
    as an article (og:type article) or left to its own judgement, with or without an
    article:published_time."""
    meta = b"<meta property='og:type' content='article'>" if og_article else b""
    if published is not None:
        meta += f"<meta property='article:published_time' content='{published}'>".encode()
    body = body.replace(b"<head>", b"<head>" + meta, 1)
    url = "http://tintuc.example/bai-viet-123456.html"
    _check(extract_article(GENERIC, url, body, "text/html"), url, "generic")


@FAST
@given(st.binary(max_size=3000))
def test_extractor_on_random_bytes(body: bytes) -> None:
    _check(extract_article(BTQ, SEED_URL, body, None), SEED_URL, "baotuyenquang")
