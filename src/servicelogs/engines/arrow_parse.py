"""Delimited log lines → typed Arrow tables, in bulk.

The hot path hands a whole block of lines to Arrow's C++ CSV tokenizer (delimiter and quote from the
format's grammar), then types each column with Arrow compute kernels. Python looks at single lines only
when something is off: a line with another token count, a value a kernel refuses, a block the tokenizer
could not map one-to-one onto lines (an unbalanced quote, a stray carriage return, invalid UTF-8). Those
take the exact slow path, line by line, and end as rows or as rejects with a reason.
"""

from __future__ import annotations

import codecs
import io
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import BinaryIO, ClassVar, Protocol, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from servicelogs import sources
from servicelogs.engines import native
from servicelogs.engines.arrow_kernels import nulled, split_token, token_null, tokenizer_type, typed_field
from servicelogs.errors import SourceError
from servicelogs.render.arrow import arrow_type
from servicelogs.sources import LongLine, line_blocks
from servicelogs.spec import Delimited, LogFormat

WIDTH_SAMPLE_LINES = 8  # lines of an object's first block whose token counts tell its usual width
# The same for objects parsed together, where the sample would cost as much as the parse (an S3 access log object
# holds ~5 lines): objects are grouped by this count; a line of another count is tokenized apart, in bulk too.
GROUP_SAMPLE_LINES = 2
# Small objects are read whole and parsed together, up to this much text: a parse has a fixed cost
# (Arrow's reader, the typing kernels, a write) of ~3 ms, which small objects (S3 access logs: ~2 KB) would pay each.
GROUP_BYTES = 8 << 20
SMALL_OBJECT_BYTES = 1 << 20  # objects up to this much text are read whole; larger ones go block by block
# Arrow tokenizes in chunks of this size: ~1 MB stays in cache and runs about 2.5x faster than one large chunk.
ARROW_BLOCK_BYTES = 1 << 20


@dataclass
class Parsed:
    """One block's outcome: typed rows (format fields + extra_fields + line_number) and rejects.

    `lines` and `text_bytes` count what the block held: every line is a row, a reject or a header line."""

    rows: pa.Table
    lines: int = 0
    text_bytes: int = 0
    reject_lines: list[int] = field(default_factory=list)
    reject_raw: list[str] = field(default_factory=list)
    reject_reasons: list[str] = field(default_factory=list)
    extra_rows: int = 0
    generations: Counter[str] = field(default_factory=Counter)
    header_lines: int = 0
    """Lines that declare the object's layout (headers, comments): counted in `lines`, neither rows nor rejects."""
    notes: Counter[str] = field(default_factory=Counter)
    """Values recognised as not records and skipped (a digest file): reason → count. Line grammars: none."""
    objects: np.ndarray | None = None
    """When several objects were parsed together: per row, the index of its object among them; else None."""
    reject_objects: list[int] | None = None
    """The same per reject."""
    headers: dict[int, tuple[str, ...] | None] | None = None
    """Header-defined grammars: per object (its index among those parsed together; 0 for an object parsed on
    its own, in its first block), the names its first header line gives (None: a data line comes first). The
    catalog checks them against the raw table's without reading the objects again."""


class LineTokenizer:
    """The exact, per-line tokenizer for one Delimited grammar: the slow path's ground truth.

    A quoted token may contain the delimiter and backslash-escaped quotes; anything else runs to the
    next delimiter.
    """

    def __init__(self, grammar: Delimited) -> None:
        d, q = re.escape(grammar.delimiter), re.escape(grammar.quote or "")
        # No quote: the grammar has no quoting at all.
        self._quoted = re.compile(rf"{q}((?:[^{q}\\]|\\.)*){q}(?={d}|$)") if grammar.quote else None
        self._plain = re.compile(rf"[^{d}]*")
        self._delimiter = grammar.delimiter
        self._quote = grammar.quote
        self._unescape = re.compile(r"\\(.)")
        # A quoted token whatever follows it: to tell where a closing quote is glued to the next token.
        self._quoted_anywhere = re.compile(rf"{q}(?:[^{q}\\]|\\.)*{q}") if grammar.quote else None
        self._delimiter_word = {" ": "space", "\t": "tab"}.get(grammar.delimiter, repr(grammar.delimiter))

    def shape_fault(self, line: str, names: list[tuple[int, str]]) -> str | None:
        """Where the line's tokens are off, if they are: the first doubled delimiter ("two spaces after field 4
        (remote_ip)") or quoted token glued to what follows it ("no space after the quoted field 19
        (user_agent)"); None when the line is well formed as far as delimiters and quotes tell."""
        d, word = self._delimiter, self._delimiter_word
        pos, index = 0, 0

        def field(i: int) -> str:
            if i < len(names):
                return f"field {names[i][0]} ({names[i][1]})"
            return f"field {i + 1 - len(names) + (names[-1][0] if names else 0)}"

        if line.startswith(d):
            return f"a {word} before {field(0)}: the line starts with one"
        while pos < len(line):
            m = self._quoted_anywhere.match(line, pos) if self._quoted_anywhere else None
            if m:
                pos = m.end()
                if pos < len(line) and not line.startswith(d, pos):
                    return f"no {word} after the quoted {field(index)}"
            else:
                end = line.find(d, pos)
                pos = len(line) if end < 0 else end
            if pos >= len(line):
                return None
            pos += len(d)
            if line.startswith(d, pos):
                return f"two {word}s after {field(index)}"
            index += 1
        return None

    def tokens(self, line: str) -> list[str]:
        out: list[str] = []
        pos, end = 0, len(line)
        while True:
            m = self._quoted.match(line, pos) if self._quoted else None
            if m:
                out.append(self._unescape.sub(r"\1", m.group(1)))
            else:
                m = self._plain.match(line, pos)
                assert m is not None  # the plain token pattern matches the empty token too
                out.append(m.group(0))
            pos = m.end()
            if pos >= end:
                return out
            pos += len(self._delimiter)


