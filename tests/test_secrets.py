"""Secrets never leak, and the store stays private.

A crawl into the moto S3 server with dummy but distinctive credentials (access key,
secret key, session token), logging at DEBUG into ``--logfile``, then a second run
whose bucket does not exist (store errors, exceptions, exit 3): no artifact of either
run — stdout, stderr, the log file, the state folder (reports, spool, SQLite state,
WARC files), every object in the bucket (gzip members decompressed, WARC
``warcinfo`` records included) — contains any of the three secrets. Every object
written has the owner's grant only (no ACL parameter is sent; moto records what
would be public)."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import pytest

from tests.conftest import read_jsonl_gz, run_newsarchive, s3_client

KEY_ID = "AKIADRILLTESTKEY0001"
SECRET = "drill/secret/Xk9+NEVERLOGME+aQ2v7Tz"
TOKEN = "IQoJdrillSESSIONtokenNEVERLOGME0001=="
SECRETS = (KEY_ID, SECRET, TOKEN)
PUBLIC_GROUPS = ("http://acs.amazonaws.com/groups/global/AllUsers",
                 "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")


def expanded(data: bytes) -> bytes:
    """``data`` plus its decompressed form when it is gzip (multi-member WARC too)."""
    if data[:2] != b"\x1f\x8b":
        return data
    out, rest = [data], data
    try:
        while rest:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out.append(d.decompress(rest))
            rest = d.unused_data
    except zlib.error:
        pass
    return b"".join(out)


def leaks(data: bytes) -> list[str]:
    data = expanded(data)
    return [s for s in SECRETS if s.encode() in data or s.replace("/", "%2F").replace("+", "%2B").encode() in data]


@pytest.fixture(scope="module")
def secret_runs(replica, moto_s3, tmp_path_factory):
    base = tmp_path_factory.mktemp("secrets")
    admin = s3_client(moto_s3)
    admin.create_bucket(Bucket="private-archive")
    env = {**moto_s3, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
    common = ["--state-dir", str(base / "state"), "--logfile", str(base / "crawl.log"),
              "-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=DEBUG"]
    replica.reset()
    ok = run_newsarchive(["crawl", "--store", "s3://private-archive/na", "--run-id", "S1", *common], replica.proxy_url,
                         extra_env=env)
    replica.reset()
    failing = run_newsarchive(["crawl", "--store", "s3://no-such-bucket/na", "--run-id", "S2",
                               "--state-dir", str(base / "state2"), "--logfile", str(base / "crawl2.log"),
                               "-s", "DOWNLOAD_DELAY=0", "-s", "LOG_LEVEL=DEBUG"], replica.proxy_url, extra_env=env)
    return ok, failing, base, admin


def test_the_runs_did_what_they_should(secret_runs):
    ok, failing, _, admin = secret_runs
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert failing.returncode == 3, failing.stderr[-3000:]
    keys = [o["Key"] for o in admin.list_objects_v2(Bucket="private-archive")["Contents"]]
    assert any(k.endswith(".warc.gz") for k in keys) and any(k.endswith(".parquet") for k in keys)


def test_no_secret_in_any_artifact(secret_runs):
    ok, failing, base, admin = secret_runs
    found = {}
    for name, text in [("stdout1", ok.stdout), ("stderr1", ok.stderr), ("stdout2", failing.stdout),
                       ("stderr2", failing.stderr)]:
        found[name] = leaks(text.encode())
    files = [p for p in base.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".log") for p in files) and any(p.suffix == ".json" for p in files)
    assert any(p.name.endswith(".warc.gz") for p in files)  # the failed run's WARC files wait locally
    for path in files:
        found[str(path)] = leaks(path.read_bytes())
    warcinfo_seen = 0
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket="private-archive"):
        for o in page["Contents"]:
            body = admin.get_object(Bucket="private-archive", Key=o["Key"])["Body"].read()
            found[o["Key"]] = leaks(body)
            warcinfo_seen += expanded(body).count(b"WARC-Type: warcinfo")
    assert warcinfo_seen > 0
    assert {k: v for k, v in found.items() if v} == {}
    # The failing run did report its store errors (so the check above means something).
    text = failing.stderr + (base / "crawl2.log").read_text(errors="replace")
    assert "NoSuchBucket" in text or "no-such-bucket" in text


def test_the_log_filter_masks_credentials_in_messages_and_exceptions():
    import logging

    from crawler.logsafe import RedactSecrets

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets(list(SECRETS)))
    logger = logging.getLogger("test.logsafe")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("signed with %s and token %s", KEY_ID, TOKEN)
        try:
            raise RuntimeError(f"bad secret {SECRET}")
        except RuntimeError:
            logger.exception("upload failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "signed with *** and token ***" in out and "RuntimeError: bad secret ***" in out
    assert leaks(out.encode()) == []


def test_every_object_is_private(secret_runs):
    _, _, _, admin = secret_runs
    n = 0
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket="private-archive"):
        for o in page["Contents"]:
            acl = admin.get_object_acl(Bucket="private-archive", Key=o["Key"])
            grantees = [g["Grantee"].get("URI") for g in acl["Grants"]]
            assert not set(grantees) & set(PUBLIC_GROUPS), (o["Key"], acl["Grants"])
            assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"], o["Key"]
            n += 1
    assert n > 50
    bucket_acl = admin.get_bucket_acl(Bucket="private-archive")
    assert not {g["Grantee"].get("URI") for g in bucket_acl["Grants"]} & set(PUBLIC_GROUPS)
