"""Running under cron: the state directory's lock (exit 75), exit codes 1/2/3 from our
own checks, the run report (local and in the store) with error examples, and the
Prometheus text-file metrics."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crawler.report import EXIT_CONFIG, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_STORE, checks, previous_report, write_local
from tests.conftest import (
    BIN, ROOT, crawl_args, load_expected, newsarchive_env, read_jsonl_gz, run_newsarchive, s3_client,
)

EXPECTED = load_expected()
FAST = ["-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=WARNING"]
F10 = "https://baotuyenquang.com.vn/xa-hoi/y-te/benh-vien-da-khoa-tinh-ung-dung-ky-thuat-moi-trong-dieu-tri-dot-quy-150011.html"
F11 = EXPECTED["errors"]["transient_5xx"][0]["url"]


# ---------------------------------------------------------------- the lock


def test_two_runs_started_together_one_works_the_other_exits_75_at_once(replica, tmp_path):
    replica.reset()
    args = crawl_args(["crawl", "--store", str(tmp_path / "archive"), "--state-dir", str(tmp_path / "state"), *FAST])
    env = newsarchive_env(replica.proxy_url)

    def start():
        return subprocess.Popen([str(BIN / "newsarchive"), *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    started = time.monotonic()
    procs = [start(), start()]
    first_exit = None
    while first_exit is None:
        for p in procs:
            if p.poll() is not None:
                first_exit = (p, time.monotonic() - started)
                break
        time.sleep(0.01)
    loser, elapsed = first_exit
    winner = next(p for p in procs if p is not loser)
    assert loser.returncode == EXIT_LOCKED == 75
    # No timing assertion (a loaded CI machine makes any bound flaky): giving up "at
    # once" means not waiting for the lock, which the next test shows; here the loser
    # is out while the winner still works. Seen: about 0.5 s, most of it Python start-up.
    print(f"second run gave up after {elapsed:.2f} s")
    assert winner.poll() is None, "the loser must give up while the winner still works"
    message = loser.stderr.read().strip()
    assert message == f"newsarchive: another run (pid {winner.pid}) holds {tmp_path / 'state' / 'lock'}; exiting"
    assert "\n" not in message
    assert winner.wait(timeout=300) == EXIT_OK, winner.stderr.read()[-3000:]


@pytest.mark.parametrize("command", ["crawl", "demo"])
def test_a_run_does_not_wait_for_a_held_lock(tmp_path, command):
    """The lock is tried without blocking: with the lock held for good by another
    process, the crawl still exits 75 (a blocking lock would hang until the guard);
    ``demo`` does not start its replica first."""
    state = tmp_path / "state"
    state.mkdir()
    holder = subprocess.Popen(
        [str(BIN / "python"), "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('held', flush=True); "
         "time.sleep(600)", str(state / "lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = subprocess.run([str(BIN / "newsarchive"), command, "--store", str(tmp_path / "archive"),
                               "--state-dir", str(state)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)  # a hang guard, not a speed target
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == EXIT_LOCKED
    assert proc.stderr.strip() == f"newsarchive: another run (pid {holder.pid}) holds {state / 'lock'}; exiting"
    assert not (tmp_path / "archive").exists()


# ---------------------------------------------------------------- exit code 2


@pytest.mark.parametrize(
    "args",
    [
        ["crawl", "--mode", "sometimes"],
        ["crawl", "--no-such-option"],
        ["crawl", "-s", "NOT_A_PAIR"],
        ["crawl", "-s", "NEWSARCHIVE_NEARDUP_THRESHOLD=1.5"],
        ["crawl", "-s", "NEWSARCHIVE_SHINGLE_SIZE=zero"],
        ["crawl", "--recheck-days", "-1"],
        ["crawl", "--max-error-rate", "-1"],
        ["crawl", "--max-error-rate", "7"],
        # Values Scrapy would reject only once the crawl runs (an unhandled error, exit 1).
        ["crawl", "-s", "DOWNLOAD_DELAY=abc"],
        ["crawl", "-s", "ROBOTSTXT_OBEY=maybe"],
        ["crawl", "-s", "ITEM_PIPELINES=notjson"],
        ["demo", "-s", "CONCURRENT_REQUESTS=many"],
        ["demo", "--recheck-days", "-3"],
        ["crawl", "--store", "ftp://host/path"],
        ["crawl", "-s", "NEWSARCHIVE_STATE_URL=redis://127.0.0.1:1/0"],
    ],
)
def test_bad_configuration_exits_2(replica, tmp_path, args):
    # --store first: a case's own --store comes later and wins.
    proc = run_newsarchive([args[0], "--store", str(tmp_path / "archive"), *args[1:], "--state-dir",
                            str(tmp_path / "state")], replica.proxy_url)
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-2000:]
    assert not (tmp_path / "state" / "runs").exists()  # nothing was crawled
    assert not (tmp_path / "archive" / "runs").exists()  # no report of a run that never started
    assert "Traceback" not in proc.stderr and "portal replica on" not in proc.stderr  # demo: checked first
    if "-s" in args:
        name, _, value = args[args.index("-s") + 1].partition("=")
        assert name in proc.stderr or value in proc.stderr  # the message says which setting


def test_a_state_from_a_newer_release_exits_2(replica, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "state.sqlite")
    db.execute("PRAGMA user_version=99")
    db.close()
    proc = run_newsarchive(["crawl", "--state-dir", str(state)], replica.proxy_url)
    assert proc.returncode == EXIT_CONFIG
    assert "schema version 99" in proc.stderr


# ---------------------------------------------------------------- exit code 1 and the report


@pytest.fixture(scope="module")
def failing_crawl(replica, tmp_path_factory):
    """A crawl without retries: F11's first 500 is final, one failed request in ~90."""
    base = tmp_path_factory.mktemp("failing")
    replica.reset()
    proc = run_newsarchive(
        ["crawl", "--store", str(base / "archive"), "--state-dir", str(base / "state"), "--run-id", "R1",
         "--max-error-rate", "0.005", "--metrics-file", str(base / "metrics" / "newsarchive.prom"),
         "--logfile", str(base / "logs" / "crawl.log"), "-s", "RETRY_TIMES=0", "-s", "DOWNLOAD_DELAY=0"],
        replica.proxy_url,
    )
    return proc, base


