"""Listing and reading source objects.

A source is a tree of objects (a local folder, later an S3 prefix). An object is identified by its key
(relative to the source root), its size and its version tag, never by its modification time alone.
Reading yields the decompressed bytes in bounded blocks that end at a line boundary.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from servicelogs.errors import SourceError, UsageError

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, order=True)
class SourceObject:
    key: str
    size: int
    etag: str  # content version: S3 ETag or version id; locally inode + size + mtime_ns


class LocalSource:
    """A folder tree on a local disk."""

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
                yield SourceObject(key, st.st_size, f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}")

    def open(self, obj: SourceObject) -> BinaryIO:
        try:
            return open(self.root / obj.key, "rb")
        except OSError as e:
            raise SourceError(obj.key, f"cannot open: {e.strerror}") from e


def open_source(location: str) -> LocalSource:
    if "://" in location:
        raise UsageError(f"source {location!r}: only local folders are supported in this version")
    return LocalSource(location)


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
