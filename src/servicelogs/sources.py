"""Listing and reading source objects.

A source is a tree of objects (a local folder, later an S3 prefix). An object is identified by its key
(relative to the source root), its size and its version tag, never by its modification time alone.
Reading yields the decompressed bytes in bounded blocks that end at a line boundary.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO, Protocol

from servicelogs.errors import SourceError, UsageError

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, order=True)
class SourceObject:
    key: str
    size: int
    etag: str  # content version: the S3 ETag; locally mtime_ns + size (see LocalSource)


class LocalSource:
    """A folder tree on a local disk.

    A local file has no ETag. Its identity is (key, size, mtime in ns): a listing needs no read, so a
    no-op run over 100,000 files stays a metadata walk. Any rewrite through the file system changes the
    mtime, so it is seen; copies that keep mtimes (cp -p, rsync -t, a restore) keep the identity, which is
    what we want (same content, not new data). The inode is left out for that reason. What this cannot see
    is a same-size rewrite that also forges the old mtime: a content hash would, at the cost of reading
    every file on every run.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise UsageError(f"source {str(root)!r} is not a folder")

    def __str__(self) -> str:
        return str(self.root)

    def list(self) -> Iterator[SourceObject]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                st = path.stat()
                key = path.relative_to(self.root).as_posix()
                yield SourceObject(key, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def open(self, obj: SourceObject) -> BinaryIO:
        try:
            return open(self.root / obj.key, "rb")
        except OSError as e:
            raise SourceError(obj.key, f"cannot open: {e.strerror}") from e


class Source(Protocol):
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
    first `YYYY/MM/DD/` folder or `_YYYYMMDDTHHMM` stamp in the key (the AWS delivery conventions)."""
    try:
        if {"year", "month", "day"} <= groups.keys():
            return date(int(groups["year"]), int(groups["month"]), int(groups["day"]))
        m = _KEY_DATE.search(key)
        if m is None:
            return None
        y, mo, d = (g for g in m.groups() if g is not None)
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
