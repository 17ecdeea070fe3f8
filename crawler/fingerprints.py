"""Sets of 128-bit fingerprints at 16 bytes an entry, for per-URL bookkeeping that
grows with the portal: Scrapy's request dupefilter and the spider's URL sets.

A Python ``set`` of fingerprints costs about 90 bytes an entry (a 20-byte ``bytes``
object, 53 bytes, plus its hash-table slot at the table's load factor): 6.5 MiB for
the 53,535 requests of a 50,000-article crawl, and a crawl of a portal's whole back
catalogue holds millions. :class:`FingerprintSet` keeps the fingerprints in two sorted
``uint64`` arrays (high and low halves) and only the most recent additions in a
Python set, merged into the arrays every ``merge_every`` additions (one copy of the
arrays, no sort of what is already there): the shape of ``_BandIndex`` in
:mod:`crawler.neardup`.

Fingerprints are the first 16 bytes of a cryptographic digest (Scrapy's SHA-1 request
fingerprint, a BLAKE2b digest of a URL): two distinct requests share one with
probability about n²/2¹²⁹, nil at any crawl size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
from scrapy.dupefilters import RFPDupeFilter

#: Bytes of a fingerprint that are kept (128 bits).
FINGERPRINT_BYTES = 16
#: Additions held in a Python set before they join the sorted arrays (about 1.5 MiB).
MERGE_EVERY = 16384


def _key(fp: bytes) -> bytes:
    if len(fp) < FINGERPRINT_BYTES:
        raise ValueError(f"a fingerprint needs at least {FINGERPRINT_BYTES} bytes, got {len(fp)}")
    return bytes(fp[:FINGERPRINT_BYTES])


def _halves(key: bytes) -> tuple[np.uint64, np.uint64]:
    # numpy scalars: searchsorted given a Python int above 2**63 converts the whole
    # array to object (about 60 µs a call at 100,000 entries, against 0.3).
    return np.uint64(int.from_bytes(key[:8], "big")), np.uint64(int.from_bytes(key[8:], "big"))


class FingerprintSet:
    """A set of fingerprints (``bytes`` of at least 16; the first 16 are kept) at
    about 16 bytes an entry once merged.

    ``add``, ``discard`` and ``in`` take O(log n) (``np.searchsorted``); every
    ``merge_every`` additions cost one O(n) copy of the arrays. Raises ValueError for
    a fingerprint shorter than 16 bytes. Iteration yields the kept 16 bytes, sorted."""

    __slots__ = ("_hi", "_lo", "_recent", "_removed", "_merge_every")

    def __init__(self, fingerprints: Iterable[bytes] = (), merge_every: int = MERGE_EVERY):
        if merge_every < 1:
            raise ValueError(f"merge_every must be at least 1, got {merge_every}")
        self._hi = np.empty(0, dtype=np.uint64)
        self._lo = np.empty(0, dtype=np.uint64)
        #: Added since the last merge (16-byte keys).
        self._recent: set[bytes] = set()
        #: Discarded entries still in the arrays (dropped at the next merge).
        self._removed: set[bytes] = set()
        self._merge_every = merge_every
        self.update(fingerprints)

    def _position(self, key: bytes) -> int | None:
        """Index of ``key`` in the arrays, or None."""
        hi, lo = _halves(key)
        a = int(self._hi.searchsorted(hi))
        # Equal high halves are as rare as a 64-bit collision: the run is 0 or 1 long.
        while a < len(self._hi) and self._hi[a] == hi:
            if self._lo[a] == lo:
                return a
            a += 1
        return None

    def __contains__(self, fp: bytes) -> bool:
        key = _key(fp)
        if key in self._recent:
            return True
        return key not in self._removed and self._position(key) is not None

    def add(self, fp: bytes) -> None:
        """Add ``fp`` (no effect when present)."""
        key = _key(fp)
        if key in self._recent:
            return
        if key in self._removed:
            self._removed.discard(key)  # still in the arrays
            return
        if self._position(key) is not None:
            return
        self._recent.add(key)
        if len(self._recent) >= self._merge_every:
            self._merge()

    def update(self, fingerprints: Iterable[bytes]) -> None:
        for fp in fingerprints:
            self.add(fp)

    def discard(self, fp: bytes) -> None:
        """Remove ``fp`` if present."""
        key = _key(fp)
        if key in self._recent:
            self._recent.discard(key)
        elif self._position(key) is not None:
            self._removed.add(key)

    def __len__(self) -> int:
        return len(self._hi) + len(self._recent) - len(self._removed)

    def __iter__(self) -> Iterator[bytes]:
        self._merge()
        for hi, lo in zip(self._hi.tolist(), self._lo.tolist()):
            yield hi.to_bytes(8, "big") + lo.to_bytes(8, "big")

    def _merge(self) -> None:
        hi, lo = self._hi, self._lo
        if self._removed:
            drop = np.zeros(len(hi), dtype=bool)
            drop[[self._position(key) for key in self._removed]] = True
            hi, lo = hi[~drop], lo[~drop]
            self._removed = set()
        if self._recent:
            # Big-endian halves sort as the bytes do.
            new = np.frombuffer(b"".join(sorted(self._recent)), dtype=">u8").astype(np.uint64).reshape(-1, 2)
            at = hi.searchsorted(new[:, 0])
            hi, lo = np.insert(hi, at, new[:, 0]), np.insert(lo, at, new[:, 1])
            self._recent = set()
        self._hi, self._lo = hi, lo

    @property
    def nbytes(self) -> int:
        """Bytes held by the sorted arrays (the merged entries)."""
        return self._hi.nbytes + self._lo.nbytes


def url_fingerprint(url: str) -> bytes:
    """The 16-byte BLAKE2b digest of ``url``'s UTF-8 bytes (lone surrogates kept)."""
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=FINGERPRINT_BYTES).digest()


