"""Declarations → DuckDB SQL: the embedded catalog's views over the converted, rejects and raw objects.

Every view is plain SQL (no Python UDF), so the `duckdb` command line queries it. Paths are absolute:
DuckDB resolves a relative path in a view against the working directory, not the database file.

- converted: `read_parquet` with Hive partitions, the partition columns kept as text (`day` stays '01'),
  `union_by_name` so files written before a schema upgrade read their new columns as NULL;
- rejects: `read_parquet` of the rejects' files;
- raw: the source objects parsed in place by the same grammar: lines (`read_csv`, one column) cut by the
  declaration's line regex or split at its delimiter under the source's own header, JSON records
  (`read_json`) taken key by key; null tokens to NULL, values typed as the declaration says (a value that
  does not parse reads as NULL, where the engine would reject the line).
"""

from __future__ import annotations

import re

from servicelogs.render.hive import line_regex, token_column
from servicelogs.spec import (
    EPOCH_SECONDS,
    REJECT_FIELDS,
    Delimited,
    Field,
    HeaderDelimited,
    JsonRecords,
    LogFormat,
    Split,
)
from servicelogs.types import BIGINT, BOOLEAN, DOUBLE, INT, JSON, STRING, TIMESTAMP, ListOf, StructOf, Type

_SCALARS: dict[Type, str] = {
    STRING: "VARCHAR",
    INT: "INTEGER",
    BIGINT: "BIGINT",
    DOUBLE: "DOUBLE",
    BOOLEAN: "BOOLEAN",
    TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
    JSON: "VARCHAR",
}
LINE_DELIMITER = "chr(0)"  # read_csv's delimiter for whole lines: a byte no text log line holds, written as
# a call, not a literal: the duckdb command line reads a script (`.read`) as C strings, which end at a NUL


def duckdb_type(t: Type) -> str:
    if isinstance(t, ListOf):
        return f"{duckdb_type(t.item)}[]"
    if isinstance(t, StructOf):
        return "STRUCT(" + ", ".join(f"{ident(name)} {duckdb_type(m)}" for name, m in t.members) + ")"
    return _SCALARS[t]


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_view(database: str, name: str, body: str) -> str:
    return f"CREATE OR REPLACE VIEW {ident(database)}.{ident(name)} AS {body}"


def empty_select(columns: list[tuple[str, str]]) -> str:
    """A typed query with no rows: the view of a table that has no files yet (DuckDB binds a view when it
    is created, and a glob matching nothing does not bind)."""
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {ident(n)}" for n, t in columns) + " WHERE false"


def converted_columns(fmt: LogFormat) -> list[tuple[str, str]]:
    return [(f.name, duckdb_type(f.type)) for f in (*fmt.columns, *fmt.partition_fields)]


def converted_select(fmt: LogFormat, location: str | None) -> str:
    """The converted table over the Parquet files under `location` (None: no file yet)."""
    if location is None:
        return empty_select(converted_columns(fmt))
    hive_types = ", ".join(f"{literal(f.name)}: 'VARCHAR'" for f in fmt.partition_fields)
    return _declared(
        converted_columns(fmt),
        f"read_parquet({literal(location.rstrip('/') + '/**/*.parquet')}, hive_partitioning = true, "
        f"hive_types = {{{hive_types}}}, union_by_name = true)",
    )


def _declared(columns: list[tuple[str, str]], files: str) -> str:
    """The declared columns, in order, over `files`: a column no file has yet (written before the
    declaration gained it) reads as NULL."""
    cols = ", ".join(ident(n) for n, _ in columns)
    return f"SELECT {cols} FROM ({empty_select(columns)} UNION ALL BY NAME SELECT * FROM {files})"


def rejects_select(location: str | None) -> str:
    if location is None:
        return empty_select([(f.name, duckdb_type(f.type)) for f in REJECT_FIELDS])
    columns = [(f.name, duckdb_type(f.type)) for f in REJECT_FIELDS]
    return _declared(columns, f"read_parquet({literal(location.rstrip('/') + '/**/*.parquet')}, union_by_name = true)")


# -- the raw view ------------------------------------------------------------------------------------------


def _unnamed(pattern: str) -> str:
    """A key layout's regex without group names (RE2 refuses the same name twice in one alternation)."""
    return re.sub(r"\(\?P<\w+>", "(", pattern)


def _typed(f: Field, text: str) -> str:
    """SQL typing one field's token text as the declaration says; NULL for the null token or a bad value."""
    value = f"NULLIF({text}, {literal(f.null)})" if f.null is not None else text
    if f.type == TIMESTAMP:
        if f.time_format == EPOCH_SECONDS:
            return f"to_timestamp(TRY_CAST({value} AS BIGINT))"
        if f.time_format:
            return f"CAST(try_strptime({value}, {literal(f.time_format)}) AS TIMESTAMP WITH TIME ZONE)"
        return f"TRY_CAST({value} AS TIMESTAMP WITH TIME ZONE)"
    if f.type in (STRING, JSON):
        return value
    return f"TRY_CAST({value} AS {duckdb_type(f.type)})"