T = TypeVar("T")
Opener = Callable[[], AbstractContextManager[BinaryIO]]  # opens one object, decompressed


class Parser(Protocol):
    """What every grammar's parser offers (engines.batch.PARSERS maps a grammar to one)."""

    def parse_objects(self, objects: Iterable[tuple[T, str, Opener]]) -> Iterator[tuple[list[T], Parsed | None]]:
        """A batch's objects in order, as (objects, parsed) for each parsed block, then (objects, None) once those
        objects are read to their end. Several small objects may be parsed together: then the block's rows and
        rejects say which of them each is from (Parsed.objects, Parsed.reject_objects), and line numbers are
        each object's own."""
        ...


Run = tuple[int, int, bytes, int]
"""Whole lines of one object, each ending in a newline: (the object's index, its first line's number, the lines,
how many)."""


def read_whole(stream: BinaryIO, key: str, size: int) -> bytes:
    """The whole stream if it holds at most `size` bytes (read to its end, where a local file checks its
    identity once more), else its first bytes, more than `size`; decompression errors name the object."""
    chunks: list[bytes] = []
    total = 0
    try:
        while total <= size:
            chunk = stream.read(size + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except SourceError:
        raise
    except Exception as e:  # isal/gzip: truncated, bad CRC, not gzip
        raise SourceError(key, f"cannot decompress: {e}") from e
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Replay(io.RawIOBase):
    """A stream that first returns `head` (bytes already read), then the rest of `stream`."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head, self._stream = head, stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._stream.read(size)


def line_counts(texts: list[bytes]) -> list[int]:
    """The newlines in each text: compiled where it is (`bytes.count` looks at a byte at a time)."""
    kernels = native.kernels
    return kernels.line_counts(texts) if kernels is not None else [t.count(b"\n") for t in texts]


class LineBlockParser:
    """A parser that reads an object as blocks of whole lines: memory stays bounded by the block size.

    An object of up to SMALL_OBJECT_BYTES is read whole, and such objects are parsed together, GROUP_BYTES at a
    time (`parse_group`), each keeping what is its own (its line numbers, its usual token count, its header).
    A larger object is parsed block by block by a parser of its own (`parse`): what a parser learns as it
    goes (the usual token count, the header in force) is the object's."""

    def __init__(self, fmt: LogFormat) -> None:
        self.fmt = fmt

    def parse_objects(self, objects: Iterable[tuple[T, str, Opener]]) -> Iterator[tuple[list[T], Parsed | None]]:
        group: list[T] = []
        texts: list[bytes] = []
        size = 0
        for item, key, opened in objects:
            with opened() as stream:
                text = read_whole(stream, key, SMALL_OBJECT_BYTES)
                if len(text) <= min(SMALL_OBJECT_BYTES, sources.MAX_LINE_BYTES):  # whole, and no line too long
                    if group and size + len(text) > GROUP_BYTES:
                        yield from self._group(group, texts)
                        group, texts, size = [], [], 0
                    group.append(item)
                    texts.append(text)
                    size += len(text)
                    continue
                yield from self._group(group, texts)
                group, texts, size = [], [], 0
                parser = type(self)(self.fmt)
                for parsed in parser.parse(line_blocks(cast(BinaryIO, _Replay(text, stream)), key)):
                    yield [item], parsed
            yield [item], None
        yield from self._group(group, texts)

    def _group(self, items: list[T], texts: list[bytes]) -> Iterator[tuple[list[T], Parsed | None]]:
        if not items:
            return
        if any(texts):
            yield items, self.parse_group(texts)
        yield items, None

    def parse_group(self, texts: list[bytes]) -> Parsed:
        """Whole objects' texts, parsed together."""
        ended = [(i, t if t.endswith(b"\n") else t + b"\n") for i, t in enumerate(texts) if t]
        runs = [(i, 1, t, n) for (i, t), n in zip(ended, line_counts([t for _, t in ended]), strict=True)]
        parsed = self.parse_runs(runs)
        parsed.lines, parsed.text_bytes = sum(r[3] for r in runs), sum(map(len, texts))
        return parsed

    def parse_runs(self, runs: list[Run]) -> Parsed:
        raise NotImplementedError

    def parse(self, blocks: Iterable[bytes | LongLine]) -> Iterator[Parsed]:
        """One object's blocks, in order."""
        next_line = 1
        for block in blocks:
            parsed = (
                self.long_line(block, next_line) if isinstance(block, LongLine) else self.parse_block(block, next_line)
            )
            next_line += parsed.lines
            yield parsed

    def long_line(self, line: LongLine, number: int) -> Parsed:
        """A line over the length limit: a reject keeping its first bytes, never parsed."""
        reason = (
            f"a line of {line.length} bytes, longer than the limit of {sources.MAX_LINE_BYTES} "
            f"(SERVICELOGS_MAX_LINE_BYTES); its first {len(line.head)} bytes are kept"
        )
        raw = line.head.decode("utf-8", "backslashreplace")
        return Parsed(rows_schema(self.fmt).empty_table(), 1, line.length, [number], [raw], [reason])

    def parse_block(self, block: bytes, first_line: int) -> Parsed:
        """Parse a block of whole lines; `first_line` is the 1-based number of its first line."""
        raise NotImplementedError


class DelimitedParser(LineBlockParser):
    """Parses one object's lines for one format with a Delimited grammar."""

    def __init__(self, fmt: LogFormat) -> None:
        self.fmt = fmt
        if not isinstance(fmt.grammar, Delimited):
            raise TypeError(f"{fmt.name}: a DelimitedParser parses a Delimited grammar, not {fmt.grammar!r}")
        self.grammar = fmt.grammar
        self.declared = self.grammar.piece_count
        self.tokenizer = LineTokenizer(self.grammar)
        self.quoted_positions = _quoted_pieces(self.grammar)
        self.suspect_positions = sorted({p for q in self.quoted_positions for p in (q, q + 1)})
        self.width: int | None = None  # the object's usual token count, learnt from its first lines
        # Arrow's CSV converter turns the most common null token into nulls as it reads; tokens with
        # another null token are handled in _typed.
        token_nulls = [token_null(t) for t in self.grammar.tokens]
        common = Counter(n for n in token_nulls if n is not None).most_common(1)
        self.csv_null: str | None = common[0][0] if common else None
        self.token_nulls = token_nulls
        self.tokenizer_types: dict[int, pa.DataType] = {}  # piece position → type the reader gives it
        position = 0
        for token in self.grammar.tokens:
            typed = tokenizer_type(token, self.csv_null)
            if typed is not None:
                self.tokenizer_types[position] = typed
            position += token.pieces
        self.native = NativeTokenizer.for_grammar(self.grammar, self.csv_null, self.tokenizer_types)

    # -- block level ---------------------------------------------------------------------------------

    def parse_block(self, block: bytes, first_line: int, n_lines: int | None = None) -> Parsed:
        """`n_lines`: the block's line count, if the caller counted them already."""
        if self.width is None:
            self.width = self._usual_width(block)
        parsed = self._parse_lines(block, first_line, n_lines, self.width)
        assert parsed is not None  # the exact path vouches for any line
        return parsed

    def _parse_lines(
        self, block: bytes, first_line: int, n_lines: int | None, width: int, *, exact: bool = True
    ) -> Parsed | None:
        """The block's rows and rejects; None if the bulk tokenizer cannot vouch for the block and not `exact`.
        `n_lines` None: counted here (the compiled tokenizer counts them as it scans: a pass of `bytes.count`
        over the block was 5 % of a worker's CPU on classic load balancer lines)."""
        if self.native is not None:
            parts, slow_lines, counted = self.native.tokens(block, first_line, width)
            n_lines = counted if n_lines is None else n_lines
        else:
            if n_lines is None:
                n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            fast = self._fast_tokens(block, n_lines, first_line, width)
            if fast is None and not exact:
                return None
            parts, slow_lines = fast if fast is not None else ([], list(range(n_lines)))
        parsed = self._finish(block, first_line, parts, slow_lines)
        parsed.lines, parsed.text_bytes = n_lines, len(block)
        return parsed

    def parse_runs(self, runs: list[Run]) -> Parsed:
        """Runs of lines of several objects: those of one usual token count are tokenized and typed together. Runs
        the bulk tokenizer cannot vouch for together (one holds invalid UTF-8, say) are parsed one by one, so
        an odd object takes the exact path alone, as it would on its own."""
        by_width: dict[int, list[Run]] = {}
        for run, width in zip(runs, self._usual_widths([run[2] for run in runs]), strict=True):
            by_width.setdefault(width, []).append(run)
        outs: list[Parsed | None] = []
        for width, members in by_width.items():
            together = self._parse_together(members, width, exact=False) if len(members) > 1 else None
            if together is not None:
                outs.append(together)
                continue
            outs += [self._parse_together([run], width) for run in members]
        return merged([p for p in outs if p is not None])

    def _parse_together(self, runs: list[Run], width: int, *, exact: bool = True) -> Parsed | None:
        """The runs as one block; rows and rejects get their object and their number within it back."""
        block = b"".join(run[2] for run in runs) if len(runs) > 1 else runs[0][2]
        counts = np.fromiter((run[3] for run in runs), np.int64, len(runs))
        parsed = self._parse_lines(block, 1, int(counts.sum()), width, exact=exact)
        if parsed is None:
            return None
        starts = np.cumsum(counts) - counts  # each run's first line, 0-based, in the block
        objects = np.fromiter((run[0] for run in runs), np.int64, len(runs))
        firsts = np.fromiter((run[1] for run in runs), np.int64, len(runs))

        def located(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            at = np.searchsorted(starts, numbers - 1, side="right") - 1
            return objects[at], numbers - 1 - starts[at] + firsts[at]

        position = parsed.rows.schema.get_field_index("line_number")
        row_objects, numbers = located(parsed.rows.column(position).to_numpy())
        parsed.rows = parsed.rows.set_column(position, "line_number", pa.array(numbers, pa.int64()))
        parsed.objects = row_objects
        reject_objects, reject_numbers = located(np.asarray(parsed.reject_lines, np.int64))
        parsed.reject_objects, parsed.reject_lines = reject_objects.tolist(), reject_numbers.tolist()
        return parsed

    def _usual_width(self, block: bytes) -> int:
        # Each sampled line costs ~80 µs in the exact tokenizer, once per object: with small objects (ALB
        # writes many of ~100 KB) 20 lines were 1.6 ms an object. A wrong guess costs speed, not rows.
        counts: Counter[int] = Counter()
        for raw in block[: 1 << 16].split(b"\n")[:WIDTH_SAMPLE_LINES]:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            n = len(self.tokenizer.tokens(line)) if line else 0
            if n >= self.grammar.min_tokens:
                counts[n] += 1
        return counts.most_common(1)[0][0] if counts else self.declared

    def _usual_widths(self, texts: list[bytes]) -> list[int]:
        """`_usual_width` of each text, from fewer lines (GROUP_SAMPLE_LINES), their token counts told by Arrow's
        tokenizer for all texts at once (where the exact tokenizer would cost ~80 µs a line)."""
        heads = [t[: 1 << 16].split(b"\n", GROUP_SAMPLE_LINES)[:GROUP_SAMPLE_LINES] for t in texts]
        lines = list(itertools.chain.from_iterable(heads))
        counts = self._token_counts(lines)
        if counts is None:
            return [self._usual_width(t) for t in texts]
        sizes = np.fromiter(map(len, heads), np.int64, len(heads))
        starts = np.cumsum(sizes) - sizes
        valid = counts >= self.grammar.min_tokens
        most = np.maximum.reduceat(np.where(valid, counts, -1), starts)
        least = np.minimum.reduceat(np.where(valid, counts, 1 << 30), starts)
        widths = np.where(most < 0, self.declared, most).tolist()
        for i in np.flatnonzero((most >= 0) & (most != least)).tolist():  # lines of several counts: the most common
            sample = counts[starts[i] : starts[i] + sizes[i]]
            widths[i] = Counter(sample[sample >= self.grammar.min_tokens].tolist()).most_common(1)[0][0]
        return widths

    def _token_counts(self, lines: list[bytes]) -> np.ndarray | None:
        """Each line's token count (0 for an empty one); None if Arrow's lines are not these lines (a stray CR)."""
        if self.native is not None:
            return self.native.token_counts(lines, self.declared)
        invalid: list[tuple[int, int]] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            invalid.append((row.number, row.actual_columns))
            return "skip"

        names = [f"t{i}" for i in range(self.declared)]
        sample = b"\n".join(lines) + b"\n"
        if not is_utf8(sample):  # Arrow hands a skipped row's text as str: what is not UTF-8 is replaced (rare)
            sample = b"\n".join(line.decode("utf-8", "replace").encode() for line in lines) + b"\n"
        try:
            table = pacsv.read_csv(
                pa.py_buffer(sample),
                read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=ARROW_BLOCK_BYTES),
                parse_options=self._parse_options(on_invalid),
                convert_options=pacsv.ConvertOptions(  # the counts are all it takes: one column is built
                    column_types={names[0]: pa.string()}, include_columns=names[:1], null_values=[], check_utf8=False
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if table.num_rows + len(invalid) != len(lines) or any(n is None or n > len(lines) for n, _ in invalid):
            return None
        counts = np.full(len(lines), self.declared, dtype=np.int64)
        for number, actual in invalid:
            counts[number - 1] = actual
        lengths = np.fromiter(map(len, lines), np.int64, len(lines))
        counts[lengths == 0] = 0
        for i in np.flatnonzero(lengths == 1).tolist():
            if lines[i] == b"\r":
                counts[i] = 0
        return counts

    def _parse_options(self, on_invalid: Callable[[pacsv.InvalidRow], str]) -> pacsv.ParseOptions:
        return pacsv.ParseOptions(
            delimiter=self.grammar.delimiter,
            quote_char=self.grammar.quote or False,
            double_quote=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
            invalid_row_handler=on_invalid,
        )

    def _read_tokens(self, data: bytes, width: int) -> tuple[pa.Table, list[tuple[str, int]]] | None:
        """Arrow's CSV tokenizer over `data`, expecting `width` tokens a line. Returns the token table and
        the (text, token count) of the rows it skipped; None if the data is not valid UTF-8.

        Number and timestamp columns are typed by the reader itself; if it refuses a value, the data is read
        again as text, where the typing kernels find and name the value."""
        if not is_utf8(data):
            return None
        typed = self._read_tokens_as(data, width, self.tokenizer_types) if self.tokenizer_types else None
        return typed if typed is not None else self._read_tokens_as(data, width, {})

    def _read_tokens_as(
        self, data: bytes, width: int, types: dict[int, pa.DataType]
    ) -> tuple[pa.Table, list[tuple[str, int]]] | None:
        names = [f"t{i}" for i in range(width)]
        invalid: list[tuple[str, int]] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            invalid.append((row.text, row.actual_columns))
            return "skip"

        try:
            table = pacsv.read_csv(
                pa.py_buffer(data),
                read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=ARROW_BLOCK_BYTES),
                parse_options=self._parse_options(on_invalid),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: types.get(i, pa.string()) for i, name in enumerate(names)},
                    null_values=[self.csv_null] if self.csv_null is not None else [],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                    check_utf8=False,  # checked above, for the whole buffer at once
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return table, invalid

    def _fast_tokens(
        self, block: bytes, n_lines: int, first_line: int, width: int
    ) -> tuple[list[tuple[pa.Table, np.ndarray]], list[int]] | None:
        """Tokenize the block in bulk. Returns token tables with the 1-based line numbers of their rows, and
        the 0-based offsets of the lines left to the exact path; None when the block does not map one-to-one
        onto lines (then every line takes the exact path). Arrow's CSV reader, where the compiled tokenizer is
        missing (NativeTokenizer.tokens otherwise)."""
        first = self._read_tokens(block, width)
        if first is None:
            return None
        table, invalid = first

        # Find where the skipped rows were; a row the tokenizer ran over several lines covers them all.
        skipped = np.zeros(n_lines, dtype=bool)
        located: list[tuple[int, int, str, int]] = []  # (line offset, lines spanned, text, token count)
        pos, line_idx = 0, 0
        for text, token_count in invalid:
            raw = text.encode("utf-8")
            at = _find_line(block, raw, pos)
            if at < 0:
                return None
            line_idx += block.count(b"\n", pos, at)
            span = raw.count(b"\n") + 1
            if line_idx + span > n_lines:
                return None
            skipped[line_idx : line_idx + span] = True
            located.append((line_idx, span, text, token_count))
            pos = at + len(raw)
            line_idx += span - 1
        if table.num_rows + int(skipped.sum()) != n_lines:
            return None
        parts = [(table, np.flatnonzero(~skipped) + first_line)]

        # Lines of another generation than the block's usual one: tokenize each such group in bulk too.
        slow: list[int] = []
        by_width: dict[int, list[tuple[int, str]]] = {}
        for offset, span, text, token_count in located:
            if span == 1 and token_count >= self.grammar.min_tokens:
                by_width.setdefault(token_count, []).append((offset, text))
            else:
                slow.extend(range(offset, offset + span))
        for other, rows in by_width.items():
            again = self._read_tokens("\n".join(text for _, text in rows).encode(), other) if len(rows) > 4 else None
            if again is None or again[1] or again[0].num_rows != len(rows):
                slow.extend(offset for offset, _ in rows)
            else:
                parts.append((again[0], np.array([offset for offset, _ in rows]) + first_line))

        # A quote inside a token means the tokenizer met a quote it does not understand (an escaped one, or
        # a raw one that closed the token early and left its tail, quote included, in the next token);
        # an empty first token, an empty line. Those lines take the exact path.
        checked = []
        for part, numbers in parts:
            if not part.num_rows:
                continue
            first = part.column(0)  # typed by the reader, it cannot hold an empty line: that fails the typing
            suspect = pc.equal(first, "") if pa.types.is_string(first.type) else None
            for i in self.suspect_positions:
                if self.grammar.quote and i < part.num_columns and _holds(part.column(i), self.grammar.quote):
                    hit = pc.match_substring(part.column(i), self.grammar.quote)
                    suspect = hit if suspect is None else pc.or_kleene(suspect, hit)
            if suspect is None:
                checked.append((part, numbers))
                continue
            suspect = pc.fill_null(suspect, False)
            if pc.any(suspect).as_py():
                mask = suspect.to_numpy(zero_copy_only=False)
                slow.extend((numbers[mask] - first_line).tolist())
                part, numbers = part.filter(pc.invert(suspect)), numbers[~mask]
            checked.append((part, numbers))
        return checked, sorted(slow)

    # -- from tokens to typed rows ---------------------------------------------------------------------

    def _finish(
        self, block: bytes, first_line: int, token_parts: list[tuple[pa.Table, np.ndarray]], slow: list[int]
    ) -> Parsed:
        lines_of_block: list[bytes] | None = None
        reject_lines: list[int] = []
        reject_raw: list[str] = []
        reject_reasons: list[str] = []

        def raw_line(offset: int) -> bytes:
            nonlocal lines_of_block
            if lines_of_block is None:
                lines_of_block = block.split(b"\n")
            return lines_of_block[offset].rstrip(b"\r")

        parts: list[tuple[list[pa.Array], pa.Array, np.ndarray]] = []
        generations: Counter[str] = Counter()
        for tokens, line_numbers in token_parts:
            generations[self._generation(tokens.num_columns)] += tokens.num_rows
            parts.append(self._token_columns(tokens.columns, tokens.num_rows, line_numbers))
        if slow:
            rows: list[list[str]] = []
            numbers: list[int] = []
            for offset in slow:
                raw = raw_line(offset)
                number = first_line + offset
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    reject_lines.append(number)
                    reject_raw.append(raw.decode("utf-8", "backslashreplace"))
                    reject_reasons.append(f"invalid UTF-8 at byte {e.start}")
                    continue
                row = self._line_tokens(line)
                reason = self._reason_for_shape(line, len(row))
                if reason:
                    reject_lines.append(number)
                    reject_raw.append(line)
                    reject_reasons.append(reason)
                    continue
                rows.append(row)
                numbers.append(number)
                generations[self._generation(len(row))] += 1
            if rows:
                parts.append(self._rows_to_columns(rows, np.asarray(numbers, dtype=np.int64)))

        if not parts:
            empty = self._typed_empty()
            return Parsed(empty, 0, 0, reject_lines, reject_raw, reject_reasons, 0, generations)

        typed_tables = []
        extra_rows = 0
        for token_columns, extras, line_numbers in parts:
            table, bad = self._typed(token_columns, extras, line_numbers)
            for row_idx, reason in bad.items():
                number = int(line_numbers[row_idx])
                text = raw_line(number - first_line).decode("utf-8", "backslashreplace")
                reject_lines.append(number)
                reject_raw.append(text)
                reject_reasons.append(self.fmt.explain_foreign(text) or self._located(text, reason))
            extra_rows += table.num_rows - table.column("extra_fields").null_count
            typed_tables.append(table)
        rows_table = pa.concat_tables(typed_tables) if len(typed_tables) > 1 else typed_tables[0]
        if len(typed_tables) > 1:
            rows_table = rows_table.sort_by("line_number")
        return Parsed(rows_table, 0, 0, reject_lines, reject_raw, reject_reasons, extra_rows, generations)

    @cache  # noqa: B019 - one parser per object, a handful of token counts
    def _generation(self, token_count: int) -> str:
        if token_count > self.declared:
            return f"{self.grammar.generations[-1].name}+{token_count - self.declared}"
        return self.grammar.generation_of(token_count) or f"{self.grammar.fields_in(token_count)} fields"

    def _line_tokens(self, line: str) -> list[str]:
        """The exact pieces of one line: the grammar's line regex when it matches, else the tokenizer."""
        rx = self.grammar.compiled_line_regex
        m = rx.fullmatch(line) if rx is not None else None
        if rx is None or m is None:
            return self.tokenizer.tokens(line)
        extra_group = rx.groupindex.get("extra")
        pieces: list[str] = []
        for i in range(1, rx.groups + 1):
            value = m.group(i)
            if i == extra_group:
                continue
            if value is None:  # an older generation: the line ends here
                break
            pieces.append(value)
        q = self.grammar.quote
        for i in self.quoted_positions:  # the regex may take a quoted token with its quotes
            if i < len(pieces) and len(pieces[i]) >= 2 and pieces[i][0] == q == pieces[i][-1]:
                pieces[i] = pieces[i][1:-1]
        extra = m.group(extra_group) if extra_group else None
        if extra:
            d = self.grammar.delimiter
            pieces += self.tokenizer.tokens(extra[len(d) :] if extra.startswith(d) else extra)
        return pieces

    def _reason_for_shape(self, line: str, n: int) -> str | None:
        """Why a line of `n` pieces cannot be a row at all, judged from its shape alone; None if it may be one."""
        if not line.strip():
            return "empty line"
        foreign = self.fmt.explain_foreign(line)
        if foreign:
            return foreign
        too_few = self._too_few(n)
        return self._located(line, too_few) if too_few else None

    def _located(self, line: str, reason: str) -> str:
        """The reason, led by where the line's shape is off, if it is: a doubled delimiter or a quote glued to
        the next token shifts every field after it, and the value named in `reason` is only the symptom."""
        fault = self.tokenizer.shape_fault(line, self._piece_names)
        return f"{fault}: {reason}" if fault else reason

    @cached_property
    def _piece_names(self) -> list[tuple[int, str]]:
        """Per piece position, the 1-based number and the name of its token, for messages."""
        return [(i, t.name) for i, t in enumerate(self.grammar.tokens, 1) for _ in range(t.pieces)]

    def _too_few(self, n: int) -> str | None:
        """Why `n` pieces are too few for a row, if they are."""
        g = self.grammar
        if n < g.min_tokens:
            return (
                f"{g.fields_in(n)} fields; a line of {self.fmt.title} has at least {g.fields_in(g.min_tokens)} "
                f"(an unbalanced quote or a truncated line?)"
            )
        return None

    def _rows_to_columns(
        self, rows: list[list[str]], numbers: np.ndarray
    ) -> tuple[list[pa.Array], pa.Array, np.ndarray]:
        n_cols = min(max(len(r) for r in rows), self.declared)
        cols = [
            pa.array([r[i] if i < len(r) and r[i] != self.csv_null else None for r in rows], pa.string())
            for i in range(n_cols)
        ]
        extras = pa.array([r[self.declared :] or None for r in rows], pa.list_(pa.string()))
        cols += [pa.nulls(len(rows), pa.string())] * (self.declared - n_cols)
        return cols, extras, numbers

    def _token_columns(
        self, cols: list[pa.ChunkedArray], n: int, numbers: np.ndarray
    ) -> tuple[list[pa.Array | pa.ChunkedArray], pa.Array, np.ndarray]:
        """Token columns as Arrow chunked them (combining costs a copy of every string), padded with nulls
        to the declared count, and the tokens past it as one list per row."""
        declared = cols[: self.declared] + [pa.nulls(n, pa.string())] * max(0, self.declared - len(cols))
        if len(cols) > self.declared:
            tail = [c.combine_chunks() for c in cols[self.declared :]]
            k = len(tail)
            values = pa.concat_arrays(tail).take(pa.array((np.arange(k)[None, :] * n + np.arange(n)[:, None]).ravel()))
            extras: pa.Array = pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), values)
        else:
            extras = pa.nulls(n, pa.list_(pa.string()))
        return declared, extras, numbers

    def _typed_empty(self) -> pa.Table:
        return rows_schema(self.fmt).empty_table()

    def _typed(
        self, token_columns: list[pa.Array], extras: pa.Array, numbers: np.ndarray
    ) -> tuple[pa.Table, dict[int, str]]:
        """Type every field; rows with a value their field does not allow become rejects."""
        bad: dict[int, str] = {}
        arrays: list[pa.Array] = []
        for token, null, raw in zip(
            self.grammar.tokens, self.token_nulls, _join_pieces(self.grammar, token_columns), strict=True
        ):
            if null not in (None, self.csv_null):
                raw = nulled(raw, null)
            if token.split is None:
                arrays.extend(typed_field(f, raw, bad) for f in token.fields)
                continue
            for f, values in zip(token.fields, split_token(token, raw), strict=True):
                arrays.append(typed_field(f, nulled(values, f.null), bad))
        arrays += [extras, pa.array(numbers, pa.int64())]
        names = [f.name for f in self.fmt.fields] + ["extra_fields", "line_number"]
        table = pa.Table.from_arrays(arrays, names=names)
        if bad:
            keep = np.ones(table.num_rows, dtype=bool)
            keep[list(bad)] = False
            table = table.filter(pa.array(keep))
        return table, bad