def test_an_error_rate_above_the_limit_exits_1(failing_crawl):
    proc, base = failing_crawl
    assert proc.returncode == EXIT_FAILED, proc.stderr[-3000:]
    report = json.loads((base / "state" / "runs" / "R1.json").read_text())
    assert report["exit_code"] == 1
    (reason,) = report["failed_checks"]
    # One request failed for good (F11 with retries off) out of the run's requests
    # (pages and page requisites): the rate in the check is the report's.
    rate = report["errors"]["error_rate"]
    assert 0.005 < rate < 0.02
    assert reason == f"error rate {rate:.1%} above --max-error-rate 0.5%"
    assert "FAILED CHECK       error rate" in proc.stderr


def test_the_log_goes_to_the_logfile_and_the_summary_to_stderr(failing_crawl):
    proc, base = failing_crawl
    log = (base / "logs" / "crawl.log").read_text()
    assert "[scrapy.core.engine] INFO: Spider closed (finished)" in log
    assert "[scrapy.core.engine]" not in proc.stderr
    assert "newsarchive run R1 (incremental): finished, exit 1" in proc.stderr


def test_the_report_has_errors_by_type_with_example_urls(failing_crawl):
    _, base = failing_crawl
    report = json.loads((base / "state" / "runs" / "R1.json").read_text())
    by_type = report["errors"]["by_type"]
    assert by_type["http_500"] == {"count": 1, "examples": [F11]}
    assert by_type["http_404"]["count"] == 2
    assert sorted(by_type["http_404"]["examples"]) == sorted([F10, "https://baotuyenquang.com.vn/sitemap-2018.xml"])
    assert by_type["redirect_loop"]["count"] == 1  # F13
    # 404s are the site's content, not a failing crawl: two failures (F11's 500, the
    # F13 loop) in all requests.
    assert report["errors"]["error_rate"] == round(2 / report["requests"], 4)
    assert report["pages_by_status"]["500"] == 1
    assert report["articles"] == {
        "new": 24, "updated": 0, "duplicate": 7, "near_duplicate": 1, "link_revisions": 0, "quarantined": 2,
        "published": 25, "held_for_next_run": 0,
        "quarantine_reasons": {"empty_body": 1, "truncated_body": 1},
    }
    assert report["warc_files"] and all(k.startswith("warc/") for k in report["warc_files"])
    manifest = json.loads((base / "archive" / report["dataset_manifest"]).read_text())
    assert report["dataset_objects"] == manifest["totals"]["objects"] > 0
    assert all(o["key"].startswith(("dataset/", "quarantine/")) for o in manifest["objects"])
    for field in ("started_at", "finished_at", "duration_seconds", "mode", "incremental"):
        assert report[field], field


