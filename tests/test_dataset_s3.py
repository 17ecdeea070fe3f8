"""Acceptance: a demo crawl into S3 (a real moto server over HTTP), read back the
way consumers do — pyarrow's S3FileSystem, pandas, DuckDB over the pyarrow
dataset, the DATASET.md recipes — and compared with the gold. The same crawl run
twice leaves no duplicate and no overwritten object (bucket versioning shows
every write)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from tests.conftest import ROOT, load_expected, load_gold, read_jsonl_gz, run_newsarchive, s3_client

GOLD = load_gold()
EXPECTED = load_expected()
SEED = "127836"
BUCKET, PREFIX = "dataset-e2e", "na"
STORE = f"s3://{BUCKET}/{PREFIX}"
FAST = ["-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=WARNING"]


@pytest.fixture(scope="module")
def s3_runs(replica, moto_s3, tmp_path_factory):
    """Two demo crawls with one state dir into one versioned bucket; the
    dataset's verify output after the first; the moto env."""
    base = tmp_path_factory.mktemp("s3ds")
    client = s3_client(moto_s3)
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    args = ["demo", "--store", STORE, "--state-dir", str(base / "state"), *FAST]
    first = run_newsarchive(args, replica.proxy_url, extra_env=moto_s3)
    verify_first = run_newsarchive(["dataset", "verify", "--store", STORE], replica.proxy_url, extra_env=moto_s3)
    second = run_newsarchive(args, replica.proxy_url, extra_env=moto_s3)
    return {"first": first, "verify_first": verify_first, "second": second, "env": moto_s3, "base": base,
            "client": client, "proxy": replica.proxy_url}


def s3fs(env) -> fs.S3FileSystem:
    return fs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], access_key=env["AWS_ACCESS_KEY_ID"],
                           secret_key=env["AWS_SECRET_ACCESS_KEY"], region=env["AWS_DEFAULT_REGION"])


def manifest_parquet_files(s3) -> list[str]:
    files = []
    for info in s3.get_file_info(fs.FileSelector(f"{BUCKET}/{PREFIX}/dataset/articles/v1/_manifests")):
        with s3.open_input_stream(info.path) as f:
            manifest = json.load(f)
        files += [f"{BUCKET}/{PREFIX}/{o['key']}" for o in manifest["objects"]
                  if o["kind"] == "dataset" and o["format"] == "parquet"]
    return sorted(files)


def test_demo_crawls_exit_0_and_verify_passes(s3_runs):
    for run in ("first", "second"):
        assert s3_runs[run].returncode == 0, s3_runs[run].stderr[-3000:]
    assert "articles stored    26 (new 25, updated 0, near-duplicate 1)" in s3_runs["first"].stderr
    assert "articles stored    0 " in s3_runs["second"].stderr
    v = s3_runs["verify_first"]
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.strip().endswith("OK: 1 manifests, 53 objects, 26 records, 0 problems")
    again = run_newsarchive(["dataset", "verify", "--store", STORE], s3_runs["proxy"], extra_env=s3_runs["env"])
    assert again.returncode == 0, again.stdout
    # The second run found nothing new, and the two broken pages are known (their
    # quarantine entries were published by the first run): no object at all.
    assert "OK: 2 manifests, 53 objects, 26 records, 0 problems" in again.stdout


def test_pyarrow_reads_exactly_the_gold_unique_articles(s3_runs):
    s3 = s3fs(s3_runs["env"])
    files = manifest_parquet_files(s3)
    assert len(files) == 26  # one per published_date partition of the single batch (one article a day)
    table = ds.dataset(files, filesystem=s3, format="parquet", partitioning="hive",
                       partition_base_dir=f"{BUCKET}/{PREFIX}/dataset/articles/v1").to_table()
    ids = table.column("article_id").to_pylist()
    assert sorted(ids) == sorted(EXPECTED["article_ids"]) and len(set(ids)) == EXPECTED["unique_articles"] == 26
    seed = next(r for r in table.to_pylist() if r["article_id"] == SEED)
    gold = GOLD[SEED]
    assert seed["title"] == gold["title"] == "Đảng bộ thị trấn Na Hang chú trọng công tác phát triển Đảng viên"
    assert seed["published_at"].isoformat() == gold["published_at"] == "2019-10-17T22:56:00+07:00"
    assert seed["authors"] == gold["authors"] == ["Hà Huế"]
    assert seed["body"] == gold["body"]
    assert seed["published_date"] == "2019-10-17"  # hive partition column


