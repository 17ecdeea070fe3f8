"""``newsarchive warc check|list|get|wacz`` and ``newsarchive replay``: the
archivist's side of the WARC archive, on a local store or S3 (``--store``, as
for ``crawl``).

* ``warc check [FILE|STORE]`` — digests, HTTP headers against payloads,
  revisits resolvable, every stored WARC indexed (:mod:`crawler.warc.check`).
* ``warc list URL`` — every capture of a URL from the CDXJ indexes.
* ``warc get URL [--at TS] [-o FILE] [--payload]`` — the closest capture, one
  ranged read per record (a revisit adds one for its original).
* ``warc wacz [--since DATE] -o FILE.wacz`` — a WACZ package made by the
  ``wacz`` tool from the archive-tools venv.
* ``replay [--port N] [--framed]`` — pywb serving the store's captures on
  127.0.0.1 (``/newsarchive/<timestamp>/<url>``).

pywb 2.10 and wacz 0.6 live in their own venv (``.venv-pywb``, made by
``make pywb``): pywb pins redis 2.10 and pulls brotlipy, which breaks ``br``
in Scrapy; wacz pulls frictionless (pydantic, typer, chardet…), which the
crawler does not need. The commands run their executables
(``wayback``, ``wacz``) from that venv: ``--tools-venv`` or
``NEWSARCHIVE_TOOLS_VENV`` names another one.

Exit codes: 0 ok; 1 problems found (``check``) or no capture (``list``,
``get``); 2 bad arguments or a missing tool; 3 the store cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

EXIT_OK, EXIT_PROBLEMS, EXIT_CONFIG, EXIT_STORE = 0, 1, 2, 3

#: Where ``make pywb`` puts the archive-tools venv (pywb, wacz).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOOLS_VENV = PROJECT_ROOT / ".venv-pywb"
COLLECTION = "newsarchive"


def _err(msg: str) -> None:
    print(f"newsarchive: {msg}", file=sys.stderr)


def _open_store(url: str):
    # Every warc command reads: a mistyped folder is an error, not an empty archive.
    from crawler.store import open_existing_store

    return open_existing_store(url)


def tool(name: str, venv: str | None) -> Path:
    """Path of executable ``name`` in the archive-tools venv.

    Raises:
        FileNotFoundError: not installed there (message says how to install).
    """
    root = Path(venv or os.environ.get("NEWSARCHIVE_TOOLS_VENV") or DEFAULT_TOOLS_VENV)
    exe = root / "bin" / name
    if not exe.is_file():
        raise FileNotFoundError(
            f"{exe} not found: `make pywb` creates the archive-tools venv (pywb, wacz) at {DEFAULT_TOOLS_VENV}; "
            "--tools-venv or NEWSARCHIVE_TOOLS_VENV names another"
        )
    return exe


# ------------------------------------------------------------------ check
def run_check(args) -> int:
    from crawler.store import StoreError
    from crawler.warc.check import CheckResult, Problem, check_stream
    from crawler.warc.retrieve import RetrievalError, StoreArchive, open_object

    target = args.target
    result = CheckResult()
    try:
        if target and Path(target).is_file():
            # One file; revisits are looked up in --store (or ./archive if it exists).
            store_url = args.store or ("archive" if Path("archive").is_dir() else None)
            resolver = None
            if store_url:
                archive = StoreArchive(_open_store(store_url))
                resolver = lambda uri, date, digest: archive.find_original(uri, date, digest) is not None  # noqa: E731
            with open(target, "rb") as fh:
                check_stream(fh, target, resolver, result)
        else:
            store = _open_store(target or args.store or "archive")
            archive = StoreArchive(store)
            keys = archive.keys()
            warcs = [k for k in keys if k.endswith(".warc.gz")]
            entries = archive.entries()
            by_file: dict[str, set[int]] = {}
            for e in entries:
                by_file.setdefault(e.key, set()).add(e.offset)

            def resolver(uri, date, digest):
                return archive.find_original(uri, date, digest) is not None

            for key in warcs:
                name = store.describe(key)
                if key + ".cdxj" not in keys:
                    result.problems.append(Problem(name, None, "-", "", "no CDXJ index (.cdxj) beside it"))
                seen: list[tuple[int, str, str]] = []
                with open_object(store, key) as fh:
                    check_stream(fh, name, resolver, result, captures=seen)
                indexed = by_file.get(key, set())
                for offset, rtype, uri in seen:
                    if key + ".cdxj" in keys and offset not in indexed:
                        result.problems.append(Problem(name, offset, rtype, uri, "record missing from the CDXJ index"))
                stray = indexed - {o for o, _, _ in seen}
                for offset in sorted(stray):
                    result.problems.append(Problem(name, offset, "-", "", "CDXJ entry points at no record"))
            for key in keys:
                if key.endswith(".open"):
                    result.problems.append(Problem(store.describe(key), None, "-", "", "unfinished .open file in the store"))
            if not warcs:
                _err(f"no WARC files under warc/ in {store.url}")
    except (StoreError, RetrievalError) as exc:
        _err(str(exc))
        return EXIT_STORE
    except OSError as exc:
        _err(f"cannot read {target}: {exc}")
        return EXIT_CONFIG
    for p in result.problems:
        print(p)
    errors = len(result.errors)
    print(
        f"checked {result.records} records in {result.files} file(s): "
        + ("OK" if not errors else f"{errors} problem(s)")
        + (f", {len(result.problems) - errors} warning(s)" if len(result.problems) > errors else "")
    )
    return EXIT_PROBLEMS if errors else EXIT_OK


# ------------------------------------------------------------------- list
def run_list(args) -> int:
    from crawler.store import StoreError
    from crawler.warc.retrieve import RetrievalError, StoreArchive

    try:
        caps = StoreArchive(_open_store(args.store)).captures(args.url)
    except (StoreError, RetrievalError) as exc:
        _err(str(exc))
        return EXIT_STORE
    if not caps:
        _err(f"no capture of {args.url} in {args.store}")
        return EXIT_PROBLEMS
    if args.json:
        for e in caps:
            print(json.dumps({
                "timestamp": e.timestamp, "url": e.url, "status": e.status, "mime": e.mime,
                "digest": e.digest, "file": e.key, "offset": e.offset, "length": e.length,
                "type": "revisit" if e.is_revisit else "response",
            }))
        return EXIT_OK
    print("timestamp\tstatus\tdigest\tfile\toffset\tlength\ttype\turl")
    for e in caps:
        kind = "revisit" if e.is_revisit else "response"
        print(f"{e.timestamp}\t{e.status}\t{e.digest}\t{e.key}\t{e.offset}\t{e.length}\t{kind}\t{e.url}")
    return EXIT_OK


# -------------------------------------------------------------------- get
def http_head_bytes(http_headers) -> bytes:
    """Status line and header block of a warcio ``StatusAndHeaders`` as bytes
    (latin-1, the way HTTP/1.1 carries them), ending with the blank line."""
    lines = [f"{http_headers.protocol} {http_headers.statusline}"]
    lines += [f"{k}: {v}" for k, v in http_headers.headers]
    text = "\r\n".join(lines) + "\r\n\r\n"
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def run_get(args) -> int:
    from crawler.store import StoreError
    from crawler.warc.payload import PayloadError, decode_content, dechunk, parse_codings
    from crawler.warc.retrieve import RetrievalError, StoreArchive, parse_when

    try:
        at = parse_when(args.at) if args.at else None
    except ValueError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    try:
        archive = StoreArchive(_open_store(args.store))
        entry = archive.closest(args.url, at)
        record = archive.read(entry)
        source = archive.resolve(record)
    except RetrievalError as exc:
        _err(str(exc))
        return EXIT_PROBLEMS if "no capture" in str(exc) else EXIT_STORE
    except StoreError as exc:
        _err(str(exc))
        return EXIT_STORE
    note = f"{entry.timestamp} {entry.status} {entry.url} from {entry.key} @{entry.offset}+{entry.length}"
    if record.rec_type == "revisit":
        if source is None:
            _err(f"capture {note} is a revisit whose original is not in the store")
            return EXIT_PROBLEMS
        note += f" (revisit of {source.entry.key} @{source.entry.offset}+{source.entry.length})"
    print(f"capture {note}", file=sys.stderr)
    http = record.http_headers
    profile = record.header("WARC-Profile") or ""
    body = b"" if profile.endswith("/server-not-modified") else source.payload
    if args.payload:
        headers = http.headers if http is not None else []
        if any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers):
            try:
                body = dechunk(body)
            except PayloadError:
                pass  # recorded de-chunked despite the header: the bytes are the entity
        try:
            out = decode_content(body, parse_codings([v for k, v in headers if k.lower() == "content-encoding"]))
        except PayloadError as exc:
            _err(f"cannot decode the payload: {exc}")
            return EXIT_PROBLEMS
    else:
        out = (http_head_bytes(http) if http is not None else b"") + body
    if args.output:
        Path(args.output).write_bytes(out)
    else:
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
    return EXIT_OK


# ------------------------------------------------------------------- wacz
def wacz_pages(entries) -> bytes:
    """``pages.jsonl`` for ``wacz create -p`` (WACZ 1.1.1, ``json-pages-1.0``): every
    URL archived as a page (a full 200 ``text/html`` response), once, in the order
    first captured. wacz's own ``--detect-pages`` keeps only the pages that are the
    Referer of another capture, so whether an article is listed depended on which page
    first asked for a shared image."""
    lines = [json.dumps({"format": "json-pages-1.0", "id": "pages", "title": "Pages"})]
    seen: set[str] = set()
    for e in sorted(entries, key=lambda e: e.timestamp):
        if e.status == "200" and e.mime.split(";")[0].strip() == "text/html" and e.url not in seen:
            seen.add(e.url)
            lines.append(json.dumps({"url": e.url, "title": e.url}, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


def run_wacz(args) -> int:
    from crawler.store import StoreError
    from crawler.warc.retrieve import RetrievalError, StoreArchive, parse_when

    try:
        wacz = tool("wacz", args.tools_venv)
        since = parse_when(args.since) if args.since else None
    except (FileNotFoundError, ValueError) as exc:
        _err(str(exc))
        return EXIT_CONFIG
    try:
        archive = StoreArchive(_open_store(args.store))
        if since:
            # Whole files go in: every file holding a capture at or after --since.
            keys = sorted({e.key for e in archive.entries() if e.timestamp >= since})
        else:
            keys = archive.warc_keys()
        if not keys:
            _err(f"no captures{' since ' + args.since if args.since else ''} in {args.store}")
            return EXIT_PROBLEMS
        with tempfile.TemporaryDirectory(prefix="newsarchive-wacz-") as tmp:
            files = archive.materialize(keys, Path(tmp))
            pages = Path(tmp) / "pages.jsonl"
            chosen = set(keys)
            pages.write_bytes(wacz_pages(e for e in archive.entries() if e.key in chosen))
            cmd = [str(wacz), "create", "-o", str(Path(args.output).resolve()), "-p", str(pages),
                   "--title", args.title or "newsarchive captures",
                   "--desc", f"captures from {archive.store.url}" + (f" since {args.since}" if since else "")]
            proc = subprocess.run(cmd + [str(f) for f in files], capture_output=True, text=True)
    except (StoreError, RetrievalError) as exc:
        _err(str(exc))
        return EXIT_STORE
    if proc.returncode != 0:
        _err(f"wacz create failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return EXIT_PROBLEMS
    print(f"{args.output}: {len(keys)} WARC file(s)", file=sys.stderr)
    return EXIT_OK


# ----------------------------------------------------------------- replay
PYWB_CONFIG = """\
# written by `newsarchive replay`
collections:
  {coll}:
    index_paths: ./collections/{coll}/indexes
    archive_paths: ./collections/{coll}/archive/
