"""``newsarchive reprocess``: rebuild the dataset from WARC files, fetching nothing.

The rebuild is the crawl itself — same spider, downloader middlewares and item
pipelines, same run report and exit codes (``crawler.cli.run_crawl``) — with the
``http``/``https`` download handler replaced by :class:`crawler.replay.WarcReplayHandler`,
which answers every request from the archived records (see ``crawler/replay.py`` for
which capture answers a URL captured several times). WARC capture is off: nothing
new is fetched, so nothing new is archived, and each record's ``warc`` pointer still
names the original response record.

By default the dedup state is a fresh temporary folder, so every archived article
is published again in the new run (version 1): right for a new store, and warned
about when the store holds a dataset already (the same versions twice). Give
``--state-dir`` to continue a state instead: the crawl's own state publishes only the
articles whose extraction changed, as new versions; several crawls' WARC files
reprocessed one after the other into one state rebuild version history.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

#: Settings of a replay, before the user's ``-s`` (which win). Politeness delays
#: exist for the portal's sake; a replay does not touch the portal.
REPLAY_SETTINGS = {
    "WARC_ENABLED": "False",
    "DOWNLOAD_DELAY": "0",
    "AUTOTHROTTLE_ENABLED": "False",
    "NEWSARCHIVE_OBEY_CRAWL_DELAY": "False",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "16",
    "DOWNLOAD_HANDLERS": json.dumps(
        {"http": "crawler.replay.WarcReplayHandler", "https": "crawler.replay.WarcReplayHandler"}
    ),
}


def run_reprocess(args) -> int:
    """Index the WARC sources, then run the crawl against the index; exit code as ``crawl``."""
    from crawler import cli
    from crawler.replay import ReplayError, build_index, open_sources

    try:
        sources = open_sources(args.warc)
    except ReplayError as exc:
        print(f"newsarchive reprocess: {exc}", file=sys.stderr)
        return cli.EXIT_CONFIG
    for source in sources:
        for key in source.skipped:
            print(f"newsarchive reprocess: skipped {source.url}/{key} (no timestamp in its name)", file=sys.stderr)
    temp_state = args.state_dir is None
    if temp_state:
        _warn_if_republishing(args.store)
    state_dir = Path(tempfile.mkdtemp(prefix="newsarchive-reprocess-")) if temp_state else Path(args.state_dir)
    try:
        index = state_dir / "replay" / "index.cdxj"
        counts = build_index(sources, index)
        print(
            f"newsarchive reprocess: {counts['files']} WARC files, {counts['captures']} captures "
            f"of {counts['urls']} URLs ({counts['unreadable_files']} unreadable files)",
            file=sys.stderr,
        )
        # Every crawl option at its default (whatever options ``crawl`` has), then ours.
        defaults = argparse.ArgumentParser(add_help=False)
        cli.add_crawl_options(defaults)
        crawl_args = defaults.parse_args([])
        crawl_args.site = args.site
        crawl_args.start_url = args.start_url
        crawl_args.allow_domain = args.allow_domain
        crawl_args.store = args.store
        crawl_args.state_dir = str(state_dir)
        crawl_args.mode = "full"
        crawl_args.run_id = args.run_id
        crawl_args.set = (
            [f"{k}={v}" for k, v in REPLAY_SETTINGS.items()]
            + [f"NEWSARCHIVE_REPLAY_INDEX={index.resolve()}"]
            + list(args.set)
        )
        code = cli.run_crawl(crawl_args)
        if code == cli.EXIT_OK and counts["unreadable_files"]:
            code = cli.EXIT_FAILED
        return code
    finally:
        if temp_state:
            shutil.rmtree(state_dir, ignore_errors=True)


def _warn_if_republishing(store_url: str) -> None:
    """Say so when a fresh state is about to publish into a store that holds a dataset
    already: every article goes out again under the version it has there, and
    ``dataset verify`` reports those records as published twice."""
    from crawler.dataset.manifest import list_manifests
    from crawler.store import StoreError, open_existing_store

    try:
        runs = len(list_manifests(open_existing_store(store_url)))
    except StoreError:
        return  # a new store (or one that cannot be listed: the crawl will say so)
    if runs:
        print(
            f"newsarchive reprocess: warning: {store_url} holds a dataset already ({runs} run(s)) and no "
            "--state-dir was given, so every article is published again under its old version "
            "(`dataset verify` reports them as published twice). Give the crawl's --state-dir to "
            "publish only the articles whose extraction changed, as new versions, or another --store "
            "for a separate rebuilt dataset.",
            file=sys.stderr,
        )


def register(subparsers) -> None:
    """Add ``reprocess`` to the ``newsarchive`` command line."""
    p = subparsers.add_parser(
        "reprocess",
        help="rebuild the dataset from WARC files (no network)",
        description=__doc__.split("\n\n")[0] + " " + __doc__.split("\n\n")[1].replace("\n", " "),
    )
    p.add_argument(
        "--warc", action="append", required=True, metavar="PATH|s3://…",
        help="WARC folder, s3://bucket/prefix or single WARC file (repeatable), e.g. STORE/warc/",
    )
    p.add_argument("--store", default="archive", help="store to publish the new run into (default: ./archive)")
    p.add_argument("--run-id", help="run id (default: UTC start time + random suffix)")
    p.add_argument(
        "--state-dir",
        help="dedup state to use (default: a fresh temporary folder, so every article is published again)",
    )
    p.add_argument("--site", default="baotuyenquang", help="site profile name (default: %(default)s)")
    p.add_argument("--start-url", action="append", default=[], metavar="URL", help="start URL (repeatable)")
    p.add_argument("--allow-domain", action="append", default=[], metavar="HOST", help="host (repeatable)")
    p.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE", help="Scrapy setting override")
    p.set_defaults(func=run_reprocess)
