"""A synthetic Báo Tuyên Quang portal of any size, for the benchmark.

Pages are made on request from templates cut out of the replica's real pages
(``tests/fixtures/portal``: one article page, one listing page), so they carry the
real page weight — header with nested menus, off-canvas menu, ``__VIEWSTATE``,
sidebar, footer, inline scripts (article pages about 30 KB) — and the profile
extracts them like the real ones. Nothing is written to disk: 50,000 articles
would be 1.5 GB of HTML.

Site layout (as on the real portal and the replica):

* ``/`` and ``/index.html``: the latest 30 articles; the menu links every section
  and subsection;
* ``/<section>/``: latest 20 of the section; ``/<section>/<sub>/`` and
  ``/<section>/<sub>/trang-<k>.html``: the subsection's articles, newest first,
  :attr:`SyntheticPortal.page_size` a page, paging links to 5 neighbours and *Sau »*;
* articles ``/<section>/<sub>/<slug>-<id>.html`` (published before 2024) and
  ``/<slug>-<id>.html`` (2024 on), each linking 3 related, 3 same-category, 5 most
  read and 5 newest articles, its tags (``/tim-kiem/…``, robots-disallowed) and
  share links (off-site);
* duplicates: one article in :attr:`SyntheticPortal.dup_every` is also linked
  under a ``?fbclid=…`` tracking parameter (same page, same canonical);
* ``/robots.txt`` (the real one), ``/sitemap.xml`` → ``/sitemap-articles-<k>.xml``
  (5,000 URLs each) and ``/sitemap-categories.xml``, ``/rss/home.rss`` and
  ``/rss/<section>.rss`` (latest 20), the ``m.`` host's home and robots.txt;
* ``/gioi-thieu.html``, ``/lien-he.html``: the home listing (the replica's own
  copies link its real articles);
* anything else: the real 404 page; images, CSS, JS: small fixed bodies.

Article ``i`` (0-based) is a pure function of ``(seed, i)``: its text is sampled
from the gold articles' sentences, plus a sentence with figures derived from
``i`` so that no two articles have the same content digest.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from functools import lru_cache
from html import escape
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
PORTAL = ROOT / "tests" / "fixtures" / "portal"
SITE = PORTAL / "site" / "baotuyenquang.com.vn"
MOBILE = PORTAL / "site" / "m.baotuyenquang.com.vn"
HOST = "baotuyenquang.com.vn"
MOBILE_HOST = "m.baotuyenquang.com.vn"
BASE = f"https://{HOST}"
TZ = timezone(timedelta(hours=7))
HTML = "text/html; charset=utf-8"

#: Sections and subsections of the portal's menu.
SECTIONS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("chinh-tri", "Chính trị", (("xay-dung-dang", "Xây dựng Đảng"), ("thoi-su", "Thời sự"), ("hoc-tap-theo-bac", "Học tập và làm theo Bác"))),
    ("kinh-te", "Kinh tế", (("nong-nghiep", "Nông nghiệp"), ("doanh-nghiep", "Doanh nghiệp"), ("nong-thon-moi", "Nông thôn mới"))),
    ("xa-hoi", "Xã hội", (("giao-duc", "Giáo dục"), ("y-te", "Y tế"), ("lao-dong-viec-lam", "Lao động - Việc làm"))),
    ("van-hoa", "Văn hóa", (("di-san", "Di sản"), ("van-nghe", "Văn nghệ"), ("the-thao", "Thể thao"))),
    ("du-lich", "Du lịch", (("diem-den", "Điểm đến"), ("am-thuc", "Ẩm thực"), ("su-kien", "Sự kiện"))),
    ("phap-luat", "Pháp luật", (("an-ninh-trat-tu", "An ninh trật tự"), ("pho-bien-phap-luat", "Phổ biến pháp luật"), ("ban-doc", "Bạn đọc"))),
)
#: ``(section slug, section name, sub slug, sub name)``; article ``i`` is in ``SUBS[i % 18]``.
SUBS = tuple((s, sn, b, bn) for s, sn, subs in SECTIONS for b, bn in subs)

PLACES = ("Na Hang", "Lâm Bình", "Chiêm Hóa", "Hàm Yên", "Yên Sơn", "Sơn Dương", "thành phố Tuyên Quang",
          "Thượng Lâm", "Hồng Thái", "Tân Trào", "Minh Quang", "Thổ Bình", "Vĩnh Lộc", "Kim Bình")
TAG_POOL = ("Nông thôn mới", "Du lịch", "Giáo dục", "Y tế", "Xây dựng Đảng", "Chiêm Hóa", "Na Hang", "Lâm Bình",
            "Hàm Yên", "Sơn Dương", "Yên Sơn", "Văn hóa", "An toàn giao thông", "Chè Shan tuyết", "Cam sành")
LAST = datetime(2025, 11, 1, 7, 0, tzinfo=TZ)
#: The portal publishes about 15 articles a day; so does the synthetic one, whatever its size.
PER_DAY = 15
NEW_URL_SHAPE_FROM = datetime(2024, 1, 1, tzinfo=TZ)
SITEMAP_URLS = 5000
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a"
    "1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080001000101011100ffc4001f"
    "0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d010203"
    "00041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a343536373839"
    "3a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4"
    "a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
    "ffda0008010100003f00fbd3ffd9"
)


def fold(text: str) -> str:
    """ASCII slug of Vietnamese text (``Đảng bộ`` → ``dang-bo``), as the portal makes them."""
    text = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:80].strip("-")


# ---------------------------------------------------------------- templates
class Template:
    """A page cut into static text and named slots. ``rules`` is a list of
    ``(regex, slot)``; every match of the regex becomes the slot. Raises
    ValueError when a rule matches nothing (the source page changed)."""

    def __init__(self, html: str, rules: list[tuple[str, str]]):
        marked = html
        for pattern, slot in rules:
            marked, n = re.subn(pattern, lambda _m, s=slot: f"\x00{s}\x00", marked, flags=re.DOTALL)
            if not n:
                raise ValueError(f"template rule {pattern!r} matched nothing")
        parts = marked.split("\x00")
        self.static = parts[0::2]
        self.slots = parts[1::2]

    def render(self, values: dict[str, str]) -> str:
        out = [self.static[0]]
        for slot, text in zip(self.slots, self.static[1:]):
            out.append(values[slot])
            out.append(text)
        return "".join(out)


def _head_rules(page_path: str) -> list[tuple[str, str]]:
    return [
        (r"<title>.*?</title>", "title_tag"),
        (r'<meta name="description" content="[^"]*" />', "meta_description"),
        (r'<meta name="keywords" content="[^"]*" />', "meta_keywords"),
        (r'<meta property="og:title" content="[^"]*" />', "og_title"),
        (r'<meta property="og:description" content="[^"]*" />', "og_description"),
        (r'<meta property="og:url" content="[^"]*" />', "og_url"),
        (r'<body class="[^"]*">', "body_tag"),
        (re.escape(f'action="{page_path}"'), "form_action"),
        (r'<ul id="bn-ticker">.*?</ul>', "ticker"),
        (r'<div class="breadcrumb".*?\n</div>', "breadcrumb"),
        (r'<ul class="list-mostview">.*?</ul>', "mostview"),
        (r'<ul class="list-newest">.*?</ul>', "newest"),
        (r"data: \{ id: '[^']*'", "count_id"),
    ]


@lru_cache(maxsize=None)
def article_template() -> Template:
    """Template of an article page, from the replica's article 179105 (2024 template)."""
    path = "/bat-qua-tang-doi-tuong-tang-tru-trai-phep-chat-ma-tuy-179105.html"
    html = (SITE / path[1:]).read_text("utf-8")
    rules = _head_rules(path) + [
        (r'<link rel="canonical" href="[^"]*" />', "canonical"),
        (r'<link rel="alternate" type="application/rss\+xml"[^>]*/>', "rss_link"),
        (r'<meta property="article:published_time" content="[^"]*" />', "published_meta"),
        (r'<meta property="article:section" content="[^"]*" />', "section_meta"),
        (r'(?:<meta property="article:tag" content="[^"]*" />\n)+', "tag_metas"),
        (r'<h1 class="title-detail">.*?</h1>', "h1"),
        (r"Ngày xuất bản: [^<]*", "date_line"),
        (r'<span class="view-count"><i class="icon-eye"></i> \d+</span>', "views"),
        (r'<div class="sapo-detail" itemprop="description">.*?</div>', "sapo"),
        (r'<div class="content-detail" id="content-detail">.*?</div>', "content"),
        (r'<div class="box-tags">.*?</div>', "tags"),
        (r'<div class="box-share clearfix">.*?\n</div>', "share"),
        (r'<ul class="list-related">.*?</ul>', "related"),
        (r'<div class="list-samecate clearfix">.*?</div></div>', "samecate"),
        (r'<div class="fb-comments" data-href="[^"]*"', "comments"),
    ]
    t = Template(html, rules)
    if any("179105" in s for s in t.static):
        raise ValueError("the article template still holds the source article's id")
    return t


