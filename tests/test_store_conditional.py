"""Conditional creates (no object is ever overwritten), read-back verification,
multipart, and the S3 write options — in a folder and on a real moto server."""

from __future__ import annotations

import hashlib
import threading

import pytest

from crawler.store import LocalStore, ObjectConflict, S3Store, StoreError, open_store, store_options
from tests.conftest import s3_client

MiB = 1024 * 1024


def new_bucket(env, tmp_path, versioning=False) -> str:
    client = s3_client(env)
    bucket = f"cond-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    client.create_bucket(Bucket=bucket)
    if versioning:
        # Every write of a key is kept as a version: an overwrite would show as a second one.
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "archive")
    env = request.getfixturevalue("moto_s3")
    return S3Store(new_bucket(env, tmp_path, versioning=True), "pre/fix", client=s3_client(env))


def versions(store: S3Store) -> dict[str, int]:
    out: dict[str, int] = {}
    for page in store.client.get_paginator("list_object_versions").paginate(Bucket=store.bucket):
        for v in page.get("Versions", []):
            out[v["Key"]] = out.get(v["Key"], 0) + 1
    return out


def test_put_new_creates_once_same_bytes_count_as_done_other_bytes_conflict(store):
    data = "Na Hang – Tuyên Quang".encode() * 50
    first = store.put_new("dataset/a/part-1.parquet", data)
    assert (first.created, first.size, first.sha256) == (True, len(data), hashlib.sha256(data).hexdigest())
    again = store.put_new("dataset/a/part-1.parquet", data)
    assert (again.created, again.sha256) == (False, first.sha256)
    with pytest.raises(ObjectConflict, match="exists with other content"):
        store.put_new("dataset/a/part-1.parquet", data + b"!")
    assert store.get_bytes("dataset/a/part-1.parquet") == data
    assert store.list("dataset/") == ["dataset/a/part-1.parquet"]  # no temporary files left
    if isinstance(store, S3Store):
        assert versions(store) == {"pre/fix/dataset/a/part-1.parquet": 1}


def test_concurrent_creators_exactly_one_winner(store):
    outcomes = []

    def create(i):
        try:
            outcomes.append(("created" if store.put_new("k/one", b"writer %d" % i).created else "same", i))
        except ObjectConflict:
            outcomes.append(("conflict", i))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for kind, i in outcomes if kind == "created"]
    assert len(winners) == 1
    assert sorted(kind for kind, _ in outcomes) == ["conflict"] * 5 + ["created"]
    assert store.get_bytes("k/one") == b"writer %d" % winners[0]


