"""Listing and reading source objects.

A source is a tree of objects: a local folder or an S3 prefix. An object is identified by its full
location, whatever prefix a run was given (the resolved absolute POSIX path of a local file,
`s3://bucket/key` on S3), with its size and its version tag (the S3 ETag; locally mtime and size), never by
its modification time alone. So `convert alb logs/AWSLogs/.../2024/03/01 lake` and then
`convert alb logs lake` name each object once. Reading yields the decompressed bytes in bounded blocks
that end at a line boundary.

A local entry that cannot be listed (an unreadable folder, a dangling symbolic link, a link that leads
outside the source, a file removed while the folder was walked, a name that is not UTF-8) is not a
reason to stop: it lands in the source's `unlisted`, which the run names in its summary.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO, Protocol

from servicelogs.errors import SourceError, UsageError
from servicelogs.summary import ObjectProblem

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, order=True)
class SourceObject:
    key: str  # the full location: an absolute POSIX path, or s3://bucket/key
    size: int
    etag: str  # content version: the S3 ETag; locally mtime_ns + size (see LocalSource)


class LocalSource:
    """A folder tree on a local disk.

    A local file has no ETag. Its identity is (resolved path, size, mtime in ns): a listing needs no read,
    so a no-op run over 100,000 files stays a metadata walk. Any rewrite through the file system changes the
    mtime, so it is seen; copies that keep mtimes (cp -p, rsync -t, a restore) keep the identity, which is
    what we want (same content, not new data). The inode is left out for that reason. What this cannot see
    is a same-size rewrite that also forges the old mtime: a content hash would, at the cost of reading
    every file on every run.

    A file is read only if it still has the identity it was listed with, checked when it is opened and
    again at its end: one rewritten in between fails alone (nothing of it is committed), so the next run
    records it by the content it then reads instead of reporting it as rewritten ever after.

    Symbolic links are followed only to files inside the source (listed under their resolved path, once);
    a link out of the source or to nothing is reported, not followed.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        given = Path(root)
        if not given.is_dir():
            raise UsageError(f"source {str(root)!r} is not a folder")
        self.root = given.resolve()
        self.unlisted: list[ObjectProblem] = []

    def __str__(self) -> str:
        return self.root.as_posix()

    def list(self) -> Iterator[SourceObject]:
        self.unlisted = []
        seen: set[str] = set()

        def unreadable(e: OSError) -> None:
            self._unlisted(e.filename, f"cannot list this folder: {e.strerror}")

        for dirpath, dirnames, filenames in os.walk(self.root, onerror=unreadable):
            dirnames.sort()
            for name in dirnames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):  # not walked (its target is walked where it lies, if inside)
                    self._check_link(path)
            for name in sorted(filenames):
                obj = self._object(os.path.join(dirpath, name))
                if obj is not None and obj.key not in seen:
                    seen.add(obj.key)
                    yield obj

    def _object(self, path: str) -> SourceObject | None:
        try:
            path.encode()
        except UnicodeEncodeError:
            self._unlisted(path, "its name is not valid UTF-8: rename it to convert it")
            return None
        if os.path.islink(path):
            real = self._check_link(path)
            if real is None:
                return None
            path = real.as_posix()
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._unlisted(path, "removed while the source was listed")
            return None
        except OSError as e:
            self._unlisted(path, f"cannot stat: {e.strerror}")
            return None
        if not stat.S_ISREG(st.st_mode):
            self._unlisted(path, "not a regular file")
            return None
        return SourceObject(path, st.st_size, _version(st))

    def _check_link(self, path: str) -> Path | None:
        """The resolved target of a symbolic link inside the source; None (reported) for any other link."""
        try:
            real = Path(path).resolve(strict=True)
        except FileNotFoundError:
            self._unlisted(path, f"a dangling symbolic link (to {os.readlink(path)}): not followed")
            return None
        except (OSError, RuntimeError) as e:
            self._unlisted(path, f"a symbolic link that cannot be resolved ({e}): not followed")
            return None
        if not real.is_relative_to(self.root):
            self._unlisted(path, f"a symbolic link to {real}, outside the source: not followed")
            return None
        return real

    def _unlisted(self, path: str, reason: str) -> None:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        self.unlisted.append(ObjectProblem(shown, reason))

    def open(self, obj: SourceObject) -> BinaryIO:
        try:
            raw = _ListedFile(obj)
        except OSError as e:
            raise SourceError(obj.key, f"cannot open: {e.strerror}") from e
        return io.BufferedReader(raw, buffer_size=1 << 20)  # type: ignore[return-value]


