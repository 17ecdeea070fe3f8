"""``newsarchive reprocess``: the WARC files of a crawl of the replica, replayed through
the same spider and pipelines with no network, give the crawl's own records."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request
from scrapy.utils.test import get_crawler
from warcio.archiveiterator import ArchiveIterator

from crawler.replay import (
    Capture,
    WarcReplayHandler,
    build_index,
    load_index,
    open_sources,
    read_exchange,
    replay_sequence,
)
from crawler.warc.writer import WarcFileWriter
from tests.conftest import load_expected, read_jsonl_gz, run_newsarchive, s3_client

FAST = ["-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=WARNING"]
EXPECTED = load_expected()


def records_of_run(store: Path, run_id: str) -> dict[str, dict]:
    out = {}
    for path in sorted((store / "dataset").rglob(f"part-{run_id}-*.jsonl.gz")):
        for r in read_jsonl_gz(path.read_bytes()):
            assert r["article_id"] not in out, "an article was published twice in one run"
            out[r["article_id"]] = r
    return out


def quarantine_of_run(store: Path, run_id: str) -> list[dict]:
    entries = []
    for path in sorted((store / "quarantine" / run_id).glob("*.jsonl.gz")):
        entries.extend(read_jsonl_gz(path.read_bytes()))
    return sorted(entries, key=lambda e: e["url"])


@pytest.fixture(scope="module")
def crawl_and_reprocess(replica, tmp_path_factory):
    """A crawl of the replica into a local store (run C1), then ``reprocess`` of that
    store's WARC files into the same store (run R1) with the replica still set as the
    proxy, so any request the replay made would show in the replica's log."""
    base = tmp_path_factory.mktemp("reprocess")
    store = base / "archive"
    replica.reset()
    crawl = run_newsarchive(
        ["crawl", "--store", str(store), "--state-dir", str(base / "state"), "--run-id", "C1", *FAST],
        replica.proxy_url,
    )
    assert crawl.returncode == 0, crawl.stderr[-3000:]
    warc_before = sorted(p.relative_to(store).as_posix() for p in (store / "warc").rglob("*"))
    replica.reset()
    proc = run_newsarchive(
        ["reprocess", "--warc", str(store / "warc"), "--store", str(store), "--run-id", "R1", *FAST],
        replica.proxy_url,
    )
    return {
        "proc": proc,
        "store": store,
        "requests": list(replica.requests),
        "warc_before": warc_before,
        "state": base / "state",
    }


def test_reprocess_into_a_store_with_a_dataset_warns_without_a_state(crawl_and_reprocess):
    err = crawl_and_reprocess["proc"].stderr
    assert "holds a dataset already (1 run(s)) and no --state-dir was given" in err


