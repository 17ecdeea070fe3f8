"""Bytes-to-record article extraction with quarantine decisions.

:func:`extract_article` is the one entry point the spider, ``newsarchive eval`` and the
offline re-extractor call with a fetched response's URL, body bytes and ``Content-Type``.
It decodes (F09), checks the body is whole (F15, F16), recognises "not found" pages served
with status 200 (soft 404), runs the site profile's field methods and the fallback chain,
and decides whether the result is a record or goes to quarantine. It never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from crawler.encoding import decode_html, ends_inside_utf8_sequence
from crawler.sites.base import Doc, SiteProfile
from crawler.sites.metadata import opengraph
from crawler.text import body_text, normalize_text, word_count

__all__ = ["Extraction", "extract_article", "looks_like_not_found", "QUARANTINE_REASONS"]

#: Quarantine reasons (``parse_error`` is followed by ``: <exception type>``).
QUARANTINE_REASONS = (
    "empty_body",       # F16: zero bytes or whitespace only
    "truncated_body",   # F15: no </html>, or bytes end inside a UTF-8 multibyte sequence
    "not_an_article",   # not HTML, no article template, or no article id
    "soft_404",         # a 200 page that says the article does not exist
    "no_title",
    "unreadable_date",  # no readable date of publication; never guessed (F25)
    "no_content",       # no body: no paragraph, no image and no lead
    "invalid_<field>",  # a field breaks schemas/article.schema.json (validate stage)
    "parse_error",
)

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CLOSING_HTML_RE = re.compile(rb"</html\s*>", re.IGNORECASE)
# The closing tag is looked for near the end only: a "</html>" string inside an inline
# script earlier in a cut page must not make it look complete.
_TAIL_BYTES = 8192

# Headlines of "not found" pages (Vietnamese and English), matched at the start of the
# page title, an h1 or og:title.
_NOT_FOUND_RE = re.compile(
    r"^(?:lỗi|error)?\s*404(?:\s*(?:[-:–|!.]|$)|\s+(?:not found|error|page|lỗi))"
    r"|^(?:rất tiếc[,!.]?\s*)?(?:không tìm thấy|không tồn tại)"
    r"|^(?:trang|bài viết|bài báo|tin bài|tin|nội dung|đường dẫn)(?:\s+này)?\s+"
    r"(?:không tồn tại|không còn tồn tại|đã bị (?:xóa|xoá|gỡ|gỡ bỏ)|không tìm thấy)"
    r"|^(?:error\s*)?(?:page|article|content|story)?\s*not\s+found"
    r"|^(?:this|the)\s+(?:page|article)\s+(?:does\s+not|doesn't|no longer)\s+exists?",
    re.IGNORECASE,
)
# Markup of error templates: <div class="page-404">, id="not-found" …
_NOT_FOUND_MARKUP = (
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' page-404 ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' error-404 ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' not-found ')"
    " or @id='error-404' or @id='not-found' or @id='page-404']"
)
# A "not found" headline is short; an article with a body this long is never a soft 404.
_MAX_NOT_FOUND_HEADLINE = 120
_MIN_REAL_BODY_CHARS = 400


@dataclass
class Extraction:
    """Outcome of :func:`extract_article`.

    Exactly one of ``record`` / ``quarantine`` is set. ``record``: dict with the keys of
    :data:`crawler.sites.base.EXTRACTED_FIELDS` plus ``text`` and ``word_count``.
    ``quarantine``: reason code (see :data:`QUARANTINE_REASONS`). ``warnings``: codes
    such as ``charset_mismatch``, ``invalid_json_ld``,
    ``json_ld_date_disagrees_with_page``, ``json_ld_headline_disagrees_with_page``,
    ``canonical_uses_http``, ``text_in_nfd``, ``modified_before_published``.
    ``problems``: human-readable notes on what could not be read (``published_at: page:
    'hôm qua'``).
    """

    record: dict | None = None
    quarantine: str | None = None
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def detail(self) -> str | None:
        """Problems then warnings, ``; ``-separated (the quarantine entry's ``detail``)."""
        return "; ".join(self.problems + self.warnings) or None


def _is_html(content_type: str | None) -> bool:
    if not content_type:
        return True  # unknown type: let the markup decide
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime in _HTML_TYPES or mime == ""


def _is_truncated(body: bytes, encoding: str) -> bool:
    if not _CLOSING_HTML_RE.search(body[-_TAIL_BYTES:]):
        return True
    return encoding == "utf-8" and ends_inside_utf8_sequence(body.rstrip(b" \t\r\n"))


def _says_not_found(text: str | None) -> bool:
    text = normalize_text(text, decode_entities=False)
    return bool(text) and len(text) <= _MAX_NOT_FOUND_HEADLINE and bool(_NOT_FOUND_RE.match(text))


def looks_like_not_found(doc: Doc) -> bool:
    """True if the page presents itself as a "page/article not found" page: its
    ``<title>``, an ``<h1>`` or ``og:title`` starts like "Không tìm thấy trang", "Bài viết
    không tồn tại", "404", "Page not found" …, or it has error-page markup (``page-404``,
    ``not-found``). Used only on pages that are not (complete) articles, so an article
    whose text mentions such words is never affected (see :func:`extract_article`)."""
    heads = [" ".join(doc.root.xpath("//title//text()"))]
    heads += ["".join(h.itertext()) for h in list(doc.root.iter("h1"))[:3]]
    heads += opengraph(doc).get("og:title", [])
    if any(_says_not_found(h) for h in heads):
        return True
    return bool(doc.root.xpath(_NOT_FOUND_MARKUP))


def extract_article(profile: SiteProfile, url: str, body: bytes,
                    content_type: str | None) -> Extraction:
    """Extract one article record from a fetched page.

    ``url``: the page's real URL (after redirects; its identity, not a local test URL).
    ``body``: raw response bytes. ``content_type``: the ``Content-Type`` header or None.

    Checks, in order: ``empty_body`` -> ``not_an_article`` (non-HTML type) ->
    ``truncated_body`` -> decode -> parse (``parse_error: <type>``) -> ``soft_404`` /
    ``not_an_article`` (no article template) -> fields (profile, then fallback chain) ->
    ``not_an_article`` (no article id) -> ``soft_404`` (a "not found" page without a
    title, without content or with a body under 400 characters) -> ``no_title`` -> ``unreadable_date`` ->
    ``no_content``. The record schema itself is checked by the validate stage
    (:mod:`pipelines.validate`); the property tests hold extraction to it. Any unexpected
    exception becomes ``parse_error: <ExceptionType>``; warnings gathered before the
    failure are kept.
    """
    warnings: list[str] = []
    problems: list[str] = []

    def quarantine(reason: str) -> Extraction:
        return Extraction(quarantine=reason, warnings=warnings, problems=problems)

    try:
        body = body or b""
        if not body.strip():
            return quarantine("empty_body")
        if not _is_html(content_type):
            return quarantine("not_an_article")

        decoded = decode_html(body, content_type)
        warnings.extend(decoded.warnings)
        if _is_truncated(body, decoded.encoding):
            return quarantine("truncated_body")

        try:
            doc = profile.parse_document(url, decoded.text)
        except Exception as exc:  # lxml/parsel on hostile input
            return quarantine(f"parse_error: {type(exc).__name__}")

        if not profile.is_article_page(doc):
            return quarantine("soft_404" if looks_like_not_found(doc) else "not_an_article")
        record, page_warnings = profile.parse_fields(doc)
        warnings.extend(w for w in page_warnings if w not in warnings)
        problems.extend(f"{f}: {d}" for f, details in doc.problems.items() for d in details)

        has_content = bool(record.get("body") or record.get("images") or record.get("lead"))
        if not record.get("article_id"):
            return quarantine("not_an_article")
        thin = len(body_text(record.get("body"))) < _MIN_REAL_BODY_CHARS
        if (not record.get("title") or not has_content or thin) and looks_like_not_found(doc):
            return quarantine("soft_404")
        if not record.get("title"):
            return quarantine("no_title")
        if not record.get("published_at"):
            return quarantine("unreadable_date")
        if not has_content:
            return quarantine("no_content")
        record["text"] = body_text(record["body"])
        record["word_count"] = word_count(record["text"])
        return Extraction(record=record, warnings=warnings, problems=problems)
    except Exception as exc:  # never let one page stop a crawl
        return quarantine(f"parse_error: {type(exc).__name__}")
