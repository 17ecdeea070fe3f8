"""The store: same behaviour in a folder and in a real moto S3 server over HTTP."""

from __future__ import annotations

import hashlib

import pytest

from crawler.layout import dataset_key, warc_key
from crawler.store import LocalStore, S3Store, StoreError, open_store, safe_key
from tests.conftest import s3_client


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "archive")
    env = request.getfixturevalue("moto_s3")
    client = s3_client(env)
    bucket = f"store-test-{tmp_path.name.lower().replace('_', '-')[-30:]}"
    client.create_bucket(Bucket=bucket)
    return S3Store(bucket, "prefix/run", client=client)


def test_put_get_list_and_ranged_read(store, tmp_path):
    data = "Tuyên Quang – Ngày xuất bản".encode() * 100
    stored = store.put_bytes("dataset/a/b.jsonl.gz", data)
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_bytes("dataset/a/b.jsonl.gz") == data
    assert store.get_bytes("dataset/a/b.jsonl.gz", (7, 12)) == data[7:19]
    local = tmp_path / "x.warc.gz"
    local.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 10)
    assert store.put_file(local, "warc/2026/11/29/x.warc.gz").size == 2562
    assert store.list("warc/") == ["warc/2026/11/29/x.warc.gz"]
    assert store.list() == ["dataset/a/b.jsonl.gz", "warc/2026/11/29/x.warc.gz"]
    assert store.exists("dataset/a/b.jsonl.gz") and not store.exists("dataset/a/c")
    with pytest.raises(StoreError):
        store.get_bytes("dataset/missing")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a\x00b", "", "a//b", "a\\b"])
def test_keys_cannot_escape_the_store(key):
    with pytest.raises(StoreError):
        safe_key(key)


def test_open_store_by_url(tmp_path):
    assert isinstance(open_store(str(tmp_path / "a")), LocalStore)
    assert open_store(f"file://{tmp_path}/b").root == (tmp_path / "b").resolve()
    with pytest.raises(StoreError):
        open_store("ftp://host/x")
    with pytest.raises(StoreError):
        open_store("s3:///nobucket")


def test_layout_keys():
    assert warc_key("NEWSARCHIVE-20261129132000-00000-host-1.warc.gz") == (
        "warc/2026/11/29/NEWSARCHIVE-20261129132000-00000-host-1.warc.gz"
    )
    assert dataset_key("2019-10-17", "R1", 3) == "dataset/articles/v1/published_date=2019-10-17/part-R1-00003.jsonl.gz"
    with pytest.raises(ValueError):
        warc_key("no-timestamp.warc.gz")
