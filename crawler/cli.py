"""``newsarchive`` command line: ``crawl`` (the cron job) and ``demo`` (the same
crawl against the bundled portal replica).

Exit codes: 0 success; 1 the crawl ran but failed its checks (error rate above
``--max-error-rate``, no article found where the last run found some, spider
exceptions, interrupted); 2 bad configuration or arguments; 3 store unreachable after
retries (data kept in ``--state-dir`` for the next run); 75 another run holds the
state directory's lock (EX_TEMPFAIL, sysexits.h). The rules are in crawler/report.py.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import os
import secrets
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from crawler import __version__
from crawler.logsafe import protect_log
from crawler.report import EXIT_CONFIG, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_STORE  # noqa: F401 (re-exported)

#: Where a source checkout keeps the replica (tests/replica) and its data.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def new_run_id() -> str:
    """``YYYYMMDDTHHMMSSZ-xxxx``: sortable by start time, unique across machines."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


class StateLock:
    """An exclusive ``flock`` on ``<state_dir>/lock`` holding the owner's pid.
    The kernel drops it when the process dies, so a killed run leaves no stale lock."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "lock"
        self.fd = None

    def acquire(self) -> int | None:
        """Take the lock; return None on success, else the holder's pid (0 if unknown)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A holder that started at the same moment may not have written its pid
            # yet: give it a moment (well under a second) before saying "unknown".
            holder = ""
            for _ in range(20):
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                if holder.isdigit():
                    break
                time.sleep(0.025)
            os.close(fd)
            return int(holder) if holder.isdigit() else 0
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _parse_settings(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"-s expects NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def build_settings(args, run_id: str):
    """Scrapy settings for a crawl: project settings, then the CLI's options, then
    ``-s`` overrides (last wins). Raises ValueError on a malformed ``-s``."""
    from scrapy.utils.project import get_project_settings

    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", "crawler.settings")
    settings = get_project_settings()
    state_dir = Path(args.state_dir).resolve()
    from crawler.sites import get_profile, profile_name_for

    args.site = args.site or profile_name_for(args.start_url)  # generic for an unknown portal
    get_profile(args.site)  # KeyError (exit 2) for an unknown name
    settings.set("NEWSARCHIVE_SITE", args.site, priority="cmdline")
    settings.set("NEWSARCHIVE_STORE", args.store, priority="cmdline")
    settings.set("NEWSARCHIVE_STATE_DIR", str(state_dir), priority="cmdline")
    settings.set("NEWSARCHIVE_RUN_ID", run_id, priority="cmdline")
    settings.set("NEWSARCHIVE_MODE", args.mode, priority="cmdline")
    settings.set("NEWSARCHIVE_RECHECK_DAYS", args.recheck_days, priority="cmdline")
    settings.set("WARC_DIR", str(state_dir / "warc"), priority="cmdline")
    if getattr(args, "batch_size", None) is not None:
        settings.set("NEWSARCHIVE_BATCH_SIZE", args.batch_size, priority="cmdline")
    if getattr(args, "batch_seconds", None) is not None:
        settings.set("NEWSARCHIVE_BATCH_SECONDS", args.batch_seconds, priority="cmdline")
    if getattr(args, "logfile", None):
        logfile = Path(args.logfile).resolve()
        logfile.parent.mkdir(parents=True, exist_ok=True)
        settings.set("LOG_FILE", str(logfile), priority="cmdline")
        settings.set("LOG_FILE_APPEND", True, priority="cmdline")
    if getattr(args, "redis", None):
        from crawler.distributed import redis_settings

        redis_settings(settings, args.redis, run_id)
    overrides = _parse_settings(args.set)
    defaults = {name: settings.get(name) for name in overrides}
    for name, value in overrides.items():
        try:
            settings.set(name, value, priority="cmdline")
        except (TypeError, ValueError) as exc:  # a dict setting parses its JSON here
            raise ValueError(f"-s {name}={value!r}: {name} takes a dict (JSON) ({exc})") from exc
    check_override_types(settings, defaults)
    if "USER_AGENT" not in overrides:
        # The User-Agent names the project and the operator's contact URL.
        settings.set(
            "USER_AGENT",
            settings.get("USER_AGENT_TEMPLATE").format(
                version=__version__, contact=settings.get("NEWSARCHIVE_CONTACT_URL")
            ),
            priority="cmdline",
        )
    check_settings(settings)
    from crawler.item_process import route_item_stages

    route_item_stages(settings, distributed=bool(getattr(args, "redis", None)))
    return settings


def check_override_types(settings, defaults: dict) -> None:
    """Raise ValueError for a ``-s NAME=VALUE`` whose value Scrapy cannot read as the
    kind of its default (``defaults``: name -> value before the override): a number,
    a boolean, or a dict (JSON). Scrapy would fail on it only once the crawl has
    started (an unhandled error, exit 1) instead of as a configuration error (exit 2)."""
    from scrapy.settings import BaseSettings

    for name, default in defaults.items():
        if isinstance(default, bool):
            kind, read = "boolean", settings.getbool
        elif isinstance(default, (int, float)):
            kind, read = "number", settings.getfloat  # an int default (DOWNLOAD_DELAY = 0) takes 0.5 too
        elif isinstance(default, (dict, BaseSettings)):
            kind, read = "dict (JSON)", settings.getdict
        else:
            continue
        try:
            read(name)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"-s {name}={settings.get(name)!r}: {name} takes a {kind} ({exc})") from exc


