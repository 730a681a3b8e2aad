"""JSON records → typed Arrow tables, in bulk, for formats with a JsonRecords grammar.

`json_split` cuts the decompressed object into record texts (numpy, streaming, bounded memory). Each
block of records becomes one Arrow string column (zero-copy over the decompressed bytes) that DuckDB
takes apart in one SQL statement built from the declaration: one parse per record into its declared
top-level keys, strings as they are, everything else as JSON text. `json_types` then types the values
with Arrow kernels, strictly, and words the reason of each misfit (field, member, value). Python looks
at single records only to collect the rejects.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servicelogs import formats, sources
from servicelogs.engines import json_split
from servicelogs.engines.arrow_parse import GROUP_BYTES, SMALL_OBJECT_BYTES, Opener, Parsed, T, is_utf8, read_whole
from servicelogs.engines.json_split import Pieces, RecordSplitter
from servicelogs.engines.json_types import typed
from servicelogs.render.arrow import arrow_type
from servicelogs.render.json_records import json_records_sql
from servicelogs.spec import JsonRecords, LogFormat

_TRIM = " \t\r\n,"


@dataclass
class JsonRecordsParser:
    """Parses one object's records for one format with a JsonRecords grammar."""

    def __init__(self, fmt: LogFormat) -> None:
        assert isinstance(fmt.grammar, JsonRecords)
        self.fmt = fmt
        self.grammar: JsonRecords = fmt.grammar
        self.plan = _plan(fmt.name)

    def parse_objects(self, objects: Iterable[tuple[T, str, Opener]]) -> Iterator[tuple[list[T], Parsed | None]]:
        """The records of several objects: (objects, parsed) for each parsed block, then ([object], None) once
        an object is read to its end, in order. An object of up to SMALL_OBJECT_BYTES (and a block) is read whole,
        and such objects are split together (json_split.split_whole), GROUP_BYTES at a time; a larger one is
        streamed block by block. A DuckDB statement costs ~10 ms before its first record, so the usual records
        of several objects go through one statement, and come out as one block (the blocks of larger objects,
        up to a block's bytes); anything else is parsed piece by piece."""
        whole_limit = min(SMALL_OBJECT_BYTES, json_split.BLOCK_BYTES)
        group: list[tuple[T, str, bytes]] = []  # whole objects
        group_bytes = 0
        waiting: list[tuple[T, Pieces | Parsed]] = []  # blocks of larger objects
        finished: list[T] = []
        size = 0
        for item, key, opened in objects:
            with opened() as stream:
                text = read_whole(stream, key, whole_limit)
                if len(text) <= whole_limit:
                    group.append((item, key, text))
                    group_bytes += len(text)
                    if group_bytes >= GROUP_BYTES:
                        yield from self._parse_whole(group)
                        group, group_bytes = [], 0
                    continue
                splitter = RecordSplitter(self.grammar.records_key, self.plan.known_keys)
                for pieces in splitter.split(stream, key, head=text):
                    waiting.append((item, pieces))
                    size += len(pieces.buffer)
                    if size >= json_split.BLOCK_BYTES:
                        yield from self._parse_waiting(waiting, finished)
                        waiting, finished, size = [], [], 0
            note = self._note(splitter.empty_array, splitter.records)
            if note is not None:
                waiting.append((item, note))
            finished.append(item)
        yield from self._parse_whole(group)
        yield from self._parse_waiting(waiting, finished)

    def _parse_whole(self, group: list[tuple[T, str, bytes]]) -> Iterator[tuple[list[T], Parsed | None]]:
        if not group:
            return
        split = json_split.split_whole(
            [text for _, _, text in group], [key for _, key, _ in group], self.grammar.records_key, self.plan.known_keys
        )
        waiting: list[tuple[T, Pieces | Parsed]] = []
        for (item, _, _), whole in zip(group, split, strict=True):
            waiting.extend((item, pieces) for pieces in whole.pieces)
            note = self._note(whole.empty_array, whole.records)
            if note is not None:
                waiting.append((item, note))
        yield from self._parse_waiting(waiting, [item for item, _, _ in group])

    def _note(self, empty_array: bool, records: int) -> Parsed | None:
        if empty_array:
            return Parsed(self.plan.empty, notes=Counter({self.grammar.empty_reason: 1}))
        if records == 0:
            return Parsed(self.plan.empty, notes=Counter({"an empty object: no records": 1}))
        return None

    def _parse_waiting(
        self, waiting: list[tuple[T, Pieces | Parsed]], finished: list[T]
    ) -> Iterator[tuple[list[T], Parsed | None]]:
        together = [i for i, (_, p) in enumerate(waiting) if isinstance(p, Pieces) and _usual_candidate(p)]
        items: list[T] = []
        piece_objects = []  # per piece, its object's index in items: an object's pieces come one after another
        for i in together:
            if not items or items[-1] is not waiting[i][0]:
                items.append(waiting[i][0])
            piece_objects.append(len(items) - 1)
        pieces_list = [p for i in together if isinstance(p := waiting[i][1], Pieces)]
        yield from self._parse_usual(items, pieces_list, np.asarray(piece_objects, np.int64))
        done = set(together)
        for i, (item, p) in enumerate(waiting):
            if i not in done:
                yield [item], p if isinstance(p, Parsed) else self.parse_pieces(p)
        for item in finished:
            yield [item], None

    def _parse_usual(
        self, items: list[T], pieces_list: list[Pieces], piece_objects: np.ndarray
    ) -> Iterator[tuple[list[T], Parsed]]:
        """Usual-looking pieces of several objects, parsed together; when some record is not usual after all,
        each half of the objects is tried again, down to an object on its own, whose pieces are parsed one
        by one (where rejects and skips are told apart): one odd object costs a few statements, not one for
        every object of the group."""
        if not items:
            return
        parsed = self._parse_together(pieces_list, piece_objects) if len(items) > 1 else None
        if parsed is not None:
            yield items, parsed
        elif len(items) == 1:
            for pieces in pieces_list:
                yield items, self.parse_pieces(pieces)
        else:
            half = len(items) // 2
            cut = int(np.searchsorted(piece_objects, half))
            yield from self._parse_usual(items[:half], pieces_list[:cut], piece_objects[:cut])
            yield from self._parse_usual(items[half:], pieces_list[cut:], piece_objects[cut:] - half)

    def _parse_together(self, pieces_list: list[Pieces], piece_objects: np.ndarray) -> Parsed | None:
        """Usual pieces of several objects through one statement, as one block whose rows carry their object's
        index (`piece_objects`: each piece's); None if any record is not usual."""
        texts = []
        for _, run in itertools.groupby(pieces_list, key=lambda pieces: id(pieces.buffer)):  # a column a buffer
            if (column := _shared_records(list(run))) is None:
                return None
            texts.append(column)
        valued = np.concatenate([p.valued_members for p in pieces_list if p.valued_members is not None])
        index = np.arange(len(valued), dtype=np.int64)
        result = self.plan.run_usual(pa.chunked_array(texts), index, valued)  # no copy
        if result is None:
            return None
        typed, reason = self.plan.type_columns(result)
        if reason is not None and reason.null_count < len(reason):
            return None
        rows = typed.select(self.plan.empty.schema.names).cast(self.plan.empty.schema)
        counts = np.fromiter((p.count for p in pieces_list), np.int64, len(pieces_list))
        starts = np.cumsum(counts) - counts
        firsts = np.fromiter((p.first for p in pieces_list), np.int64, len(pieces_list))
        numbers = np.arange(len(rows)) - np.repeat(starts - firsts, counts)
        rows = rows.set_column(rows.schema.get_field_index("line_number"), "line_number", pa.array(numbers))
        text_bytes = sum(int(p.offsets[-1] - p.offsets[0]) for p in pieces_list)
        out = Parsed(rows, lines=len(rows), text_bytes=text_bytes, objects=np.repeat(piece_objects, counts))
        out.reject_objects = []
        self._count_generations(out)
        return out

    def parse_pieces(self, pieces: Pieces) -> Parsed:
        n = pieces.count
        numbers = np.arange(pieces.first, pieces.first + n, dtype=np.int64)
        text_bytes = int(pieces.offsets[-1] - pieces.offsets[0])
        raw = _records(pieces)
        out = Parsed(self.plan.empty, lines=n, text_bytes=text_bytes)
        if pieces.reason:
            for i in range(n):
                self._reject(out, int(numbers[i]), _decode(_piece(pieces, i)).strip(_TRIM), pieces.reason)
            return out
        valued_members = pieces.valued_members
        too_long = np.diff(pieces.offsets) > sources.MAX_RECORD_BYTES
        valid = is_utf8(pieces.buffer, int(pieces.offsets[0]), int(pieces.offsets[-1]))
        if not valid or too_long.any():  # find which records, reject them, go on with the rest
            valued_members = None
            good = ~too_long
            for at in np.flatnonzero(too_long):
                head = _piece(pieces, int(at))[: json_split.HEAD_BYTES]
                self._reject(
                    out, int(numbers[at]), _decode(head), json_split.too_long(len(_piece(pieces, int(at))), len(head))
                )
            for at in np.flatnonzero(good) if not valid else ():
                try:
                    _piece(pieces, int(at)).decode("utf-8")
                except UnicodeDecodeError as e:
                    good[at] = False
                    self._reject(out, int(numbers[at]), _decode(_piece(pieces, int(at))).strip(_TRIM), _utf8(e))
            raw = pa.array([_piece(pieces, i).decode() if good[i] else None for i in range(n)], pa.large_string())
            raw, numbers = raw.filter(pa.array(good)), numbers[good]
        texts = pc.utf8_trim(raw, _TRIM)
        if len(texts):
            self._typed(out, texts, numbers, valued_members)
        out.lines = out.rows.num_rows + len(out.reject_lines)
        return out

    def _typed(self, out: Parsed, texts: pa.Array, numbers: np.ndarray, valued_members: np.ndarray | None) -> None:
        result = self.plan.run(texts, numbers, valued_members)
        kind = result.column("_kind")
        if kind.null_count < len(kind):  # values that are not JSON objects: worded one by one (rare)
            bad = pc.is_valid(kind)
            bad_numbers = result.column("line_number").filter(bad).to_numpy()
            for number, text, what in zip(
                bad_numbers.tolist(), _texts_of(texts, numbers, bad_numbers), kind.filter(bad).to_pylist(), strict=True
            ):
                self._reject(out, number, text, _not_object(text, what))
            result = result.filter(pc.is_null(kind))
        skip = result.column("_skip")
        if skip.null_count < len(skip):
            for item in pc.value_counts(skip.drop_null()).to_pylist():
                out.notes[item["values"]] += item["counts"]
            result = result.filter(pc.is_null(skip))
        result, reason = self.plan.type_columns(result)
        if reason is not None and reason.null_count < len(reason):
            bad = pc.is_valid(reason)
            bad_numbers = result.column("line_number").filter(bad).to_numpy()
            for number, text, why in zip(
                bad_numbers.tolist(),
                _texts_of(texts, numbers, bad_numbers),
                reason.filter(bad).to_pylist(),
                strict=True,
            ):
                self._reject(out, number, text, why)
            result = result.filter(pc.invert(bad))
        rows = result.select(self.plan.empty.schema.names).cast(self.plan.empty.schema)
        out.rows = rows
        out.extra_rows = rows.num_rows - rows.column("extra_fields").null_count
        self._count_generations(out)

    def _count_generations(self, out: Parsed) -> None:
        if self.grammar.version_key and out.rows.num_rows:
            for item in pc.value_counts(out.rows.column(self.plan.version_column)).to_pylist():
                version = item["values"]
                out.generations[f"no {self.grammar.version_key}" if version is None else str(version)] += item["counts"]

    def _reject(self, out: Parsed, number: int, text: str, reason: str) -> None:
        out.reject_lines.append(number)
        out.reject_raw.append(text)
        out.reject_reasons.append(self.fmt.explain_foreign(text) or reason)


