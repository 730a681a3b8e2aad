"""S3 as a source and as a target (the only module that imports boto3).

Credentials come from the standard AWS chain (environment, profile, SSO, instance role); the endpoint
from `endpoint_url`, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL as botocore reads them. botocore's own
retries are off: every call goes through `_call`, which retries transient failures (throttling, 5xx,
lost connections, timeouts) with jittered exponential backoff and turns the last failure into a
StorageError naming the operation and the key. Conditional writes (If-None-Match: *) make commits
atomic; a retried conditional PUT whose first attempt did land is recognised by the ledger (it reads
the object back and compares).

A batch's source objects are read ahead with `S3Source.read_range` (servicelogs.prefetch: ranged GETs from
a thread pool, within a budget of bytes).

Tuning by environment (tests shrink them): SERVICELOGS_S3_ATTEMPTS (6), SERVICELOGS_S3_BACKOFF
(0.2 s, doubled per attempt, capped at 10 s), SERVICELOGS_S3_TIMEOUT (60 s read timeout),
SERVICELOGS_S3_PART_MB (64: files above it go up in parts of that size), SERVICELOGS_LEASE_SECONDS
(600: a run whose lease is older is taken for dead: it is fenced in the ledger, then its staging and
uploads are cleaned). SERVICELOGS_CLOCK_OFFSET (seconds added to this host's clock, by the lease code
only) lets the tests play a second host whose clock is off: leases then judge wrongly, which may cost
work but never data, since the fence, not the clock, decides which commit stands.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import io
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlparse

import boto3
import botocore.exceptions as bex
from botocore.config import Config

from servicelogs import crash, prefetch
from servicelogs.errors import SourceError, StorageError, UsageError
from servicelogs.listing import Folder, Window
from servicelogs.sources import SourceObject
from servicelogs.storage import StagedFile, _alive, each
from servicelogs.summary import ObjectProblem

T = TypeVar("T")

_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "ConditionalRequestConflict",  # S3: a concurrent conditional write on the same key is in flight
    "OperationAborted",
}


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def write_threads() -> int:
    """How many of a batch's files are uploaded, checked and published at once: each request waits a round
    trip (tens of ms on AWS), and a batch writes a file per partition. Read when used, not as the module
    loads: a worker gets its run's environment after its fork server loaded the module (engines.worker)."""
    return max(1, int(_env_float("SERVICELOGS_S3_WRITE_THREADS", 8)))


def split_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise UsageError(f"{url!r} is not an s3://bucket/prefix URL")
    return parsed.netloc, parsed.path.strip("/")


_CLIENT_LOCK = threading.Lock()  # guards the making of clients (and S3Source's read count)