def check_settings(settings) -> None:
    """Raise ValueError for values the crawl cannot run with (exit code 2)."""
    from crawler.neardup import NearDuplicateIndex

    try:
        threshold = settings.getfloat("NEWSARCHIVE_NEARDUP_THRESHOLD")
        shingle = settings.getint("NEWSARCHIVE_SHINGLE_SIZE")
        recheck = settings.getfloat("NEWSARCHIVE_RECHECK_DAYS")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad setting: {exc}") from exc
    try:
        NearDuplicateIndex(threshold, shingle)  # raises ValueError out of range
    except ValueError as exc:
        raise ValueError(f"NEWSARCHIVE_NEARDUP_THRESHOLD or NEWSARCHIVE_SHINGLE_SIZE: {exc}") from exc
    if recheck < 0:
        raise ValueError(f"--recheck-days must be >= 0, got {recheck}")
    if settings.get("NEWSARCHIVE_MODE") not in ("incremental", "full"):
        raise ValueError(f"NEWSARCHIVE_MODE must be incremental or full, got {settings.get('NEWSARCHIVE_MODE')!r}")


def run_crawl(args, portal=None) -> int:
    """Run one crawl in this process; return the exit code. ``portal``, when given, is
    a context manager factory entered around the crawl only, after the lock is taken
    and the options checked (``demo``: the replica)."""
    # The lock comes first, before the heavy imports: a second run started meanwhile
    # must exit at once (cron overlap), naming the holder.
    lock = StateLock(Path(args.state_dir))
    holder = lock.acquire()
    if holder is not None:
        print(f"newsarchive: another run (pid {holder}) holds {lock.path}; exiting", file=sys.stderr)
        return EXIT_LOCKED
    try:
        return _crawl_locked(args, portal or contextlib.nullcontext)
    finally:
        lock.release()