def test_the_report_in_the_store_is_the_local_one(failing_crawl):
    _, base = failing_crawl
    local = json.loads((base / "state" / "runs" / "R1.json").read_text())
    stored = json.loads((base / "archive" / "runs" / "R1" / "report.json").read_text())
    assert stored == local
    assert (base / "state" / "runs" / "LATEST").read_text().strip() == "R1"


def test_the_metrics_file_is_prometheus_text_format(failing_crawl):
    _, base = failing_crawl
    text = (base / "metrics" / "newsarchive.prom").read_text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("newsarchive_last_run_exit_code", ())] == 1
    assert samples[("newsarchive_last_run_success", ())] == 0
    assert samples[("newsarchive_last_run_errors", (("type", "http_500"),))] == 1
    assert samples[("newsarchive_last_run_articles", (("outcome", "published"),))] == 25
    assert samples[("newsarchive_last_run_pages", (("status", "200"),))] > 50
    assert not list((base / "metrics").glob(".*"))  # written atomically: no temporary left


def test_the_next_run_finds_what_the_failed_one_missed(failing_crawl, replica):
    """F11 failed without retries; the next incremental run fetches it (it is not
    known). Besides it, only 185230 comes again: the replica's second pass serves its
    version 2 (F04)."""
    _, base = failing_crawl
    proc = run_newsarchive(
        ["crawl", "--store", str(base / "archive"), "--state-dir", str(base / "state"), "--run-id", "R2", *FAST],
        replica.proxy_url,
    )
    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    report = json.loads((base / "state" / "runs" / "R2.json").read_text())
    assert report["previous_run_id"] == "R1"
    assert (report["articles"]["new"], report["articles"]["updated"], report["articles"]["published"]) == (1, 1, 2)
    assert report["incremental"]["article_urls_discovered"] == 32


# ---------------------------------------------------------------- exit code 3


def test_a_store_that_refuses_writes_exits_3_and_the_next_run_publishes_everything(replica, moto_s3, tmp_path):
    s3 = s3_client(moto_s3)
    state = str(tmp_path / "state")
    replica.reset()
    proc = run_newsarchive(["crawl", "--store", "s3://not-created-yet/a", "--state-dir", state, "--run-id", "S1", *FAST],
                           replica.proxy_url, extra_env=moto_s3)
    assert proc.returncode == EXIT_STORE, proc.stderr[-3000:]
    report = json.loads((tmp_path / "state" / "runs" / "S1.json").read_text())  # kept locally
    assert report["exit_code"] == 3
    assert report["errors"]["publish_errors"] + report["errors"]["publish_spooled"] >= 1
    assert list((tmp_path / "state" / "warc").glob("*.warc.gz")), "WARC files stay in --state-dir"

    s3.create_bucket(Bucket="not-created-yet")
    proc = run_newsarchive(["crawl", "--store", "s3://not-created-yet/a", "--state-dir", state, "--run-id", "S2", *FAST],
                           replica.proxy_url, extra_env=moto_s3)
    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    # The first run's batch waited in the spool (state dir); the second run publishes
    # it first, then its own records (185230's second version): every gold article
    # reaches the bucket once per version.
    records = []
    for obj in s3.list_objects_v2(Bucket="not-created-yet", Prefix="a/dataset/")["Contents"]:
        if obj["Key"].endswith(".jsonl.gz"):
            records += read_jsonl_gz(s3.get_object(Bucket="not-created-yet", Key=obj["Key"])["Body"].read())
    assert sorted({r["article_id"] for r in records}) == sorted(load_expected()["article_ids"])
    versions = [(r["article_id"], r["version"]) for r in records]
    assert len(versions) == len(set(versions))


# ---------------------------------------------------------------- the rules on their own


def report(**over) -> dict:
    r = {
        "run_id": "R", "finish_reason": "finished", "pages_fetched": 90,
        "incremental": {"article_urls_discovered": 32},
        "errors": {"error_rate": 0.0, "spider_exceptions": 0, "publish_errors": 0, "publish_spooled": 0,
                   "warc_upload_errors": 0},
    }
    for k, v in over.items():
        if k in r["errors"]:
            r["errors"][k] = v
        elif k == "found":
            r["incremental"]["article_urls_discovered"] = v
        else:
            r[k] = v
    return r