class _Client:
    """A lazily created boto3 client (picklable, so it can travel to worker processes) with retries."""

    def __init__(self, endpoint_url: str | None = None) -> None:
        self.endpoint_url = endpoint_url or os.environ.get("SERVICELOGS_S3_ENDPOINT") or None
        self._client: Any = None

    def __getstate__(self) -> dict:
        return {"endpoint_url": self.endpoint_url, "_client": None}

    @property
    def client(self) -> Any:
        """The boto3 client (thread-safe once made; made once, under a lock, as the read-ahead's threads ask)."""
        with _CLIENT_LOCK:
            if self._client is None:
                timeout = _env_float("SERVICELOGS_S3_TIMEOUT", 60)
                config = Config(
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=min(timeout, 10),
                    read_timeout=timeout,
                    s3={"addressing_style": "path"} if self.endpoint_url else {},
                    max_pool_connections=max(10, prefetch.READ_THREADS + write_threads()),  # reads and writes in flight
                )
                self._client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)
            return self._client

    def call(self, operation: str, key: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """`fn(**kwargs)` with retries; raises StorageError("S3 <operation> s3://...", ...) at the end."""
        attempts = int(_env_float("SERVICELOGS_S3_ATTEMPTS", 6))
        backoff = _env_float("SERVICELOGS_S3_BACKOFF", 0.2)
        for attempt in range(1, attempts + 1):
            try:
                return fn(**kwargs)
            except Exception as e:  # translated below; anything unknown is terminal
                error = translate(operation, key, e)
                if not error.transient or attempt == attempts:
                    if error.transient:
                        error = StorageError(
                            f"S3 {operation}",
                            key,
                            f"{error.reason} (gave up after {attempts} attempts)",
                            transient=True,
                        )
                    raise error from e
                time.sleep(min(10.0, backoff * 2 ** (attempt - 1)) * (0.5 + random.random()))
        raise AssertionError("unreachable")


def error_code(e: BaseException) -> str:
    if isinstance(e, bex.ClientError):
        return str(e.response.get("Error", {}).get("Code", ""))
    return ""


def translate(operation: str, key: str, e: BaseException) -> StorageError:
    if isinstance(e, StorageError):
        return e
    if isinstance(e, bex.ClientError):
        code = error_code(e)
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        transient = code in _TRANSIENT_CODES or status == 429 or status >= 500
        message = e.response.get("Error", {}).get("Message", "")
        return StorageError(f"S3 {operation}", key, f"{code or status} {message}".strip(), transient=transient)
    if isinstance(e, (bex.ConnectionError, bex.HTTPClientError, bex.ResponseStreamingError, OSError)):
        return StorageError(f"S3 {operation}", key, f"{type(e).__name__}: {e}", transient=True)
    if isinstance(e, bex.NoCredentialsError):
        return StorageError(f"S3 {operation}", key, "no AWS credentials found (standard credential chain)")
    return StorageError(f"S3 {operation}", key, f"{type(e).__name__}: {e}")


class S3Store:
    """A prefix of an S3 bucket as a target: table files, ledger, staging."""

    @property
    def requests_at_once(self) -> int:
        return write_threads()

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.s3 = _Client(endpoint_url)
        self._renewed = 0.0  # when this process last renewed its run's lease
        self._lease_key = ""

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_renewed"], state["_lease_key"] = 0.0, ""
        return state

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None) -> S3Store:
        bucket, prefix = split_url(url)
        return cls(bucket, prefix, endpoint_url)

    def key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.key(key)}"

    def get(self, key: str) -> bytes | None:
        def read() -> bytes | None:
            try:
                body = self.s3.client.get_object(Bucket=self.bucket, Key=self.key(key))["Body"]
            except bex.ClientError as e:
                if error_code(e) in ("NoSuchKey", "404"):
                    return None
                raise
            return body.read()

        return self.s3.call("GetObject", self._url(key), read)

    def put(self, key: str, data: bytes) -> None:
        crash.point(f"PUT {key}")
        self.s3.call(
            "PutObject", self._url(key), self.s3.client.put_object, Bucket=self.bucket, Key=self.key(key), Body=data
        )

    def put_if_absent(self, key: str, data: bytes) -> bool:
        def put() -> bool:
            try:
                self.s3.client.put_object(Bucket=self.bucket, Key=self.key(key), Body=data, IfNoneMatch="*")
            except bex.ClientError as e:
                if error_code(e) == "PreconditionFailed":
                    return False
                raise
            return True

        crash.point(f"PUT If-None-Match {key}")
        return self.s3.call("PutObject If-None-Match", self._url(key), put)

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def list(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, int]]:
        for item in self.list_objects(self.key(prefix).rstrip("/") + "/", self.key(start_after) if start_after else ""):
            yield self._rel(item["Key"]), item["Size"]

    def list_objects(self, prefix: str, start_after: str = "") -> Iterator[dict]:
        """Every object under a full key prefix, page by page (each page retried on its own)."""
        for page in self.list_pages(prefix, start_after):
            yield from page.get("Contents", [])

    def list_pages(self, prefix: str, start_after: str = "", delimiter: str = "") -> Iterator[dict]:
        """The ListObjectsV2 pages under a full key prefix, after `start_after`; with a delimiter, the keys
        below the next one come as CommonPrefixes (the folders of a delimiter listing)."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if delimiter:
                kwargs["Delimiter"] = delimiter
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            page = self.s3.call(
                "ListObjectsV2", f"s3://{self.bucket}/{prefix}", self.s3.client.list_objects_v2, **kwargs
            )
            yield page
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def delete(self, key: str) -> None:
        crash.point(f"DELETE {key}")
        self.s3.call(
            "DeleteObject", self._url(key), self.s3.client.delete_object, Bucket=self.bucket, Key=self.key(key)
        )

    def delete_prefix(self, prefix: str) -> None:
        keys = [self.key(k) for k, _ in self.list(prefix)]
        for i in range(0, len(keys), 1000):
            crash.point(f"DELETE {prefix}/ ({len(keys)} objects)")
            chunk = {"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
            self.s3.call(
                "DeleteObjects", f"s3://{self.bucket}/{self.key(prefix)}/", self.s3.client.delete_objects,
                Bucket=self.bucket, Delete=chunk,
            )  # fmt: skip

    def work_dir(self, staging: str) -> Path:
        """A local folder for a batch's files before they go up, named with the pid of the process that
        writes it, so that a later run can tell a killed run's folder from a live one's (clean_temp)."""
        return Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-"))

    def clean_temp(self, prefix: str) -> int:
        """Remove the local work folders of servicelogs processes that are gone (a killed run's)."""
        removed = 0
        temp = Path(tempfile.gettempdir())
        for path in temp.glob(f"{_TEMP_PREFIX}*-*"):
            pid = path.name[len(_TEMP_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and path.is_dir() and not path.is_symlink() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed

    def stage(self, work_dir: Path, staging: str, files: builtins.list[StagedFile]) -> builtins.list[StagedFile]:
        """Upload the batch's files to the staging prefix (outside the table); the local copies go. Each
        comes back with its staged ETag, which publishing copies exactly."""
        try:
            return each(
                self,
                lambda f: dataclasses.replace(f, etag=self.upload(work_dir / f.staged[len(staging) + 1 :], f.staged)),
                files,
            )
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def upload(self, path: Path, key: str) -> str:
        """Upload a local file; returns its ETag."""
        part = int(_env_float("SERVICELOGS_S3_PART_MB", 64) * (1 << 20))
        size = path.stat().st_size
        if size <= part:
            crash.point(f"PUT {key}")
            response = self.s3.call(
                "PutObject", self._url(key), self.s3.client.put_object,
                Bucket=self.bucket, Key=self.key(key), Body=path.read_bytes(),
            )  # fmt: skip
            return _etag(response)
        return self._multipart(path, key, part)

    def _multipart(self, path: Path, key: str, part_size: int) -> str:
        url, full = self._url(key), self.key(key)
        crash.point(f"CreateMultipartUpload {key}")
        upload_id = self.s3.call(
            "CreateMultipartUpload", url, self.s3.client.create_multipart_upload, Bucket=self.bucket, Key=full
        )["UploadId"]
        parts = []
        try:
            with open(path, "rb") as f:
                number = 1
                while chunk := f.read(part_size):
                    crash.point(f"UploadPart {number} {key}")
                    etag = self.s3.call(
                        f"UploadPart {number}", url, self.s3.client.upload_part,
                        Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=chunk,
                    )["ETag"]  # fmt: skip
                    parts.append({"ETag": etag, "PartNumber": number})
                    number += 1
            crash.point(f"CompleteMultipartUpload {key}")
            return self.s3.call(
                "CompleteMultipartUpload", url, self._complete,
                Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts},
            )  # fmt: skip
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the next run aborts what is left anyway
                self.s3.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise

    def _complete(self, **kwargs: Any) -> str:
        try:
            return _etag(self.s3.client.complete_multipart_upload(**kwargs))
        except bex.ClientError as e:
            # A retried Complete whose first attempt landed: the upload is gone and the object is there.
            if error_code(e) == "NoSuchUpload":
                found = self._head(self._rel(kwargs["Key"]))
                if found is not None:
                    return found[1]
            raise

    def _head(self, key: str) -> tuple[int, str] | None:
        """(size, ETag) of an object, None when there is none."""

        def head() -> tuple[int, str] | None:
            try:
                meta = self.s3.client.head_object(Bucket=self.bucket, Key=self.key(key))
            except bex.ClientError as e:
                if error_code(e) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
            return int(meta["ContentLength"]), _etag(meta)

        return self.s3.call("HeadObject", self._url(key), head)

    def is_staged(self, file: StagedFile) -> bool:
        found = self._head(file.staged)
        return found is not None and _matches(found, file.size, file.etag)

    def is_published(self, file: StagedFile) -> bool:
        found = self._head(file.visible)
        return found is not None and _matches(found, file.size, "")  # a copy of a multipart object: new ETag

    def publish(self, file: StagedFile) -> bool:
        """Copy a staged file to its visible name (one atomic PUT on S3's side); False if not staged. The
        copy is pinned to the staged ETag the commit names (CopySourceIfMatch): other bytes are refused."""

        def copy() -> bool:
            source = {"Bucket": self.bucket, "Key": self.key(file.staged)}
            pinned = {"CopySourceIfMatch": f'"{file.etag}"'} if file.etag else {}
            try:
                self.s3.client.copy_object(Bucket=self.bucket, Key=self.key(file.visible), CopySource=source, **pinned)
            except bex.ClientError as e:
                if error_code(e) in ("NoSuchKey", "404"):
                    return False
                if error_code(e) == "PreconditionFailed":
                    raise StorageError(
                        "S3 CopyObject", self._url(file.staged), f"staged file is not as committed (ETag {file.etag})"
                    ) from e
                raise
            return True

        crash.point(f"COPY {file.visible}")
        return self.s3.call("CopyObject", self._url(file.visible), copy)

    @contextlib.contextmanager
    def lease(self, run_id: str, prefix: str) -> Iterator[None]:
        """A heartbeat object, renewed in the background; other runs treat a stale one as a dead run."""
        key = f"{prefix}/{run_id}.lease"
        ttl = _env_float("SERVICELOGS_LEASE_SECONDS", 600)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(ttl / 5):
                with contextlib.suppress(Exception):
                    self.s3.client.put_object(Bucket=self.bucket, Key=self.key(key), Body=_lease_body(run_id))
                    self._renewed = time.monotonic()

        if self._renewed and self._lease_key == key:  # a worker of a run whose lease is already held
            yield
            return
        self.put(key, _lease_body(run_id))
        self._renewed, self._lease_key = time.monotonic(), key
        thread = threading.Thread(target=beat, daemon=True, name=f"lease-{run_id}")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def end_lease(self, run_id: str, prefix: str) -> None:
        with contextlib.suppress(StorageError):
            self.delete(f"{prefix}/{run_id}.lease")
        self._renewed = 0.0

    def is_dead(self, run_id: str, prefix: str) -> bool:
        """Whether to take the run for dead: its lease is older than the TTL by this host's clock. Only a
        guess (the run may be paused, or its host's clock behind ours): it decides when to fence the run,
        never whether a commit is valid."""
        ttl = _env_float("SERVICELOGS_LEASE_SECONDS", 600)
        data = self.get(f"{prefix}/{run_id}.lease")
        if data is None:
            return True
        try:
            heartbeat = float(json.loads(data)["heartbeat"])
        except (ValueError, KeyError, TypeError):
            return True  # not a lease we can read: its run cannot be told apart from a dead one
        return _now() - heartbeat > ttl

    def staged_runs(self, prefix: str) -> set[str]:
        """The runs with staged objects or unfinished multipart uploads under `prefix` (staging/<run>/...):
        a run killed during its first upload has no staged object yet, only its upload."""
        full = self.key(prefix).rstrip("/") + "/"
        runs = {key[len(prefix) + 1 :].split("/", 1)[0] for key, _ in self.list(prefix)}
        page = self.s3.call(
            "ListMultipartUploads", f"s3://{self.bucket}/{full}", self.s3.client.list_multipart_uploads,
            Bucket=self.bucket, Prefix=full,
        )  # fmt: skip
        return runs | {upload["Key"][len(full) :].split("/", 1)[0] for upload in page.get("Uploads", [])}

    def abort_uploads(self, prefix: str) -> int:
        """Abort every unfinished upload under `prefix`: at the end of a run, those of its own whose
        CreateMultipartUpload answer was lost (the retry started another one)."""
        full = self.key(prefix).rstrip("/") + "/"
        page = self.s3.call(
            "ListMultipartUploads", f"s3://{self.bucket}/{full}", self.s3.client.list_multipart_uploads,
            Bucket=self.bucket, Prefix=full,
        )  # fmt: skip
        for upload in page.get("Uploads", []):
            crash.point(f"AbortMultipartUpload {upload['Key']}")
            self.s3.call(
                "AbortMultipartUpload", f"s3://{self.bucket}/{upload['Key']}", self.s3.client.abort_multipart_upload,
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"],
            )  # fmt: skip
        return len(page.get("Uploads", []))


def _now() -> float:
    """This host's clock as the lease code sees it (SERVICELOGS_CLOCK_OFFSET: a host whose clock is off)."""
    return time.time() + _env_float("SERVICELOGS_CLOCK_OFFSET", 0)


_TEMP_PREFIX = "servicelogs-"


def _lease_body(run_id: str) -> bytes:
    return json.dumps({"run_id": run_id, "heartbeat": _now()}).encode()


def _etag(response: dict) -> str:
    return str(response.get("ETag", "")).strip('"')


def _matches(found: tuple[int, str], size: int, etag: str) -> bool:
    """An object (size, ETag) is the file a commit names (size -1: an older commit, any size)."""
    return (size < 0 or found[0] == size) and (not etag or found[1] == etag)


LIST_THREADS = int(_env_float("SERVICELOGS_LIST_THREADS", 10))
"""Prefixes a windowed listing lists at once (regions, accounts, days): each request waits on S3, not on us.
As many as botocore keeps connections open by default (10)."""


class S3Source:
    """Objects under an S3 prefix, each named by its full location (`s3://bucket/key`), whatever the prefix."""

    def __init__(self, url: str, endpoint_url: str | None = None) -> None:
        self.bucket, self.prefix = split_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.store = S3Store(self.bucket, "", endpoint_url)
        self.bodies_opened = 0
        self.unlisted: list[ObjectProblem] = []  # every key of a listing is an object: nothing to leave out
        self.prefixes_listed = self.list_requests = 0  # by the last listing

    def __str__(self) -> str:
        return self.url

    def list(self, window: Window | None = None) -> Iterator[SourceObject]:
        """Every object under the prefix, in one flat listing; with a window (servicelogs.listing), a walk
        of delimiter listings that lists only the window's day prefixes, LIST_THREADS prefixes at once."""
        self.prefixes_listed = self.list_requests = 0
        base = f"{self.prefix}/" if self.prefix else ""
        if window is None:
            self.prefixes_listed = 1
            for page in self.store.list_pages(base):
                self.list_requests += 1
                yield from self._objects(page.get("Contents", []), base)
            return
        with ThreadPoolExecutor(LIST_THREADS, thread_name_prefix="servicelogs-list") as pool:
            pending = {pool.submit(self._list_folder, window, window.root(base))}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    objects, folders, requests = future.result()
                    self.prefixes_listed += 1
                    self.list_requests += requests
                    yield from objects
                    pending |= {pool.submit(self._list_folder, window, f) for f in folders}

    def _list_folder(
        self, window: Window, folder: Folder
    ) -> tuple[builtins.list[SourceObject], builtins.list[Folder], int]:
        """One folder of a windowed listing: its objects, its subfolders to walk, and the requests it took.

        A whole folder (a day in the window) is one flat listing. Any other is a delimiter listing that
        starts over after `<stem><first day>` (StartAfter) at the first name of a time-sorted stem older than
        the window: the names it skips all begin with that stem and sort before the window's first day."""
        objects: builtins.list[SourceObject] = []
        folders: builtins.list[Folder] = []
        requests = 0
        if folder.whole:
            for page in self.store.list_pages(folder.path):
                requests += 1
                objects += self._objects(page.get("Contents", []), folder.path)
            return objects, folders, requests
        start_after = ""
        while True:
            restart = ""
            for page in self.store.list_pages(folder.path, start_after, delimiter="/"):
                requests += 1
                entries = sorted(
                    [(item["Key"], item) for item in page.get("Contents", [])]
                    + [(p["Prefix"], None) for p in page.get("CommonPrefixes", [])],
                    key=lambda entry: entry[0],
                )
                for key, item in entries:
                    if item is None:
                        child = window.child(folder, key)
                        if child is not None:
                            folders.append(child)
                    elif skip := window.skip_to(key[len(folder.path) :]):
                        restart = folder.path + skip
                        break
                    else:
                        objects += self._objects([item], folder.path)
                if restart:
                    break
            if not restart:
                return objects, folders, requests
            start_after = restart

    def _objects(self, items: builtins.list[dict], base: str) -> Iterator[SourceObject]:
        for item in items:
            key = item["Key"]
            if key != base and not key.endswith("/"):
                yield SourceObject(f"s3://{self.bucket}/{key}", int(item["Size"]), str(item["ETag"]).strip('"'))

    def open(self, obj: SourceObject) -> BinaryIO:
        """A streamed read of the whole object (a batch reads ahead with `read_range` instead)."""
        self.bodies_opened += 1
        return io.BufferedReader(_ResumingBody(self.store, obj), buffer_size=1 << 20)

    def read_range(self, obj: SourceObject, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object, pinned to the ETag the listing saw (If-Match), so a rewritten
        object fails instead of mixing versions; a read that breaks is retried whole (prefetch.ReadAhead
        calls this from its threads)."""
        bucket_key = obj.key[len(f"s3://{self.bucket}/") :]

        def read() -> bytes:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": bucket_key}
            if obj.etag:
                kwargs["IfMatch"] = obj.etag
            if (start, end) != (0, obj.size):
                kwargs["Range"] = f"bytes={start}-{end - 1}"
            body = self.store.s3.client.get_object(**kwargs)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

        with _CLIENT_LOCK:
            self.bodies_opened += 1
        try:
            data = self.store.s3.call("GetObject", obj.key, read)
        except StorageError as e:
            raise SourceError(obj.key, str(e)) from e
        if len(data) != end - start:
            raise SourceError(obj.key, f"S3 GetObject {obj.key}: body ended at byte {start + len(data)} of {obj.size}")
        return data


class _ResumingBody(io.RawIOBase):
    """A streamed GET that, when the connection breaks mid-body, resumes with a ranged GET pinned to the
    ETag the listing saw (If-Match), so a rewritten object cannot be spliced into the old one."""

    def __init__(self, store: S3Store, obj: SourceObject) -> None:
        self.store, self.obj, self.pos = store, obj, 0
        self._body: Any = None
        self.url = obj.key
        self.bucket_key = obj.key[len(f"s3://{store.bucket}/") :]

    def readable(self) -> bool:
        return True

    def _open(self) -> Any:
        kwargs: dict[str, Any] = {"Bucket": self.store.bucket, "Key": self.bucket_key}
        if self.obj.etag:
            kwargs["IfMatch"] = self.obj.etag
        if self.pos:
            kwargs["Range"] = f"bytes={self.pos}-"
        return self.store.s3.client.get_object(**kwargs)["Body"]

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.obj.size:
            return 0

        def read() -> bytes:
            if self._body is None:
                self._body = self._open()
            try:
                return self._body.read(len(buffer))
            except Exception:
                self._body = None
                raise

        try:
            data = self.store.s3.call("GetObject", self.url, read)
        except StorageError as e:
            raise SourceError(self.obj.key, str(e)) from e
        if not data and self.pos < self.obj.size:
            self._body = None
            raise SourceError(
                self.obj.key, f"S3 GetObject {self.url}: body ended at byte {self.pos} of {self.obj.size}"
            )
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def close(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()
