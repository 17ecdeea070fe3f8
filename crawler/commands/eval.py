"""``newsarchive eval``: extraction quality and speed against gold records.

For every gold record (one JSON object a line: ``canonical_url`` and the expected
fields, as ``tests/fixtures/portal/gold/articles.jsonl``) the page that serves its
canonical URL is looked up in a replica folder (``routes.json`` format,
tests/fixtures/portal/README.md; for a route with ``versions`` the last version, which
gold holds) and extracted twice from the same bytes:

* ours: :func:`crawler.extract.extract_article` with the URL's site profile;
* trafilatura: ``bare_extraction(body, url=url, with_metadata=True,
  include_comments=False, date_extraction_params={"original_date": True, "outputformat":
  "%Y-%m-%dT%H:%M:%S%z"})`` (its defaults otherwise; the date format asks for the time
  of day, which gold has), mapped to our fields: ``title``; ``date`` → ``published_at``;
  ``author`` split on ``;`` → ``authors``; ``categories`` → ``section``; ``description``
  → ``lead``; ``tags`` split on commas; ``image`` → one image without caption; ``text``
  lines → ``body``; ``url`` → ``canonical_url``; ``language``. It has no ``source``.

Printed: per-field exact-match rate, body token-level F1 (bag of white-space tokens,
mean and minimum over pages) and the time per page of each extractor (best of
``--repeat`` passes over all pages, so start-up and caches do not count).

Goals (``--check`` exits 1 when one is missed): 100% exact on title, published_at,
authors, section and images (captions included), mean body F1 ≥ 0.99, ours ≥ 5× faster
than trafilatura per page. Exit 2: gold or pages not found/unreadable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from crawler.dates import parse_vn_datetime
from crawler.extract import extract_article
from crawler.sites import get_profile, profile_name_for
from crawler.text import normalize_text

__all__ = ["register", "evaluate", "EvalResult", "body_f1", "GOALS", "DEFAULT_GOLD", "DEFAULT_PAGES"]

_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_PAGES = _ROOT / "tests" / "fixtures" / "portal"
DEFAULT_GOLD = DEFAULT_PAGES / "gold" / "articles.jsonl"
#: Host of routes.json entries without ``host`` (tests/fixtures/portal/README.md).
DEFAULT_HOST = "baotuyenquang.com.vn"

#: Fields compared exactly, in table order.
FIELDS = ("title", "published_at", "authors", "source", "section", "lead", "tags", "images",
          "canonical_url", "language", "body")
#: field -> minimum exact-match rate; ``body_f1`` mean minimum; ``speedup`` minimum.
GOALS: dict[str, float] = {"title": 1.0, "published_at": 1.0, "authors": 1.0, "section": 1.0,
                           "images": 1.0, "body_f1": 0.99, "speedup": 5.0}


@dataclass
class Page:
    """One gold record and the bytes that serve it."""

    gold: dict
    url: str
    body: bytes
    content_type: str | None


@dataclass
class Scores:
    """Results of one extractor: per-field match counts, body F1 per page, seconds per
    page (best pass), misses ``[(article_id, field)]``."""

    name: str
    matches: Counter = field(default_factory=Counter)
    f1: list[float] = field(default_factory=list)
    seconds_per_page: float = 0.0
    misses: list[tuple[str, str]] = field(default_factory=list)

    def rate(self, name: str, pages: int) -> float:
        return self.matches[name] / pages if pages else 0.0


@dataclass
class EvalResult:
    """``pages``: number of gold pages; ``ours``/``trafilatura``: :class:`Scores`
    (``trafilatura`` None when skipped)."""

    pages: int
    ours: Scores
    trafilatura: Scores | None

    def missed_goals(self, *, speed: bool = True) -> list[str]:
        """Goals not reached, as readable strings (empty: all reached)."""
        out = []
        for name, goal in GOALS.items():
            if name == "body_f1":
                got = self.ours_f1_mean
                if got < goal:
                    out.append(f"body F1 {got:.4f} < {goal}")
            elif name == "speedup":
                if speed and self.speedup is not None and self.speedup < goal:
                    out.append(f"speed-up {self.speedup:.1f}x < {goal}x")
            elif self.ours.rate(name, self.pages) < goal:
                out.append(f"{name} {self.ours.rate(name, self.pages):.1%} < {goal:.0%}")
        return out

    @property
    def ours_f1_mean(self) -> float:
        return sum(self.ours.f1) / len(self.ours.f1) if self.ours.f1 else 0.0

    @property
    def speedup(self) -> float | None:
        if self.trafilatura is None or not self.ours.seconds_per_page:
            return None
        return self.trafilatura.seconds_per_page / self.ours.seconds_per_page


def body_f1(got: list[str] | None, gold: list[str]) -> float:
    """Token-level F1 of two bodies: white-space tokens of all paragraphs as bags
    (multisets). Two empty bodies score 1.0; one empty body 0.0."""
    g = Counter(" ".join(gold).split())
    p = Counter(" ".join(got or []).split())
    if not g and not p:
        return 1.0
    overlap = sum((g & p).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(g.values())
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------- loading


def load_pages(gold_path: Path, pages_dir: Path) -> list[Page]:
    """Gold records with the bytes serving their canonical URL. Raises ``OSError`` /
    ``ValueError`` / ``LookupError`` (no route for a canonical URL)."""
    routes = json.loads((pages_dir / "routes.json").read_text(encoding="utf-8"))
    by_key: dict[tuple[str | None, str], dict] = {}
    for r in routes:
        by_key.setdefault((r.get("host"), r["path"]), r)
    pages = []
    for line in gold_path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        gold = json.loads(line)
        url = gold["canonical_url"]
        p = urlsplit(url)
        path = p.path + (f"?{p.query}" if p.query else "")
        route = by_key.get((p.hostname, path))
        if route is None and p.hostname == DEFAULT_HOST:
            route = by_key.get((None, path))
        if route is None:
            raise LookupError(f"no route in {pages_dir / 'routes.json'} serves {url}")
        file, headers = route.get("file"), dict(route.get("headers") or {})
        if route.get("versions"):
            last = max(route["versions"], key=lambda v: v["from_request"])
            file = last["file"]
            headers.update(last.get("headers") or {})
        body = (pages_dir / file).read_bytes() if file else b""
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        pages.append(Page(gold, url, body, ctype))
    return pages


# ---------------------------------------------------------------- extractors


def ours(site: str | None) -> Callable[[Page], dict | None]:
    """Our extractor as ``page -> record`` (None when it quarantines the page)."""
    def run(page: Page) -> dict | None:
        profile = get_profile(site or profile_name_for([page.url]))
        return extract_article(profile, page.url, page.body, page.content_type).record
    return run


def trafilatura_extractor() -> Callable[[Page], dict | None]:
    """trafilatura's ``bare_extraction`` mapped to our field names (module docstring)."""
    from trafilatura import bare_extraction

    def run(page: Page) -> dict | None:
        doc = bare_extraction(
            page.body, url=page.url, with_metadata=True, include_comments=False,
            date_extraction_params={"original_date": True, "outputformat": "%Y-%m-%dT%H:%M:%S%z"},
        )
        if doc is None:
            return None
        get = lambda name: getattr(doc, name, None)  # noqa: E731
        clean = lambda s: normalize_text(s, decode_entities=False) if isinstance(s, str) else None  # noqa: E731
        split = lambda values, sep: [t for v in values or [] for t in (clean(x) for x in v.split(sep)) if t]  # noqa: E731
        return {
            "title": clean(get("title")) or None,
            "published_at": parse_vn_datetime(get("date")),
            "authors": split([get("author")] if get("author") else [], ";"),
            "source": None,
            "section": split(get("categories"), ","),
            "lead": clean(get("description")) or None,
            "tags": split(get("tags"), ","),
            "images": [{"url": get("image"), "caption": None}] if get("image") else [],
            "canonical_url": get("url"),
            "language": get("language"),
            "body": [t for t in (clean(x) for x in (get("text") or "").splitlines()) if t],
        }
    return run


