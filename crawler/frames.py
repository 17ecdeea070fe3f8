"""Length-prefixed pickle frames over a pipe, between the crawl process and its
child processes (:mod:`crawler.cpu_worker`, :mod:`crawler.warc.sink`).

A frame is a 4-byte big-endian length and a pickle. Pickles are only read from a
child the crawl started, over its own pipe, or from that crawl by the child.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, BinaryIO, Iterator

__all__ = ["HEADER", "frame", "read_frame", "FrameReader"]

HEADER = struct.Struct(">I")


def frame(obj: Any) -> bytes:
    """``obj`` pickled (highest protocol) behind its length."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> Any | None:
    """The next frame's object from a blocking ``stream``; ``None`` at EOF (a torn
    last frame included)."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    payload = _read_exactly(stream, HEADER.unpack(header)[0])
    return None if payload is None else pickle.loads(payload)


class FrameReader:
    """Frames from a byte stream that arrives in pieces (a Twisted ``outReceived``)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[Any]:
        """The objects of every frame completed by ``data``, in order."""
        buf = self._buf
        buf += data
        while len(buf) >= HEADER.size:
            (n,) = HEADER.unpack_from(buf)
            if len(buf) < HEADER.size + n:
                return
            obj = pickle.loads(bytes(buf[HEADER.size : HEADER.size + n]))
            del buf[: HEADER.size + n]
            yield obj
