"""Object store: one interface, two backends (local folder and S3 via boto3).

Everything the archive writes — WARC files, dataset batches, quarantine, run
reports — goes through a :class:`Store`, so the layout is the same locally and
in a bucket (see DESIGN.md, "Store layout").

A store is named by a URL:

* ``./archive`` or ``file:///abs/path`` — a local folder (the embedded default);
* ``s3://bucket/prefix`` — an S3 bucket through boto3, honouring the standard AWS
  environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
  ``AWS_DEFAULT_REGION``, profiles). Credentials are never read or logged here:
  boto3's own chain finds them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


class StoreError(Exception):
    """A store could not be opened, or an object could not be read or written."""


def safe_key(key: str) -> str:
    """Return ``key`` as a relative POSIX key, or raise :class:`StoreError`.

    Keys come partly from the web (host names, URLs); a key with ``..``, an
    absolute path or a NUL byte could escape the store's folder, so it is refused.
    """
    if not key or "\x00" in key or key.startswith("/") or "\\" in key:
        raise StoreError(f"unsafe object key: {key!r}")
    parts = key.split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise StoreError(f"unsafe object key: {key!r}")
    return key


@dataclass(frozen=True)
class StoredObject:
    """What a write produced: ``key`` relative to the store root, ``size`` in bytes,
    ``sha256`` hex digest of the bytes as stored."""

    key: str
    size: int
    sha256: str


class Store:
    """Interface of an object store. Keys are relative POSIX paths (``warc/…``)."""

    url: str

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject:
        """Write ``data`` under ``key`` (replacing any object there)."""
        raise NotImplementedError

    def put_file(self, path: Path, key: str, content_type: str | None = None) -> StoredObject:
        """Copy the local file ``path`` to ``key``; verified by size and SHA-256."""
        raise NotImplementedError

    def get_bytes(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        """Read an object, or ``byte_range=(offset, length)`` of it. Raises StoreError."""
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def describe(self, key: str) -> str:
        """A human-readable location of ``key`` (path or s3:// URL) for reports."""
        raise NotImplementedError


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class LocalStore(Store):
    """A folder on local disk. Writes go to a temporary name and are renamed, so a
    reader never sees half an object."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.url = str(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / safe_key(key)

    def put_bytes(self, key, data, content_type=None):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return StoredObject(safe_key(key), len(data), hashlib.sha256(data).hexdigest())

    def put_file(self, path, key, content_type=None):
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
        digest = _sha256_file(dest)
        if dest.stat().st_size != Path(path).stat().st_size or digest != _sha256_file(Path(path)):
            raise StoreError(f"verification failed after copying {path} to {dest}")
        return StoredObject(safe_key(key), dest.stat().st_size, digest)

    def get_bytes(self, key, byte_range=None):
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                if byte_range is None:
                    return f.read()
                offset, length = byte_range
                f.seek(offset)
                return f.read(length)
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from exc

    def list(self, prefix=""):
        base = self.root
        keys = []
        for p in base.rglob("*"):
            if p.is_file() and ".tmp-" not in p.name:
                key = p.relative_to(base).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def exists(self, key):
        return self._path(key).is_file()

    def describe(self, key):
        return str(self._path(key))


class S3Store(Store):
    """An S3 bucket (any S3 API server) under an optional key prefix.

    boto3 is configured from the standard AWS environment; retries use botocore's
    ``standard`` mode. Every upload is read back (size and SHA-256) before it
    counts as done, because some S3 servers accept a wrong checksum header.
    """

    def __init__(self, bucket: str, prefix: str = "", client=None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client or boto3.client(
            "s3", config=Config(retries={"mode": "standard", "max_attempts": 5})
        )

    def _key(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, action: str, key: str, exc: Exception) -> StoreError:
        # botocore messages carry no credentials; name the operation and object only.
        return StoreError(f"S3 {action} s3://{self.bucket}/{self._key(key)} failed: {exc}")

    def put_bytes(self, key, data, content_type=None):
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("put", key, exc) from exc
        stored = self.get_bytes(key)
        digest = hashlib.sha256(data).hexdigest()
        if hashlib.sha256(stored).hexdigest() != digest:
            raise StoreError(f"S3 object s3://{self.bucket}/{self._key(key)} differs from what was sent")
        return StoredObject(safe_key(key), len(data), digest)

    def put_file(self, path, key, content_type=None):
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"ExtraArgs": {"ContentType": content_type}} if content_type else {}
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key), **extra)
        except (Boto3Error, BotoCoreError, ClientError, OSError) as exc:
            raise self._error("upload", key, exc) from exc
        digest = _sha256_file(Path(path))
        h = hashlib.sha256()
        size = 0
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            for chunk in iter(lambda: body.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("verify", key, exc) from exc
        if size != Path(path).stat().st_size or h.hexdigest() != digest:
            raise StoreError(f"S3 object s3://{self.bucket}/{self._key(key)} differs from {path}")
        return StoredObject(safe_key(key), size, digest)

    def get_bytes(self, key, byte_range=None):
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {}
        if byte_range is not None:
            offset, length = byte_range
            extra["Range"] = f"bytes={offset}-{offset + length - 1}"  # RFC 9110 §14.1.2
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._error("get", key, exc) from exc

    def list(self, prefix=""):
        from botocore.exceptions import BotoCoreError, ClientError

        if ".." in prefix.split("/") or prefix.startswith("/"):
            raise StoreError(f"unsafe prefix: {prefix!r}")
        full = (self.prefix + "/" if self.prefix else "") + prefix
        keys = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    k = obj["Key"]
                    keys.append(k[len(self.prefix) + 1 :] if self.prefix else k)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list", prefix or ".", exc) from exc
        return sorted(keys)

    def exists(self, key):
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError:
            return False

    def describe(self, key):
        return f"s3://{self.bucket}/{self._key(key)}"


def open_store(url: str | os.PathLike) -> Store:
    """Open the store named by ``url`` (see module docstring).

    Raises :class:`StoreError` for an unknown scheme or an s3:// URL with no bucket.
    The S3 bucket is not created here; a missing bucket fails at the first write.
    """
    url = os.fspath(url)
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"no bucket in store URL {url!r}")
        return S3Store(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise StoreError(f"unsupported store URL scheme {parsed.scheme!r} in {url!r} (use a folder or s3://)")
    return LocalStore(url)