def test_reprocess_with_the_crawls_state_publishes_only_what_changed(crawl_and_reprocess, replica, tmp_path):
    """With the crawl's own state the same extraction finds every article unchanged:
    nothing is published again (a changed extraction would be version 2)."""
    r = crawl_and_reprocess
    state = tmp_path / "state"
    shutil.copytree(r["state"], state)  # the fixture's state stays as the crawl left it
    proc = run_newsarchive(
        ["reprocess", "--warc", str(r["store"] / "warc"), "--store", str(r["store"]), "--state-dir", str(state),
         "--run-id", "R2", *FAST],
        replica.proxy_url,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "holds a dataset already" not in proc.stderr
    report = json.loads((state / "runs" / "R2.json").read_text())
    assert report["articles"]["published"] == 0 and report["articles"]["new"] == 0
    crawl = json.loads((r["state"] / "runs" / "C1.json").read_text())["articles"]
    assert report["articles"]["duplicate"] == crawl["new"] + crawl["near_duplicate"] + crawl["duplicate"] == 33
    assert not list(r["store"].rglob("part-R2-*.parquet"))


def test_reprocess_exits_0_and_fetches_nothing(crawl_and_reprocess):
    r = crawl_and_reprocess
    assert r["proc"].returncode == 0, r["proc"].stderr[-3000:]
    assert "newsarchive run R1 (full): finished, exit 0" in r["proc"].stderr
    assert r["requests"] == []  # not one request reached the portal (replica) during the replay


def test_reprocess_writes_no_warc_files(crawl_and_reprocess):
    store = crawl_and_reprocess["store"]
    assert sorted(p.relative_to(store).as_posix() for p in (store / "warc").rglob("*")) == crawl_and_reprocess["warc_before"]


def test_records_equal_the_crawls_field_by_field(crawl_and_reprocess):
    store = crawl_and_reprocess["store"]
    crawled, rebuilt = records_of_run(store, "C1"), records_of_run(store, "R1")
    assert sorted(rebuilt) == sorted(EXPECTED["article_ids"])
    assert sorted(rebuilt) == sorted(crawled)
    for article_id, record in rebuilt.items():
        assert record["run_id"] == "R1"
        original = crawled[article_id]
        assert original["run_id"] == "C1"
        # Every other field, fetched_at (the original capture's WARC-Date) and the
        # WARC pointer included, is the crawl's.
        diff = {f for f in set(record) | set(original) if f != "run_id" and record.get(f) != original.get(f)}
        assert diff == set(), (article_id, diff)


def test_rebuilt_pointer_names_the_original_response_record(crawl_and_reprocess):
    store = crawl_and_reprocess["store"]
    for record in records_of_run(store, "R1").values():
        p = record["warc"]
        with open(store / p["file"], "rb") as f:
            f.seek(p["offset"])
            blob = f.read(p["length"])
        (rec,) = list(ArchiveIterator(io.BytesIO(blob)))
        assert rec.rec_type == "response"
        assert rec.rec_headers.get_header("WARC-Target-URI") == record["url"]
        assert rec.http_headers.get_statuscode() == "200"
        # fetched_at is when that record was captured (to the second), not the replay time.
        warc_date = datetime.fromisoformat(rec.rec_headers.get_header("WARC-Date"))
        assert record["fetched_at"] == warc_date.astimezone(timezone.utc).isoformat(timespec="seconds")


def test_quarantine_equals_the_crawls(crawl_and_reprocess):
    store = crawl_and_reprocess["store"]
    crawled, rebuilt = quarantine_of_run(store, "C1"), quarantine_of_run(store, "R1")
    assert [(e["url"], e["reason"]) for e in rebuilt] == sorted((q["url"], q["reason"]) for q in EXPECTED["quarantine"])
    for a, b in zip(crawled, rebuilt):
        assert {k: v for k, v in a.items() if k != "run_id"} == {k: v for k, v in b.items() if k != "run_id"}


def test_replay_answers_as_the_crawl_was_answered(crawl_and_reprocess):
    """Same pages by status: the archived 500, 500, 200 of F11 replay as two retries,
    the 404s, 301s and the 302 loop (F10–F13, F17) as archived."""
    store = crawl_and_reprocess["store"]
    crawl = json.loads((store / "runs" / "C1" / "report.json").read_text())
    replay = json.loads((store / "runs" / "R1" / "report.json").read_text())
    assert replay["pages_by_status"] == crawl["pages_by_status"]
    assert replay["pages_fetched"] == crawl["pages_fetched"]
    assert crawl["pages_by_status"]["500"] == 2 and crawl["pages_by_status"]["404"] == 2
    assert replay["robots_forbidden"] == crawl["robots_forbidden"] > 0
    assert replay["articles"] == crawl["articles"]
    assert replay["warc_files"] == []


def test_reprocess_from_s3(crawl_and_reprocess, replica, moto_s3, tmp_path):
    """The crawl's WARC files in a bucket (streamed when indexed, ranged GETs when
    replayed), the new run published into the bucket."""
    store = crawl_and_reprocess["store"]
    s3 = s3_client(moto_s3)
    s3.create_bucket(Bucket="reprocess")
    for path in (store / "warc").rglob("*.warc.gz"):
        s3.upload_file(str(path), "reprocess", "old/" + path.relative_to(store).as_posix())
    replica.reset()
    proc = run_newsarchive(
        ["reprocess", "--warc", "s3://reprocess/old/warc/", "--store", "s3://reprocess/new", "--run-id", "S1", *FAST],
        replica.proxy_url,
        extra_env=moto_s3,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert replica.requests == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="reprocess", Prefix="new/")["Contents"]]
    assert not any(k.startswith("new/warc/") for k in keys)
    rebuilt = {}
    for key in keys:
        if key.startswith("new/dataset/") and key.endswith(".jsonl.gz"):
            for r in read_jsonl_gz(s3.get_object(Bucket="reprocess", Key=key)["Body"].read()):
                rebuilt[r["article_id"]] = r
    crawled = records_of_run(store, "C1")
    assert sorted(rebuilt) == sorted(crawled)
    for article_id, record in rebuilt.items():
        assert {k: v for k, v in record.items() if k != "run_id"} == {
            k: v for k, v in crawled[article_id].items() if k != "run_id"
        }


