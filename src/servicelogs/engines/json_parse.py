"""JSON records → typed Arrow tables, in bulk, for formats with a JsonRecords grammar.

`json_split` cuts the decompressed object into record texts (numpy, streaming, bounded memory). Each
block of records becomes one Arrow string column that DuckDB's JSON reader types in one SQL statement
built from the declaration: one parse per record into the declared top-level keys, then per column a
conversion and a check whose failure is the reject reason (naming the field and the value). Python
looks at single records only to word the reason of a record that is not a JSON object.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servicelogs import formats
from servicelogs.engines.arrow_parse import Parsed
from servicelogs.engines.json_split import Pieces, RecordSplitter
from servicelogs.render.arrow import arrow_type
from servicelogs.spec import Field, JsonRecords, LogFormat
from servicelogs.types import BIGINT, BOOLEAN, DOUBLE, INT, JSON, STRING, TIMESTAMP, ListOf, StructOf, Type

_TRIM = " \t\r\n,"
_ISO_UTC = r'"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z"'
_SQL_SCALARS = {STRING: "VARCHAR", JSON: "JSON", BOOLEAN: "BOOLEAN", TIMESTAMP: "TIMESTAMP", INT: "INTEGER"}
_SQL_SCALARS |= {BIGINT: "BIGINT", DOUBLE: "DOUBLE"}
_WORDS = {BOOLEAN: "a boolean", TIMESTAMP: "an ISO 8601 UTC timestamp", INT: "an integer", BIGINT: "an integer"}
_WORDS |= {DOUBLE: "a number"}


@dataclass
class JsonParsed(Parsed):
    """A block's outcome, plus the values recognised as not records (a digest) and skipped: reason → count."""

    notes: Counter[str] = field(default_factory=Counter)


class JsonRecordsParser:
    """Parses one object's records for one format with a JsonRecords grammar."""

    def __init__(self, fmt: LogFormat) -> None:
        assert isinstance(fmt.grammar, JsonRecords)
        self.fmt = fmt
        self.grammar: JsonRecords = fmt.grammar
        self.plan = _plan(fmt.name)

    def parse(self, stream: BinaryIO, key: str) -> Iterator[JsonParsed]:
        splitter = RecordSplitter(self.grammar.records_key)
        for pieces in splitter.split(stream, key):
            yield self.parse_pieces(pieces)
        if splitter.empty_array:
            yield JsonParsed(self.plan.empty, notes=Counter({self.grammar.empty_reason: 1}))
        elif splitter.records == 0:
            yield JsonParsed(self.plan.empty, notes=Counter({"an empty object: no records": 1}))

    def parse_pieces(self, pieces: Pieces) -> JsonParsed:
        n = pieces.count
        numbers = np.arange(pieces.first, pieces.first + n, dtype=np.int64)
        text_bytes = int(pieces.offsets[-1] - pieces.offsets[0])
        raw = pa.LargeStringArray.from_buffers(n, pa.py_buffer(pieces.offsets), pa.py_buffer(pieces.buffer))
        out = JsonParsed(self.plan.empty, lines=n, text_bytes=text_bytes)
        if pieces.reason:
            for i in range(n):
                self._reject(out, int(numbers[i]), _decode(_piece(pieces, i)), pieces.reason)
            return out
        try:
            raw.validate(full=True)
        except pa.ArrowInvalid:  # invalid UTF-8 somewhere: find which records, reject them, go on
            good = np.ones(n, dtype=bool)
            for i in range(n):
                try:
                    _piece(pieces, i).decode("utf-8")
                except UnicodeDecodeError as e:
                    good[i] = False
                    self._reject(out, int(numbers[i]), _decode(_piece(pieces, i)).strip(_TRIM), _utf8(e))
            raw = pa.array([_piece(pieces, i).decode() if good[i] else None for i in range(n)], pa.large_string())
            raw, numbers = raw.filter(pa.array(good)), numbers[good]
        texts = pc.utf8_trim(raw, _TRIM)
        kinds = self.plan.kinds(texts)
        is_object = pc.fill_null(pc.equal(kinds, "OBJECT"), False)
        if not pc.all(is_object).as_py():
            for i in np.flatnonzero(~is_object.to_numpy(zero_copy_only=False)):
                text = texts[int(i)].as_py()
                self._reject(out, int(numbers[i]), text, _not_object(text, kinds[int(i)].as_py()))
            texts, numbers = texts.filter(is_object), numbers[is_object.to_numpy(zero_copy_only=False)]
        if len(texts):
            self._typed(out, texts, numbers)
        out.lines = out.rows.num_rows + len(out.reject_lines)
        return out

    def _typed(self, out: JsonParsed, texts: pa.Array, numbers: np.ndarray) -> None:
        result = self.plan.typed(texts, numbers)
        skip = result.column("_skip")
        if skip.null_count < len(skip):
            out.notes.update(v for v in skip.to_pylist() if v is not None)
            result = result.filter(pc.is_null(skip))
        reason = result.column("_reason")
        if reason.null_count < len(reason):
            bad = pc.is_valid(reason)
            for number, text, why in zip(
                result.column("line_number").filter(bad).to_pylist(),
                result.column("_text").filter(bad).to_pylist(),
                reason.filter(bad).to_pylist(),
                strict=True,
            ):
                self._reject(out, number, text, why)
            result = result.filter(pc.invert(bad))
        rows = result.select(self.plan.empty.schema.names).cast(self.plan.empty.schema)
        out.rows = rows
        out.extra_rows = rows.num_rows - rows.column("extra_fields").null_count
        if self.grammar.version_key and rows.num_rows:
            column = self.plan.version_column
            for item in pc.value_counts(rows.column(column)).to_pylist():
                out.generations[str(item["values"])] += item["counts"]

    def _reject(self, out: JsonParsed, number: int, text: str, reason: str) -> None:
        out.reject_lines.append(number)
        out.reject_raw.append(text)
        out.reject_reasons.append(self.fmt.explain_foreign(text) or reason)