class UrlSet:
    """A set of URLs held as their :func:`url_fingerprint` in a :class:`FingerprintSet`
    (about 16 bytes an entry against about 250 for the string in a ``set``)."""

    __slots__ = ("_fingerprints",)

    def __init__(self):
        self._fingerprints = FingerprintSet()

    def add(self, url: str) -> None:
        self._fingerprints.add(url_fingerprint(url))

    def discard(self, url: str) -> None:
        self._fingerprints.discard(url_fingerprint(url))

    def __contains__(self, url: str) -> bool:
        return url_fingerprint(url) in self._fingerprints

    def __len__(self) -> int:
        return len(self._fingerprints)

    def __iter__(self) -> Iterator[bytes]:
        """The members' fingerprints (16 bytes each), in byte order."""
        return iter(self._fingerprints)


class CompactDupeFilter(RFPDupeFilter):
    """Scrapy's :class:`~scrapy.dupefilters.RFPDupeFilter` (``DUPEFILTER_CLASS``) with
    its seen fingerprints in a :class:`FingerprintSet` instead of a ``set`` of
    ``bytes``: the same requests are filtered (the request fingerprinter's SHA-1,
    first 128 bits), at 16 bytes a request instead of about 90. ``JOBDIR``'s
    ``requests.seen`` is written and read as Scrapy writes it (the set is built by
    ``RFPDupeFilter.__init__`` and replaced here with its contents).

    Written against Scrapy 2.19, whose filter keeps the set in ``_fingerprints``;
    raises TypeError at start if that attribute is gone (a Scrapy upgrade), rather
    than filtering nothing."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        seen = getattr(self, "_fingerprints", None)
        if not isinstance(seen, set):
            raise TypeError("scrapy.dupefilters.RFPDupeFilter no longer keeps _fingerprints as a set; "
                            "CompactDupeFilter needs updating for this Scrapy version")
        self._fingerprints = FingerprintSet(seen)
