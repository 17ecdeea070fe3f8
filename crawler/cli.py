"""``newsarchive`` command line: ``crawl`` (the cron job) and ``demo`` (the same
crawl against the bundled portal replica).

Exit codes: 0 success; 1 the crawl ran but failed its checks; 2 bad configuration
or arguments; 3 store unreachable (nothing could be published); 75 another run
holds the state directory's lock (EX_TEMPFAIL, sysexits.h).
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_STORE, EXIT_LOCKED = 0, 1, 2, 3, 75

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
            holder = os.read(fd, 32).decode(errors="replace").strip()
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
    settings.set("NEWSARCHIVE_SITE", args.site, priority="cmdline")
    settings.set("NEWSARCHIVE_STORE", args.store, priority="cmdline")
    settings.set("NEWSARCHIVE_STATE_DIR", str(state_dir), priority="cmdline")
    settings.set("NEWSARCHIVE_RUN_ID", run_id, priority="cmdline")
    settings.set("NEWSARCHIVE_MODE", args.mode, priority="cmdline")
    settings.set("WARC_DIR", str(state_dir / "warc"), priority="cmdline")
    for name, value in _parse_settings(args.set).items():
        settings.set(name, value, priority="cmdline")
    return settings


def summarize(stats: dict, run_id: str, store_url: str, written: list[str]) -> dict:
    """The run report: counts from Scrapy's stats and what was written where."""
    statuses = {
        k.rsplit("/", 1)[1]: v for k, v in stats.items() if k.startswith("downloader/response_status_count/")
    }
    # IgnoreRequest is policy (robots.txt, offsite), not a failure.
    errors = {
        k.rsplit("/", 1)[1]: v
        for k, v in stats.items()
        if k.startswith("downloader/exception_type_count/") and not k.endswith(".IgnoreRequest")
    }
    report = {
        "run_id": run_id,
        "store": store_url,
        "started_at": str(stats.get("start_time")),
        "finished_at": str(stats.get("finish_time")),
        "finish_reason": stats.get("finish_reason"),
        "pages_fetched": stats.get("downloader/response_count", 0),
        "pages_by_status": statuses,
        "robots_forbidden": stats.get("robotstxt/forbidden", 0),
        "articles": {
            "new": stats.get("newsarchive/dedup/new", 0),
            "updated": stats.get("newsarchive/dedup/updated", 0),
            "duplicate": stats.get("newsarchive/dedup/duplicate", 0),
            "quarantined": stats.get("newsarchive/publish/quarantined", 0),
            "published": stats.get("newsarchive/publish/records", 0),
        },
        "errors": {
            "http_4xx_5xx": sum(v for s, v in statuses.items() if s.isdigit() and int(s) >= 400),
            "download_exceptions": errors,
            "spider_exceptions": stats.get("spider_exceptions/count", 0)
            if "spider_exceptions/count" in stats
            else sum(v for k, v in stats.items() if k.startswith("spider_exceptions/")),
            "publish_errors": stats.get("newsarchive/publish/errors", 0),
            "warc_upload_errors": stats.get("warc/upload_errors", 0),
        },
        "warc_files": stats.get("warc/uploaded", []),
        "dataset_objects": written,
    }
    return report


def exit_code_for(report: dict) -> int:
    """Our own verdict on a crawl (Scrapy exits 0 even when downloads or uploads
    failed: scrapy#1231, #4292)."""
    if report["errors"]["publish_errors"] or report["errors"]["warc_upload_errors"]:
        return EXIT_STORE
    if report["finish_reason"] != "finished" or report["errors"]["spider_exceptions"]:
        return EXIT_FAILED
    if report["pages_fetched"] == 0:
        return EXIT_FAILED
    return EXIT_OK


def print_summary(report: dict, out=sys.stderr) -> None:
    a, e = report["articles"], report["errors"]
    print(
        f"newsarchive run {report['run_id']}: {report['finish_reason']}\n"
        f"  pages fetched      {report['pages_fetched']}  by status {report['pages_by_status']}\n"
        f"  articles stored    {a['published']} (new {a['new']}, updated {a['updated']})\n"
        f"  duplicates dropped {a['duplicate']}\n"
        f"  quarantined        {a['quarantined']}\n"
        f"  errors             HTTP {e['http_4xx_5xx']}, download {sum(e['download_exceptions'].values())}, "
        f"spider {e['spider_exceptions']}, publish {e['publish_errors']}, WARC upload {e['warc_upload_errors']}\n"
        f"  store              {report['store']} (warc/, dataset/, quarantine/, runs/{report['run_id']}/)",
        file=out,
    )


