"""Header-defined delimited lines → typed Arrow tables, in bulk.

For a `HeaderDelimited` grammar the object itself says the token order: a header line names the tokens of
the data lines after it. This module finds the header and comment lines of a block with one RE2 kernel
over the block's lines, cuts the block into runs of data lines that share a header, and hands each run to
the `Delimited` machinery of `arrow_parse` (Arrow's CSV tokenizer, the exact slow path, typed kernels),
built once per distinct header. Each run's columns are then placed in the format's union schema: a field
the header does not name is null.

Header and comment lines are counted in `Parsed.lines` and `Parsed.header_lines`; every other line is a
row or a reject.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servicelogs.engines.arrow_kernels import nulled, split_token, token_null, typed_field
from servicelogs.engines.arrow_parse import DelimitedParser, LineBlockParser, Parsed, Run, merged, rows_schema
from servicelogs.render.arrow import arrow_type
from servicelogs.spec import Delimited, Generation, HeaderDelimited, Join, LogFormat, Token

SPARSE_HEADERS = 1500
"""Objects of more lines than this on average have their header lines searched for (`_marked_lines`: ~50 us a
header line, half of it the kernel call that finds it) rather than matched on every line (`_marked_lines_of`:
~0.05 us a line, one kernel call), which pays where header lines are dense. `python bench/header_search.py`, on
~8 MB of objects each with its header lines (search against match, ms): with one header line each, of 325 lines
8.6 / 3.1, of 1,103 lines 2.7 / 2.1, of 3,410 lines 1.7 / 2.5; with two each, of 235 lines 6.1 / 1.6, of 1,078
lines 1.9 / 1.1. Objects larger than arrow_parse.SMALL_OBJECT_BYTES go block by block, a search a
block."""

JUDGED_LINES, JUDGED_LINE_BYTES = 1024, 4096  # a parser's memo of judged lines: at most ~4 MB of them


class HeaderDelimitedParser(LineBlockParser):
    """Parses objects' lines for one format with a HeaderDelimited grammar: whole small objects together
    (`parse_group`), a large one block by block by an instance of its own (`parse_block`: the header in force
    carries from one block to the next)."""

    def __init__(self, fmt: LogFormat) -> None:
        assert isinstance(fmt.grammar, HeaderDelimited)
        self.fmt = fmt
        self.grammar: HeaderDelimited = fmt.grammar
        self._layouts: dict[tuple[str, ...] | None, _Layout] = {}
        self._current: tuple[str, ...] | None = None  # names of the header in force; None: the default order
        # One tuple per distinct header: every object's is kept to the end of the run (Parsed.headers), and a
        # tuple of ~30 names of its own would be ~1.5 KB an object.
        self._headers: dict[tuple[str, ...], tuple[str, ...]] = {}
        # Every object of a flow log or distribution repeats its header lines: each distinct one judged once.
        self._judged: dict[bytes, tuple[str, ...] | Literal[False] | None] = {}

    def parse_group(self, texts: list[bytes]) -> Parsed:
        """Whole objects: one scan for the header lines of all, then the runs of data lines under one header
        (or the default order) parsed together, whichever objects they are from. Each object starts with
        the default order: a header applies to the lines after it in its own object only."""
        ends = [t if not t or t.endswith(b"\n") else t + b"\n" for t in texts]
        text = b"".join(ends)
        newlines = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10)  # one pass finds lines and objects
        n_lines = len(newlines)  # every text ends with its newline
        starts = _starts_after(newlines, n_lines, len(text))
        counts = np.diff(np.searchsorted(newlines, np.cumsum([len(t) for t in ends])), prepend=0).tolist()
        sparse = n_lines > SPARSE_HEADERS * len(texts)
        marks = self._marked_lines(text, newlines) if sparse else self._marked_lines_of(text, starts)
        runs: dict[tuple[str, ...] | None, list[Run]] = {}

        def add_run(names: tuple[str, ...] | None, obj: int, first_line: int, start: int, end: int) -> None:
            runs.setdefault(names, []).append((obj, first_line, text[starts[start] : starts[end]], end - start))

        header_lines = 0
        m, first = 0, 0
        headers: dict[int, tuple[str, ...] | None] = {}
        for obj, count in enumerate(counts):
            end, run_start, names = first + count, first, None
            own = m
            while m < len(marks) and marks[m][0] < end:
                idx, marked = marks[m]
                if idx > run_start:
                    add_run(names, obj, run_start - first + 1, run_start, idx)
                header_lines += 1
                names = marked if marked is not None else names
                run_start, m = idx + 1, m + 1
            if run_start < end:
                add_run(names, obj, run_start - first + 1, run_start, end)
            headers[obj] = _first_header(marks[own:m], first)
            first = end
        parts = [self._parse_runs_of(names, of_layout) for names, of_layout in runs.items()]
        parsed = merged(parts) if parts else Parsed(_union_schema(self.fmt).empty_table(), objects=np.zeros(0, int))
        parsed.lines, parsed.text_bytes, parsed.header_lines = n_lines, sum(map(len, texts)), header_lines
        parsed.headers = headers
        return parsed

    def _parse_runs_of(self, names: tuple[str, ...] | None, runs: list[Run]) -> Parsed:
        layout = self._layout(names)
        if layout.reject_reason:
            out = _Collector(self.fmt)
            objects: list[int] = []
            for obj, first_line, data, _ in runs:
                before = len(out.reject_lines)
                out.reject_all(data, first_line, layout.reject_reason)
                objects += [obj] * (len(out.reject_lines) - before)
            parsed = out.result()
            parsed.objects, parsed.reject_objects = np.zeros(0, np.int64), objects
            return parsed
        assert layout.parser is not None
        parsed = layout.parser.parse_runs(runs)
        if layout.generation is not None:
            parsed.generations = Counter({layout.generation: parsed.rows.num_rows} if parsed.rows.num_rows else {})
        return parsed

    def _layout(self, names: tuple[str, ...] | None) -> _Layout:
        layout = self._layouts.get(names)
        if layout is None:
            layout = self._layouts[names] = _Layout(self.fmt, names)
        return layout

    def parse_block(self, block: bytes, first_line: int) -> Parsed:
        marks = self._marked_lines(block)
        out = _Collector(self.fmt)
        if not marks:  # most blocks: one run, whose lines its tokenizer counts as it reads them
            n_lines = self._parse_run(block, first_line, out)
        else:
            newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)  # one pass: the count and starts
            n_lines = len(newlines) + (0 if block.endswith(b"\n") else 1)
            starts = _starts_after(newlines, n_lines, len(block))
            run_start = 0
            for idx, names in marks:
                if idx > run_start:
                    self._parse_run(block[starts[run_start] : starts[idx]], first_line + run_start, out)
                out.header_lines += 1
                if names is not None:
                    self._current = names
                run_start = idx + 1
            if run_start < n_lines:
                self._parse_run(block[starts[run_start] :], first_line + run_start, out)
        parsed = out.result()
        parsed.lines, parsed.text_bytes = n_lines, len(block)
        if first_line == 1:
            parsed.headers = {0: _first_header(marks, 0)}
        return parsed

    def _marked_lines(
        self, block: bytes, newlines: np.ndarray | None = None
    ) -> list[tuple[int, tuple[str, ...] | None]]:
        """(line offset, header names or None for a comment) of the block's header and comment lines; `newlines`:
        where the block's newlines are, if the caller found them (else the lines before each candidate are
        counted).

        RE2 (an Arrow kernel) finds candidate lines across the whole block, so a block of data lines costs
        one scan; Python `re` then judges each candidate. The search looks for the newline before a candidate
        line, which RE2 finds as fast as memchr (a search for a line start, `^`, runs ~15x slower), so the
        first line is judged on its own. The patterns run in both engines: declarations keep to their common
        subset."""
        text = block.replace(b"\r\n", b"\n") if b"\r" in block else block
        if text is not block:
            newlines = None  # offsets into the block, not into its text without CRs
        patterns = [self.grammar.header] + ([self.grammar.comment] if self.grammar.comment else [])
        after_newline = "(?m)\n(?:" + "|".join(f"(?:{p})" for p in patterns) + ")"
        marks: list[tuple[int, tuple[str, ...] | None]] = []
        line_idx = counted_to = end = 0
        start: int | None = 0
        while True:
            if start is None:
                found = _find_regex(text, after_newline, end)
                if found < 0:
                    break
                start = found + 1
            end = text.find(b"\n", start)
            end = len(text) if end < 0 else end
            if newlines is None:
                line_idx += text.count(b"\n", counted_to, start)
                counted_to = start
            else:
                line_idx = int(np.searchsorted(newlines, start))
            mark = self._judge(text[start:end])
            if mark is not False:
                marks.append((line_idx, mark))
            if end >= len(text) - 1:
                break
            start = None
        return marks

    def _marked_lines_of(self, text: bytes, starts: np.ndarray) -> list[tuple[int, tuple[str, ...] | None]]:
        """`_marked_lines` of many objects' whole lines (`starts`: where each line starts, and the end), where
        header lines are dense (one or two an object): one RE2 kernel over the lines as an Arrow array finds the
        candidates, where a search from each one to the next would cost a kernel call each. Each value is one
        line and its newline, so a candidate starts at the value's start: anchored there (`\\A`), RE2 gives up
        on a data line at its first bytes, where `^` (any line start, in multi-line mode) had it scan every
        byte for one (1.7 against 0.3 ms per MB of lines)."""
        n_lines = len(starts) - 1
        if b"\r" in text:  # as _marked_lines: a CR before the newline is not part of the line
            text = text.replace(b"\r\n", b"\n")
            starts = _line_starts(text, n_lines)
        lines = pa.Array.from_buffers(
            pa.large_binary(), n_lines, [None, pa.py_buffer(starts.astype(np.int64)), pa.py_buffer(text)]
        )
        patterns = [self.grammar.header] + ([self.grammar.comment] if self.grammar.comment else [])
        hits = pc.match_substring_regex(lines, "(?m)\\A(?:" + "|".join(f"(?:{p})" for p in patterns) + ")")
        marks: list[tuple[int, tuple[str, ...] | None]] = []
        for idx in np.flatnonzero(hits.to_numpy(zero_copy_only=False)).tolist():
            mark = self._judge(text[starts[idx] : starts[idx + 1]].rstrip(b"\n"))
            if mark is not False:
                marks.append((idx, mark))
        return marks

    def _judge(self, raw: bytes) -> tuple[str, ...] | Literal[False] | None:
        """A candidate line's header names (one tuple per distinct header), None for a comment, False for a
        data line: `judge_line`, once per distinct line (~4 µs each, a dict lookup after), within a bound."""
        if raw in self._judged:
            return self._judged[raw]
        mark = judge_line(self.grammar, raw)
        mark = self._headers.setdefault(mark, mark) if mark else mark
        if len(raw) <= JUDGED_LINE_BYTES and len(self._judged) < JUDGED_LINES:
            self._judged[raw] = mark
        return mark

    def _parse_run(self, segment: bytes, first_line: int, out: _Collector) -> int:
        """Parse whole lines that share the header in force; `first_line` is the number of the first. Returns
        how many lines the segment holds."""
        layout = self._layout(self._current)
        if layout.reject_reason:
            before = len(out.reject_lines)
            out.reject_all(segment, first_line, layout.reject_reason)
            return len(out.reject_lines) - before
        assert layout.parser is not None
        parsed = layout.parser.parse_block(segment, first_line)
        out.add(parsed, layout.generation)
        return parsed.lines


class _Layout:
    """What one header (or the default order) means: a Delimited parser for its token order, or the reason
    every data line under it is a reject."""

    def __init__(self, fmt: LogFormat, names: tuple[str, ...] | None) -> None:
        grammar = fmt.grammar
        if not isinstance(grammar, HeaderDelimited):
            raise TypeError(f"{fmt.name}: a header layout belongs to a HeaderDelimited grammar, not {grammar!r}")
        self.reject_reason: str | None = None
        self.parser: _RunParser | None = None
        self.generation: str | None = None  # None: told per line by its token count
        header = " ".join(names) if names else ""
        for foreign in grammar.foreign_headers:
            if _matches(foreign.pattern, header):
                self.reject_reason = foreign.reason
                return
        if names is None:
            tokens = tuple(grammar.by_name[n] for n in grammar.default)
            # Only the generations the default order holds: a line's token count is told against those.
            generations = tuple(g for g in grammar.generations if any(t.since == g.name for t in tokens))
        else:
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                self.reject_reason = f"the object's header names {', '.join(repr(n) for n in twice)} more than once"
                return
            unknown = [n for n in names if n not in grammar.by_name]
            if unknown and grammar.unknown_names == "reject":
                self.reject_reason = (
                    f"the object's header names {', '.join(repr(n) for n in unknown)}, "
                    f"not a known {fmt.name} field: its columns cannot be placed"
                )
                return
            tokens = tuple(grammar.by_name.get(n) or Token(n, (), since="") for n in names)
            generations = (Generation("header", ""),)
            self.generation = _header_generation(grammar, names)
        missing = _missing_required(grammar, {t.name for t in tokens})
        if missing:
            self.reject_reason = (
                f"field {missing!r} is missing: the object's {'header' if names else 'default order'} does not name it"
            )
            return
        since = generations[0].name
        run_tokens = tuple(dataclasses.replace(t, since=since) for t in tokens) if names else tokens
        run_grammar = Delimited(
            tokens=run_tokens,
            generations=generations,
            delimiter=grammar.delimiter,
            quote=grammar.quote,
        )
        run_fmt = dataclasses.replace(fmt, grammar=run_grammar)
        self.parser = _RunParser(run_fmt, fmt, names)


class _RunParser(DelimitedParser):
    """The Delimited parser of one token order, typing into the format's union schema."""

    def __init__(self, run_fmt: LogFormat, fmt: LogFormat, names: tuple[str, ...] | None) -> None:
        super().__init__(run_fmt)
        self.union = fmt
        grammar = fmt.grammar
        if not isinstance(grammar, HeaderDelimited):
            raise TypeError(f"{fmt.name}: a HeaderDelimitedParser parses a HeaderDelimited grammar, not {grammar!r}")
        self.header_width = len(names) if names else None
        self.unknown = [i for i, t in enumerate(self.grammar.tokens) if t.name not in grammar.by_name]
        position = {t.name: i for i, t in enumerate(self.grammar.tokens)}
        self.joins: list[tuple[Join, list[int] | None]] = [
            (j, [position[n] for n in j.tokens] if all(n in position for n in j.tokens) else None)
            for j in grammar.joins
        ]

    def _too_few(self, n: int) -> str | None:
        if self.header_width is not None and n < self.header_width:
            return f"{n} fields; the object's header names {self.header_width}"
        if self.header_width is None and n < self.grammar.min_tokens:
            return f"{n} fields; a line of {self.fmt.title} without a header has at least {self.grammar.min_tokens}"
        return None

    def _typed_empty(self) -> pa.Table:
        return _union_schema(self.union).empty_table()

    def _typed(
        self, token_columns: list[pa.Array], extras: pa.Array, numbers: np.ndarray
    ) -> tuple[pa.Table, dict[int, str]]:
        n = len(numbers)
        bad: dict[int, str] = {}
        typed: dict[str, pa.Array] = {}
        for token, raw in zip(self.grammar.tokens, token_columns, strict=True):
            if token.split is None:
                for f in token.fields:  # the reader already made the common null token NULL
                    typed[f.name] = typed_field(f, raw if f.null == self.csv_null else nulled(raw, f.null), bad)
                continue
            for f, values in zip(token.fields, split_token(token, nulled(raw, token_null(token))), strict=True):
                typed[f.name] = typed_field(f, nulled(values, f.null), bad)
        for join, positions in self.joins:
            if positions is not None:
                values = pc.binary_join_element_wise(*(token_columns[i] for i in positions), join.separator)
                typed[join.field.name] = typed_field(join.field, nulled(values, join.field.null), bad)
        if self.unknown:
            extras = _prepend(extras, [token_columns[i] for i in self.unknown])
        arrays = [typed[f.name] if f.name in typed else _nulls(n, arrow_type(f.type)) for f in self.union.fields]
        arrays += [extras, pa.array(numbers, pa.int64())]
        table = pa.Table.from_arrays(arrays, schema=_union_schema(self.union))
        if bad:
            keep = np.ones(n, dtype=bool)
            keep[list(bad)] = False
            table = table.filter(pa.array(keep))
        return table, bad