framed_replay: {framed}
enable_memento: true
"""


def build_collection(archive, root: Path, framed: bool = False) -> int:
    """Lay out a pywb collection under ``root``: WARC files (symlinked or
    downloaded) in ``collections/newsarchive/archive/`` and one sorted CDXJ
    index merged from the store's indexes; returns the number of captures."""
    coll = root / "collections" / COLLECTION
    archive.materialize(archive.warc_keys(), coll / "archive")
    lines = []
    for key in archive.index_keys():
        lines += [ln for ln in archive.store.get_bytes(key).decode("utf-8").splitlines() if ln.strip()]
    lines.sort()
    (coll / "indexes").mkdir(parents=True, exist_ok=True)
    (coll / "indexes" / "index.cdxj").write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    config = PYWB_CONFIG.format(coll=COLLECTION, framed="true" if framed else "false")
    (root / "config.yaml").write_text(config, encoding="utf-8")
    return len(lines)


def run_replay(args) -> int:
    from crawler.store import StoreError
    from crawler.warc.retrieve import StoreArchive

    try:
        wayback = tool("wayback", args.tools_venv)
    except FileNotFoundError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    made_dir = args.dir is None
    root = Path(args.dir or tempfile.mkdtemp(prefix="newsarchive-replay-")).resolve()
    try:
        try:
            n = build_collection(StoreArchive(_open_store(args.store)), root, framed=args.framed)
        except StoreError as exc:
            _err(str(exc))
            return EXIT_STORE
        print(
            f"newsarchive replay: {n} captures from {args.store} at http://127.0.0.1:{args.port}/{COLLECTION}/"
            " (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        proc = subprocess.Popen([str(wayback), "-p", str(args.port), "-b", "127.0.0.1", "-d", str(root)], cwd=root)
        stop = lambda *_: proc.terminate()  # noqa: E731 - forward SIGTERM to pywb
        signal.signal(signal.SIGTERM, stop)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=10)
            return EXIT_OK
    finally:
        if made_dir:
            shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------- register
