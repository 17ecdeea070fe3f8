"""Decode HTML response bodies to text (FAULTS.md F09).

Scrapy/w3lib let the HTTP header charset win over the page's ``<meta>``. The portal sends
at least one page as ``charset=iso-8859-1`` while its bytes and its ``<meta>`` are UTF-8,
which turns ``Yên Sơn`` into ``YÃªn SÆ¡n``. :func:`decode_html` resolves that case and keeps
a warning so the pipeline can report it.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from w3lib.encoding import (
    html_body_declared_encoding,
    http_content_type_encoding,
    resolve_encoding,
)

__all__ = ["Decoded", "decode_html", "is_valid_utf8", "ends_inside_utf8_sequence"]

# Longest BOM first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Declared encodings that are single-byte "Western" defaults. A page labelled with one of
# these whose bytes are valid, non-ASCII UTF-8 is mislabelled: real cp1252/latin-1 text is
# practically never valid UTF-8 by accident.
_LEGACY_SINGLE_BYTE = {"cp1252", "iso8859-1", "iso8859-15", "ascii"}
_CT_CHARSET_RE = re.compile(r"charset\s*=\s*[\"']?\s*([^\s;\"']+)", re.IGNORECASE)


@dataclass(frozen=True)
class Decoded:
    """Result of :func:`decode_html`.

    ``text``: the decoded document (BOM removed). ``encoding``: Python codec name actually
    used (``"utf-8"``, ``"cp1252"``, …). ``warnings``: machine-readable codes, e.g.
    ``"charset_mismatch"`` (F09), ``"unknown_charset"``, ``"decode_errors"``,
    ``"charset_detected"``.
    """

    text: str
    encoding: str
    warnings: list[str] = field(default_factory=list)


def _codec_name(label: str | None) -> str | None:
    """WHATWG-style label -> canonical Python codec name, or None if unknown."""
    if not label:
        return None
    resolved = resolve_encoding(label)  # maps iso-8859-1 -> cp1252 like browsers do
    if not resolved:
        return None
    try:
        return codecs.lookup(resolved).name
    except LookupError:
        return None


def is_valid_utf8(body: bytes) -> bool:
    """True if ``body`` decodes as strict UTF-8."""
    try:
        body.decode("utf-8", "strict")
    except UnicodeDecodeError:
        return False
    return True


def ends_inside_utf8_sequence(body: bytes) -> bool:
    """True if the last bytes of ``body`` are an incomplete UTF-8 multibyte sequence.

    Used to detect bodies cut mid-character (F15). Looks at most 4 bytes back for the lead
    byte of the final sequence; continuation bytes are ``10xxxxxx``.
    """
    n = len(body)
    for back in range(1, min(4, n) + 1):
        b = body[n - back]
        if b & 0b1100_0000 == 0b1000_0000:  # continuation byte: keep looking for the lead
            continue
        if b < 0x80:
            return False  # ASCII: the sequence before it is complete (or invalid, not cut)
        if b >= 0xF0:
            need = 4
        elif b >= 0xE0:
            need = 3
        elif b >= 0xC0:
            need = 2
        else:
            return False
        return back < need
    return False


def decode_html(body: bytes, content_type: str | None) -> Decoded:
    """Decode an HTML body to ``str``; never raises.

    Order of evidence:

    1. A byte-order mark wins (it is in the bytes themselves).
    2. If the HTTP ``Content-Type`` charset and the ``<meta>`` charset disagree and the
       bytes are valid UTF-8, decode as UTF-8 and warn ``charset_mismatch`` (F09).
       If they disagree and the bytes are not UTF-8, the header is used (HTTP precedence)
       and the warning is still recorded.
    3. Otherwise the declared charset (header, else meta). If that is a legacy single-byte
       charset but the bytes are valid non-ASCII UTF-8, UTF-8 is used with
       ``charset_mismatch`` (the same mislabelling as F09 without the meta hint).
    4. Nothing declared: strict UTF-8 if it decodes, else charset-normalizer detection
       (``charset_detected``), else cp1252.

    Undecodable bytes are replaced (U+FFFD) and reported as ``decode_errors``; callers that
    care about truncation check :func:`ends_inside_utf8_sequence` on the bytes first.
    """
    warnings: list[str] = []
    body = body or b""

    for bom, enc in _BOMS:
        if body.startswith(bom):
            return _decode(body[len(bom):], enc, warnings)

    # w3lib returns None for labels it cannot resolve; keep the raw label to report it.
    m = _CT_CHARSET_RE.search(content_type or "")
    header_label = (http_content_type_encoding(content_type) or m.group(1)) if m else None
    meta_label = html_body_declared_encoding(body)
    header = _codec_name(header_label)
    meta = _codec_name(meta_label)
    if header_label and not header:
        warnings.append("unknown_charset")
    if meta_label and not meta and "unknown_charset" not in warnings:
        warnings.append("unknown_charset")

    utf8_ok = is_valid_utf8(body)

    if header and meta and header != meta:
        warnings.append("charset_mismatch")
        return _decode(body, "utf-8" if utf8_ok else header, warnings)

    declared = header or meta
    if declared:
        if declared in _LEGACY_SINGLE_BYTE and utf8_ok and not body.isascii():
            warnings.append("charset_mismatch")
            return _decode(body, "utf-8", warnings)
        if declared == "utf-8" and not utf8_ok and not _only_cut_at_end(body):
            # Labelled UTF-8, but the bytes are something else (not just a page cut
            # mid-character, F15): let detection read them.
            detected = _detect(body)
            if detected and detected != "utf-8" and _decodes(body, detected):
                warnings.extend(["charset_mismatch", "charset_detected"])
                return _decode(body, detected, warnings)
        return _decode(body, declared, warnings)

    if utf8_ok:
        return _decode(body, "utf-8", warnings)
    detected = _detect(body)
    if detected:
        warnings.append("charset_detected")
        return _decode(body, detected, warnings)
    return _decode(body, "cp1252", warnings)


def _only_cut_at_end(body: bytes) -> bool:
    """True if the only UTF-8 error of ``body`` is an incomplete sequence at its end
    (a page cut mid-character, F15), not bytes of another charset."""
    try:
        body.rstrip(b" \t\r\n").decode("utf-8", "strict")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"
    return True


def _decodes(body: bytes, encoding: str) -> bool:
    try:
        body.decode(encoding, "strict")
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _detect(body: bytes) -> str | None:
    """charset-normalizer's best guess as a codec name, or None."""
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(body).best()
    except Exception:  # detection is best effort; never let it break decoding
        return None
    return _codec_name(best.encoding) if best is not None else None


def _decode(body: bytes, encoding: str, warnings: list[str]) -> Decoded:
    try:
        text = body.decode(encoding, "strict")
    except UnicodeDecodeError:
        text = body.decode(encoding, "replace")
        warnings.append("decode_errors")
    except LookupError:  # defensive: names reaching here were looked up already
        text = body.decode("utf-8", "replace")
        encoding = "utf-8"
        warnings.append("unknown_charset")
    return Decoded(text=text, encoding=encoding, warnings=warnings)
