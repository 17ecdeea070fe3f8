"""CDXJ indexes of WARC files, made with cdxj-indexer (the indexer pywb and
wacz use), and read back for ``newsarchive warc list|get|check``.

A CDXJ line is ``<SURT url key> <14-digit timestamp> <JSON>``; the JSON holds
``url``, ``mime`` (``warc/revisit`` for revisit records), ``status``,
``digest``, ``length``, ``offset`` and ``filename`` (the WARC's basename). Only
``response``, ``revisit`` and ``resource`` records are indexed (cdxj-indexer's
default; ``request`` and warc-fields ``metadata`` records are not captures).
Lines are sorted, so the file is ready for pywb as it is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

CDXJ_SUFFIX = ".cdxj"

#: Index lines sorted in memory at a time; more are merged from sorted temporary files
#: (cdxj-indexer's external sort). Its default, 32 MiB of text, is a whole 1 GB WARC's
#: index held by the crawl process at the end of a run (about 25 MiB at 50,000 pages).
SORT_BUFFER_BYTES = 4 * 1024 * 1024


def cdxj_path(warc_path: str | os.PathLike[str]) -> Path:
    """``<file>.warc.gz`` → ``<file>.warc.gz.cdxj`` (next to it)."""
    warc_path = Path(warc_path)
    return warc_path.with_name(warc_path.name + CDXJ_SUFFIX)


def write_cdxj(warc_path: str | os.PathLike[str]) -> Path:
    """Index one closed WARC file into ``<file>.cdxj`` beside it and return that path.

    Written to a temporary name and renamed, so a crash never leaves half an
    index that looks complete. Raises whatever cdxj-indexer / warcio raise for
    an unreadable file (``warcio.exceptions.ArchiveLoadFailed``, ``OSError``).
    """
    from cdxj_indexer.main import CDXJIndexer

    warc_path = Path(warc_path)
    out = cdxj_path(warc_path)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    try:
        CDXJIndexer(output=str(tmp), inputs=[str(warc_path)], sort=True,
                    max_sort_buff_size=SORT_BUFFER_BYTES).process_all()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def remove_orphan_index_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the partial indexes (``*.cdxj.tmp-<pid>``, see :func:`write_cdxj`) in
    ``directory`` whose writing process is gone (killed while indexing); return them.
    A temporary file of a live process is left alone."""
    removed = []
    for tmp in sorted(Path(directory).glob("*.cdxj.tmp-*")):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            continue  # its process still runs
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue  # not one of ours, or another user's live process
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def ensure_cdxj(warc_path: str | os.PathLike[str]) -> Path:
    """The index of ``warc_path``: the existing one when it is newer than the
    WARC, otherwise a fresh one (:func:`write_cdxj`)."""
    out = cdxj_path(warc_path)
    try:
        if out.stat().st_mtime_ns >= Path(warc_path).stat().st_mtime_ns:
            return out
    except FileNotFoundError:
        pass
    return write_cdxj(warc_path)


@dataclass(frozen=True)
class CdxjEntry:
    """One capture from a CDXJ index.

    ``key`` is the store key of the WARC file holding it (``warc/YYYY/MM/DD/…``),
    derived from the index's own key; ``timestamp`` is 14 digits (UTC).
    """

    urlkey: str
    timestamp: str
    url: str
    mime: str
    status: str
    digest: str
    offset: int
    length: int
    filename: str
    key: str

    @property
    def is_revisit(self) -> bool:
        """True for a ``revisit`` record (cdxj-indexer's mime ``warc/revisit``)."""
        return self.mime == "warc/revisit"


def parse_cdxj(text: str, warc_key: str | None = None) -> list[CdxjEntry]:
    """Parse CDXJ ``text``; ``warc_key`` names the WARC in the store (default:
    each line's ``filename``). Blank lines and ``!`` header lines are skipped.

    Raises:
        ValueError: a line is not ``urlkey timestamp {json}``.
    """
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("!"):
            continue
        try:
            urlkey, timestamp, blob = line.split(" ", 2)
            data = json.loads(blob)
            out.append(
                CdxjEntry(
                    urlkey=urlkey,
                    timestamp=timestamp,
                    url=data.get("url", ""),
                    mime=data.get("mime", ""),
                    status=str(data.get("status", "-")),
                    digest=data.get("digest", ""),
                    offset=int(data["offset"]),
                    length=int(data["length"]),
                    filename=data.get("filename", ""),
                    key=warc_key or data.get("filename", ""),
                )
            )
        except (ValueError, KeyError) as exc:
            raise ValueError(f"line {n}: not a CDXJ line ({exc}): {line[:120]!r}") from None
    return out


def url_key(url: str) -> str:
    """The SURT key cdxj-indexer files ``url`` under (scheme and ``www.`` dropped,
    host reversed, query sorted), so a look-up matches what the indexer wrote."""
    import surt

    try:
        return surt.surt(url)
    except Exception:  # noqa: BLE001 - cdxj-indexer falls back to the URL the same way
        return url