def test_reprocess_without_warc_files_is_a_configuration_error(replica, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_newsarchive(["reprocess", "--warc", str(tmp_path / "empty"), "--store", str(tmp_path / "a")], replica.proxy_url)
    assert proc.returncode == 2
    assert "no WARC files" in proc.stderr


# ------------------------------------------------------------ capture policy
RETRY = frozenset({500, 502, 503, 504, 522, 524, 408, 429})


def caps(*statuses: int) -> list[Capture]:
    return [
        Capture(url="https://x/", status=s, warc_date=f"2026-01-01T00:00:{i:02d}Z", source=0, key="f.warc.gz",
                offset=i * 100, length=100, payload_digest=None, record_id=f"<urn:uuid:{i}>")
        for i, s in enumerate(statuses)
    ]


def statuses(seq: list[Capture]) -> list[tuple[int, int]]:
    return [(c.status, c.offset // 100) for c in seq]


def test_policy_one_crawls_retries_replay_in_order():
    assert statuses(replay_sequence(caps(500, 500, 200), RETRY, 2)) == [(500, 0), (500, 1), (200, 2)]


def test_policy_latest_answer_of_several_crawls():
    # crawl 1: 500, 500, 200; crawl 2: 200 → only the latest answer
    assert statuses(replay_sequence(caps(500, 500, 200, 200), RETRY, 2)) == [(200, 3)]
    # crawl 1: 200; crawl 2: 503, 200 → its retry, then its answer
    assert statuses(replay_sequence(caps(200, 503, 200), RETRY, 2)) == [(503, 1), (200, 2)]
    # a crawl that ended in 404 after an earlier 200: the 404 is the latest answer
    assert statuses(replay_sequence(caps(200, 404), RETRY, 2)) == [(404, 1)]


def test_policy_never_more_errors_than_retries():
    # crawl 1 gave up after 3 × 500; crawl 2 got 200 after one 500
    assert statuses(replay_sequence(caps(500, 500, 500, 500, 200), RETRY, 2)) == [(500, 2), (500, 3), (200, 4)]
    assert statuses(replay_sequence(caps(500, 500, 500, 500), RETRY, 2)) == [(500, 1), (500, 2), (500, 3)]


def test_policy_skips_not_modified():
    # a 304 answered a conditional request, which a replay never sends
    assert statuses(replay_sequence(caps(200, 304), RETRY, 2)) == [(200, 0)]
    assert replay_sequence(caps(304), RETRY, 2) == []


# ------------------------------------------------------------------ handler
def write_warc(directory: Path) -> None:
    body = gzip.compress("<html><body>Tuyên Quang</body></html>".encode(), mtime=0)
    with WarcFileWriter(directory, host="h") as w:
        for second, (status, text) in enumerate(((500, b"err"), (200, body)), start=1):
            w.write_exchange(
                url="https://baotuyenquang.com.vn/a.html", request_method="GET", request_target="/a.html",
                request_headers=[("Host", "baotuyenquang.com.vn")], protocol="HTTP/1.1", status=status,
                response_headers=[("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Encoding", "gzip") if status == 200 else ("X-A", "1"),
                                  ("X-Raw", "caf\xe9"), ("Content-Length", str(len(text)))],
                body=text, ip_address="10.1.2.3", fetched_at=datetime(2026, 1, 1, 0, 0, second, tzinfo=timezone.utc),
            )


def test_index_streams_the_files_and_keeps_locations(tmp_path):
    write_warc(tmp_path / "warc")
    (tmp_path / "warc" / "notes.txt").write_text("not a WARC")
    sources = open_sources([str(tmp_path / "warc")])
    assert len(sources[0].keys) == 1
    counts = build_index(sources, tmp_path / "index.cdxj")
    assert counts == {"files": 1, "captures": 2, "urls": 1, "unreadable_files": 0}
    urls, captures = load_index(tmp_path / "index.cdxj")
    assert urls == [str(tmp_path / "warc")]
    assert [c.status for c in captures] == [500, 200]  # capture time order within the URL
    # The located bytes are exactly one response record; its header bytes come back as
    # stored (latin-1 byte 0xE9 kept) and the body still content-encoded.
    ex = read_exchange(sources[0].store, captures[1].key, captures[1].offset, captures[1].length)
    assert ex["status"] == 200 and ex["protocol"] == "HTTP/1.1"
    assert (b"X-Raw", b"caf\xe9") in ex["headers"]
    assert gzip.decompress(ex["body"]).decode() == "<html><body>Tuyên Quang</body></html>"
    assert ex["ip_address"] == "10.1.2.3"


def test_handler_answers_in_capture_order_and_ignores_what_was_not_archived(tmp_path):
    write_warc(tmp_path / "warc")
    build_index(open_sources([str(tmp_path / "warc")]), tmp_path / "index.cdxj")
    crawler = get_crawler(settings_dict={"NEWSARCHIVE_REPLAY_INDEX": str(tmp_path / "index.cdxj")})
    crawler.stats.open_spider()
    handler = WarcReplayHandler.from_crawler(crawler)

    async def fetch(url):
        request = Request(url)
        response = await handler.download_request(request)
        return request, response

    async def scenario():
        first = await fetch("https://baotuyenquang.com.vn/a.html#top")  # fragments are never sent
        second = await fetch("https://baotuyenquang.com.vn/a.html")
        third = await fetch("https://baotuyenquang.com.vn/a.html")
        with pytest.raises(IgnoreRequest):
            await fetch("https://baotuyenquang.com.vn/b.html")
        return first, second, third

    (req1, resp1), (req2, resp2), (_, resp3) = asyncio.run(scenario())
    assert [resp1.status, resp2.status, resp3.status] == [500, 200, 200]
    assert resp2.headers[b"Content-Encoding"] == b"gzip"  # left for HttpCompressionMiddleware
    assert resp2.body[:2] == b"\x1f\x8b"
    assert str(resp2.ip_address) == "10.1.2.3"
    assert req2.meta["warc"]["offset"] > req1.meta["warc"]["offset"]
    assert req2.meta["warc"]["file"].startswith("NEWSARCHIVE-20") and req2.meta["warc"]["warc_date"].startswith("2026-01-01T00:00:02")
    stats = crawler.stats.get_stats()
    assert stats["newsarchive/replay/responses"] == 3
    assert stats["newsarchive/replay/not_archived"] == 1
    assert stats["newsarchive/replay/repeated"] == 1
