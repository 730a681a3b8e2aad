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
from typing import Any, BinaryIO, Protocol, cast

from servicelogs.errors import SourceError, UsageError
from servicelogs.listing import Folder, Window
from servicelogs.summary import ObjectProblem

GZIP_MAGIC = b"\x1f\x8b"


def _limit(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value else default
    except ValueError as e:
        raise UsageError(f"{name}={value!r} is not a whole number") from e


# Limits that keep memory bounded whatever an object holds. Read from the environment as this module loads, and
# again in a worker process once its run's environment is set (read_limits); a caller in this process may set them
# here too. See docs/architecture.md, "Limits".
_LIMITS = {
    "MAX_LINE_BYTES": ("SERVICELOGS_MAX_LINE_BYTES", 4 << 20),
    "MAX_RECORD_BYTES": ("SERVICELOGS_MAX_RECORD_BYTES", 16 << 20),
    "MAX_RATIO": ("SERVICELOGS_MAX_RATIO", 250),
    "RATIO_FLOOR_BYTES": ("SERVICELOGS_RATIO_FLOOR_BYTES", 256 << 20),
    "MAX_OBJECT_BYTES": ("SERVICELOGS_MAX_OBJECT_BYTES", 64 << 30),
}
MAX_LINE_BYTES = _limit(*_LIMITS["MAX_LINE_BYTES"])
"""A longer line is a reject holding its first LONG_LINE_HEAD bytes and its length: AWS caps user agents at 8 KB
and its request lines far below a megabyte, so such a line is damage (a missing newline), not a record."""
MAX_RECORD_BYTES = _limit(*_LIMITS["MAX_RECORD_BYTES"])
"""A longer JSON record is a reject the same way (CloudTrail records are at most a few hundred KB)."""
MAX_RATIO = _limit(*_LIMITS["MAX_RATIO"])
RATIO_FLOOR_BYTES = _limit(*_LIMITS["RATIO_FLOOR_BYTES"])
"""A gzip object that inflates past RATIO_FLOOR_BYTES and past MAX_RATIO times the compressed bytes read so far
fails (a gzip bomb: zeros inflate ~1000x; log text 5-50x)."""
MAX_OBJECT_BYTES = _limit(*_LIMITS["MAX_OBJECT_BYTES"])
"""An object whose decompressed text passes this fails, whatever its ratio."""
LONG_LINE_HEAD = 4096


def read_limits() -> None:
    """The limits from the environment as it is now (engines.worker: a worker forked from a fork server, which
    loaded this module with the server's environment)."""
    globals().update({name: _limit(*setting) for name, setting in _LIMITS.items()})


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
        self.prefixes_listed = self.list_requests = 0  # by the last listing: folders read

    def __str__(self) -> str:
        return self.root.as_posix()

    def list(self, window: Window | None = None) -> Iterator[SourceObject]:
        """Every file under the root; with a window, only the folders and names it lets through (see
        servicelogs.listing): day folders outside it are not walked, older time-sorted names not statted."""
        self.unlisted = []
        self.prefixes_listed = self.list_requests = 0
        seen: set[str] = set()

        def unreadable(e: OSError) -> None:
            self._unlisted(e.filename, f"cannot list this folder: {e.strerror}")

        top = self.root.as_posix()
        folders = {top: window.root(top + "/")} if window else {}
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=unreadable):
            self.prefixes_listed += 1
            self.list_requests += 1  # a folder read is one request
            dirnames.sort()
            folder = folders.pop(dirpath, None)
            if window and folder:
                dirnames[:] = [name for name in dirnames if self._walks(window, folder, dirpath, name, folders)]
            skips = window if window and folder and not folder.whole else None  # time-sorted names to skip
            for name in dirnames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):  # not walked (its target is walked where it lies, if inside)
                    self._check_link(path)
            for name in sorted(filenames):
                if skips and skips.skip_to(name) is not None:
                    continue
                obj = self._object(os.path.join(dirpath, name))
                if obj is not None and obj.key not in seen:
                    seen.add(obj.key)
                    yield obj

    @staticmethod
    def _walks(window: Window, folder: Folder, dirpath: str, name: str, folders: dict[str, Folder]) -> bool:
        """Whether the window walks subfolder `name` (recorded in `folders` for when os.walk reaches it)."""
        child = window.child(folder, f"{dirpath}/{name}/")
        if child is not None:
            folders[os.path.join(dirpath, name)] = child
        return child is not None

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
        return io.BufferedReader(raw, buffer_size=1 << 20)


