"""Where a table and its ledger live: a local folder or an S3 prefix, behind one small interface.

Keys are '/'-separated paths relative to the store's root. Every write is all-or-nothing (a reader sees
the old object, the new one, or nothing, never a part of one) and every side effect passes a crash point
(`servicelogs.crash`) so the exactly-once proofs can kill the process at each of them.

Local disks: a write goes to a dot-named temporary file in the same folder, is fsynced and then renamed
(`os.replace`) or hard-linked (`os.link`, which fails when the name exists: the local If-None-Match);
the folder is fsynced after. A run's liveness is an flock on its lock file, released by the kernel when
the process dies, so the next run knows at once which staging files are abandoned.

S3 lives in `servicelogs.s3` (boto3 is imported only there).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from servicelogs import crash
from servicelogs.errors import StorageError, UsageError


class Store(Protocol):
    """The operations the ledger and the writer need from a target."""

    url: str

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def put_if_absent(self, key: str, data: bytes) -> bool: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, int]]: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def work_dir(self, staging: str) -> Path: ...

    def stage(self, work_dir: Path, staging: str) -> list[str]: ...

    def publish(self, src: str, dst: str) -> bool: ...

    def lease(self, run_id: str, prefix: str) -> contextlib.AbstractContextManager[None]: ...

    def end_lease(self, run_id: str, prefix: str) -> None: ...

    def check_lease(self, run_id: str, prefix: str) -> None: ...

    def is_dead(self, run_id: str, prefix: str) -> bool: ...

    def clean_uploads(self, prefix: str, runs: str, own_run: str) -> int: ...

    def abort_uploads(self, prefix: str) -> int: ...


def open_store(location: str | os.PathLike[str]) -> Store:
    location = os.fspath(location)
    if location.startswith("s3://"):
        from servicelogs.s3 import S3Store

        return S3Store.from_url(location)
    if "://" in location:
        raise UsageError(f"target {location!r}: only local folders and s3:// are supported")
    return LocalStore(location)


class LocalStore:
    """A folder on a local disk."""

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
        os.replace(tmp, self.path(key))
        _fsync_dir(self.path(key).parent)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        tmp = self._write_temp(key, data)
        try:
            crash.point(f"link {key}")
            os.link(tmp, self.path(key))
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        _fsync_dir(self.path(key).parent)
        return True

    def _write_temp(self, key: str, data: bytes) -> Path:
        dst = self.path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        # Dot-named, beside its destination: invisible to Athena/Spark/Hive and outside every table glob.
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        crash.point(f"write {key}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def list(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, int]]:
        """Keys under `prefix` (a folder), sorted, temporary dot-files left out."""
        base = self.path(prefix)
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in sorted(filenames):
                key = f"{rel_dir}/{name}"
                if name.startswith(".") or key <= start_after:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    yield key, os.stat(os.path.join(dirpath, name)).st_size

    def delete(self, key: str) -> None:
        crash.point(f"delete {key}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(key))

    def delete_prefix(self, prefix: str) -> None:
        if self.path(prefix).exists():
            crash.point(f"delete {prefix}/")
            shutil.rmtree(self.path(prefix), ignore_errors=True)

    def work_dir(self, staging: str) -> Path:
        return self.path(staging)  # written in place: staging is already on the target's disk

    def stage(self, work_dir: Path, staging: str) -> list[str]:
        files = sorted(p for p in work_dir.rglob("*.parquet"))
        for p in files:
            crash.point(f"fsync {p.relative_to(self.root).as_posix()}")
            _fsync_file(p)
        return [p.relative_to(work_dir).as_posix() for p in files]

    def publish(self, src: str, dst: str) -> bool:
        """Move a staged file to its visible name; False when it is not in staging (already moved)."""
        target = self.path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        crash.point(f"publish {dst}")
        try:
            os.replace(self.path(src), target)
        except FileNotFoundError:
            return False
        _fsync_dir(target.parent)
        return True

    @contextlib.contextmanager
    def lease(self, run_id: str, prefix: str) -> Iterator[None]:
        """Hold a shared flock on the run's lock file: the run and each of its workers take one, so the run
        counts as alive while any of its processes is; the kernel drops the lock of a killed process."""
        path = self.path(f"{prefix}/{run_id}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(f"{prefix}/{run_id}.lock"))

    def check_lease(self, run_id: str, prefix: str) -> None:
        """Nothing to check: a live process holds its flock for as long as it lives."""

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

    def clean_uploads(self, prefix: str, runs: str, own_run: str) -> int:
        return 0

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