class _Collector:
    """Gathers the outcome of a block's runs into one Parsed."""

    def __init__(self, fmt: LogFormat) -> None:
        self.fmt = fmt
        self.tables: list[pa.Table] = []
        self.reject_lines: list[int] = []
        self.reject_raw: list[str] = []
        self.reject_reasons: list[str] = []
        self.extra_rows = 0
        self.header_lines = 0
        self.generations: Counter[str] = Counter()

    def add(self, parsed: Parsed, generation: str | None) -> None:
        if parsed.rows.num_rows:
            self.tables.append(parsed.rows)
        self.reject_lines += parsed.reject_lines
        self.reject_raw += parsed.reject_raw
        self.reject_reasons += parsed.reject_reasons
        self.extra_rows += parsed.extra_rows
        if generation is None:
            self.generations.update(parsed.generations)
        elif parsed.rows.num_rows:
            self.generations[generation] += parsed.rows.num_rows

    def reject_all(self, segment: bytes, first_line: int, reason: str) -> None:
        lines = segment.split(b"\n")
        if segment.endswith(b"\n"):
            lines.pop()
        for offset, raw in enumerate(lines):
            raw = raw.rstrip(b"\r")
            self.reject_lines.append(first_line + offset)
            self.reject_raw.append(raw.decode("utf-8", "backslashreplace"))
            self.reject_reasons.append(reason if raw.strip() else "empty line")

    def result(self) -> Parsed:
        if not self.tables:
            rows = _union_schema(self.fmt).empty_table()
        else:
            rows = pa.concat_tables(self.tables) if len(self.tables) > 1 else self.tables[0]
        return Parsed(
            rows,
            0,
            0,
            self.reject_lines,
            self.reject_raw,
            self.reject_reasons,
            self.extra_rows,
            self.generations,
            self.header_lines,
        )


