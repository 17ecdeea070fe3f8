"""The run report, the exit code rules and the Prometheus text-file metrics of a crawl.

A crawl's facts come from Scrapy's stats plus newsarchive's own counters:
``newsarchive/errors/<kind>`` with up to :data:`MAX_EXAMPLES` URLs each in
``newsarchive/error_examples/<kind>`` (:func:`record_error`; kinds are ``http_<status>``
for an HTTP error status, the exception's class name for a download failure,
``redirect_loop`` (a chain back into itself), ``redirect_limit`` (over REDIRECT_MAX_TIMES),
``download_maxsize`` (a body over DOWNLOAD_MAXSIZE as received or once decoded), ``spider_<Exception>`` and ``item_<Exception>``), the dedup outcomes
and ``newsarchive/discovery/article_urls`` (distinct article URLs met).

Exit codes (README, "Exit codes"): 0 success; 1 the crawl ran but failed its checks;
2 bad configuration or arguments; 3 the store could not take the dataset, a WARC file
or the report (the data stays in ``--state-dir`` for the next run); 75 lock held.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_STORE, EXIT_LOCKED = 0, 1, 2, 3, 75

MAX_EXAMPLES = 5

#: Error kinds that are the site's content, not a failing crawl: they are reported but
#: left out of the error rate (a deleted article answers 404 for ever).
NOT_FAILURES = frozenset({"http_404", "http_410"})

ERROR_PREFIX = "newsarchive/errors/"
EXAMPLES_PREFIX = "newsarchive/error_examples/"


def record_error(stats, kind: str, url: str | None) -> None:
    """Count one error of ``kind`` and keep ``url`` as an example (first few only)."""
    stats.inc_value(ERROR_PREFIX + kind)
    examples = stats.get_value(EXAMPLES_PREFIX + kind) or []
    if url and len(examples) < MAX_EXAMPLES and url not in examples:
        stats.set_value(EXAMPLES_PREFIX + kind, [*examples, url])


def errors_by_type(stats: dict) -> dict[str, dict]:
    """``{kind: {"count": n, "examples": [url, ...]}}`` from the stats."""
    out = {}
    for key, value in sorted(stats.items()):
        if key.startswith(ERROR_PREFIX):
            kind = key[len(ERROR_PREFIX):]
            out[kind] = {"count": value, "examples": list(stats.get(EXAMPLES_PREFIX + kind) or [])}
    return out


def quarantine_reasons(stats: dict) -> dict[str, int]:
    """Quarantined pages by reason, from the extraction and validation stats."""
    out: dict[str, int] = {}
    for key, value in stats.items():
        for prefix in ("newsarchive/extract/quarantine/", "newsarchive/validate/quarantine/"):
            if key.startswith(prefix):
                reason = key[len(prefix):]
                out[reason] = out.get(reason, 0) + value
    return dict(sorted(out.items()))


def summarize(stats: dict, run_id: str, store_url: str, mode: str = "incremental") -> dict:
    """The run report (a JSON-able dict) from a finished crawl's stats. The dataset
    objects the run stored are counted; its manifest (``dataset_manifest``, None
    until written) lists them."""
    statuses = {
        k.rsplit("/", 1)[1]: v for k, v in stats.items() if k.startswith("downloader/response_status_count/")
    }
    by_type = errors_by_type(stats)
    requests = stats.get("downloader/request_count", 0)
    failures = sum(e["count"] for k, e in by_type.items() if k not in NOT_FAILURES and not k.startswith(("spider_", "item_")))
    spider_exceptions = sum(v for k, v in stats.items() if k.startswith("spider_exceptions/") and k != "spider_exceptions/count")
    return {
        "run_id": run_id,
        "mode": mode,
        "store": store_url,
        "started_at": str(stats.get("start_time")),
        "finished_at": str(stats.get("finish_time")),
        "finish_reason": stats.get("finish_reason"),
        "pages_fetched": stats.get("downloader/response_count", 0),
        "requests": requests,
        "pages_by_status": statuses,
        "robots_forbidden": stats.get("robotstxt/forbidden", 0),
        # Requests refused by policy before connecting: robots.txt, off-site hosts,
        # private/reserved addresses (SSRF guard, by reason), URLs over URLLENGTH_LIMIT.
        "refused": {
            "robots": stats.get("robotstxt/forbidden", 0),
            "offsite": stats.get("offsite/filtered", 0),
            "private_address": {k.rsplit("/", 1)[1]: v for k, v in stats.items() if k.startswith("ssrf/refused/")},
            "url_too_long": stats.get("urllength/request_ignored_count", 0),
        },
        # Retries (RETRY_TIMES) and the requests given up on after the last one.
        "retries": {
            "count": stats.get("retry/count", 0),
            "gave_up": stats.get("retry/max_reached", 0),
            "by_reason": {k.split("/", 2)[2]: v for k, v in stats.items() if k.startswith("retry/reason_count/")},
        },
        # Pages kept with a warning (charset mismatch repaired, NFD text, bad JSON-LD …).
        "warnings": {k.rsplit("/", 1)[1]: v for k, v in stats.items() if k.startswith("newsarchive/extract/warning/")},
        "incremental": {
            "article_urls_discovered": stats.get("newsarchive/discovery/article_urls", 0),
            "skipped_known": stats.get("newsarchive/incremental/skipped", 0),
            # known articles fetched again by the recheck rules (young, lastmod)
            "rechecked": sum(v for k, v in stats.items() if k.startswith("newsarchive/incremental/fetch/")
                             and not k.endswith(("/new", "/full"))),
            # --mode full: article pages fetched without asking the state
            "fetched_in_full_mode": stats.get("newsarchive/incremental/fetch/full", 0),
            "not_modified": stats.get("newsarchive/incremental/not_modified", 0),
            "pagination_stopped": stats.get("newsarchive/incremental/pagination_stopped", 0),
            "recovered_from_interrupted_run": {
                k.rsplit("/", 1)[1]: v for k, v in stats.items() if k.startswith("newsarchive/state/recovered/")
            },
        },
        "articles": {
            "new": stats.get("newsarchive/dedup/new", 0),
            "updated": stats.get("newsarchive/dedup/updated", 0),
            "duplicate": stats.get("newsarchive/dedup/duplicate", 0),
            "near_duplicate": stats.get("newsarchive/dedup/near_duplicate", 0),
            # records republished with a near-duplicate link learned after they went out
            "link_revisions": stats.get("newsarchive/dedup/near_duplicate_relinked", 0),
            "quarantined": stats.get("newsarchive/publish/quarantined", 0),
            "published": stats.get("newsarchive/publish/records", 0),
            # a stopped crawl's records from alternate pages, left for the next run
            # (README "Resume"): neither published nor lost
            "held_for_next_run": stats.get("newsarchive/publish/held_for_canonical_page", 0),
            # by reason (soft_404, no_title, unreadable_date …): extraction and validation
            "quarantine_reasons": quarantine_reasons(stats),
        },
        "errors": {
            "by_type": by_type,
            "error_rate": round(failures / requests, 4) if requests else 0.0,
            "http_4xx_5xx": sum(v for s, v in statuses.items() if s.isdigit() and int(s) >= 400),
            # Every download exception Scrapy counted, requests without our errback
            # (robots.txt fetches) included; IgnoreRequest is policy, not failure.
            "download_exceptions": {
                k.rsplit("/", 1)[1]: v
                for k, v in stats.items()
                if k.startswith("downloader/exception_type_count/") and not k.endswith(".IgnoreRequest")
            },
            "spider_exceptions": spider_exceptions,
            # hosts whose robots.txt answered 5xx or failed: not crawled (RFC 9309 2.3.1.4)
            "robots_unreachable": stats.get("newsarchive/robots/unreachable", 0),
            "publish_errors": stats.get("newsarchive/publish/errors", 0),
            # the item process (crawler/item_process.py) ended before its report
            "item_process_failed": stats.get("newsarchive/item_process/failed", 0),
            "publish_spooled": stats.get("newsarchive/publish/spooled", 0),
            "warc_upload_errors": stats.get("warc/upload_errors", 0),
        },
        "warc_files": list(stats.get("warc/uploaded", []) or []),
        "dataset_objects": stats.get("newsarchive/publish/objects", 0),
        "dataset_manifest": stats.get("newsarchive/publish/manifest"),
    }


def checks(report: dict, previous: dict | None, max_error_rate: float) -> tuple[int, list[str]]:
    """Our own verdict on a crawl (Scrapy exits 0 even when downloads or uploads failed:
    scrapy#1231, #4292): the exit code and the reasons for it, in order of precedence
    (store problems first: the next run must know the data waits locally)."""
    e = report["errors"]
    if e["publish_errors"] or e["publish_spooled"] or e["warc_upload_errors"]:
        return EXIT_STORE, ["the store did not take every dataset batch or WARC file (kept locally)"]
    reasons = []
    if report["finish_reason"] != "finished":
        reasons.append(f"the crawl did not finish ({report['finish_reason'] or 'it did not start: see the log'})")
    if e.get("item_process_failed"):
        reasons.append("the item process ended before its report: items left unpublished (fetched again next run)")
    if e["spider_exceptions"]:
        reasons.append(f"{e['spider_exceptions']} spider exception(s)")
    if report["pages_fetched"] == 0:
        reasons.append("nothing was fetched")
    if e.get("robots_unreachable"):
        reasons.append(f"robots.txt unreachable on {e['robots_unreachable']} host(s): not crawled (RFC 9309 2.3.1.4)")
    if e["error_rate"] > max_error_rate:
        reasons.append(f"error rate {e['error_rate']:.1%} above --max-error-rate {max_error_rate:.1%}")
    found = report["incremental"]["article_urls_discovered"]
    before = _articles_found(previous)
    if found == 0 and before:
        reasons.append(f"no article found, the last run ({previous.get('run_id')}) found {before}")
    return (EXIT_FAILED, reasons) if reasons else (EXIT_OK, [])


def _articles_found(report: dict | None) -> int:
    if not report:
        return 0
    found = (report.get("incremental") or {}).get("article_urls_discovered")
    if found is None:  # a report from before this field existed
        found = (report.get("articles") or {}).get("published", 0)
    return found or 0


def runs_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / "runs"


def write_local(state_dir: str | Path, report: dict) -> Path:
    """Write ``<state_dir>/runs/<run_id>.json`` and point ``runs/LATEST`` at it (both
    written to a temporary name and renamed, so a reader never sees half a file)."""
    folder = runs_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report['run_id']}.json"
    _atomic_write(path, to_json(report))
    _atomic_write(folder / "LATEST", (report["run_id"] + "\n").encode())
    return path


def previous_report(state_dir: str | Path) -> dict | None:
    """The last run's report (``runs/LATEST``), or None when there is none or it is unreadable."""
    folder = runs_dir(state_dir)
    try:
        run_id = (folder / "LATEST").read_text().strip()
        return json.loads((folder / f"{run_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def to_json(report: dict) -> bytes:
    return json.dumps(report, ensure_ascii=False, indent=2, default=str).encode("utf-8")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _to_second(timestamp: str) -> str:
    """``2026-12-01 02:32:01.297135+00:00`` -> ``2026-12-01 02:32:01+00:00``."""
    return re.sub(r"(\d\d:\d\d:\d\d)\.\d+", r"\1", timestamp)


def print_summary(report: dict, out=sys.stderr) -> None:
    """The one-screen human summary."""
    a, e, inc = report["articles"], report["errors"], report["incremental"]
    lines = [
        f"newsarchive run {report['run_id']} ({report['mode']}): {report['finish_reason'] or 'did not start'}, "
        f"exit {report.get('exit_code')}",
        f"  time               {_to_second(report['started_at'])} .. {_to_second(report['finished_at'])}",
        f"  pages fetched      {report['pages_fetched']}  by status {report['pages_by_status']}",
        (f"  incremental        {inc['article_urls_discovered']} article URLs met, {inc['skipped_known']} known skipped, "
         f"{inc['rechecked']} re-checked ({inc['not_modified']} not modified)"
         if report.get("mode") != "full" else
         f"  full mode          {inc['article_urls_discovered']} article URLs met, "
         f"{inc.get('fetched_in_full_mode', 0)} article requests made without consulting the state"),
        f"  articles stored    {a['published']} (new {a['new']}, updated {a['updated']}, near-duplicate {a['near_duplicate']}"
        + (f", link revisions {a['link_revisions']})" if a.get("link_revisions") else ")"),
        *([f"  held for next run  {a['held_for_next_run']} (records from alternate pages of a stopped crawl)"]
          if a.get("held_for_next_run") else []),
        f"  duplicates dropped {a['duplicate']}",
        f"  quarantined        {a['quarantined']}",
        f"  errors             rate {e['error_rate']:.1%}; spider {e['spider_exceptions']}, publish {e['publish_errors']}, "
        f"WARC upload {e['warc_upload_errors']}",
    ]
    for kind, info in list(e["by_type"].items())[:8]:
        example = info["examples"][0] if info["examples"] else ""
        lines.append(f"    {kind:<16} {info['count']:>4}  e.g. {example}")
    for reason in report.get("failed_checks", []):
        lines.append(f"  FAILED CHECK       {reason}")
    lines.append(f"  store              {report['store']} (warc/, dataset/, quarantine/, runs/{report['run_id']}/)")
    print("\n".join(lines), file=out)


def write_metrics(path: str | Path, report: dict) -> None:
    """The report as Prometheus text-format metrics for node_exporter's textfile
    collector, written atomically (temporary file + rename, prometheus_client)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    reg = CollectorRegistry()

    def gauge(name, doc, labels=()):
        return Gauge(f"newsarchive_{name}", doc, labels, registry=reg)

    gauge("last_run_exit_code", "Exit code of the last crawl").set(report.get("exit_code", -1))
    gauge("last_run_success", "1 if the last crawl exited 0").set(1 if report.get("exit_code") == 0 else 0)
    gauge("last_run_finish_timestamp_seconds", "When the last crawl ended (Unix time)").set(report.get("finished_unix", 0))
    gauge("last_run_duration_seconds", "Duration of the last crawl").set(report.get("duration_seconds", 0))
    pages = gauge("last_run_pages", "Responses of the last crawl by HTTP status", ("status",))
    for status, n in report["pages_by_status"].items():
        pages.labels(status).set(n)
    articles = gauge("last_run_articles", "Articles of the last crawl by outcome", ("outcome",))
    for outcome, n in report["articles"].items():
        if isinstance(n, (int, float)):
            articles.labels(outcome).set(n)
    quarantined = gauge("last_run_quarantined", "Pages of the last crawl quarantined, by reason", ("reason",))
    for reason, n in report["articles"].get("quarantine_reasons", {}).items():
        quarantined.labels(reason).set(n)
    errors = gauge("last_run_errors", "Errors of the last crawl by type", ("type",))
    for kind, info in report["errors"]["by_type"].items():
        errors.labels(kind).set(info["count"])
    gauge("last_run_error_rate", "Failed requests / requests in the last crawl").set(report["errors"]["error_rate"])
    gauge("last_run_article_urls_discovered", "Distinct article URLs the last crawl met").set(
        report["incremental"]["article_urls_discovered"]
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), reg)
