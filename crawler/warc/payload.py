"""HTTP entity helpers shared by capture, ``warc check`` and ``warc get``:
strict content decoding (RFC 9110 §8.4) and strict de-chunking (RFC 9112 §7.1).

"Strict" means a lie is an error: bytes labelled ``gzip`` that are not one
complete gzip stream, or a body labelled ``chunked`` that does not parse as
chunks, raise :class:`PayloadError` instead of being passed through the way
browsers and replay tools tolerate them.
"""

from __future__ import annotations

import zlib

#: Content codings this module can decode (``identity`` is a no-op).
KNOWN_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "br", "identity"})


class PayloadError(ValueError):
    """The entity bytes do not match what the HTTP headers say about them."""


def parse_codings(header_values: list[str] | str | None) -> list[str]:
    """``Content-Encoding`` values → list of codings in the order applied
    (lower case, ``identity`` dropped). Several header lines add up (RFC 9110 §5.3)."""
    if not header_values:
        return []
    if isinstance(header_values, str):
        header_values = [header_values]
    out: list[str] = []
    for value in header_values:
        out.extend(c.strip().lower() for c in value.split(",") if c.strip())
    return [c for c in out if c != "identity"]


def _gunzip(data: bytes) -> bytes:
    """One or more concatenated gzip members (RFC 1952 §2.2), all complete."""
    out = []
    while True:
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            out.append(d.decompress(data))
        except zlib.error as exc:
            raise PayloadError(f"not gzip data: {exc}") from None
        if not d.eof:
            raise PayloadError("gzip stream is truncated")
        data = d.unused_data
        if not data.strip(b"\x00"):  # trailing zero padding is tolerated by gzip(1)
            return b"".join(out)


def _inflate(data: bytes) -> bytes:
    """``deflate`` is zlib-wrapped (RFC 9110 §8.4.1.2); some servers send raw deflate."""
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(data)
        except zlib.error:
            continue
        if d.eof and not d.unused_data:
            return out
    raise PayloadError("not deflate (zlib or raw) data, or truncated")


def _unbrotli(data: bytes) -> bytes:
    try:
        import brotli
    except ImportError as exc:  # pragma: no cover - brotli is a dependency
        raise PayloadError("cannot check br: the brotli module is missing") from exc
    try:
        return brotli.decompress(data)
    except brotli.error as exc:
        raise PayloadError(f"not brotli data: {exc}") from None


_DECODERS = {"gzip": _gunzip, "x-gzip": _gunzip, "deflate": _inflate, "br": _unbrotli}


def decode_content(data: bytes, codings: list[str]) -> bytes:
    """Undo the content codings (listed in the order the server applied them).

    Raises:
        PayloadError: an unknown coding (e.g. ``zstd``, ``compress``), or bytes
            that are not a complete stream of the named coding.
    """
    for coding in reversed(codings):
        decoder = _DECODERS.get(coding)
        if decoder is None:
            raise PayloadError(f"unsupported Content-Encoding {coding!r}")
        try:
            data = decoder(data)
        except PayloadError as exc:
            raise PayloadError(f"Content-Encoding {coding}: {exc}") from None
    return data


def dechunk(data: bytes) -> bytes:
    """Decode ``Transfer-Encoding: chunked`` bytes (RFC 9112 §7.1); trailers are dropped.

    Raises:
        PayloadError: the bytes are not a complete chunked body.
    """
    out = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise PayloadError("chunked body: missing chunk-size line")
        size_field = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise PayloadError(f"chunked body: bad chunk size {size_field[:20]!r} at byte {pos}") from None
        if size < 0:
            raise PayloadError("chunked body: negative chunk size")
        pos = eol + 2
        if size == 0:
            # trailer section, then the final CRLF
            end = data.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                raise PayloadError("chunked body: no final CRLF")
            return b"".join(out)
        chunk = data[pos : pos + size]
        if len(chunk) != size or data[pos + size : pos + size + 2] != b"\r\n":
            raise PayloadError(f"chunked body: chunk at byte {pos} is truncated")
        out.append(chunk)
        pos += size + 2
