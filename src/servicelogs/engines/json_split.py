"""Find the records of a JSON object in bulk, streaming: `{"Records": [r1, r2, …]}` or JSON Lines.

The decompressed bytes are read in blocks. Per block, one scan finds the bytes that shape the JSON
(braces, brackets, commas) outside strings, and their depth: a quote is a string edge unless an odd
run of backslashes precedes it; a byte is inside a string when an odd number of string edges precede
it. The scan is compiled (engines/_json_structure.c) where it was built, else numpy's, to the same rule.
A record ends at a comma (or the closing bracket) at the records array's depth, or, for JSON Lines,
where the depth comes back to zero. No Python runs per byte or per record; memory stays bounded by
the block size plus one record, whatever the object's size.

The splitter does not judge a record: each is handed on as its text (whitespace and separators
trimmed), and whether it is valid JSON, an object, a record, is decided in bulk downstream.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

import numpy as np

from servicelogs import sources
from servicelogs.engines import native
from servicelogs.errors import SourceError

BLOCK_BYTES = 8 << 20  # measured at 1 GB: 4 MB blocks are ~10 % slower (a statement per block), 16 MB no faster

_QUOTE, _BACKSLASH, _COMMA = ord('"'), ord("\\"), ord(",")
_OPEN_BRACKET, _CLOSE_BRACKET = ord("["), ord("]")
_SCAN_BYTES = 1 << 20  # measured: ~15 % faster than comparing a whole 8 MB block at once
_DELTA = np.zeros(256, dtype=np.int64)
_DELTA[list(b"{[")] = 1
_DELTA[list(b"}]")] = -1
_SPACE = b" \t\r\n"


@dataclass
class Pieces:
    """Records found in one buffer: record i is buffer[offsets[i]:offsets[i+1]], untrimmed.

    `first` is the 1-based index of the first record in the object. A `reason` marks text that cannot
    be a record at all (after the records array, or a truncated end): it is rejected with that reason."""

    buffer: bytes
    offsets: np.ndarray
    first: int
    reason: str = ""
    valued_members: np.ndarray | None = None
    """Per record, how many of its own members have a value other than null; None when some record has a
    null member whose key is not one of the splitter's known keys (or the count could not be made)."""

    @property
    def count(self) -> int:
        return max(len(self.offsets) - 1, 0)


@cache
def _compiled(records_key: str, known_keys: frozenset[str]) -> tuple[frozenset[bytes], re.Pattern[bytes]]:
    known = frozenset(k.encode() for k in known_keys)
    # No \A: `match` anchors at its start, which split_whole sets to each object's within one buffer.
    return known, re.compile(rb'\s*\{\s*"' + re.escape(records_key.encode()) + rb'"\s*:\s*\[')