def _version(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"


class _ListedFile(io.FileIO):
    """A local file that must keep the identity it was listed with while it is read (see LocalSource)."""

    def __init__(self, obj: SourceObject) -> None:
        super().__init__(obj.key, "rb")
        self.obj = obj
        self._ended = False  # read to its end and checked: the readers above ask again (a syscall and a stat each)
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

    def readinto(self, buffer) -> int:
        if self._ended:
            return 0
        n = super().readinto(buffer)
        if n == 0 and len(memoryview(buffer)):
            self._check("while it was read")
            self._ended = True
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._ended = False  # read from elsewhere again (the gzip sniff reads ahead, then seeks back)
        return super().seek(offset, whence)

    def readall(self) -> bytes:
        data = super().readall()
        self._check("while it was read")
        return data


class Source(Protocol):
    """Where objects come from; str() is its location (a resolved absolute path, or s3://bucket/prefix)."""

    unlisted: list[ObjectProblem]  # entries the last listing could not take (named in the summary)
    prefixes_listed: int  # folders (S3 prefixes) the last listing read
    list_requests: int  # and the requests it took (S3 ListObjectsV2 pages; locally one per folder)

    def list(self, window: Window | None = None) -> Iterator[SourceObject]:
        """Every object; with a window (servicelogs.listing), what it lets through: never fewer than the
        window's days hold."""
        ...

    def open(self, obj: SourceObject) -> BinaryIO: ...


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
    if head == GZIP_MAGIC:
        gunzipped = _Gunzip(raw, head)
        return _as_binary(_Bounded(_as_binary(gunzipped), gunzipped, key))
    if raw.seekable():
        raw.seek(0)
    else:
        raw = io.BufferedReader(_Prepend(head, raw), buffer_size=1 << 20)
    return _as_binary(_Bounded(raw, None, key))


def _as_binary(stream: io.RawIOBase) -> BinaryIO:
    """A raw stream is a binary file at run time; typeshed types io's classes apart from typing.BinaryIO."""
    return cast(BinaryIO, stream)


class _Gunzip(io.RawIOBase):
    """Gunzip, member after member (multi-member gzip), with isal's inflater called directly: IGzipFile's set-up
    and buffering cost ~50 µs an object, most of the read of a 2 KB object. A read inflates at most `size`
    bytes, so _Bounded stops a gzip bomb within one read. A member's CRC-32 and length are checked as it ends;
    zero bytes after a member are padding; input that ends inside a member is an error.
    `bytes`: the compressed bytes read so far (the denominator of the inflation ratio)."""

    CHUNK = 256 << 10  # compressed bytes read at a time, at the least
    # A member's header goes to the inflater in one call: isal checks a header CRC (FHCRC) wrongly when the
    # header comes in pieces. Headers are ~10 bytes, plus a name or comment where the writer gave one.
    HEADER_BYTES = 64 << 10

    def __init__(self, raw: BinaryIO, head: bytes) -> None:
        from isal import igzip_lib

        self._raw, self._igzip = raw, igzip_lib
        self._inflater: Any = None
        self._pending = head  # compressed bytes read and not given to an inflater (the next member's)
        self._in_member = False
        self._raw_ended = False  # the compressed input is all read: asking again costs a read of the source
        self.bytes = len(head)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """`size` bytes (all, if negative), fewer only at the end: a parse's fixed cost is paid per block read."""
        pieces, wanted = [], (1 << 62) if size is None or size < 0 else size
        while wanted > 0 and (out := self._inflate(min(wanted, 16 << 20))):
            pieces.append(out)
            wanted -= len(out)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _inflate(self, size: int) -> bytes:
        """Up to `size` bytes from the compressed bytes at hand, reading more where the inflater needs them;
        b"" at the end of the input."""
        while True:
            if not self._in_member:
                while True:
                    self._pending = self._pending.lstrip(b"\x00")  # padding between members
                    if len(self._pending) >= self.HEADER_BYTES or not self._fill(size):
                        break
                if not self._pending:
                    return b""
                self._inflater = self._igzip.IgzipDecompressor(flag=self._igzip.DECOMP_GZIP)
                self._in_member = True
            elif self._inflater.needs_input and not self._fill(size):
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
            data, self._pending = self._pending, b""
            out = self._inflater.decompress(data, size)
            if self._inflater.eof:
                self._pending, self._in_member = self._inflater.unused_data, False
            if out:
                return out

    def _fill(self, size: int) -> bool:
        """More compressed bytes after `_pending`, about what inflates to `size` (log text gzips 4-20 fold), so
        a block comes from one call, not pieces joined; False at the end of the input."""
        if self._raw_ended:
            return False
        more = self._raw.read(max(self.CHUNK, size >> 2))
        self.bytes += len(more)
        self._pending = self._pending + more if self._pending else more
        self._raw_ended = not more
        return bool(more)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Bounded(io.RawIOBase):
    """The decompressed stream; reading past MAX_OBJECT_BYTES, or past MAX_RATIO times the compressed bytes
    (once past RATIO_FLOOR_BYTES), fails the object with its key instead of inflating without end."""

    def __init__(self, stream: BinaryIO, compressed: _Gunzip | None, key: str) -> None:
        self._stream, self._compressed, self._key, self.bytes = stream, compressed, key, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
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

    def readinto(self, buffer) -> int:
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
            # One copy: `carry + chunk[:cut]` would copy the block twice.
            yield from _long_lines_apart(b"".join((carry, memoryview(chunk)[:cut])) if carry else chunk[:cut], limit)
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