# -- helpers ---------------------------------------------------------------------------------------------


_union_schema = rows_schema  # the format's fields are the union of every header's


_NULLS: dict[pa.DataType, pa.Array] = {}


def _nulls(n: int, type_: pa.DataType) -> pa.Array:
    """`n` nulls of `type_`: a slice of one kept array per type. Most of a union schema's columns are absent
    from any one layout, and a fresh null column costs its buffers' page faults on every block."""
    kept = _NULLS.get(type_)
    if kept is None or len(kept) < n:
        kept = _NULLS[type_] = pa.nulls(max(n, 2 * len(kept) if kept is not None else n), type_)
    return kept.slice(0, n)


def _find_regex(data: bytes, pattern: str, start: int) -> int:
    """Offset of the first match of `pattern` in data[start:] (RE2, no copy of the data), or -1."""
    view = pa.Array.from_buffers(
        pa.binary(), 1, [None, pa.array([start, len(data)], pa.int32()).buffers()[1], pa.py_buffer(data)]
    )
    at = pc.find_substring_regex(view, pattern)[0].as_py()
    return -1 if at < 0 else start + at


def _matches(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def judge_line(grammar: HeaderDelimited, raw: bytes) -> tuple[str, ...] | Literal[False] | None:
    """What one line (its bytes, without the newline and a CR before it) is to `grammar`: a header (the names
    it gives), a comment (None) or a data line (False). The one rule the parser and `catalogs.read_header`
    both tell an object's header lines by. The parser judges only the lines its RE2 search finds matching
    `header` or `comment` at their start; any other line is a data line here too."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False  # not a header AWS wrote: the run's parser rejects it as invalid UTF-8
    m = grammar.header_regex.match(line)
    names = tuple((m.group("names") or "").split()) if m else ()
    if names and any(n in grammar.by_name for n in names):
        return names
    if grammar.comment and re.match(grammar.comment, line):
        return None
    return False  # looked like a header but names no declared token: a data line


def object_head(grammar: HeaderDelimited, head: bytes, whole: bool) -> tuple[tuple[str, ...] | None, int]:
    """An object's first header (None: none, the default order) and the number of its lines before its
    first data line, told from its first bytes as the parser tells them (`judge_line`, `_first_header`).
    `whole`: `head` is the whole object; otherwise its last line, cut short, is left out."""
    lines = head.split(b"\n")
    last = lines.pop()  # b"": the head ends with its last line's newline
    if whole and last:
        lines.append(last)  # the parser reads a last line without a newline as a line
    marks: list[tuple[int, tuple[str, ...] | None]] = []
    for idx, raw in enumerate(lines):
        mark = judge_line(grammar, raw.removesuffix(b"\r"))
        if mark is False:
            break
        marks.append((idx, mark))
    return _first_header(marks, 0), len(marks)


def _first_header(marks: list[tuple[int, tuple[str, ...] | None]], first: int) -> tuple[str, ...] | None:
    """The names of an object's first header line, from its marked lines (`first`: the index of its first
    line): comments may come before it, a data line may not (then None, the default order)."""
    for expected, (idx, names) in enumerate(marks, start=first):
        if idx != expected:
            return None
        if names is not None:
            return names
    return None


def _line_starts(block: bytes, n_lines: int) -> np.ndarray:
    """Byte offset of each line's start, plus the block's end (so line i is block[s[i]:s[i+1]])."""
    return _starts_after(np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10), n_lines, len(block))


def _starts_after(newlines: np.ndarray, n_lines: int, end: int) -> np.ndarray:
    """`_line_starts` of a block of `end` bytes whose newlines are at `newlines`."""
    starts = np.empty(n_lines + 1, dtype=np.int64)
    starts[0] = 0
    starts[1:n_lines] = newlines[: n_lines - 1] + 1
    starts[n_lines] = end
    return starts


def _missing_required(grammar: HeaderDelimited, present: set[str]) -> str | None:
    """The first required field (null=None) that the given tokens cannot give, if any."""
    for j in grammar.joins:
        if j.field.null is None and not all(n in present for n in j.tokens):
            return j.field.name
    for t in grammar.tokens:
        for f in t.fields:
            if f.null is None and t.name not in present:
                return f.name
    return None


def _header_generation(grammar: HeaderDelimited, names: tuple[str, ...]) -> str:
    """The declared generation a header spells out (the default order up to that generation); otherwise the
    latest generation among its names, marked custom."""
    if names == grammar.default[: len(names)]:
        seen = 0
        for gen in grammar.generations:
            seen += sum(1 for n in grammar.default if grammar.by_name[n].since == gen.name)
            if seen == len(names):
                return gen.name
    order = [g.name for g in grammar.generations]
    known = [grammar.by_name[n].since for n in names if n in grammar.by_name]
    latest = max(known, key=order.index) if known else "?"
    return f"{latest} custom ({len(names)} fields)"


def _prepend(extras: pa.Array, columns: list[pa.Array | pa.ChunkedArray]) -> pa.Array:
    """extra_fields with the values of `columns` (tokens the header names but the format does not declare)
    in front of each row's own extra values."""
    n, k = len(columns[0]), len(columns)
    if extras.null_count == len(extras):
        values = pa.chunked_array([c.cast(pa.string()) for c in columns]).combine_chunks()
        order = (np.arange(k)[None, :] * n + np.arange(n)[:, None]).ravel()
        return pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), values.take(order))
    # Rare (unknown names and trailing values together): row by row.
    heads = [list(r) for r in zip(*(c.to_pylist() for c in columns), strict=True)]
    tails = extras.to_pylist()
    return pa.array([h + (t or []) for h, t in zip(heads, tails, strict=True)], pa.list_(pa.string()))