def _records(pieces: Pieces) -> pa.LargeStringArray:
    """The pieces' record texts as one Arrow column over their buffer, untrimmed and not yet checked as UTF-8."""
    return pa.LargeStringArray.from_buffers(pieces.count, pa.py_buffer(pieces.offsets), pa.py_buffer(pieces.buffer))


def _shared_records(run: list[Pieces]) -> pa.Array | None:
    """The trimmed record texts of pieces over one buffer (in order, not overlapping), as one column over that
    buffer; None if they are not valid UTF-8."""
    buffer = run[0].buffer
    if not is_utf8(buffer, int(run[0].offsets[0]), int(run[-1].offsets[-1])):
        return None
    if len(run) == 1:
        return pc.utf8_trim(_records(run[0]), _TRIM)
    # One column over every piece's bounds, whose values between two pieces (what lies between their
    # objects' records) are dropped: one filter, not a column per piece.
    bounds = np.concatenate([p.offsets for p in run])
    gaps = np.cumsum([p.count + 1 for p in run])[:-1] - 1
    keep = np.ones(len(bounds) - 1, dtype=bool)
    keep[gaps] = False
    raw = pa.LargeStringArray.from_buffers(len(bounds) - 1, pa.py_buffer(bounds), pa.py_buffer(buffer))
    return pc.utf8_trim(raw.filter(pa.array(keep)), _TRIM)


