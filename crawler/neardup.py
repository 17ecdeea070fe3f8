"""Near-duplicate detection: MinHash signatures (datasketch) of word shingles of an
article's normalised text, and an LSH index over them.

Text: title, lead and body paragraphs, NFC, case-folded, split into words (``\\w+``,
so punctuation and spacing do not matter). Shingles: every run of ``shingle_size``
consecutive words. Two articles are near-duplicates when the MinHash estimate of the
Jaccard similarity of their shingle sets is at least ``threshold``: LSH (banding tuned
for ``threshold``) proposes candidates, the signature estimate confirms them, so a
candidate below the threshold is never reported.

Signatures are stored in the crawl state as bytes (:meth:`NearDuplicateIndex.to_bytes`)
with :attr:`NearDuplicateIndex.params` naming how they were built; signatures built
with other parameters are not comparable and are ignored.

``python -m crawler.neardup`` prints precision and recall over every pair of the
replica's gold articles for a range of thresholds (the table in README.md).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import numpy as np
from datasketch import MinHash, MinHashLSH

#: Defaults of ``NEWSARCHIVE_NEARDUP_THRESHOLD`` and ``NEWSARCHIVE_SHINGLE_SIZE`` (README,
#: "Near-duplicates": precision and recall measured on the replica's gold).
DEFAULT_THRESHOLD = 0.7
DEFAULT_SHINGLE_SIZE = 5
NUM_PERM = 128
SEED = 1
#: datasketch >= 2.0 hashing scheme; fixed so stored signatures stay comparable.
SCHEME = "affine32"

_WORD = re.compile(r"\w+")
#: Rows per block of the near-duplicate index's arrays (about 2.4 MiB a block).
BLOCK_ROWS = 4096


def words_of(title: str | None, lead: str | None, body: Sequence[str] | None) -> list[str]:
    """The words of an article's text (title, lead, body), NFC and case-folded."""
    text = " ".join([title or "", lead or "", *(body or [])])
    return _WORD.findall(unicodedata.normalize("NFC", text).casefold())


def shingles(words: Sequence[str], size: int) -> set[str]:
    """Every run of ``size`` consecutive words, joined by a space; a text shorter than
    ``size`` words is one shingle (empty set for no words)."""
    if not words:
        return set()
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


@lru_cache(maxsize=4)
def _permutations(num_perm: int):
    # datasketch draws a MinHash's permutations from its seed each time (a fifth of a
    # signature's cost); they are the same for every signature, so draw them once.
    return MinHash(num_perm=num_perm, seed=SEED, scheme=SCHEME).permutations


def signature_bytes(title: str | None, lead: str | None, body: Sequence[str] | None,
                    shingle_size: int = DEFAULT_SHINGLE_SIZE, num_perm: int = NUM_PERM) -> bytes:
    """The MinHash signature of an article's text (word shingles of ``shingle_size``,
    ``num_perm`` values, datasketch's ``affine32`` scheme and :data:`SEED`) as
    ``num_perm`` little-endian uint64 — the bytes the state stores. A pure function,
    so the crawl may run it in its worker process (crawler/cpu_pool.py)."""
    m = MinHash(num_perm=num_perm, seed=SEED, scheme=SCHEME, permutations=_permutations(num_perm))
    m.update_batch(s.encode("utf-8") for s in sorted(shingles(words_of(title, lead, body), shingle_size)))
    return np.asarray(m.hashvalues, dtype="<u8").tobytes()


#: Where :func:`attach_signature` keeps a signature on an item (Scrapy items take
#: attributes whose names start with "_"; they are not fields, never published).
_ATTACHED = "_newsarchive_signature"


def attach_signature(item, text: tuple, shingle_size: int, num_perm: int, signature: bytes) -> None:
    """Remember ``signature`` (bytes of :func:`signature_bytes`) on ``item``, computed
    from ``text`` (the item's :func:`signed_text` when the computation was sent off)
    with ``shingle_size`` and ``num_perm``; :func:`attached_signature` gives it back
    only while the item's text is still that text."""
    setattr(item, _ATTACHED, (shingle_size, num_perm, text, signature))


def signed_text(item) -> tuple:
    """``(title, lead, tuple(body))`` of an article item: what its signature covers."""
    return item.get("title"), item.get("lead"), tuple(item.get("body") or ())


def attached_signature(item, shingle_size: int, num_perm: int) -> bytes | None:
    """The signature :func:`attach_signature` left on ``item`` if it was computed with
    these parameters from the item's current title, lead and body; else None (the
    caller computes it). Comparing the text is cheap: unchanged fields are the same
    string objects."""
    attached = getattr(item, _ATTACHED, None)
    if attached is None or attached[:3] != (shingle_size, num_perm, signed_text(item)):
        return None
    return attached[3]


