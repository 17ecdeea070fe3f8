"""``make bench``: crawl a synthetic portal with and without the pipeline, and write BENCH.md.

Measured in one run (see :func:`main` for the options):

* pages/s of a *bare* crawl — the same ``portal`` spider through ``newsarchive crawl``
  with ``-s ITEM_PIPELINES={} -s WARC_ENABLED=False`` — against the *full* crawl
  (WARC capture and the clean/validate/dedup/publish pipelines);
* peak RSS (``ru_maxrss`` of the crawl process, from ``wait4``) of the full crawl at
  every size;
* WARC bytes written per second of crawl time in the full crawl;
* per-page extraction time of our extractor (``crawler.extract.extract_article``)
  against trafilatura's ``bare_extraction`` on the same pages;
* optionally (``--profile``) a py-spy sampling profile of a full crawl, summarised
  by component.

The portal (``bench/portal.py``) is served on 127.0.0.1 as the replica is — an HTTP(S)
forward proxy for the portal's hosts — so every crawl uses production URLs, obeys the
portal's robots.txt and differs from a live crawl only in ``https_proxy``. Both crawls
run with ``DOWNLOAD_DELAY=0`` and the same ``CONCURRENT_REQUESTS(_PER_DOMAIN)``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from importlib import metadata
from pathlib import Path

from bench.portal import SyntheticPortal, start_server

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

#: The issue's targets.
TARGET_THROUGHPUT_RATIO = 0.75
TARGET_RSS_GROWTH = 1.15
TARGET_EXTRACTION_SPEEDUP = 5.0


# ------------------------------------------------------------------- machine
def machine_info() -> dict:
    """CPU count and model, RAM, OS, Python and the versions of the libraries that matter."""
    model = ""
    try:
        model = next(
            (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), ""
        )
    except OSError:
        pass
    mem_gib = 0.0
    try:
        kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
        mem_gib = kb / 1024 / 1024
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("scrapy", "twisted", "lxml", "parsel", "warcio", "trafilatura", "htmldate", "boto3"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "-"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(mem_gib, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit or "-",
    }


# ---------------------------------------------------------------- extraction
def real_article_pages() -> list[tuple[str, bytes]]:
    """The replica's 200-status article pages with their production URLs."""
    portal = ROOT / "tests" / "fixtures" / "portal"
    pages = []
    for route in json.loads((portal / "routes.json").read_text("utf-8")):
        if route.get("kind") == "article" and route.get("status") == 200 and route.get("file"):
            body = (portal / route["file"]).read_bytes()
            if b"</html>" in body[-200:]:
                host = route.get("host", "baotuyenquang.com.vn")
                pages.append((f"https://{host}{route['path']}", body))
    return pages