def _usual_candidate(pieces: Pieces) -> bool:
    return (
        not pieces.reason
        and pieces.valued_members is not None
        and pieces.count > 0
        and (
            int(pieces.offsets[-1] - pieces.offsets[0]) <= sources.MAX_RECORD_BYTES  # no record can be longer
            or int(np.diff(pieces.offsets).max()) <= sources.MAX_RECORD_BYTES
        )
    )


def _texts_of(texts: pa.Array, numbers: np.ndarray, wanted: np.ndarray) -> list[str]:
    """The record texts of the `wanted` line numbers (`numbers` holds each text's, ascending)."""
    return texts.take(pa.array(np.searchsorted(numbers, wanted))).to_pylist()


def _piece(pieces: Pieces, i: int) -> bytes:
    return pieces.buffer[int(pieces.offsets[i]) : int(pieces.offsets[i + 1])]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _utf8(e: UnicodeDecodeError) -> str:
    return f"invalid UTF-8 at byte {e.start} of the record"


_JSON_KINDS = {"ARRAY": "an array", "VARCHAR": "a string", "BOOLEAN": "a boolean", "NULL": "null"}


def _not_object(text: str | None, kind: str | None) -> str:
    if not text:
        return "an empty record (a separator with no value, or an empty line)"
    if not kind:
        return "not valid JSON (a truncated or malformed record)"
    return f"a JSON value that is {_JSON_KINDS.get(kind, 'a number')}, not an object: a record must be a JSON object"


