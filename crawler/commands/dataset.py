"""``newsarchive dataset ls|verify|export``: look at, check and extract the
published dataset in a store (the ``--store`` of ``crawl``).

Exit codes as for ``crawl``: 0 success; 1 ``verify`` found problems; 2 bad
arguments; 3 the store could not be read.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_STORE = 0, 1, 2, 3


def _open(args):
    """The store to read (its folder must exist: :func:`crawler.store.open_existing_store`)."""
    from crawler.store import open_existing_store

    return open_existing_store(args.store)


def cmd_ls(args) -> int:
    """Manifests (one line per run) or, with ``--run``, the objects of one run."""
    from crawler.dataset.manifest import load_manifest, read_latest
    from crawler.dataset.reader import load_manifests
    from crawler.layout import manifest_key
    from crawler.store import StoreError

    try:
        store = _open(args)
        if args.run:
            if not store.exists(manifest_key(args.run)):
                print(f"newsarchive dataset: no manifest for run {args.run} in {store.url}", file=sys.stderr)
                return EXIT_FAILED
            manifests = [load_manifest(store, manifest_key(args.run))[0]]
        else:
            manifests = load_manifests(store)
        latest = read_latest(store)
    except (StoreError, ValueError) as exc:
        print(f"newsarchive dataset: {exc}", file=sys.stderr)
        return EXIT_STORE if isinstance(exc, StoreError) else EXIT_FAILED
    if args.json:
        print(json.dumps(manifests if not args.run else manifests[0], ensure_ascii=False, indent=1))
        return EXIT_OK
    if args.run:
        m = manifests[0]
        print(f"run {m['run_id']} ({m['run_status']}, {m['started_at']} → {m['finished_at']})")
        print(f"{'RECORDS':>7}  {'BYTES':>10}  {'SHA256':<64}  KEY")
        for e in m["objects"]:
            print(f"{e['records']:>7}  {e['size']:>10}  {e['sha256']}  {e['key']}")
        t = m["totals"]
        print(f"{t['records']} records, {t['quarantined']} quarantined, {t['objects']} objects, {t['bytes']} bytes")
        return EXIT_OK
    print(f"{'RUN':<28} {'STATUS':<12} {'RECORDS':>8} {'QUARANT':>8} {'OBJECTS':>8} {'BYTES':>12}  FINISHED")
    for m in manifests:
        t = m["totals"]
        print(f"{m['run_id']:<28} {m['run_status']:<12} {t['records']:>8} {t['quarantined']:>8} "
              f"{t['objects']:>8} {t['bytes']:>12}  {m['finished_at']}")
    print(f"_latest → {latest['run_id'] if latest else '(none)'}")
    return EXIT_OK


def cmd_verify(args) -> int:
    """Check every object of every manifest; print problems; exit 1 if any."""
    from crawler.dataset.reader import verify
    from crawler.store import StoreError

    try:
        report = verify(_open(args))
    except StoreError as exc:
        print(f"newsarchive dataset verify: {exc}", file=sys.stderr)
        return EXIT_STORE
    for problem in report.problems:
        print(f"PROBLEM {problem}")
    if report.unlisted:
        print(f"note: {len(report.unlisted)} dataset object(s) belong to runs without a manifest yet "
              "(spooled or in progress); readers following manifests do not see them")
    verdict = "FAILED" if report.problems else "OK"
    print(f"{verdict}: {report.manifests} manifests, {report.objects} objects, {report.records} records, "
          f"{len(report.problems)} problems")
    return EXIT_FAILED if report.problems else EXIT_OK


def cmd_export(args) -> int:
    """Write the latest version of each article (published since ``--since``) to
    one Parquet file, atomically (temporary name, then rename)."""
    import pyarrow.parquet as pq

    from crawler.dataset.reader import latest_versions
    from crawler.store import StoreError
    from pipelines.arrow_schema import PARQUET_COMPRESSION

    try:
        since = date.fromisoformat(args.since) if args.since else None
    except ValueError:
        print(f"newsarchive dataset export: --since wants YYYY-MM-DD, got {args.since!r}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        table, read = latest_versions(_open(args), since)
    except StoreError as exc:
        print(f"newsarchive dataset export: {exc}", file=sys.stderr)
        return EXIT_STORE
    out = Path(args.output)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
    os.replace(tmp, out)
    print(f"exported {table.num_rows} articles (latest versions of {read} records) to {out}")
    return EXIT_OK


def register(subparsers) -> None:
    """Add ``dataset ls|verify|export`` to the ``newsarchive`` parser."""
    p = subparsers.add_parser("dataset", help="list, verify or export the published dataset")
    sub = p.add_subparsers(dest="dataset_command", required=True)

    def common(q):
        q.add_argument("--store", default="archive", help="folder, file:// or s3://bucket/prefix (default: ./archive)")

    ls = sub.add_parser("ls", help="list runs (manifests), or the objects of one run")
    common(ls)
    ls.add_argument("--run", metavar="ID", help="list this run's objects")
    ls.add_argument("--json", action="store_true", help="print the manifest(s) as JSON")
    ls.set_defaults(func=cmd_ls)
    verify = sub.add_parser("verify", help="check every object of every manifest (size, SHA-256, records, schema)")
    common(verify)
    verify.set_defaults(func=cmd_verify)
    export = sub.add_parser("export", help="latest version of each article into one Parquet file")
    common(export)
    export.add_argument("--since", metavar="YYYY-MM-DD", help="articles published on or after this date (+07:00)")
    export.add_argument("-o", "--output", required=True, metavar="FILE.parquet")
    export.set_defaults(func=cmd_export)
