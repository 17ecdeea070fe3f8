"""``newsarchive warc check``: is a WARC file what it claims to be?

Per record (WARC 1.1, RFC 9110/9112):

* block and payload digests match the bytes (warcio's digest verifier, as
  ``warcio check`` does);
* the HTTP headers agree with the stored entity: a ``Content-Encoding`` whose
  bytes really are so encoded (gzip/deflate/br decoded completely), no
  ``Transfer-Encoding: chunked`` over bytes that are not chunked, a
  ``Content-Length`` equal to the entity's length;
* a revisit names what it revisits (``WARC-Refers-To-Target-URI`` and
  ``WARC-Refers-To-Date``, without which pywb answers 503) and that original is
  found (in the same file, or in the store's CDXJ indexes), with the same
  payload digest for the identical-payload-digest profile;
* checked as a store: every WARC file has its ``.cdxj`` index.

Problems are reported one line per record; :func:`check_stream` returns them
so the command can exit non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Callable

from crawler.warc.payload import KNOWN_CODINGS, PayloadError, decode_content, dechunk, parse_codings
from crawler.warc.retrieve import warc_date_to_timestamp


@dataclass(frozen=True)
class Problem:
    """One finding: where (file name, record offset, type, URI) and what."""

    file: str
    offset: int | None
    rec_type: str
    uri: str
    message: str
    severity: str = "error"  # or "warning" (reported, not counted as failure)

    def __str__(self) -> str:
        where = f"offset {self.offset}" if self.offset is not None else "file"
        uri = f" {self.uri}" if self.uri else ""
        return f"{self.file}: {where} {self.rec_type}{uri}: {self.severity}: {self.message}"


@dataclass
class CheckResult:
    """Records read and problems found in one or more files."""

    files: int = 0
    records: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """The problems that make the check fail (warnings excluded)."""
        return [p for p in self.problems if p.severity == "error"]


#: Resolves a revisit: (refers_to_uri, refers_to_date, digest or None) → found?
Resolver = Callable[[str, str, "str | None"], bool]

_NO_BODY_STATUSES = {204, 304}


def http_entity_problems(http_headers, payload: bytes, method: str | None = None) -> list[str]:
    """Disagreements between a response's HTTP headers and its stored entity
    (see module docstring). ``http_headers`` is a warcio ``StatusAndHeaders``."""
    problems = []
    try:
        status = int(http_headers.get_statuscode() or 0)
    except ValueError:
        status = 0
    headers = http_headers.headers
    te = [v for k, v in headers if k.lower() == "transfer-encoding"]
    entity = payload
    if any("chunked" in v.lower() for v in te):
        try:
            entity = dechunk(payload)
        except PayloadError as exc:
            problems.append(f"Transfer-Encoding: chunked but the stored bytes are not chunked ({exc})")
            entity = payload
    lengths = [v.strip() for k, v in headers if k.lower() == "content-length"]
    body_allowed = not (method == "HEAD" or 100 <= status < 200 or status in _NO_BODY_STATUSES)
    if lengths and not te and body_allowed:
        if len(set(lengths)) > 1:
            problems.append(f"conflicting Content-Length headers {lengths}")
        elif not lengths[0].isdigit() or int(lengths[0]) != len(payload):
            problems.append(f"Content-Length: {lengths[0]} but the stored entity is {len(payload)} bytes")
    elif not body_allowed and payload:
        problems.append(f"status {status} has no content by definition, but {len(payload)} bytes are stored")
    codings = parse_codings([v for k, v in headers if k.lower() == "content-encoding"])
    unknown = [c for c in codings if c not in KNOWN_CODINGS]
    if entity and codings and not unknown:
        try:
            decode_content(entity, codings)
        except PayloadError as exc:
            problems.append(f"bytes are not what Content-Encoding: {', '.join(codings)} says ({exc})")
    return problems


def check_stream(
    stream: IO[bytes],
    name: str,
    resolver: Resolver | None = None,
    result: CheckResult | None = None,
    captures: list[tuple[int, str, str]] | None = None,
) -> CheckResult:
    """Check every record of one WARC stream (see module docstring).

    Args:
        stream: the WARC file (gzip or not), read once, forward only.
        name: how the file is named in messages.
        resolver: finds revisit originals outside this file (the store's
            indexes); originals earlier in the same file are always found.
        result: accumulate into this result (several files, one report).
        captures: if given, ``(offset, type, uri)`` of every response, revisit
            and resource record is appended (to compare with the CDXJ index).
    """
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    result = result or CheckResult()
    result.files += 1
    # (url, 14-digit timestamp, digest) of full captures seen so far in this file
    seen: set[tuple[str, str, str]] = set()
    seen_url_ts: set[tuple[str, str]] = set()
    requests: dict[str, str] = {}  # WARC-Concurrent-To → request method
    it = ArchiveIterator(stream, check_digests=True)
    offset = None
    try:
        for rec in it:
            # Read the block before asking for the offset: warcio's
            # get_record_offset() skips to the end of an unread record.
            payload = rec.raw_stream.read()
            it.read_to_end(rec)
            offset = it.get_record_offset()
            result.records += 1
            h = rec.rec_headers
            rtype = rec.rec_type
            uri = h.get_header("WARC-Target-URI") or ""

            def problem(msg: str, severity: str = "error") -> None:
                result.problems.append(Problem(name, offset, rtype, uri, msg, severity))

            if captures is not None and rtype in ("response", "revisit", "resource"):
                captures.append((offset, rtype, uri))
            checker = rec.digest_checker
            if checker.passed is False:
                for p in checker.problems:
                    problem(f"digest mismatch: {p}")
            if h.get_header("WARC-Truncated"):
                problem(f"WARC-Truncated: {h.get_header('WARC-Truncated')}", "warning")

            if rtype == "request" and rec.http_headers is not None:
                rid = h.get_header("WARC-Concurrent-To")
                if rid:
                    requests[rid] = rec.http_headers.protocol  # warcio: method sits in .protocol
            elif rtype == "response" and rec.http_headers is not None:
                method = requests.get(h.get_header("WARC-Record-ID") or "")
                for msg in http_entity_problems(rec.http_headers, payload, method):
                    problem(msg)
                date = h.get_header("WARC-Date") or ""
                ts = warc_date_to_timestamp(date) if date else ""
                seen.add((uri, ts, h.get_header("WARC-Payload-Digest") or ""))
                seen_url_ts.add((uri, ts))
            elif rtype == "revisit":
                _check_revisit(h, payload, seen, seen_url_ts, resolver, problem)
    except ArchiveLoadFailed as exc:
        result.problems.append(Problem(name, offset, "-", "", f"unreadable after this record: {exc}"))
    return result


def _check_revisit(h, payload, seen, seen_url_ts, resolver, problem) -> None:
    ref_uri = h.get_header("WARC-Refers-To-Target-URI")
    ref_date = h.get_header("WARC-Refers-To-Date")
    profile = h.get_header("WARC-Profile") or ""
    if not ref_uri or not ref_date:
        problem("revisit without WARC-Refers-To-Target-URI and WARC-Refers-To-Date (replay tools cannot resolve it)")
        return
    if payload:
        problem(f"revisit record carries {len(payload)} payload bytes")
    digest = None
    if profile.endswith("/identical-payload-digest"):
        digest = h.get_header("WARC-Payload-Digest")
        if not digest:
            problem("identical-payload-digest revisit without WARC-Payload-Digest")
            return
    elif not profile.endswith("/server-not-modified"):
        problem(f"unknown revisit profile {profile!r}", "warning")
    ts = warc_date_to_timestamp(ref_date)
    found = (ref_uri, ts, digest) in seen if digest else (ref_uri, ts) in seen_url_ts
    if not found and resolver is not None:
        found = resolver(ref_uri, ref_date, digest)
    if not found:
        where = "in this file or the store" if resolver is not None else "in this file (no store to look in)"
        problem(f"original not found {where}: {ref_uri} at {ref_date}" + (f" with {digest}" if digest else ""))
