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

Two kinds of write:

* :meth:`Store.put_new` — a conditional create (S3 ``If-None-Match: *``; a hard
  link in a folder). No object is ever overwritten: a key that already holds the
  same bytes (same SHA-256) counts as done, other bytes raise
  :class:`ObjectConflict`. The dataset's batches and manifests use it.
* :meth:`Store.put_bytes` / :meth:`Store.put_file` — replace whatever is at the
  key. Used for pointers meant to move (``dataset/…/_latest``) and for objects
  whose names are unique by construction (WARC files, run reports).

Every S3 write is read back and hashed before it counts as done: some S3 servers
(moto among them) accept a wrong ``x-amz-checksum-sha256``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


class StoreError(Exception):
    """A store could not be opened, or an object could not be read or written."""


class ObjectConflict(StoreError):
    """:meth:`Store.put_new` found the key already holding other bytes (a
    different SHA-256). Never retried and never overwritten: an operator decides."""


#: Objects larger than this (bytes) go up as S3 multipart uploads (8 MiB, the AWS
#: CLI's default; parts must be at least 5 MiB except the last).
MULTIPART_THRESHOLD = 8 * 1024 * 1024


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
    ``sha256`` hex digest of the bytes as stored; ``created`` is False when
    :meth:`Store.put_new` found the same bytes already there."""

    key: str
    size: int
    sha256: str
    created: bool = True


class Store:
    """Interface of an object store. Keys are relative POSIX paths (``warc/…``)."""

    url: str

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject:
        """Write ``data`` under ``key`` (replacing any object there)."""
        raise NotImplementedError

    def put_new(self, key: str, data: bytes | Path, content_type: str | None = None) -> StoredObject:
        """Create ``key`` with ``data`` only if no object is there (conditional write).

        ``data`` is the bytes, or the :class:`~pathlib.Path` of a local file whose
        bytes to store: a file is read in chunks, never whole (a run manifest of a
        large crawl is tens of MB).

        Returns the stored object (``created=False`` when the same bytes were
        already there, e.g. a batch re-sent after a crash). Raises
        :class:`ObjectConflict` when other bytes are there, :class:`StoreError`
        when the store cannot be reached or the bytes read back differ."""
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
        """Whether an object is at ``key``. Raises StoreError when the store
        cannot be asked (unreachable is not absent)."""
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


def _size_and_digest(data: bytes | Path) -> tuple[int, str]:
    """``(size in bytes, SHA-256 hex)`` of bytes or of a local file."""
    if isinstance(data, Path):
        return data.stat().st_size, _sha256_file(data)
    return len(data), hashlib.sha256(data).hexdigest()


def _read_part(data: bytes | Path, offset: int, length: int) -> bytes:
    """``length`` bytes of ``data`` (bytes or a local file) from ``offset``."""
    if isinstance(data, Path):
        with open(data, "rb") as f:
            f.seek(offset)
            return f.read(length)
    return data[offset : offset + length]


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

    def put_new(self, key, data, content_type=None):
        path = self._path(key)
        size, digest = _size_and_digest(data)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".tmp-{os.getpid()}-{secrets.token_hex(4)}")
            with open(tmp, "wb") as f:
                if isinstance(data, Path):
                    with open(data, "rb") as src:
                        shutil.copyfileobj(src, f, 1 << 20)
                else:
                    f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                # link() fails if the name exists: an atomic create-if-absent, and
                # readers never see half an object.
                os.link(tmp, path)
                created = True
            except FileExistsError:
                created = False
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}") from exc
        if not created:
            there = _sha256_file(path)
            if there != digest:
                raise ObjectConflict(f"{path} exists with other content (sha256 {there}, not {digest})")
        return StoredObject(safe_key(key), size, digest, created)

    def describe(self, key):
        return str(self._path(key))


class S3Store(Store):
    """An S3 bucket (any S3 API server) under an optional key prefix.

    boto3 is configured from the standard AWS environment (credentials are never
    passed in, read or logged here). Options (see :func:`store_options`):
    ``retry_mode`` botocore ``standard`` (default) or ``adaptive``;
    ``max_attempts`` (5); ``sse`` (``AES256``, ``aws:kms``, … or None) and
    ``sse_kms_key_id``; ``storage_class`` (``STANDARD_IA``, … or None);
    ``multipart_threshold`` in bytes (8 MiB); ``connect_timeout`` and
    ``read_timeout`` in seconds. Uploads send ``ChecksumAlgorithm`` SHA-256 and
    every upload is read back (size and SHA-256) before it counts as done,
    because some S3 servers accept a wrong checksum header.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client=None,
        *,
        retry_mode: str = "standard",
        max_attempts: int = 5,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        storage_class: str | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        connect_timeout: float = 10,
        read_timeout: float = 60,
    ):
        import boto3
        from botocore.config import Config

        if retry_mode not in ("standard", "adaptive"):
            raise StoreError(f"S3 retry mode must be 'standard' or 'adaptive', not {retry_mode!r}")
        if multipart_threshold < 5 * 1024 * 1024:
            raise StoreError("S3 multipart threshold must be at least 5 MiB (the smallest part S3 accepts)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.multipart_threshold = multipart_threshold
        # Arguments every write carries: server-side encryption and storage class.
        self.write_args: dict[str, str] = {}
        if sse:
            self.write_args["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self.write_args["SSEKMSKeyId"] = sse_kms_key_id
        if storage_class:
            self.write_args["StorageClass"] = storage_class
        self.client = client or boto3.client(
            "s3",
            config=Config(
                retries={"mode": retry_mode, "max_attempts": max_attempts},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            ),
        )

    def _key(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, action: str, key: str, exc: Exception) -> StoreError:
        # botocore messages carry no credentials; name the operation and object only.
        return StoreError(f"S3 {action} s3://{self.bucket}/{self._key(key)} failed: {exc}")

    def _stored_digest(self, key: str) -> tuple[int, str]:
        """``(size, SHA-256 hex)`` of the object as stored, read in 1 MiB chunks.
        Raises botocore errors."""
        h = hashlib.sha256()
        size = 0
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        for chunk in iter(lambda: body.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
        return size, h.hexdigest()

    def _verify(self, key: str, digest: str, size: int) -> None:
        """Read the object back and compare (the server's checksum answer is not proof)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            there = self._stored_digest(key)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("verify", key, exc) from exc
        if there != (size, digest):
            raise StoreError(f"S3 object s3://{self.bucket}/{self._key(key)} differs from what was sent")

    def _put(self, key: str, data: bytes | Path, content_type: str | None, conditional: bool) -> None:
        """One PUT, or a multipart upload above the threshold; ``data`` is bytes or
        a local file read part by part. Raises botocore errors."""
        args = {"Bucket": self.bucket, "Key": self._key(key), **self.write_args}
        if content_type:
            args["ContentType"] = content_type
        if conditional:
            args["IfNoneMatch"] = "*"
        size = data.stat().st_size if isinstance(data, Path) else len(data)
        if size <= self.multipart_threshold:
            body = _read_part(data, 0, size)
            self.client.put_object(Body=body, ChecksumSHA256=_b64sha256(body), **args)
            return
        # s3transfer does not pass IfNoneMatch through, so the multipart upload is
        # driven here: the condition goes on CompleteMultipartUpload.
        complete = {k: args.pop(k) for k in ("IfNoneMatch",) if k in args}
        upload_id = self.client.create_multipart_upload(ChecksumAlgorithm="SHA256", **args)["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, self.multipart_threshold), 1):
                chunk = _read_part(data, start, self.multipart_threshold)
                checksum = _b64sha256(chunk)
                reply = self.client.upload_part(
                    Bucket=self.bucket, Key=args["Key"], UploadId=upload_id, PartNumber=number,
                    Body=chunk, ChecksumSHA256=checksum,
                )
                parts.append({"ETag": reply["ETag"], "PartNumber": number, "ChecksumSHA256": checksum})
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=args["Key"], UploadId=upload_id, MultipartUpload={"Parts": parts}, **complete
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=args["Key"], UploadId=upload_id)
            except Exception:  # the original error matters more; S3 lifecycle rules reap leftovers
                pass
            raise

    def put_bytes(self, key, data, content_type=None):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._put(key, data, content_type, conditional=False)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("put", key, exc) from exc
        digest = hashlib.sha256(data).hexdigest()
        self._verify(key, digest, len(data))
        return StoredObject(safe_key(key), len(data), digest)

    def put_new(self, key, data, content_type=None):
        from botocore.exceptions import BotoCoreError, ClientError

        size, digest = _size_and_digest(data)
        created = True
        try:
            self._put(key, data, content_type, conditional=True)
        except ClientError as exc:
            # 412: the key exists. 409 ConditionalRequestConflict: another writer
            # is creating it right now; either way, compare with what is there.
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status not in (409, 412):
                raise self._error("put", key, exc) from exc
            created = False
        except BotoCoreError as exc:
            raise self._error("put", key, exc) from exc
        if created:
            self._verify(key, digest, size)
        else:
            try:
                there = self._stored_digest(key)[1]
            except (BotoCoreError, ClientError) as exc:
                raise self._error("get", key, exc) from exc
            if there != digest:
                raise ObjectConflict(
                    f"s3://{self.bucket}/{self._key(key)} exists with other content (sha256 {there}, not {digest})"
                )
        return StoredObject(safe_key(key), size, digest, created)

    def put_file(self, path, key, content_type=None):
        from boto3.exceptions import Boto3Error
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"ChecksumAlgorithm": "SHA256", **self.write_args}
        if content_type:
            extra["ContentType"] = content_type
        config = TransferConfig(
            multipart_threshold=self.multipart_threshold, multipart_chunksize=self.multipart_threshold
        )
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=extra, Config=config)
        except (Boto3Error, BotoCoreError, ClientError, OSError) as exc:
            raise self._error("upload", key, exc) from exc
        digest = _sha256_file(Path(path))
        try:
            size, there = self._stored_digest(key)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("verify", key, exc) from exc
        if size != Path(path).stat().st_size or there != digest:
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
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (404, 403):  # 403: no s3:ListBucket permission, S3's answer for a missing key
                return False
            raise self._error("head", key, exc) from exc
        except BotoCoreError as exc:  # unreachable: not the same as "absent"
            raise self._error("head", key, exc) from exc

    def describe(self, key):
        return f"s3://{self.bucket}/{self._key(key)}"


def _b64sha256(data: bytes) -> str:
    """Base64 SHA-256, the form of ``x-amz-checksum-sha256``."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def store_options(settings) -> dict:
    """S3 options from Scrapy settings (or any mapping with ``get``), for
    :func:`open_store`. Settings: ``NEWSARCHIVE_S3_RETRY_MODE`` (``standard`` |
    ``adaptive``), ``NEWSARCHIVE_S3_MAX_ATTEMPTS`` (5), ``NEWSARCHIVE_S3_SSE`` (e.g.
    ``AES256``, ``aws:kms``; empty = the bucket's default),
    ``NEWSARCHIVE_S3_SSE_KMS_KEY_ID``, ``NEWSARCHIVE_S3_STORAGE_CLASS`` (e.g.
    ``STANDARD_IA``; empty = ``STANDARD``), ``NEWSARCHIVE_S3_MULTIPART_THRESHOLD``
    (bytes, 8 MiB), ``NEWSARCHIVE_S3_CONNECT_TIMEOUT`` (s, 10),
    ``NEWSARCHIVE_S3_READ_TIMEOUT`` (s, 60)."""

    def get(name, default, cast=str):
        value = settings.get(name, default)
        return cast(value) if value not in (None, "") else None

    return {
        "retry_mode": get("NEWSARCHIVE_S3_RETRY_MODE", "standard"),
        "max_attempts": get("NEWSARCHIVE_S3_MAX_ATTEMPTS", 5, int),
        "sse": get("NEWSARCHIVE_S3_SSE", None),
        "sse_kms_key_id": get("NEWSARCHIVE_S3_SSE_KMS_KEY_ID", None),
        "storage_class": get("NEWSARCHIVE_S3_STORAGE_CLASS", None),
        "multipart_threshold": get("NEWSARCHIVE_S3_MULTIPART_THRESHOLD", MULTIPART_THRESHOLD, int),
        "connect_timeout": get("NEWSARCHIVE_S3_CONNECT_TIMEOUT", 10, float),
        "read_timeout": get("NEWSARCHIVE_S3_READ_TIMEOUT", 60, float),
    }


def open_store(url: str | os.PathLike, **options) -> Store:
    """Open the store named by ``url`` (see module docstring); ``options`` go to
    :class:`S3Store` (see :func:`store_options`) and are ignored for a folder.

    Raises :class:`StoreError` for an unknown scheme, an s3:// URL with no bucket
    or a bad option. The S3 bucket is not created here; a missing bucket fails at
    the first write.
    """
    url = os.fspath(url)
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"no bucket in store URL {url!r}")
        return S3Store(parsed.netloc, parsed.path, **{k: v for k, v in options.items() if v is not None})
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise StoreError(f"unsupported store URL scheme {parsed.scheme!r} in {url!r} (use a folder or s3://)")
    return LocalStore(url)


def open_existing_store(url: str | os.PathLike, **options) -> Store:
    """:func:`open_store` for a command that only reads: a folder must exist already.

    Opening a local store creates its folder, so a mistyped path would read as a
    sound, empty store (``dataset verify`` and ``warc check`` saying OK) and leave an
    empty folder behind. Raises :class:`StoreError` ``no store at <folder>`` instead,
    and as :func:`open_store` does."""
    parsed = urlparse(os.fspath(url))
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a Windows drive letter is a folder
        folder = Path(parsed.path if parsed.scheme == "file" else os.fspath(url))
        if not folder.is_dir():
            raise StoreError(f"no store at {folder}")
    return open_store(url, **options)