def _piece(pieces: Pieces, i: int) -> bytes:
    return pieces.buffer[int(pieces.offsets[i]) : int(pieces.offsets[i + 1])]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _utf8(e: UnicodeDecodeError) -> str:
    return f"invalid UTF-8 at byte {e.start} of the record"


def _not_object(text: str | None, kind: str | None) -> str:
    if not text:
        return "an empty record (a separator with no value, or an empty line)"
    if kind is None:
        return "not valid JSON (a truncated or malformed record)"
    return f"a JSON {kind.lower()}, not an object: a record must be a JSON object"


# -- the SQL, built once per format from its declaration ------------------------------------------------


class _Plan:
    """The DuckDB statements that type one format's records, and the Arrow schema they end in."""

    def __init__(self, fmt: LogFormat) -> None:
        grammar = fmt.grammar
        assert isinstance(grammar, JsonRecords)
        fields = [f for f in fmt.fields]
        self.empty = pa.schema(
            [pa.field(f.name, arrow_type(f.type)) for f in fields]
            + [pa.field("extra_fields", pa.list_(pa.string())), pa.field("line_number", pa.int64())]
        ).empty_table()
        self.version_column = next(
            (k.field.name for k in grammar.keys if k.key == grammar.version_key), grammar.version_key or ""
        )
        by_key: dict[str, list[Field]] = {}
        for k in grammar.keys:
            by_key.setdefault(k.key, []).append(k.field)
        skip_keys = [key for s in grammar.skip_objects for key in s.keys if key not in by_key]
        structure = {key: "VARCHAR" if all(f.type == STRING for f in fs) else "JSON" for key, fs in by_key.items()}
        structure |= dict.fromkeys(skip_keys, "JSON")

        columns, required, checks = [], [], []
        for i, k in enumerate(grammar.keys):
            x = f"j[{_lit(k.key)}]"
            expr, misfits = _column(k.field.type, x, structure[k.key] == "VARCHAR")
            columns.append(f"{expr} AS c{i}")
            if k.field.null is None:
                required.append(f"CASE WHEN {x} IS NULL THEN {_lit(f'field {k.key!r} is missing or null')} END")
            for bad, value, words in misfits:
                message = f"{_lit(f'field {k.field.name!r}')} || {value} || {_lit(' is not ' + words)}"
                checks.append(f"CASE WHEN {bad.replace('{col}', f'c{i}')} THEN {message} END")
        checks = required + checks
        skips = [
            f"CASE WHEN {' AND '.join(f'j[{_lit(key)}] IS NOT NULL' for key in s.keys)} THEN {_lit(s.reason)} END"
            for s in grammar.skip_objects
        ]
        declared = "[" + ", ".join(_lit(key) for key in by_key) + "]"
        extras = (
            f"list_transform(list_filter(json_keys(rec), lambda k: NOT list_contains({declared}, k)), "
            "lambda k: CAST(json_object(k, json_extract(rec, '/' || replace(replace(k, '~', '~0'), '/', '~1'))) "
            "AS VARCHAR))"
        )
        self.names = [k.field.name for k in grammar.keys]
        # Checks read the typed columns (c0, c1 …) of the inner select: each value is converted once.
        self.sql = (
            f"SELECT * EXCLUDE (j), {_coalesce(checks)} AS _reason, {_coalesce(skips)} AS _skip FROM ("
            f"SELECT n AS line_number, rec AS _text, j, {', '.join(columns)}, "
            f"CASE WHEN len(x) > 0 THEN x END AS extra_fields FROM ("
            f"SELECT n, rec, json_transform(rec, {_lit(json.dumps(structure))}) AS j, {extras} AS x FROM records))"
        )

    def kinds(self, texts: pa.Array) -> pa.Array:
        con = _connection()
        con.register("records", pa.table({"rec": texts}))
        try:
            got = con.sql("SELECT CASE WHEN json_valid(rec) THEN json_type(rec) END AS kind FROM records")
            return got.to_arrow_table().column("kind").combine_chunks()
        finally:
            con.unregister("records")

    def typed(self, texts: pa.Array, numbers: np.ndarray) -> pa.Table:
        con = _connection()
        con.register("records", pa.table({"n": pa.array(numbers, pa.int64()), "rec": texts}))
        try:
            result = con.sql(self.sql).to_arrow_table()
        finally:
            con.unregister("records")
        renames = {f"c{i}": name for i, name in enumerate(self.names)}
        return result.rename_columns([renames.get(c, c) for c in result.column_names])


