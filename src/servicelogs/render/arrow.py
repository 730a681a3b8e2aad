"""Neutral types → Arrow types and schemas."""

from __future__ import annotations

import pyarrow as pa
from pyarrow import dictionary, int32, string

from servicelogs.spec import REJECT_FIELDS, Field, LogFormat
from servicelogs.types import BIGINT, BOOLEAN, DOUBLE, INT, JSON, STRING, TIMESTAMP, ListOf, StructOf, Type

_SCALARS: dict[Type, pa.DataType] = {
    STRING: pa.string(),
    INT: pa.int32(),
    BIGINT: pa.int64(),
    DOUBLE: pa.float64(),
    BOOLEAN: pa.bool_(),
    TIMESTAMP: pa.timestamp("us", tz="UTC"),
    JSON: pa.string(),
}


def arrow_type(t: Type) -> pa.DataType:
    if isinstance(t, ListOf):
        return pa.list_(arrow_type(t.item))
    if isinstance(t, StructOf):
        return pa.struct([pa.field(name, arrow_type(member)) for name, member in t.members])
    return _SCALARS[t]


def arrow_field(f: Field) -> pa.Field:
    return pa.field(f.name, arrow_type(f.type), nullable=True, metadata={"doc": f.doc} if f.doc else None)


# A column with one value per source object is written dictionary-encoded: the Parquet writer then skips
# hashing every row's copy of the same string (a fifth of the write time for short-lined formats). Readers
# still see plain strings (DuckDB VARCHAR, Spark/Athena string).
PER_OBJECT = dictionary(int32(), string())


def schema(fmt: LogFormat) -> pa.Schema:
    """The schema of the converted table's Parquet files (partition columns excluded)."""
    per_object = {f.name for f in fmt.per_object_fields}
    return pa.schema(
        [arrow_field(f).with_type(PER_OBJECT) if f.name in per_object else arrow_field(f) for f in fmt.columns]
    )


def per_object_column(value: str | None, rows: int) -> pa.DictionaryArray:
    """`value` on every one of `rows` rows, as a one-entry dictionary."""
    if value is None:
        return pa.nulls(rows, PER_OBJECT)
    return pa.DictionaryArray.from_arrays(pa.nulls(rows, pa.int32()).fill_null(0), pa.array([value], pa.string()))


# Ascending within each source object: delta encoding stores a row group's line numbers in a few bytes, where
# dictionary encoding would hash every value and still store ~2 bytes a row.
DELTA_ENCODED = ("line_number",)


def column_encodings(schema: pa.Schema, dictionary: list[str]) -> dict[str, str]:
    """Parquet encodings that differ from the writer's default (dictionary, falling back to plain): delta for
    line numbers, and for the integers and times not in `dictionary` (what dictionary_columns chose), which
    would be plain: mostly distinct values (microsecond times, client ports) take less room as differences
    from their neighbours than as 4 or 8 bytes each (load balancer times and client ports: 12-15 % smaller after zstd,
    and cheaper to write). A time that repeats stays dictionary-encoded: network flow start times in whole
    seconds, random within a day, took 2.2 times the room delta-encoded."""
    chosen = set(dictionary)
    return {
        field.name: "DELTA_BINARY_PACKED"
        for field in schema
        if field.name in DELTA_ENCODED or (_is_number(field.type) and field.name not in chosen)
    }


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_timestamp(t)


CARDINALITY_SAMPLE_ROWS = 2048
"""Rows of a file's first batch whose distinct values decide which of its columns are dictionary-encoded."""
MOSTLY_DISTINCT = 0.9
"""A sample with more distinct values than this share: the column is written plain (or delta). A sample sees
fewer repeats than the whole file (flow log times: 78 % distinct in 2048 rows, a dictionary still pays over
the file); ids and microsecond times are all distinct."""


def dictionary_columns(table: pa.Table) -> list[str]:
    """The columns worth a Parquet dictionary: those whose values repeat (not MOSTLY_DISTINCT in a sample of
    the first values), and the per-object and nested columns. A column of mostly distinct values (trace ids,
    URLs, client addresses, microsecond times) is cheaper and smaller plain: the writer would hash every value
    into a dictionary that outgrows its page limit, then fall back to plain for the rest."""
    chosen = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if field.name in DELTA_ENCODED:
            continue
        if pa.types.is_dictionary(field.type) or pa.types.is_nested(field.type):
            chosen.append(field.name)
            continue
        sample = _sample(column)
        present = len(sample) - sample.null_count
        # unique (a hash table, one pass) costs half what count_distinct does (which merges a second table).
        distinct = len(sample.unique()) - (sample.null_count > 0)
        if distinct <= MOSTLY_DISTINCT * present:
            chosen.append(field.name)
    return chosen


def empty_columns(table: pa.Table) -> list[str]:
    """The columns without a value in `table`, which the writer stores uncompressed and without a dictionary:
    their pages hold only null markers, yet zstd's set-up for each page and an empty dictionary page cost what a
    full column's do. Network flow logs in their default format fill 14 of the table's 66 columns: nine files of
    3,000 rows took 51–52 ms to write, now 42–44; one of 218k rows 108–112, now 104–107 (bench/README.md)."""
    return [f.name for f, column in zip(table.schema, table.columns, strict=True) if column.null_count == len(column)]


def _sample(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """CARDINALITY_SAMPLE_ROWS rows from the column's first value on: a column null in the first rows (a field
    the first objects leave out) is judged by its values, not by its nulls."""
    return column.slice(_first_value(column) if column.null_count else 0, CARDINALITY_SAMPLE_ROWS)


def _first_value(column: pa.ChunkedArray) -> int:
    """The index of the column's first value (0 if it has none). A slice's null count is a popcount of its
    validity bits, so the value is found by halving a window that holds it, without a pass over the rows in
    Python or a kernel (pyarrow's `index` compares row by row: 12 % of a flow log write, whose columns are
    mostly null)."""
    if column.null_count == len(column):
        return 0
    start, end = 0, 1
    while column.slice(start, end - start).null_count == end - start:  # windows of 1, 1, 2, 4, ... rows
        start, end = end, 2 * end
    while end - start > 1:
        middle = (start + end) // 2
        if column.slice(start, middle - start).null_count < middle - start:
            end = middle
        else:
            start = middle
    return start


def statistics_columns(schema: pa.Schema) -> list[str]:
    """The columns whose Parquet min/max statistics are written: all but plain strings. Rows are written in
    event-time order, so times, numbers and per-object values cluster and their statistics let readers skip
    row groups; free-text strings (URLs, user agents, ids) never do, and comparing each value cost a fifth
    of the writer's time on real-shaped lines."""
    return [field.name for field in schema if not pa.types.is_string(field.type)]


def rejects_schema() -> pa.Schema:
    return pa.schema([arrow_field(f) for f in REJECT_FIELDS])
