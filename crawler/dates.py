"""Parse the date strings the portal shows into ISO 8601 with the +07:00 offset.

The article page prints ``Ngày xuất bản: 17/10/2019 10:56:00 CH`` — .NET's vi-VN ``tt``
designator: ``SA`` (sáng, a.m.) and ``CH`` (chiều, p.m.) on a 12-hour clock, so
``12:05:00 SA`` is five past midnight and ``12:15:00 CH`` a quarter past noon
(FAULTS.md F25). Other shapes seen on the site and in its feeds: ``Thứ năm, 17/10/2019 -
22:56`` (24-hour), ISO 8601 in JSON-LD / sitemaps, RFC 2822 ``pubDate`` with ``+0700``.

No fuzzy parsing and no dateparser: a string that does not match a known shape, carries a
contradictory clock (``13:00 CH``) or an impossible date (``31/02``) gives ``None``.
"""

from __future__ import annotations

import email.utils
import re
import unicodedata
from datetime import datetime, timedelta, timezone

__all__ = ["VN_TZ", "parse_vn_datetime", "to_vn_iso"]

#: Vietnam has used UTC+07:00 without DST since 1975.
VN_TZ = timezone(timedelta(hours=7))

_MERIDIEM = r"(?P<ampm>SA|CH|AM|PM)"
_DATE = r"(?P<d>\d{1,2})[/.\-](?P<m>\d{1,2})[/.\-](?P<y>\d{4})"
_TIME = r"(?P<H>\d{1,2})[:h](?P<M>\d{2})(?::(?P<S>\d{2}))?"
# Date then time, e.g. "17/10/2019 10:56:00 CH", "Thứ năm, 17/10/2019 - 22:56".
_DMY_TIME_RE = re.compile(
    rf"(?<!\d){_DATE}\s*(?:[-,|]\s*)?(?:lúc\s*)?{_TIME}(?:\s*{_MERIDIEM})?(?![\w:])",
    re.IGNORECASE,
)
# Time then date, e.g. "22:56 17/10/2019" or "10:56 CH, 17/10/2019".
_TIME_DMY_RE = re.compile(
    rf"(?<![\d:]){_TIME}(?:\s*{_MERIDIEM})?\s*(?:[-,|]\s*)?(?:ngày\s*)?{_DATE}(?!\d)",
    re.IGNORECASE,
)
_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_RFC2822_RE = re.compile(r"\b\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{1,2}:\d{2}")


def to_vn_iso(dt: datetime) -> str:
    """Format ``dt`` as ``YYYY-MM-DDTHH:MM:SS+07:00``; naive values are taken as Vietnam time."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=VN_TZ)
    return dt.astimezone(VN_TZ).replace(microsecond=0).isoformat()


def parse_vn_datetime(s: str | None) -> str | None:
    """Parse one date/time string from the portal; return ISO 8601 at +07:00 or ``None``.

    Accepted (surrounding text such as ``Ngày xuất bản:`` or a weekday is ignored):

    - ``dd/mm/yyyy hh:mm[:ss] SA|CH`` (also ``AM|PM``), 12-hour clock: ``12:xx SA`` -> 00:xx,
      ``12:xx CH`` -> 12:xx, ``hh CH`` -> hh+12 (F25). An hour outside 1..12 with a
      designator is contradictory -> ``None`` (``00:xx SA`` is accepted as 00:xx).
    - ``dd/mm/yyyy[ - |, ]hh:mm[:ss]`` without a designator: 24-hour clock.
    - ``hh:mm[:ss] [SA|CH] dd/mm/yyyy`` (time first).
    - ISO 8601 date-time (``2019-10-17T22:56:00+07:00``, ``…Z``); naive values are local time.
    - RFC 2822 (``Thu, 17 Oct 2019 22:56:00 +0700``), as in RSS ``pubDate``.

    A date without a time gives ``None``: the time would be a guess.
    """
    if not s or not isinstance(s, str):
        return None
    s = unicodedata.normalize("NFC", s).replace("\u00a0", " ").strip()
    if not s:
        return None

    if _ISO_RE.match(s):
        try:
            return to_vn_iso(datetime.fromisoformat(s))
        except (ValueError, OverflowError):  # 31/02; year 1 at +14:00 has no +07:00 time
            return None

    for rx in (_DMY_TIME_RE, _TIME_DMY_RE):
        m = rx.search(s)
        if m:
            return _from_parts(m)

    if _RFC2822_RE.search(s):
        try:
            return to_vn_iso(email.utils.parsedate_to_datetime(s))
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return None


def _from_parts(m: re.Match[str]) -> str | None:
    hour = int(m["H"])
    ampm = (m["ampm"] or "").upper()
    if ampm:
        if hour == 0 and ampm in ("SA", "AM"):
            pass  # "00:30 SA" is unambiguous even if .NET never prints it
        elif not 1 <= hour <= 12:
            return None
        elif ampm in ("SA", "AM"):
            hour %= 12  # 12:xx SA is just after midnight
        else:
            hour = hour % 12 + 12  # 12:xx CH is just after noon
    try:
        dt = datetime(
            int(m["y"]), int(m["m"]), int(m["d"]),
            hour, int(m["M"]), int(m["S"] or 0),
            tzinfo=VN_TZ,
        )
    except ValueError:  # 31/02, 25:00, 10:61 …
        return None
    return dt.isoformat()