# -- the statements, built once per format from its declaration (render.json_records) -----------------


class _Plan:
    """One format's DuckDB statements (render.json_records), run here, and the typing that follows in Arrow."""

    def __init__(self, fmt: LogFormat) -> None:
        grammar = fmt.grammar
        assert isinstance(grammar, JsonRecords)
        self.keys = grammar.keys
        self.empty = pa.schema(
            [pa.field(f.name, arrow_type(f.type)) for f in fmt.fields]
            + [pa.field("extra_fields", pa.list_(pa.string())), pa.field("line_number", pa.int64())]
        ).empty_table()
        statements = json_records_sql(fmt)
        self.known_keys, self.version_column = statements.known_keys, statements.version_column
        self.sql, self.sql_checked, self.sql_usual = statements.sql, statements.sql_checked, statements.sql_usual
        self.valued_columns = statements.valued_columns

    def run(self, texts: pa.Array, numbers: np.ndarray, valued_members: np.ndarray | None = None) -> pa.Table:
        import duckdb

        con = _connection()
        con.register("records", pa.table({"n": pa.array(numbers, pa.int64()), "rec": _cache_sized(texts)}))
        try:
            usual = self._usual(con, texts, numbers, valued_members) if valued_members is not None else None
            if usual is not None:
                return usual
            try:
                return con.sql(self.sql).to_arrow_table()
            except duckdb.InvalidInputException:  # a malformed record somewhere in the block
                return con.sql(self.sql_checked).to_arrow_table()
        finally:
            con.unregister("records")

    def run_usual(
        self, texts: pa.Array | pa.ChunkedArray, numbers: np.ndarray, valued_members: np.ndarray
    ) -> pa.Table | None:
        """The usual statement's result, or None when the records are not all usual."""
        con = _connection()
        con.register("records", pa.table({"n": pa.array(numbers, pa.int64()), "rec": _cache_sized(texts)}))
        try:
            return self._usual(con, texts, numbers, valued_members)
        finally:
            con.unregister("records")

    def _usual(self, con, texts: pa.Array, numbers: np.ndarray, valued_members: np.ndarray) -> pa.Table | None:
        import duckdb

        if not pc.all(pc.starts_with(texts, "{")).as_py():
            return None
        try:
            usual = con.sql(self.sql_usual).to_arrow_table()
        except duckdb.InvalidInputException:  # a malformed record: the full statement words it
            return None
        if (
            pc.all(usual.column("_fits")).as_py()
            and np.array_equal(self._valued(usual), valued_members)
            and np.array_equal(usual.column("line_number").to_numpy(), numbers)
        ):
            return usual.drop_columns(["_fits"])
        return None

    def _valued(self, usual: pa.Table) -> np.ndarray:
        """Per record, how many of the declared keys DuckDB found with a value."""
        count = np.zeros(usual.num_rows, dtype=np.int64)
        for name in self.valued_columns:
            column = usual.column(name)
            if column.null_count == 0:
                count += 1
            elif column.null_count < len(column):
                count += pc.is_valid(column).to_numpy(zero_copy_only=False)
        return count

    def type_columns(self, result: pa.Table) -> tuple[pa.Table, pa.Array | None]:
        """The typed columns under the fields' names, and per row the first reason it is a reject."""
        reasons = [_one_array(result.column("_reason"))]
        arrays, names = [], []
        for i, k in enumerate(self.keys):
            values = _one_array(result.column(f"c{i}"))
            out, why = typed(values, k.field.type, k.field.name)
            arrays.append(out)
            names.append(k.field.name)
            if why is not None:
                reasons.append(why)
        for name in ("extra_fields", "line_number"):
            arrays.append(result.column(name))
            names.append(name)
        reason = reasons[0] if len(reasons) == 1 else pc.coalesce(*reasons)
        return pa.Table.from_arrays(arrays, names=names), reason