#: Entries (band hashes) buffered in a dict before they join the sorted arrays.
MERGE_EVERY = 16384
#: Odd 64-bit constant: band ``i``'s hash is stored plus ``i`` times this (mod 2⁶⁴),
#: so equal hashes of different bands do not meet (a meeting would only propose a
#: candidate, which the signature estimate then rejects).
_BAND_SALT = np.uint64(0x9E3779B97F4A7C15)


class _BandIndex:
    """Band hash -> rows: the candidate look-up of an LSH index in O(b log n) for ``b``
    bands over ``n`` articles, at 12 bytes an entry.

    Entries live in two sorted numpy arrays (keys uint64, rows uint32) and, until
    :data:`MERGE_EVERY` have come, in a dict; the dict's entries are then merged in
    (``np.searchsorted`` + ``np.insert``: one copy of the arrays, no sort). It is the
    shape of a log-structured merge tree with one level."""

    def __init__(self):
        self._keys = np.empty(0, dtype=np.uint64)
        self._rows = np.empty(0, dtype=np.uint32)
        self._recent: dict[int, list[int]] = {}
        self._pending = 0

    def add(self, keys: np.ndarray, row: int) -> None:
        """Index ``row`` under each of ``keys`` (uint64)."""
        for k in keys.tolist():
            self._recent.setdefault(k, []).append(row)
        self._pending += len(keys)
        if self._pending >= MERGE_EVERY:
            self._merge()

    def _merge(self) -> None:
        pairs = sorted((k, r) for k, rows in self._recent.items() for r in rows)
        keys = np.fromiter((k for k, _ in pairs), dtype=np.uint64, count=len(pairs))
        rows = np.fromiter((r for _, r in pairs), dtype=np.uint32, count=len(pairs))
        at = np.searchsorted(self._keys, keys, side="right")
        self._keys = np.insert(self._keys, at, keys)
        self._rows = np.insert(self._rows, at, rows)
        self._recent, self._pending = {}, 0

    def rows(self, keys: np.ndarray) -> set[int]:
        """Rows indexed under any of ``keys``."""
        found: set[int] = set()
        lo = np.searchsorted(self._keys, keys, side="left").tolist()
        hi = np.searchsorted(self._keys, keys, side="right").tolist()
        for a, b in zip(lo, hi):
            if b > a:
                found.update(self._rows[a:b].tolist())
        for k in keys.tolist():
            found.update(self._recent.get(k, ()))
        return found


