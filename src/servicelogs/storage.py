"""Where a table and its ledger live: a local folder or an S3 prefix, behind one small interface.

Keys are '/'-separated paths relative to the store's root. Every write is all-or-nothing (a reader sees
the old object, the new one, or nothing, never a part of one) and every side effect passes a crash point
(`servicelogs.crash`) so the exactly-once proofs can kill the process at each of them.

Local disks: a write goes to a dot-named temporary file in the same folder, is written whole, fsynced and
then renamed (`os.replace`) or hard-linked (`os.link`, which fails when the name exists: the local
If-None-Match); the folder is fsynced after. A disk that is full, read-only or not ours (ENOSPC, EROFS,
EACCES, EDQUOT) fails the operation with a StorageError naming the path: nothing partial is published. A
run's liveness is an flock on its lock file, released by the kernel when the process dies, so the next run
knows at once which runs are gone (it still fences them in the ledger before it deletes their staging,
as on S3: one protocol).

S3 lives in `servicelogs.s3` (boto3 is imported only there).
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from servicelogs import crash
from servicelogs.errors import StorageError


@dataclass(frozen=True)
class StagedFile:
    """One file of a batch as its writer wrote it: where it is staged, where it is published, what it holds.
    A commit records these, so it names only files that exist, as written (size -1: an older commit)."""

    staged: str
    visible: str
    size: int
    crc32: int = 0
    etag: str = ""  # S3: the staged object's ETag, so publishing copies exactly those bytes

    def to_json(self) -> list:
        return [self.staged, self.visible, self.size, self.crc32, self.etag]

    @classmethod
    def from_json(cls, item: list) -> StagedFile:
        if len(item) == 2:  # written before commits recorded sizes
            return cls(item[0], item[1], -1)
        return cls(*item)


class Store(Protocol):
    """The operations the ledger and the writer need from a target."""

    url: str

    @property
    def requests_at_once(self) -> int:
        """How many of a batch's per-file operations (upload, check, publish) go at once: one on a local disk,
        several on S3, where each waits a round trip (`each`)."""
        ...

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def put_if_absent(self, key: str, data: bytes) -> bool: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, int]]: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def work_dir(self, staging: str) -> Path: ...

    def stage(self, work_dir: Path, staging: str, files: builtins.list[StagedFile]) -> builtins.list[StagedFile]: ...

    def is_staged(self, file: StagedFile) -> bool: ...

    def publish(self, file: StagedFile) -> bool: ...

    def is_published(self, file: StagedFile) -> bool: ...

    def lease(self, run_id: str, prefix: str) -> contextlib.AbstractContextManager[None]: ...

    def end_lease(self, run_id: str, prefix: str) -> None: ...

    def is_dead(self, run_id: str, prefix: str) -> bool: ...

    def staged_runs(self, prefix: str) -> set[str]: ...

    def abort_uploads(self, prefix: str) -> int: ...

    def clean_temp(self, prefix: str) -> int:
        """Delete temporary files of writers that died under `prefix`; how many."""
        ...


T = TypeVar("T")
R = TypeVar("R")


def each(store: Store, operation: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`operation` on every item, `store.requests_at_once` at a time, the results in order. Only the batch's
    own files are handled so: whatever comes after (a commit after its uploads, dropping the staging after
    publishing) starts once all are done, and the first error is raised once none is still running."""
    if store.requests_at_once <= 1 or len(items) <= 1:
        return [operation(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(store.requests_at_once, len(items)), thread_name_prefix="servicelogs-io") as pool:
        futures = [pool.submit(operation, item) for item in items]
        return [future.result() for future in futures]


class LocalStore:
    """A folder on a local disk."""

    requests_at_once = 1

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self._locks: dict[str, int] = {}

    def __getstate__(self) -> dict:
        return {"root": self.root, "url": self.url, "_locks": {}}

    def path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError("read", str(self.path(key)), e.strerror or str(e)) from e

    def put(self, key: str, data: bytes) -> None:
        tmp = self._write_temp(key, data)
        crash.point(f"rename {key}")
        with _disk("rename", self.path(key)), _removing(tmp):
            os.replace(tmp, self.path(key))
            _fsync_dir(self.path(key).parent)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        tmp = self._write_temp(key, data)
        try:
            crash.point(f"link {key}")
            with _disk("link", self.path(key)):
                try:
                    os.link(tmp, self.path(key))
                except FileExistsError:
                    return False
                _fsync_dir(self.path(key).parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return True

    def _write_temp(self, key: str, data: bytes) -> Path:
        """`data` whole in a new fsynced temporary file beside `key`, or a StorageError and no file."""
        dst = self.path(key)
        # Dot-named, beside its destination: invisible to Athena/Spark/Hive and outside every table glob.
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        crash.point(f"write {key}")
        with _disk("write", tmp):
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with _removing(tmp):
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return tmp

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def list(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, int]]:
        """Keys under `prefix` (a folder) in key order, as S3 lists them, temporary dot-files left out."""
        base = self.path(prefix)
        if base.is_dir():
            yield from self._walk(base, base.relative_to(self.root).as_posix(), start_after)

    def _walk(self, folder: Path, rel: str, start_after: str) -> Iterator[tuple[str, int]]:
        try:
            with os.scandir(folder) as it:
                # A folder's keys are its name and "/" then more: among the files it sorts as "name/".
                entries = sorted(it, key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        except FileNotFoundError:  # removed while listed
            return
        for entry in entries:
            key = f"{rel}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key, start_after)
            elif not entry.name.startswith(".") and key > start_after:
                with contextlib.suppress(FileNotFoundError):
                    yield key, entry.stat().st_size

    def delete(self, key: str) -> None:
        crash.point(f"delete {key}")
        with _disk("delete", self.path(key)), contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(key))

    def delete_prefix(self, prefix: str) -> None:
        if self.path(prefix).exists():
            crash.point(f"delete {prefix}/")
            shutil.rmtree(self.path(prefix), ignore_errors=True)

    def work_dir(self, staging: str) -> Path:
        return self.path(staging)  # written in place: staging is already on the target's disk

    def stage(self, work_dir: Path, staging: str, files: builtins.list[StagedFile]) -> builtins.list[StagedFile]:
        """The writer wrote the files in place (work_dir is the staging folder): make them durable. A file
        that has vanished meanwhile is left for `is_staged` to find: the batch is then redone."""
        for file in files:
            crash.point(f"fsync {file.staged}")
            with _disk("fsync", self.path(file.staged)), contextlib.suppress(FileNotFoundError):
                _fsync_file(self.path(file.staged))
        return files

    def is_staged(self, file: StagedFile) -> bool:
        return _has_size(self.path(file.staged), file.size)

    def publish(self, file: StagedFile) -> bool:
        """Move a staged file to its visible name; False when it is not in staging (already moved)."""
        src, target = self.path(file.staged), self.path(file.visible)
        if not src.exists():
            return False
        if not _has_size(src, file.size):
            raise StorageError("publish", str(src), f"staged file is not as committed ({file.size} bytes)")
        crash.point(f"publish {file.visible}")
        with _disk("publish", target):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(src, target)
            except FileNotFoundError:
                return False
            _fsync_dir(target.parent)
        return True

    def is_published(self, file: StagedFile) -> bool:
        return _has_size(self.path(file.visible), file.size)

    @contextlib.contextmanager
    def lease(self, run_id: str, prefix: str) -> Iterator[None]:
        """Hold a shared flock on the run's lock file: the run and each of its workers take one, so the run
        counts as alive while any of its processes is; the kernel drops the lock of a killed process."""
        path = self.path(f"{prefix}/{run_id}.lock")
        with _disk("lock", path):
            path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            with _disk("lock", path):
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_SH)
            # A cleaner may have unlinked the file between our open and flock: lock the file at the name.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)

    def end_lease(self, run_id: str, prefix: str) -> None:
        # Best effort, also on the way out of a failed run: a lock file left behind (a read-only disk) is
        # held by no process, so the next run finds the run dead; the run's own error is what to report.
        with contextlib.suppress(OSError):
            os.unlink(self.path(f"{prefix}/{run_id}.lock"))

    def is_dead(self, run_id: str, prefix: str) -> bool:
        """A run is dead when nobody holds its lock (the kernel drops an flock with its process)."""
        try:
            fd = os.open(self.path(f"{prefix}/{run_id}.lock"), os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(f"{prefix}/{run_id}.lock"))  # while holding it: see lease()
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    def clean_temp(self, prefix: str) -> int:
        """Delete temporary files left by writers that died (their pid is gone; same host)."""
        removed = 0
        for dirpath, _, filenames in os.walk(self.path(prefix)):
            for name in filenames:
                m = _TEMP.match(name)
                if m and not _alive(int(m.group(1))):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
        return removed

    def staged_runs(self, prefix: str) -> set[str]:
        """The runs with a staging folder under `prefix`."""
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return set(os.listdir(self.path(prefix)))
        return set()

    def abort_uploads(self, prefix: str) -> int:
        return 0  # no multipart uploads on a local disk; dead runs' temp files go with their staging folder


_TEMP = re.compile(r"^\..*\.tmp-(\d+)-[0-9a-f]+$")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie wrote its last byte long ago


@contextlib.contextmanager
def _disk(operation: str, path: Path) -> Iterator[None]:
    """An OSError of the target's disk (full, read-only, not permitted) as a StorageError naming the path."""
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        raise StorageError(operation, str(path), e.strerror or str(e)) from e


@contextlib.contextmanager
def _removing(tmp: Path) -> Iterator[None]:
    """Remove the temporary file `tmp` if the block fails: a failed write leaves nothing behind."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (a disk filling up): go on until all is written or it fails."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(28, os.strerror(28))  # ENOSPC: the kernel accepted nothing more
        view = view[written:]


def _has_size(path: Path, size: int) -> bool:
    """`path` exists and holds `size` bytes (size -1: any)."""
    try:
        found = os.stat(path).st_size
    except FileNotFoundError:
        return False
    return size < 0 or found == size


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