def score(name: str, extractor: Callable[[Page], dict | None], pages: list[Page], repeat: int) -> Scores:
    """Run ``extractor`` over ``pages`` ``repeat`` times (at least once) and score the
    last pass; ``seconds_per_page`` is the best pass's total / number of pages."""
    best = float("inf")
    results: list[dict | None] = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        results = [extractor(p) for p in pages]
        best = min(best, time.perf_counter() - t0)
    s = Scores(name, seconds_per_page=best / len(pages) if pages else 0.0)
    for page, got in zip(pages, results):
        gold = page.gold
        for f in FIELDS:
            if got is not None and f in gold and got.get(f) == gold[f]:
                s.matches[f] += 1
            elif f in gold:
                s.misses.append((str(gold.get("article_id")), f))
        s.f1.append(body_f1(got.get("body") if got else None, gold.get("body") or []))
    return s


def evaluate(gold: Path = DEFAULT_GOLD, pages_dir: Path = DEFAULT_PAGES, *, site: str | None = None,
             repeat: int = 3, with_trafilatura: bool = True) -> EvalResult:
    """Score our extractor (and trafilatura unless ``with_trafilatura`` is False) on the
    gold pages. Raises like :func:`load_pages`."""
    pages = load_pages(gold, pages_dir)
    result = EvalResult(len(pages), score("ours", ours(site), pages, repeat), None)
    if with_trafilatura:
        result.trafilatura = score("trafilatura", trafilatura_extractor(), pages, repeat)
    return result