class NativeTokenizer:
    """The bulk tokenizer of `_delimited.c`, for a grammar of one-byte ASCII delimiter and quote: a line is a row
    only if it is plainly well formed, every other line goes to the exact path by itself (Arrow's reader can only
    say a whole block is off). Number and ISO timestamp columns are typed as they are read; a value it does not
    take in its plain spelling has the block read again as text, where the kernels judge and name the value."""

    _KINDS: ClassVar[dict[pa.DataType, str]] = {
        pa.int32(): "i",
        pa.int64(): "l",
        pa.float64(): "d",
        pa.timestamp("us", tz="UTC"): "t",
    }
    OTHER_WIDTH_BULK = 5  # lines of another token count tokenized in bulk from this many on; fewer: the exact path

    def __init__(self, grammar: Delimited, null: str | None, types: dict[int, pa.DataType]) -> None:
        self.grammar = grammar
        self._delimiter = ord(grammar.delimiter)
        self._quote = ord(grammar.quote) if grammar.quote else -1
        self._null = null.encode() if null is not None else None
        self._types = types
        assert native.kernels is not None
        self._kernels = native.kernels

    @classmethod
    def for_grammar(cls, grammar: Delimited, null: str | None, types: dict[int, pa.DataType]) -> NativeTokenizer | None:
        """None where the compiled tokenizer is missing (an install without a C compiler) or cannot serve."""
        one_byte = all(len(c) == 1 and c.isascii() for c in (grammar.delimiter, grammar.quote or '"'))
        if native.kernels is None or not one_byte or any(t not in cls._KINDS for t in types.values()):
            return None
        return cls(grammar, null, types)

    def tokens(
        self, block: bytes, first_line: int, width: int
    ) -> tuple[list[tuple[pa.Table, np.ndarray]], list[int], int]:
        """As DelimitedParser._fast_tokens, and the block's line count; every line maps onto itself, so the answer
        is never None."""
        table, offsets, others, slow = self._read(block, width)
        n_lines = table.num_rows + len(others) + len(slow)  # each line is a row, of another count, or the exact path's
        parts = [(table, offsets + first_line)] if table.num_rows else []
        by_width: dict[int, list[int]] = {}
        for offset, count in others:
            if count >= self.grammar.min_tokens:
                by_width.setdefault(count, []).append(offset)
            else:
                slow.append(offset)
        if by_width:
            lines = block.split(b"\n")
            for count, members in by_width.items():
                if len(members) < self.OTHER_WIDTH_BULK:
                    slow += members
                    continue
                at = np.asarray(members, np.int64)
                again, rows, other_counts, odd = self._read(b"\n".join(lines[i] for i in members), count)
                assert not other_counts  # the same lines, the same count
                parts.append((again, at[rows] + first_line))
                slow += at[odd].tolist()
        return parts, sorted(slow), n_lines

    def token_counts(self, lines: list[bytes], declared: int) -> np.ndarray:
        """Each line's token count; 0 for an empty line or one the bulk tokenizer leaves to the exact path."""
        counts = np.zeros(len(lines), np.int64)
        if not lines:
            return counts
        result = self._kernels.tokenize(
            b"\n".join(lines), self._delimiter, self._quote, declared, None, b"s" * declared
        )
        chunks, others, _ = result
        for _, _, row_lines in chunks:
            counts[np.frombuffer(row_lines, np.int64)] = declared
        for offset, count in others:
            counts[offset] = count
        return counts

    def _read(self, block: bytes, width: int) -> tuple[pa.Table, np.ndarray, list[tuple[int, int]], list[int]]:
        """The rows of `width` tokens as a table (typed where the grammar allows) with their 0-based line offsets,
        the (offset, token count) of clean lines of another count, the offsets of the lines left to the exact
        path."""
        types = [self._types.get(i, pa.string()) for i in range(width)]
        kinds = "".join(self._KINDS.get(t, "s") for t in types).encode()
        result = self._kernels.tokenize(block, self._delimiter, self._quote, width, self._null, kinds)
        if result is None:  # a typed value in a spelling the tokenizer does not take: the kernels judge it
            types = [pa.string()] * width
            result = self._kernels.tokenize(block, self._delimiter, self._quote, width, self._null, b"s" * width)
        chunks, others, slow = result
        columns: list[list[pa.Array]] = [[] for _ in range(width)]
        for rows, buffers, _ in chunks:
            for column, kind, (validity, nulls, values, data) in zip(columns, types, buffers, strict=True):
                arrays = [None if validity is None else pa.py_buffer(validity), pa.py_buffer(values)]
                if data is not None:
                    arrays.append(pa.py_buffer(data))
                column.append(pa.Array.from_buffers(kind, rows, arrays, nulls))
        names = [f"t{i}" for i in range(width)]
        table = pa.Table.from_arrays([pa.chunked_array(c, t) for c, t in zip(columns, types, strict=True)], names)
        offsets = np.concatenate([np.frombuffer(c[2], np.int64) for c in chunks]) if chunks else np.zeros(0, np.int64)
        return table, offsets, others, slow