@lru_cache(maxsize=None)
def listing_template() -> Template:
    """Template of a listing page, from the replica's ``/chinh-tri/xay-dung-dang/``."""
    path = "/chinh-tri/xay-dung-dang/"
    html = (SITE / "chinh-tri" / "xay-dung-dang" / "index.html").read_text("utf-8")
    rules = _head_rules(path) + [
        (r'<div class="cate-header clearfix">.*?</div>', "cate_header"),
        (r'<div class="list-news">.*?\n</div>\n<div class="paging clearfix">.*?\n</div>', "listing"),
    ]
    return Template(html, rules)


@lru_cache(maxsize=None)
def text_pool() -> dict[str, list[str]]:
    """Sentences, titles, leads and author names of the gold articles."""
    sentences, titles, leads, authors = [], [], [], []
    with open(PORTAL / "gold" / "articles.jsonl", encoding="utf-8") as f:
        for rec in map(json.loads, f):
            titles.append(rec["title"])
            if rec.get("lead"):
                leads.append(rec["lead"])
            authors.extend(rec.get("authors") or [])
            for para in rec.get("body") or []:
                sentences.extend(s.strip() for s in re.split(r"(?<=[.!?…])\s+", para) if len(s.strip()) > 30)
    return {"sentences": sentences, "titles": titles, "leads": leads, "authors": sorted(set(authors)) or ["Thu Hà"]}