def test_multipart_above_the_threshold_is_conditional_and_verified(moto_s3, tmp_path):
    store = S3Store(new_bucket(moto_s3, tmp_path, versioning=True), "p", client=s3_client(moto_s3),
                    multipart_threshold=5 * MiB)
    data = bytes(range(256)) * (11 * MiB // 256) + b"tail"
    calls = []
    store.client.meta.events.register("before-call.s3.*", lambda model, **kw: calls.append(model.name))
    assert store.put_new("big.parquet", data).created
    assert calls.count("UploadPart") == 3 and "CompleteMultipartUpload" in calls and "PutObject" not in calls
    assert store.get_bytes("big.parquet") == data
    assert not store.put_new("big.parquet", data).created
    with pytest.raises(ObjectConflict):
        store.put_new("big.parquet", data[:-1] + b"!")
    assert versions(store) == {"p/big.parquet": 1}
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []  # aborted, not left


def test_a_body_changed_in_flight_is_caught_by_reading_back(moto_s3, tmp_path):
    """moto accepts a wrong x-amz-checksum-sha256; the read-back hash does not."""
    store = S3Store(new_bucket(moto_s3, tmp_path), "", client=s3_client(moto_s3))

    def corrupt(request, **kw):
        body = request.body.read() if hasattr(request.body, "read") else request.body
        request.body = body[:-1] + b"!"

    store.client.meta.events.register("before-send.s3.PutObject", corrupt)
    with pytest.raises(StoreError, match="differs from what was sent"):
        store.put_new("dataset/x.jsonl.gz", b"the real bytes")
    with pytest.raises(StoreError, match="differs from what was sent"):
        store.put_bytes("dataset/y.jsonl.gz", b"the real bytes")


def test_encryption_storage_class_and_checksum_go_with_every_write(moto_s3, tmp_path):
    settings = {"NEWSARCHIVE_S3_SSE": "AES256", "NEWSARCHIVE_S3_STORAGE_CLASS": "STANDARD_IA",
                "NEWSARCHIVE_S3_RETRY_MODE": "adaptive"}
    options = store_options(settings)
    assert options["retry_mode"] == "adaptive" and options["multipart_threshold"] == 8 * MiB
    store = S3Store(new_bucket(moto_s3, tmp_path), "", client=s3_client(moto_s3),
                    **{k: v for k, v in options.items() if v is not None})
    sent = []
    store.client.meta.events.register("before-send.s3.*", lambda request, **kw: sent.append(dict(request.headers)))
    store.put_new("a", b"x" * 10)
    store.put_bytes("b", b"y" * 10)
    local = tmp_path / "c.warc.gz"
    local.write_bytes(b"z" * 10)
    store.put_file(local, "c")
    for key in "abc":
        head = store.client.head_object(Bucket=store.bucket, Key=key)
        assert (head["ServerSideEncryption"], head["StorageClass"]) == ("AES256", "STANDARD_IA"), key
    puts = [h for h in sent if "x-amz-checksum-sha256" in {k.lower() for k in h}]
    assert len(puts) == 3


def test_bad_options_are_refused():
    with pytest.raises(StoreError, match="retry mode"):
        open_store("s3://bucket/x", retry_mode="legacy")
    with pytest.raises(StoreError, match="at least 5 MiB"):
        open_store("s3://bucket/x", multipart_threshold=MiB)


def test_store_error_when_the_endpoint_is_down(tmp_path):
    import boto3
    from botocore.config import Config

    from tests.conftest import free_port

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{free_port()}", aws_access_key_id="AKIA-TEST-ID",
                          aws_secret_access_key="SECRET-never-logged", region_name="us-east-1",
                          config=Config(retries={"mode": "standard", "max_attempts": 2}))
    store = S3Store("bucket", "", client=client)
    with pytest.raises(StoreError, match="S3 put s3://bucket/k failed") as err:
        store.put_new("k", b"data")
    assert not isinstance(err.value, ObjectConflict)  # unreachable, not a conflict: the batch is spooled
    with pytest.raises(StoreError, match="S3 head"):
        store.exists("k")  # unreachable is not "absent"
    assert "SECRET-never-logged" not in str(err.value) and "AKIA-TEST-ID" not in str(err.value)


def test_put_new_from_a_local_file(store, tmp_path):
    """A manifest is stored from its temporary file: same rules as for bytes."""
    path = tmp_path / "manifest.json"
    path.write_bytes("Chiêm Hóa – Tuyên Quang\n".encode() * 4000)
    first = store.put_new("dataset/_manifests/R1.json", path, "application/json")
    assert (first.created, first.size, first.sha256) == (
        True, path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    assert store.get_bytes("dataset/_manifests/R1.json") == path.read_bytes()
    assert store.put_new("dataset/_manifests/R1.json", path).created is False
    other = tmp_path / "other.json"
    other.write_bytes(path.read_bytes() + b"!")
    with pytest.raises(ObjectConflict, match="exists with other content"):
        store.put_new("dataset/_manifests/R1.json", other)
    assert store.list("dataset/") == ["dataset/_manifests/R1.json"]


def test_a_file_above_the_threshold_goes_up_in_parts_read_from_disk(moto_s3, tmp_path):
    store = S3Store(new_bucket(moto_s3, tmp_path, versioning=True), "p", client=s3_client(moto_s3),
                    multipart_threshold=5 * MiB)
    path = tmp_path / "big.json"
    path.write_bytes(bytes(range(256)) * (11 * MiB // 256) + b"tail")
    calls = []
    store.client.meta.events.register("before-call.s3.*", lambda model, **kw: calls.append(model.name))
    assert store.put_new("big.json", path).created
    assert calls.count("UploadPart") == 3 and "CompleteMultipartUpload" in calls
    assert hashlib.sha256(store.get_bytes("big.json")).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not store.put_new("big.json", path).created
    assert versions(store) == {"p/big.json": 1}