def run_crawl(args) -> int:
    """Run one crawl in this process; return the exit code."""
    from scrapy.crawler import CrawlerProcess

    from crawler.layout import report_key
    from crawler.store import StoreError, open_store

    run_id = args.run_id or new_run_id()
    try:
        settings = build_settings(args, run_id)
        store = open_store(args.store)
    except (ValueError, StoreError) as exc:
        print(f"newsarchive: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    lock = StateLock(Path(args.state_dir))
    holder = lock.acquire()
    if holder is not None:
        print(f"newsarchive: another run (pid {holder}) holds {lock.path}; exiting", file=sys.stderr)
        return EXIT_LOCKED
    try:
        process = CrawlerProcess(settings)
        kwargs = {"site": args.site}
        if args.start_url:
            kwargs["start_urls"] = args.start_url
        if args.allow_domain:
            kwargs["allowed_domains"] = args.allow_domain
        crawler = process.create_crawler("portal")
        process.crawl(crawler, **kwargs)
        process.start()
        stats = crawler.stats.get_stats()
        publisher = getattr(crawler, "newsarchive_publisher", None)
        report = summarize(stats, run_id, store.url, publisher.written if publisher else [])
        code = exit_code_for(report)
        report["exit_code"] = code
        blob = json.dumps(report, ensure_ascii=False, indent=2, default=str).encode()
        (Path(args.state_dir) / "runs").mkdir(parents=True, exist_ok=True)
        (Path(args.state_dir) / "runs" / f"{run_id}.json").write_bytes(blob)
        try:
            store.put_bytes(report_key(run_id), blob, "application/json")
        except StoreError as exc:
            print(f"newsarchive: could not store the run report: {exc}", file=sys.stderr)
            code = EXIT_STORE
        print_summary(report)
        return code
    finally:
        lock.release()


def run_demo(args) -> int:
    """Start the bundled replica as an HTTP(S) forward proxy for the portal's hosts,
    crawl it with production URLs and settings into ``--store``, stop it."""
    if not (PROJECT_ROOT / "tests" / "replica").is_dir():
        print("newsarchive demo needs a source checkout (tests/replica is missing)", file=sys.stderr)
        return EXIT_CONFIG
    port_file = Path(args.state_dir).resolve() / "replica.port"
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
                print("newsarchive demo: the replica server did not start", file=sys.stderr)
                return EXIT_CONFIG
            time.sleep(0.1)
        proxy = f"http://127.0.0.1:{port_file.read_text().strip()}"
        os.environ["http_proxy"] = os.environ["https_proxy"] = proxy
        # Only the portal goes through the replica; a local S3 endpoint must not.
        os.environ.pop("NO_PROXY", None)
        os.environ["no_proxy"] = "127.0.0.1,localhost,::1"
        print(f"newsarchive demo: portal replica on {proxy} (used as http_proxy/https_proxy)", file=sys.stderr)
        return run_crawl(args)
    finally:
        replica.terminate()
        replica.wait(timeout=10)


def add_crawl_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site", default="baotuyenquang", help="site profile name (default: %(default)s)")
    p.add_argument("--start-url", action="append", default=[], metavar="URL", help="start URL (repeatable)")
    p.add_argument("--allow-domain", action="append", default=[], metavar="HOST", help="host to crawl (repeatable)")
    p.add_argument("--store", default="archive", help="folder, file:// or s3://bucket/prefix (default: ./archive)")
    p.add_argument("--state-dir", default="state", help="state, lock, WARC staging (default: ./state)")
    p.add_argument("--mode", choices=("incremental", "full"), default="incremental")
    p.add_argument("--run-id", help="run id (default: UTC start time + random suffix)")
    p.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE", help="Scrapy setting override")


#: Modules that add sub-commands. Each has ``register(subparsers)``, which adds
#: its parsers with ``set_defaults(func=...)``; ``func(args)`` returns the exit code.
COMMAND_MODULES: tuple[str, ...] = (
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
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