SCAN_BYTES = 512 << 10
"""DuckDB takes the records a vector (2,048 values) at a time: a vector of records of ~2 KB (AWS audit events) outgrows
the cache. Chunks of this much text cap a vector's: measured on 8 MB of 500 KB objects, a third less CPU than one
chunk (256 KB to 1 MB alike)."""


def _cache_sized(texts: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """The texts in chunks of about SCAN_BYTES of text each, sliced without a copy."""
    chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
    out = []
    for chunk in chunks:
        offsets = np.frombuffer(chunk.buffers()[1], np.int64, len(chunk) + 1, chunk.offset * 8)
        cuts = np.unique(np.searchsorted(offsets, np.arange(offsets[0], offsets[-1], SCAN_BYTES))).tolist()
        out += [chunk.slice(a, b - a) for a, b in zip(cuts, [*cuts[1:], len(chunk)], strict=True) if b > a]
    return pa.chunked_array(out, texts.type)


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array; `combine_chunks` copies even a single chunk (a tenth of the time on JSON records)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


@cache
def _plan(format_name: str) -> _Plan:
    return _Plan(formats.get(format_name))


@cache
def _connection():
    """One in-memory DuckDB per process: workers are processes, so one thread each; nothing downloads."""
    import duckdb

    return duckdb.connect(
        config={"threads": 1, "autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