# ---------------------------------------------------------------- output


def format_table(result: EvalResult) -> str:
    """The comparison table, as the README shows it."""
    n = result.pages
    cols = [result.ours] + ([result.trafilatura] if result.trafilatura else [])
    head = f"{'field':<18}" + "".join(f"{c.name:>14}" for c in cols)
    lines = [head, "-" * len(head)]
    for f in FIELDS:
        label = "body (exact)" if f == "body" else f
        lines.append(f"{label:<18}" + "".join(f"{c.rate(f, n):>14.1%}" for c in cols))
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    lines.append(f"{'body F1 (mean)':<18}" + "".join(f"{mean(c.f1):>14.4f}" for c in cols))
    lines.append(f"{'body F1 (min)':<18}" + "".join(f"{min(c.f1, default=0):>14.4f}" for c in cols))
    lines.append(f"{'time per page':<18}" + "".join(f"{c.seconds_per_page * 1000:>11.2f} ms" for c in cols))
    if result.speedup is not None:
        lines.append(f"ours is {result.speedup:.1f}x faster per page than trafilatura")
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    try:
        result = evaluate(Path(args.gold), Path(args.pages), site=args.site, repeat=args.repeat,
                          with_trafilatura=not args.no_trafilatura)
    except (OSError, ValueError, LookupError, KeyError) as exc:
        print(f"newsarchive eval: {exc}", file=sys.stderr)
        return 2
    gold = os.path.relpath(args.gold) if not os.path.relpath(args.gold).startswith("..") else args.gold
    print(f"newsarchive eval: {result.pages} pages, gold {gold}")
    print(format_table(result))
    if args.show_misses:
        for sc in [result.ours] + ([result.trafilatura] if result.trafilatura else []):
            print(f"misses of {sc.name}: " + (", ".join(f"{a}:{f}" for a, f in sc.misses) or "none"))
    if args.check:
        missed = result.missed_goals(speed=not args.no_trafilatura)
        for goal in missed:
            print(f"goal missed: {goal}", file=sys.stderr)
        return 1 if missed else 0
    return 0


def register(subparsers) -> None:
    """Add ``eval`` to the ``newsarchive`` command line."""
    p = subparsers.add_parser(
        "eval", help="extraction quality and speed against gold, beside trafilatura",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--gold", default=str(DEFAULT_GOLD), metavar="PATH",
                   help="gold records, JSON Lines (default: %(default)s)")
    p.add_argument("--pages", default=str(DEFAULT_PAGES), metavar="DIR",
                   help="folder with routes.json and the pages it names (default: %(default)s)")
    p.add_argument("--site", default=None, help="site profile (default: by each URL's host)")
    p.add_argument("--repeat", type=int, default=3, help="timed passes; the best counts (default: 3)")
    p.add_argument("--no-trafilatura", action="store_true", help="score our extractor only")
    p.add_argument("--show-misses", action="store_true", help="list article_id:field of every miss")
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless the goals are met (100%% title/published_at/authors/section/images, "
                        "body F1 >= 0.99, >= 5x faster than trafilatura)")
    p.set_defaults(func=run_eval)