def _crawl_locked(args, portal) -> int:
    from scrapy.crawler import CrawlerProcess

    from crawler import report as rep
    from crawler.layout import report_key
    from crawler.state import StateError, open_state
    from crawler.store import StoreError, open_store, store_options

    if getattr(args, "redis", None) and not args.run_id:
        print("newsarchive: --redis needs --run-id (the same for every process of the run)", file=sys.stderr)
        return EXIT_CONFIG
    run_id = args.run_id or new_run_id()
    try:
        settings = build_settings(args, run_id)
        store = open_store(args.store, **store_options(settings))
        # Open (and migrate) the state now, so a bad one is a configuration error.
        open_state(settings.get("NEWSARCHIVE_STATE_URL") or None, Path(args.state_dir)).close()
    except (ValueError, KeyError, StoreError, StateError, ConnectionError) as exc:
        print(f"newsarchive: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    previous = rep.previous_report(args.state_dir)
    started = time.time()
    process = CrawlerProcess(settings)  # LOG_INSTALL_ROOT_HANDLER (default True) logs to stderr or LOG_FILE
    protect_log()  # no credentials in the log, even at DEBUG (crawler/logsafe.py)
    kwargs = {"site": args.site}
    if args.start_url:
        kwargs["start_urls"] = args.start_url
    if args.allow_domain:
        kwargs["allowed_domains"] = args.allow_domain
    with contextlib.ExitStack() as around:
        try:
            around.enter_context(portal())
        except RuntimeError as exc:
            print(f"newsarchive {exc}", file=sys.stderr)
            return EXIT_CONFIG
        crawler = process.create_crawler("portal")
        process.crawl(crawler, **kwargs)
        process.start()
    stats = crawler.stats.get_stats()
    report = rep.summarize(stats, run_id, store.url, args.mode)
    code, reasons = rep.checks(report, previous, args.max_error_rate)
    run_report = report
    if getattr(args, "redis", None):
        # Distributed: the exit code judges this process; the stored run report merges
        # every process that has left (the last one's covers the whole run).
        from crawler.distributed import merge_run_stats

        try:
            merged = merge_run_stats(args.redis, run_id, stats)
            run_report = rep.summarize(merged, run_id, store.url, args.mode)
        except Exception as exc:  # noqa: BLE001 (the run is done; the local report still counts)
            print(f"newsarchive: could not merge the run report in Redis: {exc}", file=sys.stderr)
    report.update(
        exit_code=code,
        failed_checks=reasons,
        previous_run_id=(previous or {}).get("run_id"),
        finished_unix=round(time.time(), 3),
        duration_seconds=round(time.time() - started, 3),
    )
    if run_report is not report:
        run_report.update({k: report[k] for k in ("exit_code", "failed_checks", "finished_unix")})
        run_report["processes"] = "merged"
    try:
        store.put_bytes(report_key(run_id), rep.to_json(run_report), "application/json")
    except StoreError as exc:
        print(f"newsarchive: could not store the run report: {exc}", file=sys.stderr)
        report["exit_code"] = code = EXIT_STORE
        report["failed_checks"] = [*reasons, f"run report not stored: {exc}"]
    rep.write_local(args.state_dir, report)
    if args.metrics_file:
        try:
            rep.write_metrics(args.metrics_file, report)
        except OSError as exc:
            print(f"newsarchive: could not write metrics to {args.metrics_file}: {exc}", file=sys.stderr)
    rep.print_summary(report)
    return code


def run_demo(args) -> int:
    """Crawl the bundled replica with production URLs and settings into ``--store``:
    :func:`replica_proxy` around :func:`run_crawl`."""
    if not (PROJECT_ROOT / "tests" / "replica").is_dir():
        print("newsarchive demo needs a source checkout (tests/replica is missing)", file=sys.stderr)
        return EXIT_CONFIG
    return run_crawl(args, portal=lambda: replica_proxy(Path(args.state_dir).resolve() / "replica.port"))


@contextlib.contextmanager
def replica_proxy(port_file: Path):
    """Run the bundled replica as an HTTP(S) forward proxy for the portal's hosts and
    point ``http_proxy``/``https_proxy`` at it for the block. Raises RuntimeError when
    it does not start within 10 s."""
    port_file.parent.mkdir(parents=True, exist_ok=True)
    port_file.unlink(missing_ok=True)
    replica = subprocess.Popen(
        [sys.executable, "-m", "tests.replica", "--port", "0", "--port-file", str(port_file)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if port_file.exists() and port_file.read_text().strip():
                break
            if replica.poll() is not None:
                break
            time.sleep(0.1)
        if replica.poll() is not None or not (port_file.exists() and port_file.read_text().strip()):
            raise RuntimeError("demo: the replica server did not start")
        proxy = f"http://127.0.0.1:{port_file.read_text().strip()}"
        os.environ["http_proxy"] = os.environ["https_proxy"] = proxy
        # Only the portal goes through the replica; a local S3 endpoint must not.
        os.environ.pop("NO_PROXY", None)
        os.environ["no_proxy"] = "127.0.0.1,localhost,::1"
        print(f"newsarchive demo: portal replica on {proxy} (used as http_proxy/https_proxy)", file=sys.stderr)
        yield proxy
    finally:
        replica.terminate()
        replica.wait(timeout=10)


def _positive(cast):
    """argparse type: ``cast(text)``, refused unless above zero."""
    def parse(text: str):
        value = cast(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _non_negative(text: str) -> float:
    """argparse type: a float >= 0."""
    value = float(text)
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _fraction(text: str) -> float:
    """argparse type: a float from 0 to 1 (a rate: 0.05 is 5 %)."""
    value = float(text)
    if not 0 <= value <= 1:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 to 1 (0.05 is 5 %), got {text}")
    return value


def add_crawl_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site", default=None,
                   help="site profile name (default: the profile of the first --start-url's host, "
                        "'generic' for a host no profile knows, else baotuyenquang)")
    p.add_argument("--start-url", action="append", default=[], metavar="URL", help="start URL (repeatable)")
    p.add_argument("--allow-domain", action="append", default=[], metavar="HOST", help="host to crawl (repeatable)")
    p.add_argument("--store", default="archive", help="folder, file:// or s3://bucket/prefix (default: ./archive)")
    p.add_argument("--state-dir", default="state", help="state, lock, WARC staging (default: ./state)")
    p.add_argument("--mode", choices=("incremental", "full"), default="incremental",
                   help="incremental: only new, young or changed articles (default); full: everything")
    p.add_argument("--recheck-days", type=_non_negative, default=7.0, metavar="DAYS",
                   help="re-check known articles published less than DAYS ago (default: %(default)s)")
    p.add_argument("--max-error-rate", type=_fraction, default=0.05, metavar="RATE",
                   help="exit 1 when failed requests / requests exceeds RATE, a fraction from 0 to 1 "
                        "(default: %(default)s, i.e. 5 %%)")
    p.add_argument("--metrics-file", metavar="PATH",
                   help="write Prometheus text-format metrics here (node_exporter textfile collector)")
    p.add_argument("--logfile", metavar="PATH", help="append the crawl log to PATH instead of stderr")
    p.add_argument("--run-id", help="run id (default: UTC start time + random suffix)")
    p.add_argument("--batch-size", type=_positive(int), metavar="N",
                   help="dataset batch: publish every N records (default 500)")
    p.add_argument("--batch-seconds", type=_positive(float), metavar="S",
                   help="dataset batch: publish records that waited S seconds (default 60)")
    p.add_argument("--redis", metavar="redis://HOST:PORT/DB",
                   help="distributed crawl: share the frontier, dupefilter and state with the other "
                        "processes of the same --run-id in this Redis database (README)")
    p.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE", help="Scrapy setting override")


#: Modules that add sub-commands. Each has ``register(subparsers)``, which adds
#: its parsers with ``set_defaults(func=...)``; ``func(args)`` returns the exit code.
COMMAND_MODULES: tuple[str, ...] = (
    "crawler.commands.eval",
    "crawler.commands.dataset",
    "crawler.commands.warc",
    "crawler.commands.reprocess",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsarchive", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    crawl = sub.add_parser("crawl", help="crawl the portal into WARC files and the dataset")
    add_crawl_options(crawl)
    crawl.set_defaults(func=run_crawl)
    demo = sub.add_parser("demo", help="crawl the bundled portal replica (source checkout)")
    add_crawl_options(demo)
    demo.set_defaults(func=run_demo)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_CONFIG if exc.code else EXIT_OK
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`newsarchive dataset ls --json | head`): stop quietly.
        # stdout is pointed at /dev/null so that flushing it at exit cannot fail again
        # (Python docs, "Note on SIGPIPE" in the signal module).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