class NearDuplicateIndex:
    """An in-memory LSH index of article signatures, keyed by article key.

    ``threshold`` in (0, 1]: the estimated Jaccard similarity from which two texts are
    near-duplicates; ``shingle_size`` >= 1 words. Raises ValueError otherwise.

    Banding is datasketch's (:class:`MinHashLSH`'s ``b`` bands of ``r`` values, chosen
    for ``threshold``), but the index is kept in numpy arrays rather than in
    ``MinHashLSH``'s dict-of-sets: every article of a run is indexed, and those took
    about 5 KiB an article (a 50,000-article crawl: 250 MiB) against about 0.8 KiB here
    (``b`` band hashes at 12 bytes each, the signature as ``num_perm`` 32-bit values,
    the key). A query looks its ``b`` band hashes up in sorted arrays
    (:class:`_BandIndex`: O(b log n); a scan of every indexed article's bands took
    about 1 ms a query at 50,000 and made a crawl quadratic). With ``signature_of``
    (the crawl passes its state's :meth:`~crawler.state.State.signature`), signatures
    are not kept here at all: only
    the band hashes (``b`` × 12 bytes an article) and the key, and a candidate's
    signature is read back to confirm it. Band hashes are 64-bit digests of the band's values: two
    different bands share one with probability 2⁻⁶⁴, and a candidate is confirmed by
    the signature estimate anyway.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, shingle_size: int = DEFAULT_SHINGLE_SIZE,
                 num_perm: int = NUM_PERM, signature_of: Callable[[str, str], bytes | None] | None = None):
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        if shingle_size < 1:
            raise ValueError(f"shingle size must be at least 1 word, got {shingle_size}")
        self.threshold = threshold
        self.shingle_size = shingle_size
        self.num_perm = num_perm
        #: Where signatures are read back, ``(key, params) -> bytes | None`` (the crawl
        #: state's :meth:`~crawler.state.State.signature`); None: kept in memory here.
        self._signature_of = signature_of
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)  # for its (b, r) only
        self.bands, self.rows = lsh.b, lsh.r
        #: Row of the arrays -> key (None: removed); key -> row.
        self._keys: list[str | None] = []
        self._row_of: dict[str, int] = {}
        # Blocks of BLOCK_ROWS rows of (BLOCK_ROWS, num_perm) uint32 signatures (without
        # signature_of). Fixed blocks rather than one array that doubles: no copy on
        # growth and at most one block of slack (a doubling array peaks at three times
        # what it holds).
        self._sig_blocks: list[np.ndarray] = []
        self._bands_of = _BandIndex()
        self._band_salt = np.arange(self.bands, dtype=np.uint64) * _BAND_SALT
        # Odd 64-bit multipliers: a band's hash is sum(value_j * mult_j) mod 2⁶⁴.
        rng = np.random.default_rng(SEED)
        self._mult = rng.integers(0, 2**63, size=self.rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)

    @property
    def params(self) -> str:
        """How signatures are built (shingle size, permutations, seed, scheme); stored
        beside each signature in the state."""
        return f"words{self.shingle_size}-p{self.num_perm}-s{SEED}-{SCHEME}"

    def signature(self, title: str | None, lead: str | None, body: Sequence[str] | None) -> MinHash:
        """MinHash of the article text's word shingles."""
        return self.from_bytes(signature_bytes(title, lead, body, self.shingle_size, self.num_perm))

    @staticmethod
    def to_bytes(m: MinHash) -> bytes:
        return np.asarray(m.hashvalues, dtype="<u8").tobytes()

    def from_bytes(self, blob: bytes) -> MinHash:
        values = np.frombuffer(blob, dtype="<u8")
        return MinHash(seed=SEED, scheme=SCHEME, hashvalues=values, permutations=_permutations(len(values)))

    def _values(self, m: MinHash) -> np.ndarray:
        values = np.asarray(m.hashvalues)
        if len(values) != self.num_perm:
            raise ValueError(f"expecting a MinHash of {self.num_perm} values, got {len(values)}")
        if values.max(initial=0) > 0xFFFFFFFF:
            raise ValueError("signature values exceed 32 bits (not the affine32 scheme)")
        return values.astype(np.uint32)

    def _band_hashes(self, values: np.ndarray) -> np.ndarray:
        """``bands`` 64-bit hashes of the first ``bands * rows`` values, band by band
        (band ``i``'s plus ``i`` × :data:`_BAND_SALT`)."""
        banded = values[: self.bands * self.rows].astype(np.uint64).reshape(self.bands, self.rows)
        with np.errstate(over="ignore"):
            return (banded * self._mult).sum(axis=1, dtype=np.uint64) + self._band_salt

    def __len__(self) -> int:
        return len(self._row_of)

    def add(self, key: str, m: MinHash) -> None:
        """Index ``key`` under signature ``m`` (replacing its previous signature)."""
        values = self._values(m)
        self.remove(key)
        row = len(self._keys)
        if self._signature_of is None:
            block, i = divmod(row, BLOCK_ROWS)
            if block == len(self._sig_blocks):
                self._sig_blocks.append(np.zeros((BLOCK_ROWS, self.num_perm), dtype=np.uint32))
            self._sig_blocks[block][i] = values
        self._bands_of.add(self._band_hashes(values), row)
        self._keys.append(key)
        self._row_of[key] = row

    def stored(self, key: str) -> bytes | None:
        """The signature indexed under ``key`` as :meth:`to_bytes` gives it, or None."""
        row = self._row_of.get(key)
        if row is None:
            return None
        if self._signature_of is not None:
            return self._signature_of(key, self.params)
        block, i = divmod(row, BLOCK_ROWS)
        return self._sig_blocks[block][i].astype("<u8").tobytes()

    def _equal_values(self, key: str | None, values: np.ndarray) -> int | None:
        """How many of ``values`` equal the stored signature of ``key`` (None: gone)."""
        blob = self._signature_of(key, self.params) if key is not None else None
        if blob is None or len(blob) != 8 * self.num_perm:
            return None
        return int(np.count_nonzero(np.frombuffer(blob, dtype="<u8") == values.astype(np.uint64)))

    def remove(self, key: str) -> None:
        row = self._row_of.pop(key, None)
        if row is not None:
            self._keys[row] = None  # its band hashes stay, and lead to no key

    def load(self, rows: Iterable[tuple[str, bytes]]) -> int:
        """Index stored ``(key, signature bytes)`` rows; returns how many."""
        n = 0
        for key, blob in rows:
            self.add(key, self.from_bytes(blob))
            n += 1
        return n

    def matches(self, m: MinHash, exclude: str | None = None) -> list[tuple[str, float]]:
        """Indexed keys whose estimated Jaccard similarity with ``m`` is at least the
        threshold, most similar first (ties by key)."""
        values = self._values(m)
        n = len(self._keys)
        if not n:
            return []
        # Candidates: any band equal (as MinHashLSH.query); confirmed by the estimate.
        rows = sorted(r for r in self._bands_of.rows(self._band_hashes(values)) if self._keys[r] is not None)
        if self._signature_of is None:
            same = [int(np.count_nonzero(self._sig_blocks[r // BLOCK_ROWS][r % BLOCK_ROWS] == values)) for r in rows]
        else:
            same = [self._equal_values(self._keys[row], values) for row in rows]
        found = []
        for row, equal in zip(rows, same):
            key = self._keys[row]
            if key == exclude or equal is None:
                continue
            jaccard = float(np.float64(equal) / np.float64(self.num_perm))  # as MinHash.jaccard
            if jaccard >= self.threshold:
                found.append((key, jaccard))
        return sorted(found, key=lambda kj: (-kj[1], kj[0]))


def evaluate(records: Sequence[dict], threshold: float, shingle_size: int) -> dict:
    """Precision and recall of near-duplicate detection over every unordered pair of
    ``records`` (dicts with ``article_id``, ``title``, ``lead``, ``body`` and the true
    ``near_duplicate_of``). A pair is predicted when the index, fed the records in
    order, reports one for the other. Returns ``{"threshold", "shingle_size", "pairs",
    "true_pairs", "predicted", "tp", "fp", "fn", "precision", "recall"}`` (precision
    1.0 when nothing is predicted)."""
    index = NearDuplicateIndex(threshold, shingle_size)
    predicted = set()
    for r in records:
        m = index.signature(r.get("title"), r.get("lead"), r.get("body"))
        for key, _ in index.matches(m):
            predicted.add(frozenset((key, r["article_id"])))
        index.add(r["article_id"], m)
    truth = {frozenset((r["article_id"], r["near_duplicate_of"])) for r in records if r.get("near_duplicate_of")}
    tp = len(predicted & truth)
    fp = len(predicted - truth)
    fn = len(truth - predicted)
    n = len(records)
    return {
        "threshold": threshold,
        "shingle_size": shingle_size,
        "pairs": n * (n - 1) // 2,
        "true_pairs": len(truth),
        "predicted": len(predicted),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
    }


def max_other_similarity(records: Sequence[dict], shingle_size: int) -> tuple[float, float]:
    """(estimated Jaccard of the least similar true pair, of the most similar other
    pair): the margin any threshold between them has."""
    index = NearDuplicateIndex(DEFAULT_THRESHOLD, shingle_size)
    sigs = {r["article_id"]: index.signature(r.get("title"), r.get("lead"), r.get("body")) for r in records}
    truth = {frozenset((r["article_id"], r["near_duplicate_of"])) for r in records if r.get("near_duplicate_of")}
    true_min, other_max = 1.0, 0.0
    for a, b in itertools.combinations(sigs, 2):
        j = float(sigs[a].jaccard(sigs[b]))
        if frozenset((a, b)) in truth:
            true_min = min(true_min, j)
        else:
            other_max = max(other_max, j)
    return true_min, other_max


def main() -> None:  # pragma: no cover - prints the README table
    import json
    from pathlib import Path

    gold = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "portal" / "gold" / "articles.jsonl"
    records = sorted((json.loads(line) for line in gold.open(encoding="utf-8")), key=lambda r: r["published_at"])
    print("| shingle size | threshold | predicted pairs | TP | FP | FN | precision | recall |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (1, 3, DEFAULT_SHINGLE_SIZE, 7):
        for threshold in (0.02, 0.3, 0.5, DEFAULT_THRESHOLD, 0.8, 0.85):
            r = evaluate(records, threshold, size)
            print(f"| {size} | {threshold} | {r['predicted']} | {r['tp']} | {r['fp']} | {r['fn']} | "
                  f"{r['precision']:.2f} | {r['recall']:.2f} |")
    for size in (1, 3, DEFAULT_SHINGLE_SIZE, 7):
        true_min, other_max = max_other_similarity(records, size)
        print(f"shingle size {size}: true pair {true_min:.3f}, most similar other pair {other_max:.3f}")


if __name__ == "__main__":  # pragma: no cover
    main()
