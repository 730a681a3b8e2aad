"""Read-ahead of a batch's objects: many reads in flight at once, memory bounded by the bytes in flight.

On S3 every read costs a round trip (tens of ms for a small GET), so a worker that reads one object at a time
spends most of its time waiting. `prefetched` reads a batch's objects ahead of the parser with a pool of
threads (boto3 clients are thread-safe; the wait is I/O). Each object is cut into parts of at most PART_BYTES
(one ranged GET each; an object above the budget is streamed part by part). A part's listed size is reserved
from the budget before its read starts and given back once the parser has consumed it, so at most
READ_AHEAD_BYTES of fetched-but-unparsed bytes exist at a time, whatever the objects' sizes and count. The
objects come back in the batch's order. A failed read raises its SourceError when the parser reaches that
object, so it fails alone, as a sequential read would.

Only a source with `read_range(obj, start, end)` (S3Source) is read ahead; another (a local folder, where a
read is cheap) is opened object by object, as before.

Tuning by environment: SERVICELOGS_READ_AHEAD_BYTES (64 MB a worker), SERVICELOGS_READ_PART_BYTES (8 MB),
SERVICELOGS_READ_THREADS (16 reads in flight at most).
"""

from __future__ import annotations

import collections
import functools
import io
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, cast, runtime_checkable

from servicelogs.sources import Source, SourceObject, _limit

_SETTINGS = {
    "READ_AHEAD_BYTES": ("SERVICELOGS_READ_AHEAD_BYTES", 64 << 20),
    "PART_BYTES": ("SERVICELOGS_READ_PART_BYTES", 8 << 20),
    "READ_THREADS": ("SERVICELOGS_READ_THREADS", 16),
}
READ_AHEAD_BYTES = _limit(*_SETTINGS["READ_AHEAD_BYTES"])
PART_BYTES = _limit(*_SETTINGS["PART_BYTES"])
READ_THREADS = _limit(*_SETTINGS["READ_THREADS"])


def read_limits() -> None:
    """The settings from the environment as it is now (as sources.read_limits)."""
    globals().update({name: _limit(*setting) for name, setting in _SETTINGS.items()})


RawOpener = Callable[[], BinaryIO]  # opens one object's stored (not yet decompressed) bytes


@runtime_checkable
class RangedSource(Protocol):
    def read_range(self, obj: SourceObject, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object as listed, all of them, or a SourceError naming it."""
        ...


def prefetched(
    source: Source,
    objects: Iterable[SourceObject],
    max_bytes: int | None = None,
    part_bytes: int | None = None,
    threads: int | None = None,
) -> Iterator[tuple[SourceObject, RawOpener]]:
    """Each object with an opener over its bytes, in order; read ahead within `max_bytes` when the source
    reads ranges. An opener is called once, after the previous object's stream is done with."""
    if not isinstance(source, RangedSource):
        for obj in objects:
            yield obj, functools.partial(source.open, obj)
        return
    budget = max_bytes or READ_AHEAD_BYTES
    part = max(1, min(part_bytes or PART_BYTES, budget))
    with ReadAhead(source, budget, part, threads or READ_THREADS) as reader:
        yield from reader.openers(objects)


@dataclass
class _Part:
    index: int  # its object's place in the batch
    start: int
    end: int
    future: Future[bytes] | None = None

    @property
    def size(self) -> int:
        return self.end - self.start


class ReadAhead:
    """The parts of a batch's objects, read by a thread pool in order within a budget of bytes in flight.

    All bookkeeping runs in the consumer's thread (the pool only runs `read_range`), so the budget needs no
    lock. A part is reserved when its read is submitted and given back once the parser is past it: when it
    takes the object's next part, or moves on to the next object (a part it left unread is given back after
    its read ends, so its bytes are really gone). `peak` records the most bytes ever reserved at once."""

    def __init__(self, source: RangedSource, budget: int, part_bytes: int, threads: int) -> None:
        self.source, self.budget, self.part_bytes = source, budget, part_bytes
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="read-ahead")
        self.pending: collections.deque[_Part] = collections.deque()  # not yet submitted, in order
        self.in_flight: collections.deque[_Part] = collections.deque()  # submitted, not yet taken, in order
        self.current: _Part | None = None  # the part the parser is reading
        self._objects: list[SourceObject] = []
        self.reserved = 0
        self.peak = 0

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)  # no read outlives the batch
        self.pending.clear()
        self.in_flight.clear()

    def openers(self, objects: Iterable[SourceObject]) -> Iterator[tuple[SourceObject, RawOpener]]:
        batch = self._objects = list(objects)
        for index, obj in enumerate(batch):
            for start in range(0, obj.size, self.part_bytes):
                self.pending.append(_Part(index, start, min(start + self.part_bytes, obj.size)))
        self._top_up()
        for index, obj in enumerate(batch):
            yield obj, _PartsStream(self, index, obj).opened
            self._finish(index)

    def _top_up(self) -> None:
        """Submit the next parts while the budget has room (a part is at most the budget, so with nothing
        reserved the next one always fits: reading never waits on itself)."""
        while self.pending and self.reserved + self.pending[0].size <= self.budget:
            part = self.pending.popleft()
            self.reserved += part.size
            self.peak = max(self.peak, self.reserved)
            part.future = self.pool.submit(self.source.read_range, self._objects[part.index], part.start, part.end)
            self.in_flight.append(part)

    def take(self, index: int) -> bytes:
        """The object's next part's bytes, waiting for its read (raises its SourceError); the part before
        it is given back first."""
        self._give_back_current()
        part = self.current = self.in_flight.popleft()
        assert part.index == index and part.future is not None
        return part.future.result()

    def _give_back_current(self) -> None:
        if self.current is not None:
            self.reserved -= self.current.size
            self.current = None
            self._top_up()

    def _finish(self, index: int) -> None:
        """The parser is done with the object: its parts, read or not, are given back."""
        self._give_back_current()
        while self.in_flight and self.in_flight[0].index == index:
            part = self.in_flight.popleft()
            assert part.future is not None
            if not part.future.cancel():
                part.future.exception()  # wait for the read: its bytes count until they are gone
            self.reserved -= part.size
        while self.pending and self.pending[0].index == index:
            self.pending.popleft()
        self._top_up()


class _PartsStream(io.RawIOBase):
    """One object's bytes, part after part as the read-ahead delivers them."""

    def __init__(self, reader: ReadAhead, index: int, obj: SourceObject) -> None:
        self.reader, self.index = reader, index
        self.parts_left = -(-obj.size // reader.part_bytes)
        self._part = memoryview(b"")

    def opened(self) -> BinaryIO:
        if self.parts_left <= 1:  # a small object (or an empty one): a plain seekable buffer, no copy
            return io.BytesIO(self._take())
        self._part = memoryview(self._take())
        return cast(BinaryIO, io.BufferedReader(self, buffer_size=1 << 20))

    def _take(self) -> bytes:
        if not self.parts_left:
            return b""
        self.parts_left -= 1
        return self.reader.take(self.index)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._part:
            self._part = memoryview(b"")  # let go of the last part before waiting for the next
            self._part = memoryview(self._take())
        n = min(len(buffer), len(self._part))
        buffer[:n] = self._part[:n]
        self._part = self._part[n:]
        return n