class RecordSplitter:
    """Splits one object's decompressed stream into record texts, block by block."""

    def __init__(self, records_key: str, known_keys: frozenset[str] = frozenset()) -> None:
        self._known, self._header = _compiled(records_key, known_keys)  # once, not per object
        self.records_key = records_key
        self.mode: str | None = None  # "array" ({"key": [...]}) or "lines" (JSON values one after another)
        self.array_closed = False
        self.records = 0  # records handed on so far
        self.empty_array = False

    def split(self, stream: BinaryIO, key: str, block_size: int | None = None, head: bytes = b"") -> Iterator[Pieces]:
        """The stream's records; `head` is its start, already read (the first block reads on from there)."""
        block_size = block_size or BLOCK_BYTES
        limit = sources.MAX_RECORD_BYTES
        carry = b""
        after_array = b""
        skipping: _Skipping | None = None  # a record over the limit, being read past
        while True:
            try:
                chunk = head + stream.read(max(block_size - len(head), 0)) if head else stream.read(block_size)
                head = b""
            except (OSError, EOFError, ValueError) as e:  # isal/gzip: truncated, bad CRC, not gzip
                raise SourceError(key, f"cannot decompress: {e}") from e
            if not chunk:
                break
            if self.array_closed:
                if len(after_array) <= limit:  # what follows the array is only judged, never parsed
                    after_array += chunk[: limit + 1]
                continue
            if skipping is not None:
                end = skipping.end_in(chunk, self.mode == "array")
                if end is None:
                    continue
                yield self._too_long(skipping)
                skipping, closer = None, chunk[end : end + 1]
                if closer == b"]":
                    self.array_closed, after_array = True, chunk[end + 1 :]
                    continue
                chunk = chunk[end + 1 :]
                if not chunk:
                    continue
            buffer = carry + chunk if carry else chunk
            start = 0  # where the records begin: past the header, not sliced off (a block's copy)
            if self.mode is None:
                m = self._header.match(buffer)
                if m is None and len(buffer.lstrip(_SPACE)) < 64 + len(self.records_key):
                    carry = buffer  # too little to tell the shape yet
                    continue
                self.mode = "array" if m else "lines"
                start = m.end() if m else 0
            pieces, rest = self._cut(buffer, start)
            if pieces.count:
                yield pieces
            if self.array_closed:
                after_array, carry = rest, b""
            elif len(rest) > limit and self.mode is not None:
                skipping, carry = _Skipping(rest[:HEAD_BYTES]), b""
                end = skipping.end_in(rest, self.mode == "array")
                assert end is None, "a record's end is cut by _cut"
            else:
                carry = rest
        if skipping is not None:
            yield self._too_long(skipping)
            return
        yield from self._finish(carry, after_array)

    def _too_long(self, skipping: _Skipping) -> Pieces:
        return self._tail(skipping.head, too_long(skipping.length, len(skipping.head)))

    def _finish(self, carry: bytes, after_array: bytes) -> Iterator[Pieces]:
        if self.mode is None:  # a short object: decide its shape now
            m = self._header.match(carry)
            self.mode = "array" if m else "lines"
            if m:
                pieces, carry = self._cut(carry, m.end())
                if pieces.count:
                    yield pieces
                if self.array_closed:
                    after_array, carry = carry, b""
        if self.mode == "array" and self.array_closed:
            if after_array.strip(_SPACE) not in (b"}", b""):
                yield self._tail(
                    after_array, f"text after the {self.records_key} array: the object is not one record file"
                )
            elif not after_array.strip(_SPACE):
                yield self._tail(after_array, "truncated JSON: the object ends before its closing brace")
            return
        if self.mode == "array":
            yield self._tail(carry, f"truncated JSON: the object ends inside its {self.records_key} array")
        elif carry.strip(_SPACE + b","):
            yield self._tail(carry, "")  # judged downstream like any record (invalid JSON, not an object…)

    def _tail(self, text: bytes, reason: str) -> Pieces:
        self.records += 1
        return Pieces(text, np.asarray([0, len(text)], dtype=np.int64), self.records, reason)

    def _cut(self, buffer: bytes, start: int = 0) -> tuple[Pieces, bytes]:
        """The complete records at the start of `buffer[start:]`, and the bytes left for the next block."""
        b = np.frombuffer(buffer, dtype=np.uint8)[start:]  # positions below are b's, from `start`
        positions, depth, quotes = _structure(b)
        chars = b[positions]
        record_depth = 0
        if self.mode == "array":
            # The buffer starts inside the array, at depth 2 (the object is 1).
            depth = depth + 2
            record_depth = 2
            ends_mask = (depth == 2) & (chars == _COMMA)
            closed = np.flatnonzero(depth == 1)
            if closed.size:
                close_at = int(positions[closed[0]])
                ends = positions[ends_mask & (positions < close_at)]
                ends = np.append(ends, close_at)
                self.array_closed = True
                rest = buffer[start + close_at + 1 :]
            else:
                ends = positions[ends_mask]
                rest = buffer[start + int(ends[-1]) + 1 :] if ends.size else buffer[start:]
            offsets = np.concatenate(([0], ends)).astype(np.int64)
            if (
                self.array_closed
                and self.records == 0
                and len(offsets) == 2
                and not buffer[start : start + offsets[1]].strip(_SPACE)
            ):
                self.empty_array = True
                return Pieces(buffer, np.zeros(0, dtype=np.int64), 1), rest
        else:
            ends = positions[(depth == 0) & ((chars == ord("}")) | (chars == ord("]")))] + 1
            rest = buffer[start + int(ends[-1]) :] if ends.size else buffer[start:]
            offsets = np.concatenate(([0], ends)).astype(np.int64)
        pieces = Pieces(buffer, offsets + start, self.records + 1)
        if self._known and pieces.count:
            inside = positions < offsets[-1]
            members, lost = _valued_members(
                b, offsets, positions[inside], depth[inside], chars[inside], quotes, record_depth, self._known, 0
            )
            pieces.valued_members = None if lost.any() else members
        self.records += pieces.count
        return pieces, rest


