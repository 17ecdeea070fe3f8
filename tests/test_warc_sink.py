"""The WARC writer process (crawler/warc/sink.py): its protocol, and a crawl whose
writer process dies (the crawl stops, exit code 1; the next run recovers everything)
or whose crawl process is killed (the writer goes with it)."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.cli import main
from crawler.warc.session import SessionConfig
from crawler.frames import FrameReader, frame
from crawler.warc.sink import serve
from tests.conftest import crawl_until, load_expected, read_jsonl_gz, run_newsarchive

EXPECTED = load_expected()


def _frames(*calls: tuple) -> io.BytesIO:
    return io.BytesIO(b"".join(frame(call) for call in calls))


def _replies(raw: bytes) -> list[tuple]:
    return list(FrameReader().feed(raw))


def _exchange(url: str, body: bytes) -> dict:
    return {
        "url": url, "request_method": "GET", "request_target": "/" + url.rsplit("/", 1)[1],
        "request_headers": [("Host", "h.test")], "protocol": "HTTP/1.1", "status": 200,
        "response_headers": [("Content-Type", "text/html"), ("Content-Length", str(len(body)))],
        "body": body, "ip_address": None, "fetched_at": datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc),
        "truncated": None,
    }


def test_serve_answers_in_order_with_revisits_closed_files_and_errors(tmp_path):
    cfg = SessionConfig(directory=tmp_path / "warc", prefix="SINK", host="h", max_size=1, pid=4242,
                        index_path=tmp_path / "digests.sqlite", store=str(tmp_path / "archive"))
    ctx = {"via": None, "fetchTimeMs": 5, "content_type": "text/html", "location": None}
    body = b'<html><a href="/b">b</a></html>'
    inp = _frames(
        (0, "open", (cfg,)),
        (1, "write", (_exchange("http://h.test/a", body), ctx)),
        (2, "has_url", ("http://h.test/a",)),
        (3, "write", (_exchange("http://h.test/a", body), ctx)),  # same payload, same URL: a revisit
        (4, "bogus", ()),
        (5, "close", ()),
    )
    out = io.BytesIO()
    serve(inp, out)
    replies = _replies(out.getvalue())
    assert [r[0] for r in replies] == [0, 1, 2, 3, 4, 5]
    assert [r[1] for r in replies] == [True, True, True, True, False, True]
    first, _orig, nbytes, nrecords = replies[1][2]
    assert first.record_type == "response" and nrecords == 4 and nbytes > 0  # warcinfo, request, response, metadata
    assert replies[2][2] is True
    revisit, original, _b, _r = replies[3][2]
    assert revisit.record_type == "revisit" and original.record_id == first.record_id
    assert isinstance(replies[4][2], ValueError)
    # max_size=1: every exchange rolls the file over; the closed files come with the
    # reply of the call that closed them, under the crawl process's pid.
    closed = [p for r in replies for p in r[3]]
    assert [p.name for p in closed] == [first.file, revisit.file]
    assert all(p.name.endswith("-h-4242.warc.gz") and p.is_file() for p in closed)
    types = [r.rec_type for p in closed for r in ArchiveIterator(open(p, "rb"))]
    assert types == ["warcinfo", "response", "request", "metadata", "warcinfo", "revisit", "request"]
    metadata = [r.content_stream().read() for r in ArchiveIterator(open(closed[0], "rb")) if r.rec_type == "metadata"]
    assert b"outlink: http://h.test/b" in metadata[0]  # listed in the writer process


def test_serve_returns_os_errors_with_their_errno(tmp_path):
    # The middleware tells a full disk by the errno of what the writer raised.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    cfg = SessionConfig(directory=blocker / "warc", index_path=None)
    out = io.BytesIO()
    serve(_frames((0, "open", (cfg,)), (1, "write", (_exchange("http://h.test/a", b"x"), {}))), out)
    replies = _replies(out.getvalue())
    assert replies[0][1] is False and isinstance(replies[0][2], OSError)
    assert replies[0][2].errno == errno.ENOTDIR
    assert replies[1][1] is False and "no session" in str(replies[1][2])


def test_serve_reports_a_failed_open_on_every_call(tmp_path):
    (tmp_path / "digests.sqlite").write_bytes(b"this is not a database" * 100)
    cfg = SessionConfig(directory=tmp_path / "warc", index_path=tmp_path / "digests.sqlite")
    out = io.BytesIO()
    serve(_frames((0, "open", (cfg,)), (1, "write", (_exchange("http://h.test/a", b"x"), {}))), out)
    replies = _replies(out.getvalue())
    assert [r[1] for r in replies] == [False, False]
    assert "no session" in str(replies[1][2])


def _writer_pids(parent: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"crawler.warc.sink" in cmd:
            pids.append(int(proc.name))
    return pids


@pytest.mark.drill("process: WARC writer process killed, restart")
def test_writer_process_death_stops_the_crawl_and_the_next_run_recovers(replica, tmp_path, drill_trial):
    store, state = tmp_path / "archive", tmp_path / "state"
    args = ["crawl", "--store", str(store), "--state-dir", str(state), "-s", "DOWNLOAD_DELAY=0",
            "-s", "WARC_MAX_SIZE=150000"]
    replica.reset()
    proc = crawl_until(replica, [*args, "--run-id", "writer-killed"], tmp_path / "killed.log", after=40)
    writers = _writer_pids(proc.pid)
    assert len(writers) == 1, writers
    os.kill(writers[0], signal.SIGKILL)
    assert proc.wait(timeout=120) == 1
    log = (tmp_path / "killed.log").read_text()
    assert "the WARC writer process ended" in log and "stopping the crawl" in log
    report = json.loads((state / "runs" / "writer-killed.json").read_text())
    assert report["finish_reason"] == "warc_writer_failed"

    replica.reset()
    again = run_newsarchive([*args, "--run-id", "after"], replica.proxy_url)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not list((state / "warc").glob("*.open"))
    assert main(["warc", "check", str(store)]) == 0
    records = [r for p in sorted((store / "dataset").rglob("*.jsonl.gz")) for r in read_jsonl_gz(p.read_bytes())]
    keys = [(r["article_id"], r["version"]) for r in records]
    drill_trial.duplicates = len(keys) - len(set(keys))
    drill_trial.lost = len(set(EXPECTED["article_ids"]) - {a for a, _ in keys})
    assert drill_trial.duplicates == 0 and drill_trial.lost == 0
    for r in records:  # every record's WARC pointer resolves into a stored file
        assert (store / r["warc"]["file"]).is_file(), r["warc"]


def test_writer_process_dies_with_a_killed_crawl(replica, tmp_path):
    args = ["crawl", "--store", str(tmp_path / "archive"), "--state-dir", str(tmp_path / "state"),
            "-s", "DOWNLOAD_DELAY=0"]
    replica.reset()
    proc = crawl_until(replica, [*args, "--run-id", "k"], tmp_path / "k.log", after=20)
    writers = _writer_pids(proc.pid)
    assert len(writers) == 1, writers
    # NEWSARCHIVE_HELPER_NICE (default 10): the writer queues behind the crawl's reactor.
    crawl_nice = os.getpriority(os.PRIO_PROCESS, proc.pid)
    assert os.getpriority(os.PRIO_PROCESS, writers[0]) == min(19, crawl_nice + 10)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{writers[0]}").exists():
        if "Z" in Path(f"/proc/{writers[0]}/stat").read_text().rsplit(")", 1)[1].split()[0]:
            break  # a zombie waiting for init to reap it: dead
        time.sleep(0.05)
    alive = Path(f"/proc/{writers[0]}").exists() and "Z" not in Path(f"/proc/{writers[0]}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert not alive
