"""CLI: ``python -m tests.replica [--port 0] [--root DIR] [--log FILE.jsonl] [--port-file FILE]``.

Prints ``replica listening on http://127.0.0.1:PORT`` once listening and
serves until SIGTERM/SIGINT. ``--port-file`` receives the chosen port (written
atomically, removed on exit) so a Makefile can start the replica on port 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from .server import DEFAULT_ROOT, ReplicaServer


def main(argv: list[str] | None = None) -> int:
    """Run the replica until a termination signal; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.replica", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="fixture folder with routes.json")
    parser.add_argument("--log", type=Path, help="append every request as a JSON line to this file")
    parser.add_argument("--port-file", type=Path, help="write the listening port to this file")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    with ReplicaServer(root=args.root, host=args.host, port=args.port, log_path=args.log) as srv:
        if args.port_file:
            # write-then-rename: a poller never sees an empty or partial file
            tmp = args.port_file.with_name(args.port_file.name + ".tmp")
            tmp.write_text(f"{srv.port}\n")
            os.replace(tmp, args.port_file)
        print(f"replica listening on {srv.proxy_url}", flush=True)
        try:
            stop.wait()
        finally:
            if args.port_file:
                args.port_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