def _valued_members(
    b: np.ndarray,
    offsets: np.ndarray,
    positions: np.ndarray,
    depth: np.ndarray,
    chars: np.ndarray,
    quotes: np.ndarray,
    record_depth: int,
    known: frozenset[bytes],
    first_quote: np.ndarray | int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per record (b[offsets[i]:offsets[i+1]], its structural bytes given), its members (the commas at its own
    level, plus one) less those whose value is null; and whether the count is lost: a null member's key is not
    a known one (it would be lost from extra_fields), or its quotes are not found at or after `first_quote`
    (per record: the index in `quotes` of the first quote of its buffer).

    A null is seen where `null` ends a member right before its separator (compact JSON, as AWS writes
    it); a null written otherwise stays counted, which only makes the count too high."""
    n = len(offsets) - 1
    if native.json_kernels is not None:  # the same count in one pass (engines/_json_structure.c)
        floors = np.broadcast_to(np.asarray(first_quote, dtype=np.int64), (n,))
        members, lost = native.json_kernels.valued_members(
            *map(np.ascontiguousarray, (b, offsets, positions, depth, quotes, floors)), record_depth, tuple(known)
        )
        return np.frombuffer(members, dtype=np.int64), np.frombuffer(lost, dtype=np.bool_)
    commas = (chars == _COMMA) & (depth == record_depth + 1)
    closers = (chars == ord("}")) & (depth == record_depth)
    members = np.bincount(np.searchsorted(offsets, positions[commas], side="right") - 1, minlength=n) + 1
    lost = np.zeros(n, dtype=bool)
    ends = positions[commas | closers]
    ends = ends[ends >= 5]
    for back, char in zip((4, 3, 2, 1), b"null", strict=True):
        ends = ends[b[ends - back] == char]
    if not ends.size:
        return members, lost
    record_of = np.searchsorted(offsets, ends, side="right") - 1
    members -= np.bincount(record_of, minlength=n)
    closing = np.searchsorted(quotes, ends - 4) - 1  # the quote that closes the member's key
    floor = first_quote if isinstance(first_quote, int) else first_quote[record_of]
    missing = closing < floor + 1  # floors are 0 or more: a key needs two quotes, from its floor on
    if len(quotes) < 2:  # `{null}`: no key at all
        lost[record_of] = True
        return members, lost
    closing = np.maximum(closing, 1)
    key_ends, key_starts = quotes[closing], quotes[closing - 1] + 1
    buffer = b.data
    unknown = [bytes(buffer[i:j]) not in known for i, j in zip(key_starts.tolist(), key_ends.tolist(), strict=True)]
    lost[record_of[missing | np.asarray(unknown, dtype=bool)]] = True
    return members, lost


@dataclass
class Whole:
    """What a RecordSplitter makes of one whole object: the pieces it yields, its records, and whether its
    records array is empty."""

    pieces: list[Pieces]
    records: int
    empty_array: bool = False


def split_whole(
    texts: list[bytes], keys: list[str], records_key: str, known_keys: frozenset[str] = frozenset()
) -> list[Whole]:
    """Several whole objects' texts, split as a RecordSplitter splits each one read in one block, in bulk: a
    scan costs ~250 µs an object before its first byte, which small objects (audit logs: a few KB) would pay each.

    The texts are joined, a newline between two (a run of backslashes stops at an object's edge), and scanned
    in one numpy pass per WINDOW_BYTES of objects; each structural byte is seen against its own object's first
    quote and depth, so one object's unbalanced quote or bracket cannot shift another's. The usual object
    (`{"key": [r1, …]}` and nothing after its closing brace but whitespace) is cut here; its pieces share the
    window's buffer. Any other (JSON Lines, truncated, text after the array, an empty array) is split by a
    RecordSplitter of its own, as if streamed."""
    out: list[Whole] = []
    start = size = 0
    for end, text in enumerate(texts):
        size += len(text)
        if size >= WINDOW_BYTES or end == len(texts) - 1:
            out += _split_window(texts[start : end + 1], keys[start : end + 1], records_key, known_keys)
            start, size = end + 1, 0
    return out


WINDOW_BYTES = 512 << 10
"""The objects scanned in one pass: the scan's index arrays (8 bytes a quote or bracket) of much more text outgrow
the cache, and a scan of 8 MB runs ~40 % slower than of 16 times 512 KB."""


def _split_window(texts: list[bytes], keys: list[str], records_key: str, known_keys: frozenset[str]) -> list[Whole]:
    known, header = _compiled(records_key, known_keys)
    buffer = b"\n".join(texts)
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    starts = np.cumsum(lengths + 1) - lengths - 1
    ends = starts + lengths
    heads = ends + 1  # where each object's records begin: past its end when it has no records array
    for k, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        m = header.match(buffer, start, end)
        if m is not None:
            heads[k] = m.end()
    b = np.frombuffer(buffer, dtype=np.uint8)
    positions, depth, quotes = _structure(b, starts)
    chars = b[positions]

    def within(at: np.ndarray, of: np.ndarray, end: np.ndarray) -> np.ndarray:
        return (at >= heads[of]) & (at < end[of])

    closes = positions[depth == 1]
    of = _object_of(starts, closes)
    closes, of = closes[within(closes, of, ends)], of[within(closes, of, ends)]
    closed, first = np.unique(of, return_index=True)
    close_at = np.full(len(texts), -1, dtype=np.int64)
    close_at[closed] = closes[first]
    separators = positions[(depth == 2) & (chars == _COMMA)]
    of = _object_of(starts, separators)
    keep = within(separators, of, close_at)
    records = np.bincount(of[keep], minlength=len(texts)) + 1
    usual = close_at >= 0
    for k in np.flatnonzero(usual).tolist():
        after = buffer[close_at[k] + 1 : ends[k]].strip(_SPACE)
        empty = records[k] == 1 and not buffer[heads[k] : close_at[k]].strip(_SPACE)
        usual[k] = after == b"}" and not empty
    separators = separators[keep & usual[of]]
    bounds = np.sort(np.concatenate((heads[usual], separators, close_at[usual])))  # each object's, then a gap
    counts = records[usual]
    firsts = np.cumsum(counts + 1) - counts - 1  # each usual object's first bound in `bounds`
    valued: np.ndarray | None = None
    lost = np.zeros(len(texts), dtype=bool)
    if known and usual.any():
        member = ((chars == _COMMA) & (depth == 3)) | ((chars == ord("}")) & (depth == 2))
        at, at_depth, at_chars = positions[member], depth[member], chars[member]
        of = _object_of(starts, at)
        keep = usual[of] & within(at, of, close_at)
        floor = np.zeros(len(bounds) - 1, dtype=np.int64)
        floor[firsts] = np.searchsorted(quotes, heads[usual])  # gaps hold no member: their floor is never read
        floor = np.maximum.accumulate(floor)
        valued, lost_records = _valued_members(
            b, bounds, at[keep], at_depth[keep], at_chars[keep], quotes, 2, known, floor
        )
        lost[usual] = np.add.reduceat(lost_records.astype(np.int64), firsts) > 0
    out = []
    nth = 0  # usual objects so far
    for k, text in enumerate(texts):
        if usual[k]:
            start, n = int(firsts[nth]), int(counts[nth])
            nth += 1
            members = None if valued is None or lost[k] else valued[start : start + n]
            out.append(Whole([Pieces(buffer, bounds[start : start + n + 1], 1, valued_members=members)], n))
            continue
        splitter = RecordSplitter(records_key, known_keys)
        pieces = list(splitter.split(io.BytesIO(text), keys[k], block_size=max(len(text), 1)))
        out.append(Whole(pieces, splitter.records, splitter.empty_array))
    return out


HEAD_BYTES = 4096  # of a record over the limit, kept in its reject


def too_long(length: int, kept: int) -> str:
    return (
        f"a record of {length} bytes, longer than the limit of {sources.MAX_RECORD_BYTES} "
        f"(SERVICELOGS_MAX_RECORD_BYTES); its first {kept} bytes are kept"
    )


@dataclass
class _Skipping:
    """A record over the limit: read past chunk by chunk, keeping only its head and what the scan needs at a
    chunk's edge (inside a string or not, a run of backslashes, the depth)."""

    head: bytes
    length: int = 0
    in_string: bool = False
    backslashes: int = 0
    depth: int = 0

    def end_in(self, chunk: bytes, in_array: bool) -> int | None:
        """Offset in `chunk` of the byte that ends the record (in an array: a comma at its level, or the
        array's closing bracket; JSON Lines: the bracket that closes it), or None: it goes on."""
        prefix = (b'"' if self.in_string else b"") + b"\\" * self.backslashes
        b = np.frombuffer(prefix + chunk, dtype=np.uint8)
        positions, depth, quotes = _structure(b)
        depth = depth + self.depth
        chars = b[positions]
        if in_array:
            ends = np.flatnonzero(((depth == 0) & (chars == _COMMA)) | (depth < 0))
        else:
            ends = np.flatnonzero((depth == 0) & (chars != _COMMA))
        if ends.size:
            end = int(positions[ends[0]]) - len(prefix)
            self.length += end
            return end
        self.length += len(chunk)
        self.in_string = len(quotes) % 2 == 1
        run = len(chunk) - len(chunk.rstrip(b"\\"))
        self.backslashes = self.backslashes + run if run == len(chunk) else run
        if positions.size:
            self.depth = int(depth[-1])
        return None


def _structure(b: np.ndarray, starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the structural bytes outside strings, the depth change up to and including each, and
    the positions of the quotes that open or close a string. `starts`: where the objects joined in `b` begin;
    each one's strings and depth are its own, so one object's open string or bracket cannot shift the next's.

    Compiled (engines/_json_structure.c) where it was built: one pass over the bytes, against numpy's several."""
    if native.json_kernels is not None:
        arrays = native.json_kernels.structure(b, starts)
        return tuple(np.frombuffer(a, dtype=np.int64) for a in arrays)  # type: ignore[return-value]
    positions, quotes = _candidates(b)
    # Quotes and depth are counted over the whole buffer, and set back to each object's own where an object
    # before it leaves a string or a bracket open (only then: a usual object leaves neither).
    parity = np.searchsorted(quotes, positions, side="right")
    if starts is not None and ((first_quote := np.searchsorted(quotes, starts)) & 1).any():
        parity -= first_quote[_object_of(starts, positions)]
    positions = positions[(parity & 1) == 0]
    depth = np.cumsum(_DELTA[b[positions]])
    if starts is not None:
        base = np.concatenate(([0], depth))[np.searchsorted(positions, starts)]
        if base.any():
            depth -= base[_object_of(starts, positions)]
    return positions, depth, quotes


def _object_of(starts: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The index of the object (of those beginning at `starts`) that each position in `at` falls in."""
    return np.searchsorted(starts, at, side="right") - 1


def _candidates(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the bytes that are structural unless inside a string, and of the unescaped quotes."""
    quotes_in, structural_in = [], []
    for start in range(0, len(b), _SCAN_BYTES):  # comparisons over a cache-sized slice at a time
        part = b[start : start + _SCAN_BYTES]
        quotes_in.append(np.flatnonzero(part == _QUOTE) + start)
        folded = part & 0xDF  # "{" → "[", "}" → "]" (and no other byte): two comparisons find all four brackets
        found = (folded == _OPEN_BRACKET) | (folded == _CLOSE_BRACKET) | (part == _COMMA)
        structural_in.append(np.flatnonzero(found) + start)
    quotes = np.concatenate(quotes_in) if quotes_in else np.zeros(0, dtype=np.int64)
    positions = np.concatenate(structural_in) if structural_in else np.zeros(0, dtype=np.int64)
    if quotes.size:
        quotes = quotes[~_escaped(b, quotes)]
    return positions, quotes


def _escaped(b: np.ndarray, quotes: np.ndarray) -> np.ndarray:
    """Whether each quote is escaped: preceded by an odd run of backslashes. Only quotes right after a
    backslash are looked at again, walking their run back a byte at a time: runs are short."""
    escaped = np.zeros(quotes.size, dtype=bool)
    walking = np.flatnonzero(b[np.maximum(quotes - 1, 0)] == _BACKSLASH)  # a quote at 0 reads itself: no
    at = quotes[walking] - 1
    length = 0
    while walking.size:
        length += 1
        escaped[walking] = (length & 1) == 1
        walking, at = walking[at > 0], at[at > 0] - 1
        slash = b[at] == _BACKSLASH
        walking, at = walking[slash], at[slash]
    return escaped