@pytest.mark.parametrize(
    ("over", "code", "reason"),
    [
        ({}, EXIT_OK, None),
        ({"error_rate": 0.051}, EXIT_FAILED, "error rate 5.1% above --max-error-rate 5.0%"),
        ({"error_rate": 0.05}, EXIT_OK, None),
        ({"spider_exceptions": 2}, EXIT_FAILED, "2 spider exception(s)"),
        ({"finish_reason": "shutdown"}, EXIT_FAILED, "the crawl did not finish (shutdown)"),
        ({"finish_reason": None}, EXIT_FAILED, "the crawl did not finish (it did not start: see the log)"),
        ({"pages_fetched": 0, "found": 0}, EXIT_FAILED, "nothing was fetched"),
        ({"found": 0}, EXIT_FAILED, "no article found, the last run (P) found 30"),
        ({"publish_spooled": 3}, EXIT_STORE, "the store did not take every dataset batch or WARC file (kept locally)"),
        ({"warc_upload_errors": 1, "spider_exceptions": 1}, EXIT_STORE, "the store did not take"),
    ],
)
def test_exit_code_rules(over, code, reason):
    got, reasons = checks(report(**over), {"run_id": "P", "incremental": {"article_urls_discovered": 30}}, 0.05)
    assert got == code
    if reason is None:
        assert reasons == []
    else:
        assert reasons[0].startswith(reason)


def test_zero_articles_is_fine_when_the_last_run_found_none_too():
    assert checks(report(found=0), {"run_id": "P", "incremental": {"article_urls_discovered": 0}}, 0.05)[0] == EXIT_OK
    assert checks(report(found=0), None, 0.05)[0] == EXIT_OK
    # A report written before the field existed: its published count stands in.
    assert checks(report(found=0), {"run_id": "P", "articles": {"published": 3}}, 0.05)[0] == EXIT_FAILED


def test_previous_report_is_the_latest_local_one(tmp_path):
    assert previous_report(tmp_path) is None
    write_local(tmp_path, {"run_id": "A", "n": 1})
    write_local(tmp_path, {"run_id": "B", "n": 2})
    assert previous_report(tmp_path) == {"run_id": "B", "n": 2}
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["A.json", "B.json", "LATEST"]


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    """`newsarchive … | head`: the closed pipe ends the command quietly (exit 1),
    without a BrokenPipeError traceback on stderr."""
    import sys

    script = (
        "import sys\n"
        "import crawler.commands.dataset as d\n"
        "from crawler.cli import main\n"
        "def flood(args):\n"
        "    for i in range(200000):\n"
        "        print('{\"key\": \"dataset/articles/v1/%d.parquet\"}' % i)\n"
        "    return 0\n"
        "d.cmd_ls = flood\n"
        "sys.exit(main(['dataset', 'ls', '--store', sys.argv[1]]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout.read(100).startswith(b'{"key"')
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == EXIT_FAILED
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_a_full_mode_crawl_reports_its_fetches_not_as_rechecks():
    """--mode full asks the state nothing: its article fetches are not re-checks
    (a reprocess printed "32 article URLs met, … 38 re-checked")."""
    import io

    from crawler.report import print_summary, summarize

    stats = {"finish_reason": "finished", "downloader/response_count": 40, "newsarchive/discovery/article_urls": 32,
             "newsarchive/incremental/fetch/full": 38}
    full = summarize(stats, "R", "x", "full")
    assert full["incremental"]["rechecked"] == 0 and full["incremental"]["fetched_in_full_mode"] == 38
    out = io.StringIO()
    print_summary({**full, "exit_code": 0}, out)
    assert "  full mode          32 article URLs met, 38 article requests made without consulting the state" in out.getvalue()
    incremental = summarize({**stats, "newsarchive/incremental/fetch/full": 0, "newsarchive/incremental/fetch/new": 30,
                             "newsarchive/incremental/fetch/young": 2, "newsarchive/incremental/fetch/lastmod": 1},
                            "R", "x", "incremental")
    assert incremental["incremental"]["rechecked"] == 3
    out = io.StringIO()
    print_summary({**incremental, "exit_code": 0}, out)
    assert "32 article URLs met, 0 known skipped, 3 re-checked (0 not modified)" in out.getvalue()


def test_the_summary_says_when_a_crawl_did_not_start_and_gives_times_to_the_second():
    import io
    from datetime import datetime, timezone

    from crawler.report import print_summary, summarize

    started = datetime(2026, 12, 1, 2, 32, 1, 297135, tzinfo=timezone.utc)
    report = summarize({"start_time": started}, "R", "x", "incremental")
    assert report["finish_reason"] is None and report["started_at"] == "2026-12-01 02:32:01.297135+00:00"
    out = io.StringIO()
    print_summary({**report, "exit_code": 1}, out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "newsarchive run R (incremental): did not start, exit 1"
    assert lines[1] == "  time               2026-12-01 02:32:01+00:00 .. None"