def extraction_bench(portal: SyntheticPortal, sample: int, repeat: int) -> dict:
    """Mean and median per-page time (ms) of our extractor and trafilatura on ``sample``
    synthetic article pages plus the replica's real ones, each page ``repeat`` times."""
    import trafilatura

    from crawler.extract import extract_article
    from crawler.sites import get_profile

    profile = get_profile("baotuyenquang")
    step = max(1, portal.n // sample)
    pages = [(portal.article(i).url, portal.article_html(i).encode()) for i in range(0, portal.n, step)][:sample]
    pages += real_article_pages()

    def ours(url, body):
        return extract_article(profile, url, body, "text/html; charset=utf-8").record

    def traf_meta(url, body):
        return trafilatura.bare_extraction(body, url=url, with_metadata=True)

    def traf_text(url, body):
        return trafilatura.bare_extraction(body, url=url)

    out = {"pages": len(pages), "repeat": repeat, "mean_page_kib": round(statistics.mean(len(b) for _, b in pages) / 1024, 1)}
    for name, fn in (("ours", ours), ("trafilatura_metadata", traf_meta), ("trafilatura_text", traf_text)):
        for url, body in pages[:3]:  # warm-up: imports, caches
            fn(url, body)
        times, empty = [], 0
        for _ in range(repeat):
            for url, body in pages:
                t0 = time.perf_counter()
                result = fn(url, body)
                times.append(time.perf_counter() - t0)
                empty += result is None
        out[name] = {
            "mean_ms": round(statistics.mean(times) * 1000, 2),
            "median_ms": round(statistics.median(times) * 1000, 2),
            "failed": empty // repeat,
        }
    out["speedup_vs_metadata"] = round(out["trafilatura_metadata"]["mean_ms"] / out["ours"]["mean_ms"], 1)
    out["speedup_vs_text"] = round(out["trafilatura_text"]["mean_ms"] / out["ours"]["mean_ms"], 1)
    return out


# --------------------------------------------------------------------- crawls
def crawl_command(kind: str, store: Path, state: Path, run_id: str, concurrency: int, extra: list[str]) -> list[str]:
    cmd = [
        str(BIN / "newsarchive"), "crawl", "--store", str(store), "--state-dir", str(state), "--run-id", run_id,
        "--mode", "full",
        "-s", "DOWNLOAD_DELAY=0",
        # Throughput of the crawl itself: no Crawl-delay floor, no AutoThrottle, and
        # the same pages in both runs (page requisites are a WARC feature).
        "-s", "NEWSARCHIVE_OBEY_CRAWL_DELAY=False",
        "-s", "AUTOTHROTTLE_ENABLED=False",
        "-s", "WARC_PAGE_REQUISITES=False",
        "-s", f"CONCURRENT_REQUESTS={concurrency}",
        "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}",
        "-s", "LOG_LEVEL=INFO",
    ]
    if kind == "bare":
        cmd += ["-s", "ITEM_PIPELINES={}", "-s", "WARC_ENABLED=False"]
    return cmd + extra


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


class ThreadClock:
    """The on-CPU time and run-queue wait of one thread of a child process, read from
    ``/proc/<pid>/task/<tid>/schedstat`` (Linux: ``Documentation/scheduler/sched-stats.rst``,
    fields 1 and 2, in ns) every ``every`` seconds until the process is reaped; the
    last reading before its exit is kept (at most ``every`` s short). With the same
    readings, the process's own peak RSS (``VmHWM`` of ``/proc/<pid>/status``, KiB:
    ``hwm_kib``), which ``wait4``'s ``ru_maxrss`` cannot give: that is the largest of the
    process and its reaped children (the item process among them).

    Why: a crawl's reactor thread is the one the crawl waits on; its CPU time a page
    says how much work the crawl put on it, and the run-queue wait how long it was
    ready to run with no core free (bench/ANALYSIS.md, session 7), which pages/s
    alone cannot tell apart. Off Linux (no schedstat) both stay ``None``."""

    def __init__(self, pid: int, tid: int | None = None, every: float = 0.2):
        self.path = Path(f"/proc/{pid}/task/{tid or pid}/schedstat")
        self.status = Path(f"/proc/{pid}/status")
        self.hwm_kib: int | None = None
        self.every = every
        self.cpu_ns: int | None = None
        self.wait_ns: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-thread-clock", daemon=True)

    def start(self) -> "ThreadClock":
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            on_cpu, waited, _ = self.path.read_text().split()
        except (OSError, ValueError):
            return
        self.cpu_ns, self.wait_ns = int(on_cpu), int(waited)
        try:
            hwm = re.search(r"^VmHWM:\s+(\d+) kB", self.status.read_text(), re.M)
        except OSError:
            return
        if hwm:
            self.hwm_kib = int(hwm.group(1))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._read()

    def stop(self) -> None:
        """Stop sampling (call once the process has exited)."""
        self._stop.set()
        self._thread.join()

    def per(self, n: int) -> tuple[float | None, float | None]:
        """(CPU ms, wait ms) per unit for ``n`` units; ``None`` when never read."""
        if self.cpu_ns is None or not n:
            return None, None
        return round(self.cpu_ns / 1e6 / n, 2), round(self.wait_ns / 1e6 / n, 2)


def run_crawl(kind: str, portal: SyntheticPortal, server, workdir: Path, concurrency: int,
              extra: list[str] = (), prefix: list[str] = ()) -> dict:
    """One ``newsarchive crawl`` subprocess against ``server``; its figures."""
    run_id = f"bench-{kind}-{portal.n}"
    base = workdir / run_id
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    store, state = base / "archive", base / "state"
    cmd = list(prefix) + crawl_command(kind, store, state, run_id, concurrency, list(extra))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update({"http_proxy": server.proxy_url, "https_proxy": server.proxy_url, "no_proxy": "127.0.0.1,localhost"})
    hits0 = server.hits
    t0 = time.monotonic()
    with open(base / "stdout.log", "wb") as out, open(base / "stderr.log", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
        # The crawl's main thread runs the reactor: with a profiler prefix it is not
        # the crawl, so no clock then.
        clock = ThreadClock(proc.pid).start() if not prefix else None
        # wait4, not Popen.wait: it returns the rusage (ru_maxrss) of this child alone.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if clock is not None:
            clock.stop()
    wall = time.monotonic() - t0
    report_path = state / "runs" / f"{run_id}.json"
    if proc.returncode != 0 or not report_path.exists():
        tail = (base / "stderr.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{kind} crawl of {portal.n} articles exited {proc.returncode}:\n{tail}")
    report = json.loads(report_path.read_text())
    # The item stages' process reports its own peak (crawler/item_process.py).
    item_peak = re.search(r"'newsarchive/item_process/peak_rss_kib': (\d+)",
                          (base / "stderr.log").read_text(errors="replace"))
    crawl_kib = clock.hwm_kib if clock is not None and clock.hwm_kib else usage.ru_maxrss
    item_kib = int(item_peak.group(1)) if item_peak else 0
    reactor = clock.per(report["pages_fetched"]) if clock else (None, None)
    elapsed = (_parse_time(report["finished_at"]) - _parse_time(report["started_at"])).total_seconds()
    warc_bytes = sum(p.stat().st_size for p in (store / "warc").rglob("*.warc.gz")) if (store / "warc").exists() else 0
    published = 0
    for path in (store / "dataset").rglob("*.jsonl.gz") if (store / "dataset").exists() else ():
        import gzip

        published += sum(1 for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip())
    result = {
        "kind": kind,
        "articles": portal.n,
        "command": shlex.join(cmd),
        "pages": report["pages_fetched"],
        "server_hits": server.hits - hits0,
        "expected_pages": portal.page_count(),
        "elapsed_s": round(elapsed, 1),
        "wall_s": round(wall, 1),
        "pages_per_s": round(report["pages_fetched"] / elapsed, 1) if elapsed else 0.0,
        # The crawl process and its item process together: both hold the crawl's data.
        "peak_rss_mib": round((crawl_kib + item_kib) / 1024, 1),
        "crawl_rss_mib": round(crawl_kib / 1024, 1),
        "item_process_rss_mib": round(item_kib / 1024, 1) if item_kib else None,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        # The reactor thread's CPU time and run-queue wait a page, over the
        # process's whole life (start-up and closing included).
        "reactor_cpu_ms": reactor[0],
        "reactor_wait_ms": reactor[1],
        "warc_bytes": warc_bytes,
        "warc_mib_per_s": round(warc_bytes / elapsed / 2**20, 2) if elapsed else 0.0,
        "records_published": published,
        "dataset_objects": report.get("dataset_objects") or 0,
        "statuses": report["pages_by_status"],
    }
    return result


# -------------------------------------------------------------------- profile
#: (label, substring of a py-spy frame) — the first match from the leaf up names a sample.
PROFILE_BUCKETS = (
    ("WARC capture (warcio, zlib)", ("crawler/warc/", "warc_capture.py", "warcio/")),
    ("extraction (site profile, lxml/parsel)", ("crawler/extract.py", "crawler/sites/", "crawler/text.py", "crawler/encoding.py", "crawler/dates.py", "crawler/bylines.py", "extruct/")),
    ("publish (JSON, gzip, store)", ("pipelines/publish.py", "crawler/store.py")),
    ("dedup (SQLite state)", ("pipelines/dedup.py", "crawler/state.py")),
    ("clean + validate", ("pipelines/clean.py", "pipelines/validate.py")),
    ("link extraction (LinkExtractor)", ("scrapy/linkextractors/",)),
    ("sitemaps, feeds (spider)", ("parse_sitemap", "parse_feed", "scrapy/utils/sitemap.py")),
    ("HTTP decompression", ("httpcompression.py", "scrapy/utils/_compression.py")),
    ("request fingerprint, dupefilter, scheduler", ("scrapy/utils/request.py", "dupefilters.py", "scrapy/core/scheduler.py", "queuelib/")),
    ("HTTP client, TLS (Twisted)", ("scrapy/core/downloader/handlers/", "twisted/web/", "twisted/protocols/tls.py", "OpenSSL/")),
    ("robots.txt", ("robotstxt.py", "protego")),
)


def summarise_profile(raw: Path) -> list[tuple[str, float]]:
    """Share of CPU samples per component from py-spy's ``--format raw`` output
    (collapsed stacks ``frame;frame;… count``); the first bucket that matches a
    frame, scanning from the leaf up, names the sample."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        n = int(n)
        total += n
        frames = stack.split(";")
        label = "other Scrapy/Twisted/asyncio machinery"
        for frame in reversed(frames):
            hit = next((name for name, keys in PROFILE_BUCKETS if any(k in frame for k in keys)), None)
            if hit:
                label = hit
                break
        counts[label] += n
    return [(name, round(100 * c / total, 1)) for name, c in counts.most_common()] if total else []


def profile_full_crawl(portal: SyntheticPortal, server, workdir: Path, concurrency: int, extra: list[str] = ()) -> dict:
    """A full crawl under ``py-spy record`` (sampling, 100 Hz, idle time excluded)."""
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if not py_spy:
        return {"error": "py-spy is not installed (pip install -e '.[bench]')"}
    raw = workdir / f"profile-{portal.n}.txt"
    prefix = [py_spy, "record", "--format", "raw", "--rate", "100", "--nonblocking", "-o", str(raw), "--"]
    try:
        result = run_crawl("full", portal, server, workdir, concurrency, extra=extra, prefix=prefix)
    except RuntimeError as exc:
        return {"error": str(exc)[:500]}
    return {"articles": portal.n, "pages_per_s": result["pages_per_s"], "shares": summarise_profile(raw), "raw": str(raw)}


# --------------------------------------------------------------------- report
def _reactor_cell(r: dict) -> str:
    if r.get("reactor_cpu_ms") is None:
        return "–"
    return f"{r['reactor_cpu_ms']} ({r['reactor_wait_ms']})"


def _reactor_note(bare: float | None, full: float | None) -> str:
    # Beside the target, not instead of it: how much of the gap is work on the
    # reactor thread (the rest is waiting for a core, or idle).
    if not bare or not full:
        return ""
    return f"; reactor CPU a page {full} / {bare} ms (bare ÷ full = {bare / full:.2f})"


def _rss_cell(r: dict) -> str:
    if not r.get("item_process_rss_mib"):
        return f"{r['peak_rss_mib']}"
    return f"{r['peak_rss_mib']} ({r['crawl_rss_mib']} + {r['item_process_rss_mib']})"


def _mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def write_report(path: Path, data: dict) -> None:
    """BENCH.md from the measurements (and bench/ANALYSIS.md, the hand-written reading)."""
    m = data["machine"]
    lines = [
        "# Benchmark",
        "",
        f"Written by `make bench` (`bench/run.py`) on {data['date']}, commit `{m['commit']}`; "
        f"took {data['total_min']} min. Re-run with `make bench` (or `BENCH_ARGS=… make bench`).",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} CPUs ({m['cpu'] or 'unknown model'}), {m['ram_gib']} GiB RAM, {m['os']}",
        f"- Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "",
        "## How",
        "",
        f"`{data['argv']}`",
        "",
        "A synthetic portal (`bench/portal.py`: the replica's article and listing templates, "
        f"{data['page_kib']} KiB article pages on average, 15 articles a day, listings of 20 with paging, "
        "sitemaps of 5,000 URLs, RSS, one article in 50 also linked under `?fbclid=…`) is served from memory "
        "on 127.0.0.1 as an HTTP(S) forward proxy (gzip when asked), and crawled with production URLs by "
        "`newsarchive crawl` in a subprocess. Commands (the store and state folders are temporary):",
        "",
    ]
    for r in {(r["kind"], r["articles"]): r for r in data["crawls"]}.values():
        lines.append(f"- {r['kind']}, {r['articles']:,} articles: `{r['command']}`")
    lines += [
        "",
        "Throughput is pages fetched ÷ crawl time (Scrapy's start to finish, interpreter start-up excluded); "
        "peak RSS is the crawl process's peak (`VmHWM`) plus its item process's (the item stages' own "
        "process, which reports its `ru_maxrss`), each in brackets; WARC MiB/s is the size of the WARC files written ÷ crawl time; "
        "CPU s is user + system time of the crawl process (its CPU worker process included when the crawl "
        "reaped it); reactor CPU is the on-CPU time of the crawl process's main thread (the reactor's) a page "
        "fetched, over the process's whole life, with its run-queue wait (ready to run, no core free) in "
        "brackets, from `/proc/<pid>/task/<tid>/schedstat`: the crawl waits on that thread, so this says whether a slower crawl did more work there or waited for a core. "
        "At the sizes with a bare crawl, bare and full crawls take turns and the throughput target "
        "compares their medians: this machine's speed drifts between runs.",
        "",
        "## Crawls",
        "",
        "| crawl | articles | trial | pages (expected) | crawl s | pages/s | reactor CPU ms/page (wait) | peak RSS MiB | CPU s | WARC MiB | WARC MiB/s | records published | dataset objects |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["crawls"]:
        lines.append(
            f"| {r['kind']} | {r['articles']:,} | {r.get('trial', 1)} | {r['pages']:,} ({r['expected_pages']:,}) | {r['elapsed_s']} | "
            f"{r['pages_per_s']} | {_reactor_cell(r)} | {_rss_cell(r)} | {r['cpu_s']} | {r['warc_bytes'] / 2**20:.1f} | "
            f"{r['warc_mib_per_s']} | {r['records_published']:,} | {r['dataset_objects']:,} |"
        )
    e = data["extraction"]
    lines += [
        "",
        "## Extraction",
        "",
        f"{e['pages']} article pages ({e['mean_page_kib']} KiB on average: synthetic ones spread over the portal plus "
        f"the replica's real ones), each extracted {e['repeat']} times in one process.",
        "",
        "| extractor | mean ms/page | median ms/page | pages without a result |",
        "|---|---:|---:|---:|",
        f"| ours: `extract_article` (all record fields) | {e['ours']['mean_ms']} | {e['ours']['median_ms']} | {e['ours']['failed']} |",
        f"| trafilatura `bare_extraction(with_metadata=True)` | {e['trafilatura_metadata']['mean_ms']} | {e['trafilatura_metadata']['median_ms']} | {e['trafilatura_metadata']['failed']} |",
        f"| trafilatura `bare_extraction()` (text only) | {e['trafilatura_text']['mean_ms']} | {e['trafilatura_text']['median_ms']} | {e['trafilatura_text']['failed']} |",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for t in data["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {_mark(t['ok']) if t['ok'] is not None else 'not measured'} |")
    prof = data.get("profile")
    if prof:
        lines += ["", "## Where the time goes (profile)", ""]
        if "error" in prof:
            lines.append(f"Profile not taken: {prof['error']}")
        else:
            lines += [
                f"py-spy, 100 Hz, CPU samples of all threads of a full crawl of {prof['articles']:,} articles "
                f"({prof['pages_per_s']} pages/s under the profiler); the component is the innermost frame "
                "that belongs to one.",
                "",
                "| component | share of CPU samples |",
                "|---|---:|",
            ]
            lines += [f"| {name} | {share} % |" for name, share in prof["shares"]]
    analysis = ROOT / "bench" / "ANALYSIS.md"
    if analysis.exists():
        lines += ["", analysis.read_text("utf-8").rstrip()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def targets(crawls: list[dict], extraction: dict) -> list[dict]:
    """The issue's three targets against the measurements."""
    out = []
    sizes = sorted({r["articles"] for r in crawls if r["kind"] == "bare"})

    def median_of(kind: str, n: int, key: str, digits: int = 1) -> float | None:
        values = [r.get(key) for r in crawls if r["kind"] == kind and r["articles"] == n]
        if not values or None in values:
            return None
        return round(statistics.median(values), digits)

    for n in sizes:
        bare, full = median_of("bare", n, "pages_per_s"), median_of("full", n, "pages_per_s")
        if bare and full:
            ratio = full / bare
            trials = sum(1 for r in crawls if r["kind"] == "bare" and r["articles"] == n)
            out.append({
                "target": f"full pipeline ≥ {TARGET_THROUGHPUT_RATIO} × bare Scrapy pages/s ({n:,} articles)",
                "measured": f"{full} / {bare} = {ratio:.2f}" + (f" (medians of {trials} pairs)" if trials > 1 else "")
                + _reactor_note(median_of("bare", n, "reactor_cpu_ms", 2), median_of("full", n, "reactor_cpu_ms", 2)),
                "ok": ratio >= TARGET_THROUGHPUT_RATIO,
            })
    full_sizes = sorted({r["articles"] for r in crawls if r["kind"] == "full"})
    if len(full_sizes) >= 2:
        n_small, n_large = full_sizes[0], full_sizes[-1]
        small, large = median_of("full", n_small, "peak_rss_mib"), median_of("full", n_large, "peak_rss_mib")
        growth = large / small
        out.append({
            "target": f"peak RSS at {n_large:,} ≤ {TARGET_RSS_GROWTH} × at {n_small:,} articles",
            "measured": f"{large} / {small} MiB = {growth:.2f}",
            "ok": growth <= TARGET_RSS_GROWTH,
        })
    speed = extraction["speedup_vs_metadata"]
    out.append({
        "target": f"extraction ≥ {TARGET_EXTRACTION_SPEEDUP:g} × faster than trafilatura (like for like: with metadata)",
        "measured": f"{extraction['trafilatura_metadata']['mean_ms']} / {extraction['ours']['mean_ms']} ms = {speed} × "
                    f"(text only: {extraction['speedup_vs_text']} ×)",
        "ok": speed >= TARGET_EXTRACTION_SPEEDUP,
    })
    return out


def _sizes(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()] if text else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,50000", help="portal sizes (articles) for the full crawl (default %(default)s)")
    p.add_argument("--bare-sizes", default="10000", help="sizes that also get a bare crawl (default %(default)s)")
    p.add_argument("--pairs", type=int, default=2,
                   help="bare/full crawl pairs, taking turns, at each --bare-sizes size (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=16, help="CONCURRENT_REQUESTS(_PER_DOMAIN) (default %(default)s)")
    p.add_argument("--sample", type=int, default=200, help="synthetic pages in the extraction sample (default %(default)s)")
    p.add_argument("--repeat", type=int, default=3, help="extraction passes over the sample (default %(default)s)")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="also profile a full crawl of N articles (py-spy)")
    p.add_argument("--out", default=str(ROOT / "BENCH.md"), help="report file (default BENCH.md)")
    p.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE",
                   help="extra Scrapy setting for every crawl (e.g. NEWSARCHIVE_BATCH_SIZE=100)")
    p.add_argument("--json", help="also write the measurements as JSON to this file")
    p.add_argument("--workdir", help="keep crawl folders here (default: a temporary folder, removed)")
    p.add_argument("--from-json", metavar="FILE", help="only rewrite the report from measurements saved with --json")
    args = p.parse_args(argv)
    if args.from_json:
        write_report(Path(args.out), json.loads(Path(args.from_json).read_text()))
        return 0

    t_start = time.monotonic()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="newsarchive-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sizes, bare_sizes = _sizes(args.sizes), set(_sizes(args.bare_sizes))
    settings = [x for pair in args.set for x in ("-s", pair)]
    try:
        data = {
            "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "argv": "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "machine": machine_info(),
        }
        print(f"bench: extraction sample ({args.sample} synthetic pages + the replica's)", file=sys.stderr)
        big = SyntheticPortal(max(sizes + [args.sample]))
        data["extraction"] = extraction_bench(big, args.sample, args.repeat)
        data["page_kib"] = round(statistics.mean(len(big.article_html(i)) for i in range(0, big.n, max(1, big.n // 200))) / 1024, 1)
        crawls = []
        for n in sizes:
            portal = SyntheticPortal(n)
            server = start_server(portal)
            try:
                # This machine's speed drifts between runs (the same crawl took 37 to 66
                # CPU seconds): bare and full take turns, and the medians are compared.
                kinds = ("bare", "full") * args.pairs if n in bare_sizes else ("full",)
                for i, kind in enumerate(kinds):
                    print(f"bench: {kind} crawl of {n:,} articles", file=sys.stderr)
                    r = run_crawl(kind, portal, server, workdir, args.concurrency, extra=settings)
                    r["trial"] = i // 2 + 1 if n in bare_sizes else 1
                    print(f"bench:   {r['pages']} pages in {r['elapsed_s']} s = {r['pages_per_s']} pages/s, "
                          f"peak RSS {r['peak_rss_mib']} MiB", file=sys.stderr)
                    crawls.append(r)
                    if not args.workdir:
                        shutil.rmtree(workdir / f"bench-{kind}-{n}", ignore_errors=True)
            finally:
                server.stop()
        data["crawls"] = crawls
        if args.profile:
            portal = SyntheticPortal(args.profile)
            server = start_server(portal)
            try:
                print(f"bench: profiled full crawl of {args.profile:,} articles", file=sys.stderr)
                data["profile"] = profile_full_crawl(portal, server, workdir, args.concurrency, settings)
            finally:
                server.stop()
        data["targets"] = targets(crawls, data["extraction"])
        data["total_min"] = round((time.monotonic() - t_start) / 60, 1)
        write_report(Path(args.out), data)
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        print(f"bench: wrote {args.out}", file=sys.stderr)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