def test_pandas_reads_the_same(s3_runs):
    import pandas as pd

    s3 = s3fs(s3_runs["env"])
    df = pd.read_parquet(manifest_parquet_files(s3), filesystem=s3)
    assert len(df) == 26 and df["article_id"].is_unique
    assert sorted(df["article_id"]) == sorted(EXPECTED["article_ids"])
    seed = df.set_index("article_id").loc[SEED]
    assert seed["title"] == GOLD[SEED]["title"]
    assert seed["published_at"] == pd.Timestamp(GOLD[SEED]["published_at"])
    assert str(df["published_at"].dtype) == "datetime64[us, UTC+07:00]"
    assert list(seed["authors"]) == GOLD[SEED]["authors"] and list(seed["body"]) == GOLD[SEED]["body"]


def test_duckdb_scans_the_pyarrow_dataset(s3_runs):
    import duckdb

    s3 = s3fs(s3_runs["env"])
    articles = ds.dataset(manifest_parquet_files(s3), filesystem=s3, format="parquet")  # noqa: F841 (DuckDB reads it by name)
    con = duckdb.connect()
    assert con.sql("SELECT count(*), count(DISTINCT article_id) FROM articles").fetchall() == [(26, 26)]
    [(title, published, authors)] = con.sql(
        f"SELECT title, published_at, authors FROM articles WHERE article_id = '{SEED}'").fetchall()
    # TIMESTAMP WITH TIME ZONE: the same instant (DuckDB shows it in its session zone).
    assert published == datetime.fromisoformat(GOLD[SEED]["published_at"])
    assert (title, authors) == (GOLD[SEED]["title"], ["Hà Huế"])


def test_jsonl_and_parquet_hold_the_same_records(s3_runs):
    client = s3_runs["client"]
    s3 = s3fs(s3_runs["env"])
    for path in manifest_parquet_files(s3):
        key = path.split("/", 1)[1]
        rows = pq.read_table(s3.open_input_file(path)).to_pylist()
        lines = read_jsonl_gz(client.get_object(Bucket=BUCKET, Key=key.replace(".parquet", ".jsonl.gz"))["Body"].read())
        assert [r["article_id"] for r in rows] == [r["article_id"] for r in lines]
        for row, line in zip(rows, lines):
            assert row["published_at"].isoformat() == line["published_at"]
            assert {k: row[k] for k in ("title", "body", "urls", "images", "warc")} == \
                   {k: line[k] for k in ("title", "body", "urls", "images", "warc")}


