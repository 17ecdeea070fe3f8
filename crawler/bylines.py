"""Split a Vietnamese news byline into authors and a source (FAULTS.md F24).

The byline is the last, right-aligned paragraph of an article. Variants on the portal:

=========================  =======================  ==========
byline                     authors                  source
=========================  =======================  ==========
``Bài, ảnh: Hà Huế``       ``["Hà Huế"]``           ``None``
``Thanh Phúc``             ``["Thanh Phúc"]``       ``None``
``Thu Hà - Minh Đức``      ``["Thu Hà", "Minh Đức"]`` ``None``
``Theo TTXVN``             ``[]``                   ``"TTXVN"``
``(TTV)``                  ``[]``                   ``"TTV"``
``Thanh Hà (TTV)``         ``["Thanh Hà"]``         ``"TTV"``
``Nhóm PV``                ``["Nhóm PV"]``          ``None``
``Ảnh: Đức Long``          ``["Đức Long"]``         ``None``
=========================  =======================  ==========

``Theo X`` and ``(X)`` name a source (the agency the text was taken from), never an author.
"""

from __future__ import annotations

import re

from crawler.text import normalize_text

__all__ = ["parse_byline"]

# Role labels before a colon: "Bài, ảnh:", "Bài và ảnh:", "Ảnh:", "Tin, ảnh:", "Bài:",
# "Video:", "Clip:", "Đồ họa:", "Thực hiện:", "Nhóm phóng viên:" … Whatever precedes the
# colon is a role when it is short and made only of role words.
_ROLE_WORDS = {
    "bài", "ảnh", "tin", "video", "clip", "đồ", "họa", "hoạ", "thực", "hiện", "nội", "dung",
    "trình", "bày", "thiết", "kế", "và", "&", "văn", "bản", "ghi", "chép", "lược", "dịch",
    "biên", "tập", "infographic", "podcast", "phóng", "sự", "tác", "giả",
}
_ROLE_RE = re.compile(r"^\s*([^:：]{1,40})[:：]\s*")
_SOURCE_PREFIX_RE = re.compile(r"^\s*(?:theo|nguồn)\s*[:：]?\s+", re.IGNORECASE)
_TRAILING_PARENS_RE = re.compile(r"\(([^()]*)\)\s*$")
# Author separators: hyphen/en dash/em dash with spaces, comma, semicolon, slash, "và".
_SPLIT_RE = re.compile(r"\s+[-–—]\s+|\s*[;,/]\s*|\s+và\s+|\s*&\s*", re.IGNORECASE)


def _is_role_label(label: str) -> bool:
    words = [w for w in re.split(r"[\s,]+", label.lower()) if w]
    return bool(words) and all(w in _ROLE_WORDS for w in words)


def _strip_roles(s: str) -> str:
    """Remove leading role labels; "Bài: X; Ảnh: Y" keeps the names of every role."""
    parts = []
    for chunk in re.split(r"\s*[;|]\s*", s):
        m = _ROLE_RE.match(chunk)
        while m and _is_role_label(m.group(1)):
            chunk = chunk[m.end():]
            m = _ROLE_RE.match(chunk)
        parts.append(chunk)
    return "; ".join(p for p in parts if p)


def _clean_source(s: str) -> str | None:
    s = _SOURCE_PREFIX_RE.sub("", s).strip(" .:-–—")
    return s or None


def parse_byline(s: str | None) -> tuple[list[str], str | None]:
    """Return ``(authors, source)`` for one byline string.

    ``authors`` keeps the byline's order, without duplicates; ``source`` is ``None`` when the
    byline names none. The input is normalised with :func:`crawler.text.normalize_text`
    first. Empty or ``None`` input gives ``([], None)``. Never raises.
    """
    text = normalize_text(s)
    if not text:
        return [], None

    source: str | None = None
    # "Theo TTXVN" / "Nguồn: TTXVN": the whole byline is a source.
    if _SOURCE_PREFIX_RE.match(text):
        return [], _clean_source(text)

    # "(TTV)" or "Thanh Hà (TTV)": a trailing parenthesis names the source.
    m = _TRAILING_PARENS_RE.search(text)
    if m:
        source = _clean_source(m.group(1))
        text = text[: m.start()].strip()

    # "Thanh Hà - Theo TTXVN" style: a trailing "theo X" part is the source too.
    names: list[str] = []
    for part in _SPLIT_RE.split(_strip_roles(text)):
        part = part.strip(" .:-–—")
        if not part:
            continue
        if _SOURCE_PREFIX_RE.match(part + " "):
            source = source or _clean_source(part)
            continue
        if part not in names:
            names.append(part)
    return names, source
