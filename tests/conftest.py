"""Shared fixtures: the portal replica (HTTP(S) forward proxy), a real moto S3
server over HTTP, and end-to-end crawls run through the ``newsarchive`` CLI."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The drill table (make drills): its hooks and the drill_trial fixture.
from tests.drills.report import drill_trial, pytest_runtest_makereport, pytest_sessionstart, pytest_terminal_summary  # noqa: F401

# A skip fails under CI (tests/prerequisites.py).
pytest_plugins = ["tests.prerequisites"]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PORTAL = FIXTURES / "portal"
BIN = Path(sys.executable).parent


def load_gold() -> dict[str, dict]:
    """gold/articles.jsonl by article_id."""
    with open(PORTAL / "gold" / "articles.jsonl", encoding="utf-8") as f:
        return {r["article_id"]: r for r in map(json.loads, f)}


def load_expected() -> dict:
    return json.loads((PORTAL / "gold" / "expected.json").read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def replica():
    """The portal replica as a forward proxy on 127.0.0.1 (tests/replica)."""
    from tests.replica.server import ReplicaServer

    server = ReplicaServer(root=PORTAL, port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3():
    """A real moto S3 server (``moto_server``) over HTTP; yields the environment a
    boto3 client or a crawl needs to reach it (dummy credentials)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing-key-id",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto_server did not start")
            time.sleep(0.2)
    yield env
    proc.terminate()
    proc.wait(timeout=10)


def s3_client(env: dict):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


#: Politeness the replica does not need: every crawl a test runs gets these first (its
#: own ``-s`` come later and win). Production keeps robots.txt Crawl-delay and AutoThrottle.
TEST_SPEED = ["-s", "NEWSARCHIVE_OBEY_CRAWL_DELAY=0", "-s", "AUTOTHROTTLE_ENABLED=0"]


def crawl_args(args: list[str]) -> list[str]:
    """``args`` with :data:`TEST_SPEED` inserted after a ``crawl``/``demo`` sub-command."""
    if args and args[0] in ("crawl", "demo"):
        return [args[0], *TEST_SPEED, *args[1:]]
    return list(args)


def newsarchive_env(proxy: str, extra_env: dict | None = None) -> dict:
    """The environment of a test crawl: the replica as proxy, no AWS variables but
    ``extra_env``'s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("NO_PROXY", None)
    # The S3 endpoint (moto on 127.0.0.1) must not go through the portal proxy;
    # the portal's hosts still do.
    env.update({"http_proxy": proxy, "https_proxy": proxy, "no_proxy": "127.0.0.1,localhost"})
    env.update(extra_env or {})
    return env


def run_newsarchive(args: list[str], proxy: str, extra_env: dict | None = None, timeout: int = 300):
    """Run the ``newsarchive`` console script with the replica as proxy; returns
    the CompletedProcess (stdout/stderr as text)."""
    return subprocess.run(
        [str(BIN / "newsarchive"), *crawl_args(args)], cwd=ROOT, env=newsarchive_env(proxy, extra_env),
        capture_output=True, text=True, timeout=timeout,
    )


def crawl_until(replica, args: list[str], log_path, after: int, extra: float = 0.0, poll: float = 0.005):
    """Start ``newsarchive`` (``args``) against ``replica``, output to ``log_path``, and
    return the running process once the replica has answered ``after`` requests (and
    ``extra`` seconds more). Fails the test if the crawl ended before that point."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BIN / "newsarchive"), *crawl_args(args)], cwd=ROOT,
                                env=newsarchive_env(replica.proxy_url), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while len(replica.requests) < after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(poll)
    time.sleep(extra)
    assert proc.poll() is None, f"the crawl ended before the kill point ({len(replica.requests)} requests)"
    return proc


def read_jsonl_gz(data: bytes) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines() if line]