Misfit = tuple[str, str, str]  # (SQL true where a value does not fit, SQL of the value's words, type words)


def _column(t: Type, x: str, is_varchar: bool) -> tuple[str, list[Misfit]]:
    """The SQL of the typed value of the top-level value `x` (JSON, or VARCHAR when every use of its key
    is STRING), and its misfits; in a misfit's SQL, `{col}` stands for the typed column."""
    text = f"CAST({x} AS VARCHAR)"
    value = f"': ' || {text}"
    if t == STRING:
        return (x if is_varchar else f"({x} ->> '$')"), []
    if t == JSON:
        return text, []
    if isinstance(t, StructOf | ListOf):
        kind = "OBJECT" if isinstance(t, StructOf) else "ARRAY"
        misfits = [(f"{x} IS NOT NULL AND json_type({x}) <> '{kind}'", value, f"a JSON {kind.lower()}")]
        for path, leaf in _typed_leaves(t) if isinstance(t, StructOf) else ():
            member = f"json_extract({x}, {_lit('/' + '/'.join(path))})"
            typed = "{col}" + "".join(f"[{_lit(p)}]" for p in path)
            bad = f"json_type({x}) = 'OBJECT' AND {member} IS NOT NULL AND json_type({member}) <> 'NULL' AND "
            bad += f"({typed} IS NULL" + (f" OR NOT {_iso_utc(member)})" if leaf == TIMESTAMP else ")")
            words = f"' member ' || {_lit('.'.join(path))} || ': ' || CAST({member} AS VARCHAR)"
            misfits.append((bad, words, _WORDS[leaf]))
        # Anything else that keeps the transform from fitting the value (it then gives null).
        misfits.append((f"json_type({x}) = '{kind}' AND {{col}} IS NULL", value, f"of the declared {kind.lower()}"))
        return f"json_transform({x}, {_lit(json.dumps(_structure(t)))})", misfits
    if t == BOOLEAN:
        expr = f"CASE {text} WHEN 'true' THEN true WHEN 'false' THEN false WHEN '\"true\"' THEN true "
        expr += "WHEN '\"false\"' THEN false END"
    elif t == TIMESTAMP:
        expr = f"CASE WHEN {_iso_utc(x)} THEN TRY_CAST({x} ->> '$' AS TIMESTAMP) END"
    elif t in (INT, BIGINT, DOUBLE):
        expr = f"TRY_CAST({text} AS {_SQL_SCALARS[t]})"
    else:
        raise NotImplementedError(t)
    return expr, [(f"{x} IS NOT NULL AND {{col}} IS NULL", value, _WORDS[t])]


def _iso_utc(json_value: str) -> str:
    # DuckDB's casts also take a date alone or an offset (and drop it): only "…Z" is UTC as declared.
    return f"regexp_full_match(CAST({json_value} AS VARCHAR), {_lit(_ISO_UTC)})"


def _structure(t: Type) -> object:
    if isinstance(t, StructOf):
        return {name: _structure(member) for name, member in t.members}
    if isinstance(t, ListOf):
        return [_structure(t.item)]
    return _SQL_SCALARS[t]


def _typed_leaves(t: StructOf, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Type]]:
    """Members (outside lists) whose type can refuse a value: their misfit must not pass as a null."""
    for name, member in t.members:
        if isinstance(member, StructOf):
            yield from _typed_leaves(member, (*prefix, name))
        elif member not in (STRING, JSON) and not isinstance(member, ListOf):
            yield (*prefix, name), member


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _coalesce(exprs: list[str]) -> str:
    if not exprs:
        return "CAST(NULL AS VARCHAR)"
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"


@cache
def _plan(format_name: str) -> _Plan:
    return _Plan(formats.get(format_name))


@cache
def _connection():  # type: ignore[no-untyped-def]
    """One in-memory DuckDB per process: workers are processes, so one thread each; nothing downloads."""
    import duckdb

    return duckdb.connect(
        config={"threads": 1, "autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