def merged(parts: list[Parsed]) -> Parsed:
    """Parts of several objects' runs as one Parsed, each object's rows together and in line order (rows carry
    `objects`); the caller sets `lines` and `text_bytes`."""
    if len(parts) == 1:
        return parts[0]
    tables = [p.rows for p in parts if p.rows.num_rows] or [parts[0].rows]
    objects = [p.objects for p in parts if p.objects is not None]
    out = Parsed(pa.concat_tables(tables), objects=np.concatenate(objects) if objects else np.zeros(0, np.int64))
    out.reject_objects = []
    for p in parts:
        out.reject_lines += p.reject_lines
        out.reject_raw += p.reject_raw
        out.reject_reasons += p.reject_reasons
        out.reject_objects += p.reject_objects or []
        out.extra_rows += p.extra_rows
        out.generations.update(p.generations)
        out.header_lines += p.header_lines
    # Each part's rows are in order of object and line; an object in one part only (the usual case: one width,
    # one header) keeps its rows together and in order without a copy of the rows into one order.
    row_objects = out.objects
    assert row_objects is not None
    in_parts = [np.unique(p.objects) for p in parts if p.objects is not None and len(p.objects)]
    if in_parts and len(np.unique(np.concatenate(in_parts))) < sum(map(len, in_parts)):
        order = np.lexsort((out.rows.column("line_number").to_numpy(), row_objects))
        out.rows, out.objects = out.rows.take(pa.array(order)), row_objects[order]
    return out


