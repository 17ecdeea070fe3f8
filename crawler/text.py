"""Text normalisation shared by extraction, deduplication and tests.

The rule is the one the gold data was written with (tests/fixtures/portal/README.md,
"Gold conventions"; FAULTS.md F07, F08): decode entities -> delete invisible format
characters -> NFC -> collapse all whitespace (NBSP included) to one space -> strip.
Nothing else: no quote, dash or typo fixing (the seed article keeps "họi viên").
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["INVISIBLE_CHARS", "normalize_text", "is_nfc", "body_text", "word_count"]

#: Characters deleted outright (not replaced by a space). Zero-width space/non-joiner/
#: joiner, word joiner and BOM come from the gold rule (F08); the soft hyphen is
#: invisible too and only ever appears as a paste artefact in CMS text.
INVISIBLE_CHARS = "\u200b\u200c\u200d\u2060\ufeff\u00ad"

_INVISIBLE_RE = re.compile(f"[{INVISIBLE_CHARS}]")
# In a str pattern ``\s`` is Unicode-aware: it covers NBSP (U+00A0), U+2000..U+200A,
# U+202F, U+3000, line/paragraph separators, tabs and newlines. Only runs that change
# are matched (two or more white-space characters, or one that is not a space): the
# same result as replacing every ``\s+`` run, without a replacement at every word.
_WS_RE = re.compile(r"\s{2,}|[^\S ]")
#: Every white-space character but the space (what ``\s`` and ``str.isspace`` match in
#: Unicode 15; tests/test_properties.py checks it against every code point). A class
#: of literal characters scans text about six times faster than ``[^\S ]``.
OTHER_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
                    "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_OTHER_WS_RE = re.compile(f"[{re.escape(OTHER_WHITESPACE)}]")


def normalize_text(s: str | None, *, decode_entities: bool = True) -> str:
    """Normalise one piece of visible text the way gold does.

    Steps, in order: ``html.unescape`` (``&agrave;`` ``&#7871;`` ``&nbsp;`` …) -> delete
    U+200B, U+200C, U+200D, U+2060, U+FEFF, U+00AD -> Unicode NFC -> collapse every run
    of whitespace (NBSP included) to one ASCII space -> strip. (Gold's rule names NFC
    before the deletion; the results are the same except that deleting first always
    ends in NFC, e.g. for a zero-width space between two combining marks.)

    ``decode_entities=False`` skips the first step. Use it for text that an HTML parser has
    already decoded: a literal ``&amp;lt;`` in the source is the visible text ``&lt;`` and
    must not be decoded a second time.

    ``None`` is treated as ``""``. Never raises for ``str`` input.
    """
    if not s:
        return ""
    if decode_entities and "&" in s:
        s = html.unescape(s)
    # Invisible characters go before NFC: deleting a ZWSP between two combining marks
    # after composing would leave the marks out of canonical order (not NFC).
    if _INVISIBLE_RE.search(s):
        s = _INVISIBLE_RE.sub("", s)
    s = unicodedata.normalize("NFC", s)
    # Most text has single spaces only: then the substitution would change nothing,
    # and two quick scans tell so (a quarter of the regex's time on a paragraph).
    if "  " in s or _OTHER_WS_RE.search(s):
        s = _WS_RE.sub(" ", s)
    return s.strip()


def is_nfc(s: str) -> bool:
    """True if ``s`` is already in Unicode NFC (used for the ``text_in_nfd`` warning, F07)."""
    return unicodedata.is_normalized("NFC", s)


#: Separator of body paragraphs in a record's ``text``.
PARAGRAPH_SEPARATOR = "\n\n"


def body_text(body: list[str] | None) -> str:
    """A record's ``text``: its body paragraphs joined with a blank line."""
    return PARAGRAPH_SEPARATOR.join(body or [])


def word_count(text: str | None) -> int:
    """Number of white-space separated words of ``text`` (for Vietnamese, syllables:
    "Tuyên Quang" is 2)."""
    return len(text.split()) if text else 0