# ------------------------------------------------------------------ articles
@dataclass(frozen=True)
class Article:
    """One synthetic article's identity (cheap: the page is made on demand)."""

    index: int
    id: int
    sub: tuple[str, str, str, str]
    published: datetime
    title: str
    slug: str

    @property
    def path(self) -> str:
        s, _, b, _ = self.sub
        if self.published >= NEW_URL_SHAPE_FROM:
            return f"/{self.slug}-{self.id}.html"
        return f"/{s}/{b}/{self.slug}-{self.id}.html"

    @property
    def url(self) -> str:
        return BASE + self.path


class SyntheticPortal:
    """``n`` articles (ids ``100000 + i``), :data:`PER_DAY` a day up to late 2025.

    :meth:`respond` answers ``(host, path, query, accept_gzip)`` with
    ``(status, headers, body)``; :meth:`page_count` is how many distinct pages a
    complete crawl fetches (articles, their tracking-parameter duplicates,
    listings, sitemaps, feeds, robots.txt files and the static pages)."""

    def __init__(self, n: int, seed: int = 1, page_size: int = 20, dup_every: int = 50):
        if n < 1:
            raise ValueError("a portal needs at least one article")
        self.n = n
        self.seed = seed
        self.page_size = page_size
        self.dup_every = dup_every
        self.step = timedelta(days=1) / PER_DAY
        self.first = LAST - self.step * n
        self._pool = text_pool()
        self._by_sub: dict[tuple[str, str], list[int]] = {}
        for i in range(n):
            s, _, b, _ = SUBS[i % len(SUBS)]
            self._by_sub.setdefault((s, b), []).append(i)
        self._paths: dict[str, int] | None = None
        # The replica's own static pages link its 26 real articles; here they show
        # the home listing instead, so a crawl meets no 404 but the ones it should.
        self._static = ("/gioi-thieu.html", "/lien-he.html")
        self._not_found = (SITE / "_errors" / "404.html").read_bytes()

    # -------------------------------------------------------------- identity
    @lru_cache(maxsize=4096)
    def article(self, i: int) -> Article:
        rng = random.Random(self.seed * 1_000_003 + i)
        title = rng.choice(self._pool["titles"])
        place = rng.choice(PLACES)
        if place not in title:
            title = f"{title} ở {place}"
        published = self.first + self.step * i
        published = published.replace(second=0, microsecond=0)
        return Article(i, 100000 + i, SUBS[i % len(SUBS)], published, title, fold(title))

    def index_of(self, path: str) -> int | None:
        """Index of the article served at ``path`` (either URL shape), or None."""
        m = re.search(r"-(\d{6,})\.html$", path)
        if not m:
            return None
        i = int(m.group(1)) - 100000
        if 0 <= i < self.n and self.article(i).path == path:
            return i
        return None

    def link_url(self, i: int) -> str:
        """The URL other pages use for article ``i``: its path, or for one article in
        ``dup_every`` also a tracking-parameter variant (in related boxes)."""
        return self.article(i).path

    def tracking_url(self, i: int) -> str | None:
        if self.dup_every and i % self.dup_every == 7:
            return self.article(i).path + f"?fbclid=IwAR{self.seed:02d}{i:07d}Zk8Qx0vT3Lr6pFhYw1mN4cB7dE9sJ2aU5oK8gH1iV"
        return None

    def page_count(self) -> int:
        """Pages a full crawl fetches. robots.txt: the main host's twice (Scrapy's robots
        middleware, and the spider itself for its Sitemap: line), the ``m.`` host's once."""
        dups = sum(1 for i in range(self.n) if self.tracking_url(i) and self._related_sources(i))
        listings = sum(max(1, -(-len(v) // self.page_size)) for v in self._by_sub.values())
        listings += sum(1 for _ in SUBS if (_[0], _[2]) not in self._by_sub)  # empty subsections
        sections = len(SECTIONS)
        sitemaps = 1 + -(-self.n // SITEMAP_URLS) + 1
        feeds = 1 + len(SECTIONS)
        home = 2  # / and /index.html
        static = 2  # gioi-thieu, lien-he
        mobile = 1  # m. home
        robots = 3
        return self.n + dups + listings + sections + sitemaps + feeds + home + static + mobile + robots

    def _related_sources(self, i: int) -> list[int]:
        """Articles whose related box links ``i`` (the 3 following in its subsection)."""
        s, _, b, _ = SUBS[i % len(SUBS)]
        return [j for j in (i + 18, i + 36, i + 54) if j < self.n]

    # -------------------------------------------------------------- fragments
    def _ticker(self) -> str:
        items = "".join(
            f'<li><a href="{self.link_url(j)}">{escape(self.article(j).title)}</a></li>'
            for j in range(self.n - 1, max(-1, self.n - 6), -1)
        )
        return f'<ul id="bn-ticker">{items}</ul>'

    def _newest(self) -> str:
        items = "".join(
            f'<li><a href="{self.link_url(j)}">{escape(self.article(j).title)}</a></li>'
            for j in range(self.n - 1, max(-1, self.n - 6), -1)
        )
        return f'<ul class="list-newest">{items}</ul>'

    def _mostview(self) -> str:
        rows = []
        for k, j in enumerate(range(min(5, self.n)), start=1):
            a = self.article(j)
            rows.append(
                f'<li class="item clearfix"><span class="num">{k}</span><a class="thumb" href="{a.path}">'
                f'<img src="{self._image(a)}" alt="{escape(a.title)}" width="90" height="60" /></a>'
                f'<a class="title" href="{a.path}">{escape(a.title)}</a></li>'
            )
        return '<ul class="list-mostview">' + "\n      ".join(rows) + "</ul>"

    @staticmethod
    def _image(a: Article) -> str:
        p = a.published
        return f"/media/images/{p:%Y/%m}/img_{p:%Y%m%d%H%M}{a.id % 60:02d}.jpg"

    @staticmethod
    def _breadcrumb(items: list[tuple[str, str]]) -> str:
        spans = []
        for pos, (href, name) in enumerate([("/", "Trang chủ"), *items], start=1):
            spans.append(
                '<span itemprop="itemListElement" itemscope itemtype="http://schema.org/ListItem">'
                f'<a itemprop="item" href="{href}"><span itemprop="name">{escape(name)}</span></a>'
                f'<meta itemprop="position" content="{pos}" /></span>'
            )
        return (
            '<div class="breadcrumb" itemscope itemtype="http://schema.org/BreadcrumbList">\n  '
            + '\n  <span class="sep">&raquo;</span> '.join(spans)
            + "\n</div>"
        )

    def _common(self, title: str, description: str, url: str, path: str, body_class: str, count_id: str,
                crumbs: list[tuple[str, str]]) -> dict[str, str]:
        t, d = escape(title), escape(description)
        return {
            "title_tag": f"<title>{t} - Báo Tuyên Quang điện tử</title>",
            "meta_description": f'<meta name="description" content="{d}" />',
            "meta_keywords": f'<meta name="keywords" content="{t}" />',
            "og_title": f'<meta property="og:title" content="{t}" />',
            "og_description": f'<meta property="og:description" content="{d}" />',
            "og_url": f'<meta property="og:url" content="{url}" />',
            "body_tag": f'<body class="{body_class}">',
            "form_action": f'action="{escape(path)}"',
            "ticker": self._ticker(),
            "breadcrumb": self._breadcrumb(crumbs),
            "mostview": self._mostview(),
            "newest": self._newest(),
            "count_id": f"data: {{ id: '{count_id}'",
        }

    # -------------------------------------------------------------- pages
    def article_html(self, i: int) -> str:
        """The desktop page of article ``i``."""
        a = self.article(i)
        rng = random.Random(self.seed * 7_000_003 + i)
        pool = self._pool
        s, sn, b, bn = a.sub
        lead = rng.choice(pool["leads"])
        paragraphs = []
        for _ in range(rng.randint(4, 9)):
            paragraphs.append(" ".join(rng.choice(pool["sentences"]) for _ in range(rng.randint(2, 4))))
        # Figures that make the text (and so its digest) this article's own.
        paragraphs.insert(
            rng.randint(1, len(paragraphs)),
            f"Tính đến tháng {a.published.month}/{a.published.year}, {rng.choice(PLACES)} có "
            f"{1000 + a.id % 9000:,} hộ tham gia, đạt {50 + a.id % 50}% kế hoạch, tăng {a.id % 97} hộ so với cùng kỳ.".replace(",", "."),
        )
        content = ["<p>" + escape(p) + "</p>" for p in paragraphs]
        if i % 2 == 0:
            caption = escape(rng.choice(pool["sentences"])[:120])
            content.insert(1, f'<figure class="image"><img src="{self._image(a)}" alt="{escape(a.title)}" />'
                              f"<figcaption>{caption}</figcaption></figure>")
        content.append(f'<p style="text-align: right;"><strong>{escape(rng.choice(pool["authors"]))}</strong></p>')
        content.append("<p>&nbsp;</p>")
        tags = rng.sample(TAG_POOL, 2)
        hour = a.published.hour % 12 or 12
        ampm = "SA" if a.published.hour < 12 else "CH"
        date_line = f"Ngày xuất bản: {a.published:%d/%m/%Y} {hour:02d}:{a.published:%M:%S} {ampm}"
        enc = quote(a.url, safe="")
        related = []
        for j in (i - 18, i - 36, i - 54):
            if j >= 0:
                r = self.article(j)
                href = self.tracking_url(j) or r.path
                related.append(f'<li><a href="{escape(href)}" title="{escape(r.title)}">{escape(r.title)}</a> '
                               f'<span class="date">({r.published:%d/%m/%Y})</span></li>')
        samecate = []
        for j in (i + 18, i + 36, i + 54):
            if j < self.n:
                r = self.article(j)
                samecate.append(
                    f'<div class="item"><a class="thumb" href="{r.url}"><img src="{self._image(r)}" alt="{escape(r.title)}" '
                    f'width="180" height="120" /></a><h4><a href="{r.url}">{escape(r.title)}</a></h4></div>'
                )
        values = self._common(a.title, lead, a.url, a.path, f"page-detail cate-{s}", str(a.id),
                              [(f"/{s}/", sn), (f"/{s}/{b}/", bn)])
        values.update({
            "canonical": f'<link rel="canonical" href="{a.url}" />',
            "rss_link": f'<link rel="alternate" type="application/rss+xml" title="Báo Tuyên Quang - {sn}" href="{BASE}/rss/{s}.rss" />',
            "published_meta": f'<meta property="article:published_time" content="{a.published.isoformat()}" />',
            "section_meta": f'<meta property="article:section" content="{bn}" />',
            "tag_metas": "".join(f'<meta property="article:tag" content="{t}" />\n' for t in tags),
            "h1": f'<h1 class="title-detail">{escape(a.title)}</h1>',
            "date_line": date_line,
            "views": f'<span class="view-count"><i class="icon-eye"></i> {a.id % 1000}</span>',
            "sapo": f'<div class="sapo-detail" itemprop="description"><strong>{escape(lead)}</strong></div>',
            "content": '<div class="content-detail" id="content-detail">\n' + "\n".join(content) + "\n  </div>",
            "tags": '<div class="box-tags"><span class="tag-title"><i class="icon-tag"></i> Từ khóa:</span> '
                    + ", ".join(f'<a href="/tim-kiem/?q={quote(t)}&amp;type=tag" title="{t}">{t}</a>' for t in tags) + "</div>",
            "share": (
                '<div class="box-share clearfix">\n  <span class="share-title">Chia sẻ:</span>\n'
                f'  <a class="share-fb" href="https://www.facebook.com/sharer/sharer.php?u={enc}" target="_blank" rel="nofollow">f</a>\n'
                f'  <a class="share-tw" href="https://twitter.com/intent/tweet?url={enc}" target="_blank" rel="nofollow">t</a>\n'
                f'  <div class="zalo-share-button" data-href="{a.url}" data-oaid="2873412233461157890" data-layout="2"></div>\n'
                f'  <a class="share-mail" href="mailto:?subject={quote(a.title)}&amp;body={enc}" title="Gửi email">@</a>\n'
                '  <a class="share-print" href="javascript:window.print()" title="In bài"><i class="icon-print"></i></a>\n'
                f'  <div class="fb-like" data-href="{a.url}" data-layout="button_count" data-action="like"></div>\n</div>'
            ),
            "related": '<ul class="list-related">' + "".join(related) + "</ul>",
            "samecate": '<div class="list-samecate clearfix">' + "".join(samecate) + "</div></div>",
            "comments": f'<div class="fb-comments" data-href="{a.url}"',
        })
        return article_template().render(values)

    def _news_items(self, indices: list[int]) -> str:
        rows = []
        for j in indices:
            a = self.article(j)
            lead = self._pool["leads"][j % len(self._pool["leads"])]
            rows.append(
                '<div class="item-news clearfix">\n'
                f'  <a class="thumb" href="{a.path}" title="{escape(a.title)}"><img src="{self._image(a)}" alt="{escape(a.title)}" width="240" height="160" /></a>\n'
                '  <div class="info">\n'
                f'    <h3 class="title-news"><a href="{a.path}" title="{escape(a.title)}">{escape(a.title)}</a></h3>\n'
                f'    <div class="date-news"><i class="icon-clock"></i> {a.published:%d/%m/%Y %H:%M}</div>\n'
                f'    <div class="sapo-news">{escape(lead[:160])}...</div>\n  </div>\n</div>'
            )
        return "\n".join(rows) or '<p class="empty">Chưa có tin bài trong chuyên mục này.</p>'

    def listing_html(self, s: str, b: str | None, page: int) -> str | None:
        """Listing page ``page`` (1-based) of a subsection, a section (``b`` None,
        page 1 only) or the home page (``s`` and ``b`` None); None past the last page."""
        if s is None:
            indices = list(range(self.n - 1, max(-1, self.n - 31), -1))
            title, crumbs, path, pages = "Trang chủ", [], "/", 1
            header = ""
        elif b is None:
            sec = next(x for x in SECTIONS if x[0] == s)
            subs = [self._by_sub.get((s, sb), []) for sb, _ in sec[2]]
            indices = sorted((j for v in subs for j in v[-20:]), reverse=True)[:20]
            title, crumbs, path, pages = sec[1], [(f"/{s}/", sec[1])], f"/{s}/", 1
            header = self._cate_header(f"/{s}/", sec[1], sec[2], s, None)
        else:
            sec = next(x for x in SECTIONS if x[0] == s)
            bn = dict(sec[2])[b]
            items = self._by_sub.get((s, b), [])
            pages = max(1, -(-len(items) // self.page_size))
            if page > pages:
                return None
            newest_first = items[::-1]
            indices = newest_first[(page - 1) * self.page_size : page * self.page_size]
            path = f"/{s}/{b}/" if page == 1 else f"/{s}/{b}/trang-{page}.html"
            title, crumbs = bn, [(f"/{s}/", sec[1]), (f"/{s}/{b}/", bn)]
            header = self._cate_header(f"/{s}/{b}/", bn, sec[2], s, b)
        extra = ""
        paging = ""
        if s is not None and b is not None and pages > 1:
            links = []
            for k in range(max(1, page - 2), min(pages, page + 2) + 1):
                href = "./" if k == 1 else f"trang-{k}.html"
                links.append(f'<span class="active">{k}</span>' if k == page else f'<a href="{href}">{k}</a>')
            if page < pages:
                links.append(f'<a class="next" href="trang-{page + 1}.html">Sau &raquo;</a>')
            paging = '\n<div class="paging clearfix">\n<span class="paging-label">Trang:</span>\n' + "\n".join(links) + "\n</div>"
        values = self._common(title, f"Tin tức {title} - Báo Tuyên Quang điện tử", BASE + path, path,
                              f"page-list cate-{s or 'home'}", f"cate-{s}-{b}-{page}", crumbs)
        values["cate_header"] = header or '<div class="cate-header clearfix"></div>'
        values["listing"] = '<div class="list-news">\n' + self._news_items(indices) + extra + "\n</div>" + paging
        return listing_template().render(values)

    @staticmethod
    def _cate_header(href: str, name: str, subs, s: str, active: str | None) -> str:
        active_attr = ' class="active"'
        lis = "".join(
            f'<li{active_attr if sb == active else ""}><a href="/{s}/{sb}/">{escape(sn)}</a></li>' for sb, sn in subs
        )
        return f'<div class="cate-header clearfix"><h1 class="cate-title"><a href="{href}">{escape(name)}</a></h1><ul class="cate-sub">{lis}</ul></div>'

    def sitemap_index(self) -> str:
        parts = [f"  <sitemap><loc>{BASE}/sitemap-articles-{k + 1}.xml</loc></sitemap>"
                 for k in range(-(-self.n // SITEMAP_URLS))]
        parts.append(f"  <sitemap><loc>{BASE}/sitemap-categories.xml</loc></sitemap>")
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
                + "\n".join(parts) + "\n</sitemapindex>\n")

    def sitemap_articles(self, k: int) -> str | None:
        start = (k - 1) * SITEMAP_URLS
        if k < 1 or start >= self.n:
            return None
        rows = []
        for i in range(start, min(self.n, start + SITEMAP_URLS)):
            a = self.article(i)
            rows.append(f"  <url><loc>{a.url}</loc><lastmod>{a.published.isoformat()}</lastmod>"
                        "<changefreq>monthly</changefreq><priority>0.8</priority></url>")
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
                + "\n".join(rows) + "\n</urlset>\n")

    def sitemap_categories(self) -> str:
        rows = [f"  <url><loc>{BASE}/{s}/</loc></url>" for s, _, _ in SECTIONS]
        rows += [f"  <url><loc>{BASE}/{s}/{b}/</loc></url>" for s, _, b, _ in SUBS]
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
                + "\n".join(rows) + "\n</urlset>\n")

    def rss(self, section: str | None) -> str | None:
        if section is None:
            indices = list(range(self.n - 1, max(-1, self.n - 21), -1))
            name = "Báo Tuyên Quang"
        else:
            sec = next((x for x in SECTIONS if x[0] == section), None)
            if sec is None:
                return None
            indices = sorted((j for sb, _ in sec[2] for j in self._by_sub.get((section, sb), [])[-20:]), reverse=True)[:20]
            name = f"Báo Tuyên Quang - {sec[1]}"
        items = []
        for j in indices:
            a = self.article(j)
            items.append(f"<item>\n<title>{escape(a.title)}</title>\n<link>{a.url}</link>\n"
                         f'<guid isPermaLink="true">{a.url}</guid>\n<pubDate>{format_datetime(a.published)}</pubDate>\n</item>')
        return ('<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0">\n<channel>\n'
                f"<title>{escape(name)}</title>\n<link>{BASE}/</link>\n<description>{escape(name)}</description>\n"
                + "\n".join(items) + "\n</channel>\n</rss>\n")

    @staticmethod
    def mobile_home() -> str:
        return ('<!DOCTYPE html>\n<html lang="vi"><head><meta charset="utf-8" /><title>Báo Tuyên Quang</title>'
                f'<link rel="canonical" href="{BASE}/" /></head>\n<body><div class="m-header"><a href="{BASE}/">'
                "Báo Tuyên Quang điện tử</a></div><p>Phiên bản di động</p></body></html>\n")

    # -------------------------------------------------------------- routing
    def page(self, host: str, path: str) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for a portal URL (query ignored)."""
        if host == MOBILE_HOST:
            if path == "/robots.txt":
                return 200, "text/plain", (MOBILE / "robots.txt").read_bytes()
            if path == "/":
                return 200, HTML, self.mobile_home().encode()
            return 404, HTML, self._not_found
        if path == "/robots.txt":
            return 200, "text/plain", (SITE / "robots.txt").read_bytes()
        if path in ("/", "/index.html"):
            return 200, HTML, self.listing_html(None, None, 1).encode()
        if path in self._static:
            return 200, HTML, self.listing_html(None, None, 1).encode()
        if path == "/sitemap.xml":
            return 200, "application/xml", self.sitemap_index().encode()
        if path == "/sitemap-categories.xml":
            return 200, "application/xml", self.sitemap_categories().encode()
        m = re.fullmatch(r"/sitemap-articles-(\d+)\.xml", path)
        if m and (xml := self.sitemap_articles(int(m.group(1)))):
            return 200, "application/xml", xml.encode()
        m = re.fullmatch(r"/rss/([a-z-]+)\.rss", path)
        if m and (xml := self.rss(None if m.group(1) == "home" else m.group(1))):
            return 200, "application/rss+xml; charset=utf-8", xml.encode()
        if path.endswith((".jpg", ".jpeg", ".png", ".gif", ".ico")):
            return 200, "image/jpeg", TINY_JPEG
        if path.endswith((".css", ".js")):
            return 200, "text/css" if path.endswith(".css") else "application/javascript", b"/* */\n"
        i = self.index_of(path)
        if i is not None:
            return 200, HTML, self.article_html(i).encode()
        m = re.fullmatch(r"/([a-z-]+)/(?:([a-z-]+)/(?:trang-(\d+)\.html)?)?", path)
        if m:
            s, b, k = m.group(1), m.group(2), int(m.group(3) or 1)
            sec = next((x for x in SECTIONS if x[0] == s), None)
            if sec and (b is None or b in dict(sec[2])) and (html := self.listing_html(s, b, k)):
                return 200, HTML, html.encode()
        return 404, HTML, self._not_found

    def respond(self, host: str, path: str, accept_gzip: bool) -> tuple[int, list[tuple[str, str]], bytes]:
        """``(status, headers, body)``; HTML/XML bodies gzip-encoded when accepted."""
        status, ctype, body = self.page(host, path)
        headers = [("Content-Type", ctype), ("Cache-Control", "max-age=60")]
        if accept_gzip and not ctype.startswith("image/") and len(body) > 256:
            body = gzip.compress(body, compresslevel=6, mtime=0)
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        return status, headers, body


# ------------------------------------------------------------------ server
def start_server(portal: SyntheticPortal):
    """Serve ``portal`` as the replica does (an HTTP(S) forward proxy for the portal's
    hosts on 127.0.0.1, TLS inside ``CONNECT`` tunnels, any other host refused), with
    no delay and without the replica's per-request log (a 50,000-page crawl would
    keep 50,000 entries). Returns the started server; ``server.hits`` counts the
    portal requests answered, ``server.proxy_url`` is the proxy to use."""
    from tests.replica.server import ReplicaServer, _Reply

    class SyntheticServer(ReplicaServer):
        def __init__(self):
            super().__init__(root=PORTAL, port=0)  # the fixture's routes are loaded but never used
            self.hits = 0

        def serve(self, method, scheme, host, path, query, headers):
            self.hits += 1  # an approximate count is enough (threads, no lock)
            accept = (headers.get("Accept-Encoding") or "").lower()
            status, out, body = portal.respond(host, path, "gzip" in accept)
            return _Reply(status, out, b"" if method == "HEAD" else body)

    return SyntheticServer().start()
