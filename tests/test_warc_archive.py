"""The WARC archive of real crawls of the portal replica (two crawls into one
store and state directory, like two cron runs): validity, warcinfo, linked
records, page requisites, revisits on the second crawl, retrieval (local store
and moto S3), WACZ packaging, and pywb replay rendered by headless Chromium."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.cli import main
from crawler.store import LocalStore
from crawler.warc.retrieve import StoreArchive
from tests.conftest import PORTAL, ROOT, free_port, run_newsarchive, s3_client

BIN = Path(sys.executable).parent
FAST = ["-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=WARNING"]
SEED_URL = ("https://baotuyenquang.com.vn/chinh-tri/xay-dung-dang/"
            "dang-bo-thi-tran-na-hang-chu-trong-cong-tac-phat-trien-dang-vien-127836.html")
SEED_FILE = PORTAL / "site/baotuyenquang.com.vn/chinh-tri/xay-dung-dang" / SEED_URL.rsplit("/", 1)[1]
SEED_TITLE = "Đảng bộ thị trấn Na Hang chú trọng công tác phát triển Đảng viên"
CAPTION_IMG = "https://baotuyenquang.com.vn/media/images/2019/10/img_20191017105600.jpg"
CAPTION = "Đồng chí Bí thư Đảng ủy thị trấn Na Hang trao đổi với những đảng viên mới"
UPDATED_URL = "https://baotuyenquang.com.vn/va-cham-giao-thong-tren-quoc-lo-2c-mot-nguoi-bi-thuong-nang-185230.html"
TOOLS = ROOT / ".venv-pywb" / "bin"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"


def b32sha1(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def records(path: Path) -> list[dict]:
    out = []
    with open(path, "rb") as fh:
        it = ArchiveIterator(fh)
        for rec in it:
            raw = rec.raw_stream.read()
            it.read_to_end(rec)
            out.append({"type": rec.rec_type, "h": rec.rec_headers, "http": rec.http_headers, "raw": raw,
                        "file": path, "offset": it.get_record_offset(), "length": it.get_record_length()})
    return out


def need_tools():
    if not (TOOLS / "wayback").is_file():
        pytest.skip("the archive-tools venv is missing: `make pywb` (a prerequisite of `make test`) creates it")


@pytest.fixture(scope="module")
def crawls(replica, tmp_path_factory):
    """Two crawls of the replica into one store and state dir; the second sees
    the same pages except article 185230 and sitemap-articles.xml (v2)."""
    base = tmp_path_factory.mktemp("warc-archive")
    store, state = base / "archive", base / "state"
    args = ["crawl", "--store", str(store), "--state-dir", str(state), *FAST]
    replica.reset()
    first = run_newsarchive(args + ["--run-id", "run-one"], replica.proxy_url)
    files1 = sorted(store.rglob("*.warc.gz"))
    requests1 = replica.requests
    # No reset: the replica's counters make this its 2nd pass (v2 of 185230 and of sitemap-articles.xml).
    # --mode full: every page is fetched again (an incremental run would skip the
    # settled articles), so unchanged pages must come back as revisits.
    second = run_newsarchive(args + ["--run-id", "run-two", "--mode", "full"], replica.proxy_url)
    files2 = sorted(set(store.rglob("*.warc.gz")) - set(files1))
    return {"first": first, "second": second, "store": store, "state": state, "files1": files1,
            "files2": files2, "requests1": requests1, "requests2": replica.requests[len(requests1):]}


def test_both_crawls_succeed_and_leave_nothing_behind(crawls):
    for run in ("first", "second"):
        assert crawls[run].returncode == 0, crawls[run].stderr[-3000:]
    assert crawls["files1"] and crawls["files2"]
    warc_dir = crawls["state"] / "warc"
    assert sorted(p.name for p in warc_dir.iterdir()) == []  # all uploaded, verified, deleted locally
    assert (crawls["state"] / "warc-digests.sqlite").is_file()


def test_every_file_passes_warcio_check_and_is_indexed_by_cdxj_indexer(crawls):
    for path in crawls["files1"] + crawls["files2"]:
        check = subprocess.run([str(BIN / "warcio"), "check", "-v", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
        assert "digest pass" in check.stdout
        ours = Path(str(path) + ".cdxj").read_text()
        fresh = subprocess.run([str(BIN / "cdxj-indexer"), "--sort", str(path)], capture_output=True, text=True)
        assert fresh.returncode == 0, fresh.stderr
        # The second crawl is incremental: it fetches hubs and the changed article only.
        assert ours == fresh.stdout and ours.count("\n") > (50 if path in crawls["files1"] else 10)
    assert main(["warc", "check", str(crawls["store"])]) == 0


def test_warcinfo_describes_software_policy_and_operator(crawls):
    info = records(crawls["files1"][0])[0]
    assert info["type"] == "warcinfo"
    assert info["h"]["WARC-Filename"] == crawls["files1"][0].name
    text = info["raw"].decode()
    fields = [ln.split(": ", 1) for ln in text.splitlines() if ln]
    as_dict = {}
    for k, v in fields:
        as_dict.setdefault(k, []).append(v)
    assert as_dict["software"] == ["newsarchive/0.1.0 warcio/1.8.1 scrapy/2.19.0"]
    assert as_dict["format"] == ["WARC File Format 1.1"]
    assert as_dict["robots"] == ["obey"]
    assert as_dict["operator"] == ["<https://github.com/newsarchive/newsarchive>"]
    assert as_dict["isPartOf"] == ["newsarchive run run-one"]
    assert as_dict["http-header-user-agent"][0].startswith("newsarchive/0.1.0 (+https://github.com/newsarchive")
    assert {"DOWNLOAD_DELAY=0", "ROBOTSTXT_OBEY=True", "CONCURRENT_REQUESTS_PER_DOMAIN=2",
            "WARC_PAGE_REQUISITES=True", "WARC_REVISITS=True"} <= set(as_dict["crawlSetting"])
    assert "HTTP/2 exchanges are recorded as HTTP/1.1" in as_dict["notes"][0]


def test_request_response_metadata_are_linked_and_faithful(crawls):
    recs = [r for f in crawls["files1"] for r in records(f)]
    ids = {r["h"]["WARC-Record-ID"]: r for r in recs}
    for r in recs:
        if r["type"] in ("request", "metadata"):
            assert ids[r["h"]["WARC-Concurrent-To"]]["type"] in ("response", "revisit")
    seed = [r for r in recs if r["type"] == "response" and r["h"]["WARC-Target-URI"] == SEED_URL]
    assert len(seed) == 1
    seed = seed[0]
    # byte fidelity: the replica sends the fixture file as is
    assert seed["raw"] == SEED_FILE.read_bytes()
    assert seed["h"]["WARC-Payload-Digest"] == b32sha1(SEED_FILE.read_bytes())
    assert seed["http"].get_header("Content-Length") == str(SEED_FILE.stat().st_size)
    # through a proxy the origin's address is unknown: no WARC-IP-Address
    assert seed["h"]["WARC-IP-Address"] is None
    meta = [r for r in recs if r["type"] == "metadata" and r["h"]["WARC-Concurrent-To"] == seed["h"]["WARC-Record-ID"]]
    assert len(meta) == 1
    lines = meta[0]["raw"].decode().splitlines()
    assert f"outlink: {CAPTION_IMG} E img/@src" in lines
    share = "https://www.facebook.com/sharer/sharer.php?u=" + quote(SEED_URL, safe="")
    assert f"outlink: {share} L a/@href" in lines  # off-site links are listed, never fetched
    assert any(ln.startswith("via: https://baotuyenquang.com.vn/") for ln in lines)
    assert any(ln.startswith("fetchTimeMs: ") for ln in lines)


def test_page_requisites_archived_once_from_own_hosts_only(crawls):
    store = crawls["store"]
    recs = [r for f in crawls["files1"] for r in records(f)]
    status = {}
    for r in recs:
        if r["type"] in ("response", "revisit"):
            status.setdefault(r["h"]["WARC-Target-URI"], []).append(r["http"].get_statuscode())
    for url in (CAPTION_IMG, "https://baotuyenquang.com.vn/static/css/main.css",
                "https://baotuyenquang.com.vn/static/js/main.js",
                "https://baotuyenquang.com.vn/images/no-image.jpg"):  # the last is only referenced by main.css
        assert status[url] == ["200"], url
    fetched = [r["url"] for r in crawls["requests1"]]
    assert fetched.count(CAPTION_IMG) == 1
    assert {r["host"] for r in crawls["requests1"]} <= {"baotuyenquang.com.vn", "m.baotuyenquang.com.vn"}
    img = (PORTAL / "site/baotuyenquang.com.vn/media/images/2019/10/img_20191017105600.jpg").read_bytes()
    cap = next(r for r in recs if r["type"] in ("response", "revisit") and r["h"]["WARC-Target-URI"] == CAPTION_IMG)
    assert cap["type"] == "response"  # the m. host's copy is another URL: not a revisit by default
    assert cap["raw"] == img and cap["h"]["WARC-Payload-Digest"] == b32sha1(img)
    # requisites are not articles: the dataset holds the 26 gold articles only
    ids = []
    for part in (store / "dataset").rglob("*.jsonl.gz"):
        ids += [json.loads(ln)["article_id"] for ln in gzip.decompress(part.read_bytes()).splitlines()]
    assert len(set(ids)) == 26
    # and not fetched again by the second run: already archived
    assert CAPTION_IMG not in [r["url"] for r in crawls["requests2"]]


def test_second_crawl_writes_revisits_and_is_under_20_percent(crawls):
    size1 = sum(p.stat().st_size for p in crawls["files1"])
    size2 = sum(p.stat().st_size for p in crawls["files2"])
    assert size2 < 0.20 * size1, (size1, size2)
    first = {r["h"]["WARC-Record-ID"]: r for f in crawls["files1"] for r in records(f)}
    recs2 = [r for f in crawls["files2"] for r in records(f)]
    revisits = [r for r in recs2 if r["type"] == "revisit"]
    full = {r["h"]["WARC-Target-URI"] for r in recs2 if r["type"] == "response"}
    assert len(revisits) > 60
    for r in revisits:
        h = r["h"]
        assert h["WARC-Profile"] == "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
        original = first[h["WARC-Refers-To"]]
        assert original["type"] == "response"
        assert h["WARC-Refers-To-Target-URI"] == original["h"]["WARC-Target-URI"]
        assert h["WARC-Refers-To-Date"] == original["h"]["WARC-Date"]
        assert h["WARC-Payload-Digest"] == original["h"]["WARC-Payload-Digest"] == b32sha1(original["raw"])
        assert r["raw"] == b""
    seed = next(r for r in revisits if r["h"]["WARC-Target-URI"] == SEED_URL)
    assert seed["http"].get_header("Content-Length") == str(SEED_FILE.stat().st_size)
    # the pages that changed are stored in full
    assert UPDATED_URL in full and "https://baotuyenquang.com.vn/sitemap-articles.xml" in full
    v2 = next(r for r in recs2 if r["type"] == "response" and r["h"]["WARC-Target-URI"] == UPDATED_URL)
    assert "Đã xác định nguyên nhân ban đầu".encode() in v2["raw"]


# ----------------------------------------------------------------- retrieval
def _list(store: str, env=None) -> list[dict]:
    proc = subprocess.run([str(BIN / "newsarchive"), "warc", "list", SEED_URL, "--store", store, "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(ln) for ln in proc.stdout.splitlines()]


def test_warc_list_and_get_on_a_local_store(crawls, tmp_path, capsysbinary):
    store = str(crawls["store"])
    rows = _list(store)
    assert [r["type"] for r in rows] == ["response", "revisit"]
    assert rows[0]["digest"] == rows[1]["digest"] == b32sha1(SEED_FILE.read_bytes())
    assert all(r["status"] == "200" and r["file"].startswith("warc/") for r in rows)
    assert rows[0]["file"].endswith(crawls["files1"][0].name)
    # latest capture is the revisit: get resolves it to the original's bytes
    assert main(["warc", "get", SEED_URL, "--store", store]) == 0
    out = capsysbinary.readouterr().out
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Length: {SEED_FILE.stat().st_size}".encode() in head
    assert body == SEED_FILE.read_bytes()
    # --at picks the first capture; --payload gives the body; -o writes a file
    out_file = tmp_path / "seed.html"
    assert main(["warc", "get", SEED_URL, "--store", store, "--at", rows[0]["timestamp"], "--payload",
                 "-o", str(out_file)]) == 0
    assert out_file.read_bytes() == SEED_FILE.read_bytes()
    assert main(["warc", "get", "https://baotuyenquang.com.vn/never-captured.html", "--store", store]) == 1
    # v1 and v2 of the updated article are both retrievable by time
    assert main(["warc", "list", UPDATED_URL, "--store", store]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert lines[0].split("\t") == ["timestamp", "status", "digest", "file", "offset", "length", "type", "url"]
    assert [ln.split("\t")[6] for ln in lines[1:]] == ["response", "response"]


def test_warc_list_and_get_on_s3_read_only_the_record_bytes(crawls, moto_s3, monkeypatch, capsysbinary):
    import boto3

    s3 = s3_client(moto_s3)
    s3.create_bucket(Bucket="warc-retrieval")
    store = crawls["store"]
    for path in (store / "warc").rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "warc-retrieval", "arch/" + path.relative_to(store).as_posix())
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **moto_s3,
           "no_proxy": "127.0.0.1,localhost"}
    assert _list("s3://warc-retrieval/arch", env) == _list(str(store))

    for k, v in moto_s3.items():
        monkeypatch.setenv(k, v)
    sent = []
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a fresh session, dropped after the test
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register(
        "before-send.s3.GetObject", lambda request, **kw: sent.append((request.url, request.headers.get("Range"))))
    rows = _list(str(store))
    assert main(["warc", "get", SEED_URL, "--store", "s3://warc-retrieval/arch"]) == 0
    body = capsysbinary.readouterr().out.split(b"\r\n\r\n", 1)[1]
    assert body == SEED_FILE.read_bytes()
    warc_reads = [(url, rng) for url, rng in sent if url.split("?")[0].endswith(".warc.gz")]
    ranges = sorted(rng.decode() if isinstance(rng, bytes) else rng for _, rng in warc_reads)
    expected = sorted(f"bytes={r['offset']}-{r['offset'] + r['length'] - 1}" for r in rows)
    assert ranges == expected  # the revisit, then its original: one ranged GET each, nothing else
    # the whole store checks out on S3 too (read in ranged chunks)
    assert main(["warc", "check", "s3://warc-retrieval/arch"]) == 0
    if (TOOLS / "wacz").is_file():  # and packages from S3 (files downloaded first)
        out = crawls["store"].parent / "from-s3.wacz"
        assert main(["warc", "wacz", "-o", str(out), "--store", "s3://warc-retrieval/arch"]) == 0
        with zipfile.ZipFile(out) as z:
            for p in crawls["files1"] + crawls["files2"]:
                assert z.getinfo(f"archive/{p.name}").file_size == p.stat().st_size


# ---------------------------------------------------------------------- wacz
def test_wacz_packages_the_captures(crawls, tmp_path):
    need_tools()
    out = tmp_path / "all.wacz"
    assert main(["warc", "wacz", "-o", str(out), "--store", str(crawls["store"])]) == 0
    valid = subprocess.run([str(TOOLS / "wacz"), "validate", "-f", str(out)], capture_output=True, text=True)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        assert {f"archive/{p.name}" for p in crawls["files1"] + crawls["files2"]} <= names
        assert "datapackage.json" in names
        pages = z.read("pages/pages.jsonl").decode()
    assert SEED_URL in pages
    # Every page archived as a 200 HTML response is listed once, whatever referred to what.
    listed = [json.loads(line)["url"] for line in pages.splitlines()[1:]]
    html = {e.url for e in StoreArchive(LocalStore(crawls["store"])).entries()
            if e.status == "200" and e.mime.startswith("text/html")}
    assert len(listed) == len(set(listed)) and set(listed) == html
    since = tmp_path / "since.wacz"
    assert main(["warc", "wacz", "-o", str(since), "--store", str(crawls["store"]), "--since", "2999-01-01"]) == 1
    assert not since.exists()


# -------------------------------------------------------- replay in Chromium
def _wait_port(port: int, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"replay exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("pywb did not start")


def test_pywb_replays_the_seed_article_in_chromium(crawls, tmp_path):
    need_tools()
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium is missing: `make chromium` (a prerequisite of `make test`) installs it")
    port = free_port()
    log = open(tmp_path / "pywb.log", "w+")
    proc = subprocess.Popen([str(BIN / "newsarchive"), "replay", "--port", str(port), "--store", str(crawls["store"])],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait_port(port, proc)
        page = f"http://127.0.0.1:{port}/newsarchive/{SEED_URL}"  # latest capture: a revisit
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "replay-127836.png"
        shot.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as profile_a, tempfile.TemporaryDirectory() as profile_b:
            dom = subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile_a}",
                                  "--virtual-time-budget=10000", "--dump-dom", page],
                                 capture_output=True, text=True, timeout=120).stdout
            subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile_b}",
                            "--window-size=1280,1600", "--virtual-time-budget=10000", f"--screenshot={shot}", page],
                           capture_output=True, timeout=120)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log.seek(0)
    access = log.read()
    assert f'<h1 class="title-detail">{SEED_TITLE}</h1>' in dom
    assert f"<title>{SEED_TITLE} - Báo Tuyên Quang điện tử</title>" in dom
    assert CAPTION in dom
    assert f'src="{CAPTION_IMG}"' in dom or f'im_/{CAPTION_IMG}"' in dom
    # the browser fetched the caption image (and the stylesheet) from the archive, successfully
    assert f'"GET /newsarchive/im_/{CAPTION_IMG} HTTP/1.1" 200' in access, access[-3000:]
    assert '/https://baotuyenquang.com.vn/static/css/main.css HTTP/1.1" 200' in access
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


@pytest.mark.parametrize("argv", [
    ["warc", "check", "{missing}"],
    ["warc", "list", "https://baotuyenquang.com.vn/", "--store", "{missing}"],
    ["warc", "get", "https://baotuyenquang.com.vn/", "--store", "{missing}"],
    ["dataset", "verify", "--store", "{missing}"],
])
def test_a_mistyped_store_is_an_error_and_is_not_created(tmp_path, capsys, argv):
    """Opening a local store creates its folder: a read command on a mistyped path
    would otherwise check an empty archive and say OK."""
    missing = tmp_path / "no-such-archive"
    assert main([a.format(missing=missing) for a in argv]) == 3
    assert f"no store at {missing}" in capsys.readouterr().err
    assert not missing.exists()
