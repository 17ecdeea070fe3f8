"""Bytes-to-record article extraction with quarantine decisions.

:func:`extract_article` is the one entry point the spider and the offline re-extractor call
with a fetched response's URL, body bytes and ``Content-Type``. It decodes (F09), checks
the body is whole (F15, F16), runs the site profile's field methods and decides whether
the result is a record or goes to quarantine. It never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from crawler.encoding import decode_html, ends_inside_utf8_sequence
from crawler.sites.base import SiteProfile

__all__ = ["Extraction", "extract_article", "QUARANTINE_REASONS"]

#: Quarantine reasons (``parse_error`` is followed by ``: <exception type>``).
QUARANTINE_REASONS = (
    "empty_body",       # F16: zero bytes or whitespace only
    "truncated_body",   # F15: no </html>, or bytes end inside a UTF-8 multibyte sequence
    "not_an_article",   # not HTML, no article template, or no article id
    "no_title",
    "unreadable_date",  # no readable "Ngày xuất bản" line; never guessed (F25)
    "no_content",       # no body paragraph, no image and no lead
    "parse_error",
)

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CLOSING_HTML_RE = re.compile(rb"</html\s*>", re.IGNORECASE)
# The closing tag is looked for near the end only: a "</html>" string inside an inline
# script earlier in a cut page must not make it look complete.
_TAIL_BYTES = 8192


@dataclass
class Extraction:
    """Outcome of :func:`extract_article`.

    Exactly one of ``record`` / ``quarantine`` is set. ``record``: dict with the keys of
    :data:`crawler.sites.base.RECORD_FIELDS`. ``quarantine``: reason code (see
    :data:`QUARANTINE_REASONS`). ``warnings``: codes such as ``charset_mismatch``,
    ``invalid_json_ld``, ``json_ld_date_disagrees_with_page``,
    ``json_ld_headline_disagrees_with_page``, ``canonical_uses_http``, ``text_in_nfd``.
    """

    record: dict | None = None
    quarantine: str | None = None
    warnings: list[str] = field(default_factory=list)


def _is_html(content_type: str | None) -> bool:
    if not content_type:
        return True  # unknown type: let the markup decide
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime in _HTML_TYPES or mime == ""


def _is_truncated(body: bytes, encoding: str) -> bool:
    if not _CLOSING_HTML_RE.search(body[-_TAIL_BYTES:]):
        return True
    return encoding == "utf-8" and ends_inside_utf8_sequence(body.rstrip(b" \t\r\n"))


def extract_article(profile: SiteProfile, url: str, body: bytes,
                    content_type: str | None) -> Extraction:
    """Extract one article record from a fetched page.

    ``url``: the page's real URL (after redirects; its identity, not a local test URL).
    ``body``: raw response bytes. ``content_type``: the ``Content-Type`` header or None.

    Checks, in order: ``empty_body`` -> ``not_an_article`` (non-HTML type) ->
    ``truncated_body`` -> decode -> parse (``parse_error: <type>``) -> ``not_an_article``
    (no article template / id) -> ``no_title`` -> ``unreadable_date`` -> ``no_content``.
    Any unexpected exception becomes ``parse_error: <ExceptionType>``; warnings gathered
    before the failure are kept.
    """
    warnings: list[str] = []
    try:
        body = body or b""
        if not body.strip():
            return Extraction(quarantine="empty_body", warnings=warnings)
        if not _is_html(content_type):
            return Extraction(quarantine="not_an_article", warnings=warnings)

        decoded = decode_html(body, content_type)
        warnings.extend(decoded.warnings)
        if _is_truncated(body, decoded.encoding):
            return Extraction(quarantine="truncated_body", warnings=warnings)

        try:
            doc = profile.parse_document(url, decoded.text)
        except Exception as exc:  # lxml/parsel on hostile input
            return Extraction(quarantine=f"parse_error: {type(exc).__name__}", warnings=warnings)

        if not profile.is_article_page(doc):
            return Extraction(quarantine="not_an_article", warnings=warnings)
        record, page_warnings = profile.parse_fields(doc)
        warnings.extend(w for w in page_warnings if w not in warnings)

        if not record.get("article_id"):
            return Extraction(quarantine="not_an_article", warnings=warnings)
        if not record.get("title"):
            return Extraction(quarantine="no_title", warnings=warnings)
        if not record.get("published_at"):
            return Extraction(quarantine="unreadable_date", warnings=warnings)
        if not record.get("body") and not record.get("images") and not record.get("lead"):
            return Extraction(quarantine="no_content", warnings=warnings)
        return Extraction(record=record, warnings=warnings)
    except Exception as exc:  # never let one page stop a crawl
        return Extraction(quarantine=f"parse_error: {type(exc).__name__}", warnings=warnings)