def _version(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"


class _ListedFile(io.FileIO):
    """A local file that must keep the identity it was listed with while it is read (see LocalSource)."""

    def __init__(self, obj: SourceObject) -> None:
        super().__init__(obj.key, "rb")
        self.obj = obj
        try:
            self._check("between listing and reading")
        except SourceError:
            self.close()
            raise

    def _check(self, when: str) -> None:
        st = os.fstat(self.fileno())
        if _version(st) != self.obj.etag:
            raise SourceError(
                self.obj.key,
                f"changed {when} (size {self.obj.size} -> {st.st_size}, version {self.obj.etag} -> "
                f"{_version(st)}): not converted; the next run converts what it then holds",
            )

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        n = super().readinto(buffer)
        if n == 0:
            self._check("while it was read")
        return n  # type: ignore[return-value]

    def readall(self) -> bytes:
        data = super().readall()
        self._check("while it was read")
        return data


class Source(Protocol):
    unlisted: list[ObjectProblem]  # entries the last listing could not take (named in the summary)

    def list(self) -> Iterator[SourceObject]: ...

    def open(self, obj: SourceObject) -> BinaryIO: ...


def open_source(location: str, endpoint_url: str | None = None) -> Source:
    if location.startswith("s3://"):
        from servicelogs.s3 import S3Source

        return S3Source(location, endpoint_url)
    if "://" in location:
        raise UsageError(f"source {location!r}: only local folders and s3:// are supported")
    return LocalSource(location)


_KEY_DATE = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})(?:/|$)|_(\d{4})(\d{2})(\d{2})T\d{4}")


def delivery_date(key: str, groups: Mapping[str, str]) -> date | None:
    """The delivery date a key names: the layout's year/month/day groups when it declares them, else the
    last `YYYY/MM/DD/` folder or `_YYYYMMDDTHHMM` stamp in the key (the AWS delivery conventions; the last,
    as a full location may hold dated folders of its own above the delivery's)."""
    try:
        if {"year", "month", "day"} <= groups.keys():
            return date(int(groups["year"]), int(groups["month"]), int(groups["day"]))
        found = list(_KEY_DATE.finditer(key))
        if not found:
            return None
        y, mo, d = (g for g in found[-1].groups() if g is not None)
        return date(int(y), int(mo), int(d))
    except ValueError:
        return None


def decompressed(raw: BinaryIO, key: str) -> BinaryIO:
    """The object's bytes, gunzipped when they start with the gzip magic (multi-member gzip included).

    A key ending in .gz must hold gzip (an empty object is empty either way): anything else is a corrupt
    object, not text to guess at."""
    head = raw.read(2)
    if key.endswith(".gz") and head and head != GZIP_MAGIC:
        raise SourceError(key, "not gzip: the key ends in .gz but the content does not start with the gzip magic")
    if raw.seekable():
        raw.seek(0)
    else:
        raw = io.BufferedReader(_Prepend(head, raw), buffer_size=1 << 20)  # type: ignore[arg-type,assignment]
    if head == GZIP_MAGIC:
        from isal import igzip

        return igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


class _Prepend(io.RawIOBase):
    """A raw stream that first returns `head`, then the rest of `raw` (for streams that cannot seek)."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head, self._raw = head, raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


def line_blocks(stream: BinaryIO, key: str, block_size: int = 8 << 20) -> Iterator[bytes]:
    """Blocks of whole lines, each about `block_size` bytes (longer when a single line is longer).

    Every block but possibly the last ends with b"\\n". Decompression errors become SourceError naming
    the key, so a corrupt object fails alone.
    """
    carry = b""
    while True:
        try:
            chunk = stream.read(block_size)
        except Exception as e:
            raise SourceError(key, f"cannot decompress: {e}") from e
        if not chunk:
            if carry:
                yield carry
            return
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:  # a line longer than a block: keep reading
            carry += chunk
            continue
        yield carry + chunk[:cut] if carry else (chunk if cut == len(chunk) else chunk[:cut])
        carry = chunk[cut:]