def _files(fmt: LogFormat, root: str) -> tuple[str, str]:
    """The glob of the source and the condition keeping the objects of the format's key layouts."""
    layouts = "|".join(f"(?:{_unnamed(k.pattern)})" for k in fmt.key_layouts)
    keep = f"regexp_matches(filename, {literal(layouts)})"
    for ignored in fmt.ignored_keys:
        keep += f" AND NOT regexp_matches(filename, {literal(ignored.pattern)})"
    return literal(root.rstrip("/") + "/**"), keep


def _lines(glob: str) -> str:
    return (
        f"read_csv({glob}, columns = {{'line': 'VARCHAR'}}, delim = {LINE_DELIMITER}, quote = '', "
        "escape = '', header = false, auto_detect = false, filename = true, strict_mode = false)"
    )


def _source_key(root: str) -> str:
    return f"substr(filename, {len(root.rstrip('/')) + 2}) AS source_key"


def raw_select(fmt: LogFormat, root: str | None, header: tuple[str, ...] | None = None) -> str:
    """The raw view: the objects under `root` parsed in place (None: no source known yet)."""
    g = fmt.grammar
    if root is None:
        return empty_select(raw_columns(fmt, header))
    glob, keep = _files(fmt, root)
    if isinstance(g, Delimited):
        fields = [f for t in g.tokens for f in t.fields]
        names = ", ".join(literal(f"f{i}") for i in range(len(fields)))
        bracketed = {t.fields[0].name for t in g.tokens if t.split is Split.HOST_PORT}  # [ipv6]:port
        cols = [
            _typed(f, f"trim(m.f{i}, '[]')" if f.name in bracketed else f"m.f{i}") + f" AS {ident(f.name)}"
            for i, f in enumerate(fields)
        ]
        return (
            f"SELECT {', '.join(cols)}, source_key FROM (SELECT regexp_extract(line, "
            f"{literal('^' + line_regex(g) + '$')}, [{names}]) AS m, {_source_key(root)} FROM {_lines(glob)} "
            f"WHERE {keep}) WHERE m.f0 <> ''"
        )
    if isinstance(g, HeaderDelimited):
        order = header or g.default
        skip = g.header if not g.comment else f"(?:{g.header})|(?:{g.comment})"
        cols = []
        for i, name in enumerate(order, 1):
            token = g.by_name.get(name)
            if token is not None and len(token.fields) == 1:
                cols.append(_typed(token.fields[0], f"t[{i}]") + f" AS {ident(token.fields[0].name)}")
            else:
                cols.append(f"t[{i}] AS {ident(token_column(name))}")
        return (
            f"SELECT {', '.join(cols)}, source_key FROM (SELECT string_split(line, {literal(g.delimiter)}) AS t, "
            f"{_source_key(root)} FROM {_lines(glob)} WHERE {keep} AND NOT regexp_matches(line, {literal(skip)}))"
        )
    if isinstance(g, JsonRecords):
        cols = []
        for k in g.keys:
            f = k.field
            if f.type == JSON:
                cols.append(f"CAST(r->{literal(k.key)} AS VARCHAR) AS {ident(f.name)}")
            elif isinstance(f.type, (ListOf, StructOf)):
                cols.append(f"TRY_CAST(r->{literal(k.key)} AS {duckdb_type(f.type)}) AS {ident(f.name)}")
            else:
                cols.append(_typed(f, f"r->>{literal(k.key)}") + f" AS {ident(f.name)}")
        return (
            f"SELECT {', '.join(cols)}, source_key FROM (SELECT unnest({ident(g.records_key)}) AS r, "
            f"{_source_key(root)} FROM read_json({glob}, columns = {{{literal(g.records_key)}: 'JSON[]'}}, "
            f"filename = true, format = 'auto', records = true, maximum_object_size = {MAX_JSON_OBJECT_BYTES}) "
            f"WHERE {keep})"
        )
    raise TypeError(f"no raw view for grammar {type(g).__name__}")


MAX_JSON_OBJECT_BYTES = 1 << 30
"""A record file is one JSON value (`{"Records": [...]}`): DuckDB's default limit of 16 MB would refuse an
object AWS writes. Saying `records = true` spares DuckDB detecting it, which it does by parsing sample files
(seconds per 100 MB of source, on every CREATE VIEW)."""


def raw_columns(fmt: LogFormat, header: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """The raw view's columns (names and DuckDB types), source_key last."""
    g = fmt.grammar
    if isinstance(g, Delimited):
        cols = [(f.name, duckdb_type(f.type)) for t in g.tokens for f in t.fields]
    elif isinstance(g, HeaderDelimited):
        cols = []
        for name in header or g.default:
            token = g.by_name.get(name)
            if token is not None and len(token.fields) == 1:
                cols.append((token.fields[0].name, duckdb_type(token.fields[0].type)))
            else:
                cols.append((token_column(name), "VARCHAR"))
    elif isinstance(g, JsonRecords):
        cols = [(k.field.name, duckdb_type(k.field.type)) for k in g.keys]
    else:
        raise TypeError(f"no raw view for grammar {type(g).__name__}")
    return [*cols, ("source_key", "VARCHAR")]
