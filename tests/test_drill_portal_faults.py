"""Portal drill: the replica answers slowly (over DOWNLOAD_TIMEOUT), and returns 5xx
bursts — one shorter than the retry budget (RETRY_TIMES=2), one longer. The crawl
retries within its budget, keeps what recovered, and its report lists what it gave
up on (error kind and URL, ``retries.gave_up``); nothing else is lost."""

from __future__ import annotations

import json

import pytest

from tests.conftest import PORTAL, load_expected, read_jsonl_gz, run_newsarchive

EXPECTED = load_expected()
SITE = "https://baotuyenquang.com.vn"
RECOVERS = "/xa-hoi/giao-duc/son-duong-san-sang-cho-ky-thi-tuyen-sinh-vao-lop-10-145540.html"  # 2 x 500, then 200
GIVES_UP = "/phap-luat/pho-bien-phap-luat/dua-phap-luat-den-voi-dong-bao-vung-cao-lam-binh-135118.html"  # 6 x 503
SLOW = EXPECTED["errors"]["slow"][0]["url"]  # F14, made to answer in 8 s: over DOWNLOAD_TIMEOUT=4


@pytest.mark.drill("portal: slow answers and 5xx bursts")
def test_the_crawl_retries_within_budget_and_reports_what_it_gave_up_on(tmp_path, drill_trial):
    from tests.replica.server import ReplicaServer

    root = tmp_path / "portal"
    root.mkdir()
    (root / "site").symlink_to(PORTAL / "site")
    routes = json.loads((PORTAL / "routes.json").read_text("utf-8"))
    hit = set()
    for route in routes:
        if route.get("host", "baotuyenquang.com.vn") != "baotuyenquang.com.vn":
            continue
        if route["path"] == RECOVERS:
            route["fail_first"] = 2
            hit.add(RECOVERS)
        elif SITE + route["path"] == SLOW:
            route["delay_ms"] = 8000
            hit.add(SLOW)
        elif route["path"] == GIVES_UP:
            route["fail_first"] = 6
            hit.add(GIVES_UP)
    assert hit == {RECOVERS, GIVES_UP, SLOW}
    (root / "routes.json").write_text(json.dumps(routes, ensure_ascii=False), "utf-8")
    server = ReplicaServer(root=root, port=0)
    server.start()
    try:
        proc = run_newsarchive(
            ["crawl", "--store", str(tmp_path / "archive"), "--state-dir", str(tmp_path / "state"), "--run-id", "P1",
             "-s", "DOWNLOAD_DELAY=0", "-s", "DOWNLOAD_TIMEOUT=4", "--max-error-rate", "0.2"], server.proxy_url)
        requests = list(server.requests)
    finally:
        server.stop()
    report = json.loads((tmp_path / "state" / "runs" / "P1.json").read_text())
    records = [r for p in sorted((tmp_path / "archive" / "dataset").rglob("*.jsonl.gz"))
               for r in read_jsonl_gz(p.read_bytes())]
    ids = [r["article_id"] for r in records]
    given_up = {"135118", SLOW.rsplit("-", 1)[1].removesuffix(".html")}
    drill_trial.lost = len(set(EXPECTED["article_ids"]) - given_up - set(ids))  # lost beyond what was reported
    drill_trial.duplicates = len(ids) - len(set(ids))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert drill_trial.lost == 0 and drill_trial.duplicates == 0, (
        sorted(set(EXPECTED["article_ids"]) - given_up - set(ids)), report["errors"], report["retries"])
    assert sorted(ids) == sorted(set(EXPECTED["article_ids"]) - given_up)

    # Retries stayed within the budget: 1 + RETRY_TIMES requests at most per URL.
    per_path = {}
    for r in requests:
        per_path[r["path"]] = per_path.get(r["path"], 0) + 1
    slow_path = SLOW.removeprefix(SITE)
    assert per_path[RECOVERS] == 3 and per_path[GIVES_UP] == 3 and per_path[slow_path] == 3
    by_type = report["errors"]["by_type"]
    assert by_type["http_500"]["examples"] == [SITE + GIVES_UP]
    assert by_type["DownloadTimeoutError"] == {"count": 1, "examples": [SLOW]}
    assert report["retries"]["gave_up"] == 2
    assert report["retries"]["count"] >= 2 + 2 + 2 + 2  # F11, RECOVERS, GIVES_UP, SLOW