def rows_schema(fmt: LogFormat) -> pa.Schema:
    """The columns a parser yields: the format's fields, extra_fields, line_number."""
    fields = [pa.field(f.name, arrow_type(f.type)) for f in fmt.fields]
    return pa.schema([*fields, pa.field("extra_fields", pa.list_(pa.string())), pa.field("line_number", pa.int64())])


# -- kernels, one per split kind and per type: shared by every format -------------------------------------


def _holds(column: pa.ChunkedArray, char: str) -> bool:
    """Whether some value of a string column holds the ASCII `char`: a scan of its bytes, a third of the cost of
    a kernel that answers value by value (needed only when the answer is yes)."""
    if not pa.types.is_string(column.type):
        return False
    for chunk in column.chunks:
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4)
        data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8) if chunk.buffers()[2] is not None else None
        if data is not None and (data[offsets[0] : offsets[-1]] == ord(char)).any():
            return True
    return False


def is_utf8(data: bytes, start: int = 0, end: int | None = None) -> bool:
    """Whether data[start:end] is valid UTF-8, read in place. Logs are nearly all ASCII, which numpy tells at
    memory speed (~0.1 ms per 8 MB, where Arrow's full validation of one 8 MB string takes ~15 ms); else
    CPython's strict decoder, which refuses what Arrow's does (overlong forms, surrogates, code points past
    U+10FFFF)."""
    end = len(data) if end is None else end
    if end <= start or int(np.frombuffer(data, np.uint8, end - start, start).max()) < 0x80:
        return True
    try:
        codecs.utf_8_decode(memoryview(data)[start:end], "strict", True)
    except UnicodeDecodeError:
        return False
    return True


def _find_line(block: bytes, text: bytes, start: int) -> int:
    """Offset of the first whole line(s) equal to `text` at or after `start` (a CR may end a line), or -1."""
    end = len(block)
    at = block.find(text, start)
    while at >= 0:
        after = at + len(text)
        if (at == 0 or block[at - 1] == 10) and (after == end or block[after] in (10, 13)):
            return at
        at = block.find(text, at + 1)
    return -1


def _quoted_pieces(grammar: Delimited) -> list[int]:
    """Piece positions of the quoted tokens."""
    out, at = [], 0
    for t in grammar.tokens:
        if t.quoted:
            out.append(at)
        at += t.pieces
    return out


def _join_pieces(grammar: Delimited, pieces: list[pa.Array]) -> list[pa.Array]:
    """One column per token: a token spanning several pieces gets them back, joined by the delimiter."""
    if len(pieces) == len(grammar.tokens):
        return pieces
    out, at = [], 0
    for t in grammar.tokens:
        if t.pieces == 1:
            out.append(pieces[at])
        else:
            out.append(pc.binary_join_element_wise(*pieces[at : at + t.pieces], grammar.delimiter))
        at += t.pieces
    return out
