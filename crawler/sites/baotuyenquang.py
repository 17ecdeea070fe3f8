"""Profile of Báo Tuyên Quang (baotuyenquang.com.vn), desktop and ``m.`` templates.

Desktop article template (tests/fixtures/portal/README.md, "The site in brief"):
``div.breadcrumb`` › ``div.detail-main`` › ``h1.title-detail``, ``span.date-detail``
(``Ngày xuất bản: 17/10/2019 10:56:00 CH``), ``div.sapo-detail > strong`` (lead),
``div.content-detail`` (paragraphs, image tables/figures, byline, empty ``<p>&nbsp;</p>``,
sometimes the songs box), ``div.box-tags``. Mobile template (F02): ``div.m-breadcrumb``,
``article.m-detail`` › ``h1.m-title``, ``div.m-time``, ``div.m-sapo``, ``div.m-content``,
``div.m-tags span.tag``.

Body rules (gold conventions; FAULTS.md F18–F24, F27): body = content paragraphs in order,
intertitles and paragraphs with links included; not body: lead, image/video captions,
byline, NBSP-only paragraphs, table cells, songs/related/attachment boxes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from crawler.bylines import parse_byline
from crawler.dates import parse_vn_datetime
from crawler.sites.base import Doc, SiteProfile, Unreadable
from crawler.sites.html import Block, clean_text, flatten_blocks, image_src, node_text

__all__ = ["BaoTuyenQuang"]

# "Video: …" / "Clip: …" captions under embedded players (F20).
_VIDEO_CAPTION_RE = re.compile(r"^(video|clip)\s*:", re.IGNORECASE)
# A byline is a name line, not prose: long right-aligned paragraphs are quotes or notes.
_MAX_BYLINE_CHARS = 120
# Boxes that can sit inside the content block and are never article text (F23, F29).
_SKIP_CLASS_PREFIXES = ("box-", "adv", "banner", "related", "list-music", "list-related")


@dataclass
class ContentParts:
    """What one walk over the content block yields; shared by several fields."""

    body: list[str] = field(default_factory=list)
    #: ``(src as written in the page, caption)``; resolved to URLs by ``images()``.
    images: list[tuple[str, str | None]] = field(default_factory=list)
    byline: str | None = None
    lead_from_body: str | None = None


class BaoTuyenQuang(SiteProfile):
    """baotuyenquang.com.vn and its mobile twin m.baotuyenquang.com.vn.

    Article URLs: ``/<section>/<sub>/<slug>-<id>.html`` (to 2023), ``/<slug>-<id>.html``
    (2024+), ``/<section>/<slug>-<id>.html`` (pre-move, F12) on either host; pagination
    ``trang-N.html`` is not an article.
    """

    name = "baotuyenquang"
    hosts = ("baotuyenquang.com.vn", "m.baotuyenquang.com.vn")
    host_aliases = {
        "m.baotuyenquang.com.vn": "baotuyenquang.com.vn",
        "www.baotuyenquang.com.vn": "baotuyenquang.com.vn",
    }
    start_urls = ("https://baotuyenquang.com.vn/",)
    language_default = "vi"
    # Every absolute link on the portal is https; the only http:// self-reference is the
    # stale canonical of a pre-HTTPS page (F06).
    force_https = True
    # Ids are 6 digits today; >= 4 keeps "trang-2.html" (pagination) out. The first path
    # segment must not be one of the service prefixes (search, admin, files, feeds).
    article_path_re = re.compile(
        r"^/(?!(?:tim-kiem|admin|ajax|rss|file|media|static|images|_versions|_errors)/)"
        r"(?:[a-z0-9-]+/){0,2}[a-z0-9-]*[a-z][a-z0-9-]*-(?P<id>\d{4,})\.html$",
        re.IGNORECASE,
    )

    #: Where an article or listing page's own links are: the main column (article text,
    #: *Tin liên quan* and *Tin cùng chuyên mục* boxes, tag box, listing items, pagination,
    #: a section's subsection links, breadcrumb). Left out: header, the two copies of the
    #: menu, sidebar (*Đọc nhiều*, *Tin mới nhất*, songs, links) and footer, about 100 of
    #: an article page's ~125 links, the same on every page and all on the home page.
    MAIN_COLUMN = ("#main > div.col-left",)
    #: Pages read whole: the home page is where the menus and boxes above are followed.
    WHOLE_PAGE_PATHS = frozenset({"", "/", "/index.html"})

    # Desktop selector first, mobile second.
    DETAIL = ("div.detail-main", "article.m-detail", "div.m-detail")
    TITLE = ("div.detail-main h1.title-detail", "h1.title-detail", "h1.m-title")
    DATE = ("div.detail-main span.date-detail", "span.date-detail", "div.m-time")
    SAPO = ("div.detail-main div.sapo-detail", "div.sapo-detail", "div.m-sapo")
    CONTENT = ("div.detail-main div.content-detail", "div.content-detail", "div.m-content")
    TAGS = ("div.box-tags a", "div.m-tags .tag")
    TAG_BOX = ("div.box-tags", "div.m-tags")
    BREADCRUMB = ("div.breadcrumb [itemprop=name]", "div.m-breadcrumb a")
    HOME_LABELS = frozenset({"trang chủ", "home"})

    # ---------------------------------------------------------------- links

    def link_regions(self, url: str) -> tuple[str, ...]:
        """The main column on every page but the home page (``/``, ``/index.html``, either
        host). The mobile template has no main column: its pages are read whole."""
        try:
            path = urlsplit(url).path
        except ValueError:
            return ()
        return () if path in self.WHOLE_PAGE_PATHS else self.MAIN_COLUMN

    # ---------------------------------------------------------------- template

    def is_article_page(self, doc: Doc) -> bool:
        """Desktop ``div.detail-main`` or mobile ``article.m-detail`` present."""
        return doc.first(self.DETAIL) is not None

    def raw_article_text(self, doc: Doc) -> str:
        """Unnormalised title, lead, content and tags: only the article's own text, since
        related boxes legitimately show other articles' (possibly NFD) titles (F07)."""
        chunks = []
        for selectors in (self.TITLE, self.SAPO, self.CONTENT):
            el = doc.first(selectors)
            if el is not None:
                chunks.append(node_text(el))
        for css in self.TAGS:
            chunks.extend(node_text(s.root) for s in doc.sel.css(css))
        return "\n".join(chunks)

    # ---------------------------------------------------------------- fields

    def title(self, doc: Doc) -> str | None:
        """Visible ``h1`` (``h1.title-detail`` / ``h1.m-title``); JSON-LD/og:title only
        when the page has no (or an empty) headline (F26)."""
        el = doc.first(self.TITLE)
        return (clean_text(el) or None) if el is not None else None

    def published_at(self, doc: Doc) -> str | Unreadable | None:
        """``Ngày xuất bản`` line parsed with :func:`crawler.dates.parse_vn_datetime`
        (12-hour SA/CH clock, F25), ISO 8601 +07:00. A date line that cannot be read is
        :class:`Unreadable` (reported, never taken from JSON-LD instead, F25/F26); None
        when the page has no date line."""
        el = doc.first(self.DATE)
        if el is None:
            return None
        text = clean_text(el)
        return parse_vn_datetime(text) or Unreadable(text)

    def lead(self, doc: Doc) -> str | None:
        """Sapo text; if the sapo block is empty, a wholly bold first content paragraph
        (F22); ``""`` (no lead) when the page has a sapo block and neither."""
        sapo_el = doc.first(self.SAPO)
        lead = self._sapo(doc) or self._content(doc).lead_from_body
        if lead:
            return lead
        return "" if sapo_el is not None else None

    def body(self, doc: Doc) -> list[str] | None:
        """Content paragraphs in order (see module docstring for what is excluded)."""
        return list(self._content(doc).body) if self._has_content(doc) else None

    def authors_source(self, doc: Doc) -> tuple[list[str], str | None] | None:
        """From the byline paragraph via :func:`crawler.bylines.parse_byline` (F24);
        None when the content has no byline paragraph."""
        byline = self._content(doc).byline
        return parse_byline(byline) if byline else None

    def images(self, doc: Doc, url: str) -> list[dict] | None:
        """Content images ``{"url", "caption"}`` in order: table captions
        (``td.image_desc``), ``figcaption``, or the centred italic paragraph after an
        image-only paragraph (F21); absolute https URLs on the main host (F28)."""
        if not self._has_content(doc):
            return None
        base = self.base_url(doc, url)
        out: list[dict] = []
        seen: set[str] = set()
        for src, caption in self._content(doc).images:
            absolute = self.absolute_image_url(src, base)
            if absolute and absolute not in seen:
                seen.add(absolute)
                out.append({"url": absolute, "caption": caption})
        return out

    def tags(self, doc: Doc) -> list[str] | None:
        """Tag box link texts (desktop) or ``span.tag`` texts (mobile), deduplicated;
        None when the page has no tag box."""
        if doc.first(self.TAG_BOX) is None:
            return None
        out: list[str] = []
        for css in self.TAGS:
            for sel in doc.sel.css(css):
                t = clean_text(sel.root)
                if t and t not in out:
                    out.append(t)
            if out:
                break
        return out

    def section(self, doc: Doc) -> list[str] | None:
        """Breadcrumb names without the home item: ``[section, subsection]`` (F01: the
        pipeline keeps the canonical page's value); None without a breadcrumb."""
        out: list[str] = []
        for css in self.BREADCRUMB:
            for sel in doc.sel.css(css):
                t = clean_text(sel.root)
                if t and t.lower() not in self.HOME_LABELS:
                    out.append(t)
            if out:
                break
        return out or None

    # ---------------------------------------------------------------- content walk

    def _has_content(self, doc: Doc) -> bool:
        return doc.first(self.CONTENT) is not None

    def _sapo(self, doc: Doc) -> str:
        el = doc.first(self.SAPO)
        return clean_text(el) if el is not None else ""

    @staticmethod
    def _skip_box(el: Any) -> bool:
        classes = (el.get("class") or "").split()
        return any(c.startswith(_SKIP_CLASS_PREFIXES) for c in classes)

    def _content(self, doc: Doc) -> ContentParts:
        cached = doc.cache.get("content")
        if cached is not None:
            return cached
        parts = ContentParts()
        container = doc.first(self.CONTENT)
        if container is not None:
            self._walk(flatten_blocks(container, self._skip_box), parts,
                       sapo_empty=not self._sapo(doc))
        doc.cache["content"] = parts
        return parts

    def _walk(self, blocks: list[Block], parts: ContentParts, sapo_empty: bool) -> None:
        items = [b for b in blocks if not b.empty]

        # F24: the byline is the last non-empty paragraph, right-aligned.
        byline_block = None
        if items:
            last = items[-1]
            if (last.kind == "text" and not last.imgs and last.align == "right"
                    and len(last.text) <= _MAX_BYLINE_CHARS):
                byline_block = last
                parts.byline = last.text

        # F22: empty sapo -> a wholly bold first paragraph is the lead.
        lead_block = None
        if sapo_empty and items:
            first = items[0]
            if first.kind == "text" and not first.imgs and first is not byline_block and first.bold:
                lead_block = first
                parts.lead_from_body = first.text

        consumed: set[int] = set()

        def add_images(imgs: list[Any], captions: list[str | None]) -> None:
            for n, img in enumerate(imgs):
                src = image_src(img)
                if src:
                    caption = captions[n] if n < len(captions) else None
                    parts.images.append((src, caption or None))

        def caption_after(i: int) -> str | None:
            # F21(c): image-only paragraph followed by a centred, wholly italic paragraph.
            if i + 1 < len(items):
                nxt = items[i + 1]
                if (nxt.kind == "text" and nxt is not byline_block and not nxt.imgs
                        and nxt.italic and nxt.align == "center"):
                    consumed.add(i + 1)
                    return nxt.text
            return None

        for i, b in enumerate(items):
            if i in consumed or b is byline_block or b is lead_block:
                continue
            if b.kind == "embed":
                # F20: the video is not an image; its caption is not body text.
                if i + 1 < len(items):
                    nxt = items[i + 1]
                    if nxt.kind == "text" and not nxt.imgs and nxt is not byline_block and (
                            nxt.italic or _VIDEO_CAPTION_RE.match(nxt.text)):
                        consumed.add(i + 1)
                continue
            if b.kind in ("table", "figure"):
                # F19: table cells are never body; F21(a)/(b): image tables and figures.
                imgs = b.imgs
                if imgs:
                    captions = self._block_captions(b.el)
                    if not any(captions):
                        captions = [caption_after(i)]
                    add_images(imgs, captions)
                continue
            # text block
            if b.imgs:
                own = b.text
                if own and b.italic:
                    add_images(b.imgs, [own])  # image and its caption in one paragraph
                    continue
                add_images(b.imgs, [None] if own else [caption_after(i)])
                if own:
                    parts.body.append(own)
                continue
            if b.italic and _VIDEO_CAPTION_RE.match(b.text):
                continue  # stray video caption whose player was stripped
            parts.body.append(b.text)

    @staticmethod
    def _block_captions(el: Any) -> list[str | None]:
        """Captions inside an image table or figure, in order."""
        caps = el.xpath(
            ".//*[contains(concat(' ', normalize-space(@class), ' '), ' image_desc ')]"
            " | .//figcaption | .//caption"
        )
        return [clean_text(c) or None for c in caps]