def test_same_crawl_twice_no_duplicate_and_no_overwritten_object(s3_runs):
    client = s3_runs["client"]
    counts: dict[str, int] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        for v in page.get("Versions", []):
            counts[v["Key"]] = counts.get(v["Key"], 0) + 1
    # _latest is the one object meant to be replaced: once per run.
    assert counts.pop(f"{PREFIX}/dataset/articles/v1/_latest") == 2
    assert {k: n for k, n in counts.items() if n != 1} == {}
    manifests = sorted(k for k in counts if "/_manifests/" in k)
    assert len(manifests) == 2
    second = json.loads(client.get_object(Bucket=BUCKET, Key=manifests[1])["Body"].read())
    assert second["totals"]["records"] == 0
    assert second["objects"] == []  # nothing new, nothing quarantined again
    latest = json.loads(client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/dataset/articles/v1/_latest")["Body"].read())
    assert latest["manifest"] == manifests[1].removeprefix(f"{PREFIX}/")


def test_ls_and_export(s3_runs, tmp_path):
    env, proxy = s3_runs["env"], s3_runs["proxy"]
    ls = run_newsarchive(["dataset", "ls", "--store", STORE], proxy, extra_env=env)
    assert ls.returncode == 0, ls.stderr
    lines = ls.stdout.splitlines()
    assert len(lines) == 4 and lines[1].split()[1:5] == ["finished", "26", "2", "53"]
    run_id = lines[1].split()[0]
    one = run_newsarchive(["dataset", "ls", "--store", STORE, "--run", run_id], proxy, extra_env=env)
    assert one.returncode == 0 and len([x for x in one.stdout.splitlines() if " dataset/" in x]) == 52
    assert one.stdout.splitlines()[1].split() == ["RECORDS", "BYTES", "SHA256", "KEY"]
    out = tmp_path / "all.parquet"
    export = run_newsarchive(["dataset", "export", "--store", STORE, "-o", str(out)], proxy, extra_env=env)
    assert export.returncode == 0, export.stderr
    table = pq.read_table(out)
    assert sorted(table.column("article_id").to_pylist()) == sorted(EXPECTED["article_ids"])
    since = tmp_path / "since.parquet"
    run_newsarchive(["dataset", "export", "--store", STORE, "--since", "2024-01-01", "-o", str(since)], proxy,
                    extra_env=env)
    want = sorted(i for i, g in GOLD.items() if g["published_at"] >= "2024-01-01")
    assert sorted(pq.read_table(since).column("article_id").to_pylist()) == want and len(want) == 7
    bad = run_newsarchive(["dataset", "export", "--store", STORE, "--since", "01/01/2024", "-o", str(since)], proxy,
                          extra_env=env)
    assert bad.returncode == 2


def dataset_md_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "DATASET.md").read_text("utf-8"), re.S)


def test_dataset_md_python_recipes_run_against_the_bucket(s3_runs):
    code = "\n".join(dataset_md_blocks("python")).replace("my-bucket/newsarchive", f"{BUCKET}/{PREFIX}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(s3_runs["env"], no_proxy="127.0.0.1,localhost")
    env.pop("http_proxy", None), env.pop("https_proxy", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "26 records" in proc.stdout
    assert "('127201', 1, 'Bế mạc Trại sáng tác văn học nghệ thuật Tân Trào năm 2019')" in proc.stdout


def test_dataset_md_duckdb_sql_recipe_on_a_local_copy(s3_runs, tmp_path):
    """httpfs needs a download, so the SQL runs on a copy of the bucket: same
    statements, s3:// replaced by the folder, the httpfs set-up lines left out."""
    import duckdb

    client = s3_runs["client"]
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/dataset/"):
        for obj in page["Contents"]:
            path = tmp_path / obj["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
    [sql] = dataset_md_blocks("sql")
    assert "INSTALL httpfs" in sql  # the recipe says what it needs
    sql = sql.replace("s3://my-bucket/newsarchive", str(tmp_path / PREFIX))
    statements = [s.strip() for s in sql.split(";") if s.strip()
                  and not s.strip().startswith(("INSTALL", "LOAD", "CREATE SECRET"))]
    con = duckdb.connect()
    for statement in statements[:-1]:
        con.execute(statement)
    rows = con.sql(statements[-1]).fetchall()
    assert sorted(r[0] for r in rows) == sorted(EXPECTED["article_ids"])
    assert next(r for r in rows if r[0] == SEED)[2] == GOLD[SEED]["title"]


def test_a_finished_run_id_cannot_be_reused(s3_runs):
    lines = run_newsarchive(["dataset", "ls", "--store", STORE], s3_runs["proxy"], extra_env=s3_runs["env"]).stdout
    run_id = lines.splitlines()[1].split()[0]
    proc = run_newsarchive(["demo", "--store", STORE, "--state-dir", str(s3_runs["base"] / "state-other"),
                            "--run-id", run_id, *FAST], s3_runs["proxy"], extra_env=s3_runs["env"])
    assert proc.returncode == 1
    assert f"run {run_id} is complete" in proc.stderr and "run_already_published" in proc.stderr
    assert not (Path(s3_runs["base"]) / "state-other" / "spool" / run_id).exists()