def _store_option(p: argparse.ArgumentParser, default: str | None = "archive") -> None:
    p.add_argument(
        "--store", default=default,
        help="folder, file:// or s3://bucket/prefix (default: %(default)s)" if default else
        "store to resolve revisits in (default: ./archive when it exists)",
    )


def register(subparsers) -> None:
    """Add ``warc`` (check, list, get, wacz) and ``replay`` to the CLI."""
    warc = subparsers.add_parser("warc", help="check, list, get and package WARC captures")
    sub = warc.add_subparsers(dest="warc_command", required=True)

    check = sub.add_parser("check", help="verify digests, HTTP headers vs payloads, revisits, indexes")
    check.add_argument("target", nargs="?", metavar="FILE|STORE",
                       help="a WARC file, or a store (default: --store)")
    _store_option(check, default=None)
    check.set_defaults(func=run_check)

    lst = sub.add_parser("list", help="every capture of a URL (from the CDXJ indexes)")
    lst.add_argument("url")
    lst.add_argument("--json", action="store_true", help="one JSON object per capture")
    _store_option(lst)
    lst.set_defaults(func=run_list)

    get = sub.add_parser("get", help="the HTTP response of the capture closest to --at (default: latest)")
    get.add_argument("url")
    get.add_argument("--at", metavar="TIMESTAMP", help="YYYY[MMDDhhmmss] or ISO 8601, UTC")
    get.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    get.add_argument("--payload", action="store_true", help="the body only, content-decoded")
    _store_option(get)
    get.set_defaults(func=run_get)

    wacz = sub.add_parser("wacz", help="package the store's WARC files as a WACZ")
    wacz.add_argument("-o", "--output", required=True, metavar="FILE.wacz")
    wacz.add_argument("--since", metavar="DATE", help="only files with captures at or after DATE")
    wacz.add_argument("--title", help="WACZ title")
    wacz.add_argument("--tools-venv", help=f"venv with wacz (default: {DEFAULT_TOOLS_VENV})")
    _store_option(wacz)
    wacz.set_defaults(func=run_wacz)

    replay = subparsers.add_parser("replay", help="serve the store's captures through pywb on 127.0.0.1")
    replay.add_argument("--port", type=int, default=8080, help="(default: %(default)s)")
    replay.add_argument("--framed", action="store_true",
                        help="pywb's framed replay (banner frame around the page); default: the page itself")
    replay.add_argument("--dir", help="build the pywb collection here and keep it (default: a temporary folder)")
    replay.add_argument("--tools-venv", help=f"venv with pywb (default: {DEFAULT_TOOLS_VENV})")
    _store_option(replay)
    replay.set_defaults(func=run_replay)
