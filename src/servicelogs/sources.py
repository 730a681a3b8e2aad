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


def _limit(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value else default
    except ValueError as e:
        raise UsageError(f"{name}={value!r} is not a whole number") from e


# Limits that keep memory bounded whatever an object holds. Read from the environment once (worker processes
# inherit it); a caller in this process may set them here too. See docs/architecture.md, "Limits".
MAX_LINE_BYTES = _limit("SERVICELOGS_MAX_LINE_BYTES", 4 << 20)
"""A longer line is a reject holding its first LONG_LINE_HEAD bytes and its length: AWS caps user agents at 8 KB
and its request lines far below a megabyte, so such a line is damage (a missing newline), not a record."""
MAX_RECORD_BYTES = _limit("SERVICELOGS_MAX_RECORD_BYTES", 16 << 20)
"""A longer JSON record is a reject the same way (CloudTrail records are at most a few hundred KB)."""
MAX_RATIO = _limit("SERVICELOGS_MAX_RATIO", 250)
RATIO_FLOOR_BYTES = _limit("SERVICELOGS_RATIO_FLOOR_BYTES", 256 << 20)
"""A gzip object that inflates past RATIO_FLOOR_BYTES and past MAX_RATIO times the compressed bytes read so far
fails (a gzip bomb: zeros inflate ~1000x; log text 5-50x)."""
MAX_OBJECT_BYTES = _limit("SERVICELOGS_MAX_OBJECT_BYTES", 64 << 30)
"""An object whose decompressed text passes this fails, whatever its ratio."""
LONG_LINE_HEAD = 4096


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

        counted = _Counted(raw)
        return _Bounded(igzip.IGzipFile(fileobj=counted, mode="rb"), counted, key)  # type: ignore[arg-type]
    return _Bounded(raw, None, key)


class _Counted:
    """A compressed stream that counts the bytes read from it (the denominator of the inflation ratio)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw, self.bytes = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.bytes += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        data = self._raw.read1(size) if hasattr(self._raw, "read1") else self._raw.read(size)
        self.bytes += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = self._raw.readinto(buffer)
        self.bytes += n or 0
        return n

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._raw, name)


class _Bounded(io.RawIOBase):
    """The decompressed stream; reading past MAX_OBJECT_BYTES, or past MAX_RATIO times the compressed bytes
    (once past RATIO_FLOOR_BYTES), fails the object with its key instead of inflating without end."""

    def __init__(self, stream: BinaryIO, compressed: _Counted | None, key: str) -> None:
        self._stream, self._compressed, self._key, self.bytes = stream, compressed, key, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = self._stream.read(size)
        self.bytes += len(data)
        if self.bytes > MAX_OBJECT_BYTES:
            raise SourceError(
                self._key, f"decompressed past {MAX_OBJECT_BYTES} bytes (SERVICELOGS_MAX_OBJECT_BYTES): not converted"
            )
        if self._compressed is not None and self.bytes > RATIO_FLOOR_BYTES:
            ratio = self.bytes / max(self._compressed.bytes, 1)
            if ratio > MAX_RATIO:
                raise SourceError(
                    self._key,
                    f"gzip inflates {ratio:.0f}-fold ({self.bytes} bytes from {self._compressed.bytes}), past the "
                    f"limit of {MAX_RATIO} (SERVICELOGS_MAX_RATIO): a gzip bomb or a corrupt object, not converted",
                )
        return data

    def close(self) -> None:
        self._stream.close()
        super().close()


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


@dataclass(frozen=True)
class LongLine:
    """A line longer than the limit, read past in bounded memory: its first bytes and its length."""

    head: bytes
    length: int


def line_blocks(
    stream: BinaryIO, key: str, block_size: int = 8 << 20, max_line: int | None = None
) -> Iterator[bytes | LongLine]:
    """Blocks of whole lines, each about `block_size` bytes, in order; a line longer than `max_line` bytes
    (default MAX_LINE_BYTES) comes as a LongLine in its place, so memory stays within a block and a line.

    Every block but possibly the last ends with b"\\n". Decompression errors become SourceError naming
    the key, so a corrupt object fails alone.
    """
    limit = max_line or MAX_LINE_BYTES
    carry = b""
    long_line: LongLine | None = None  # a long line being read past
    while True:
        try:
            chunk = stream.read(block_size)
        except SourceError:
            raise
        except Exception as e:
            raise SourceError(key, f"cannot decompress: {e}") from e
        if not chunk:
            if long_line is not None:
                yield long_line
            elif carry:
                yield from _long_lines_apart(carry, limit)
            return
        if long_line is not None:
            end = chunk.find(b"\n")
            if end < 0:
                long_line = LongLine(long_line.head, long_line.length + len(chunk))
                continue
            yield LongLine(long_line.head, long_line.length + end)
            long_line, chunk = None, chunk[end + 1 :]
            if not chunk:
                continue
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:  # no line ends in this chunk
            carry += chunk
        else:
            yield from _long_lines_apart(carry + chunk[:cut] if carry else chunk[:cut], limit)
            carry = chunk[cut:]
        if len(carry) > limit:
            long_line, carry = LongLine(carry[:LONG_LINE_HEAD], len(carry)), b""


def _long_lines_apart(block: bytes, limit: int) -> Iterator[bytes | LongLine]:
    """The block, or, when it holds lines longer than `limit`, its runs of other lines and a LongLine for each.

    Every window of limit/2 bytes holding a newline proves no line is longer than the limit: a few memchr
    calls per block. Only a block that fails the proof is walked line by line."""
    window = max(limit // 2, 1)
    if all(block.find(b"\n", at, at + window) >= 0 for at in range(0, len(block) - window, window)):
        yield block
        return
    run_start = at = 0
    while at < len(block):
        end = block.find(b"\n", at)
        end = len(block) if end < 0 else end
        length = end - at - (1 if block[end - 1 : end] == b"\r" else 0)
        if length > limit:
            if at > run_start:
                yield block[run_start:at]
            yield LongLine(block[at : at + LONG_LINE_HEAD], length)
            run_start = end + 1
        at = end + 1
    if run_start < len(block):
        yield block[run_start:]
