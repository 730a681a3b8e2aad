"""The pipeline a ClickHouse user would write, rendered from a format declaration, for chDB (ClickHouse in process).

ClickHouse's CSV reader over the raw objects with the format's delimiter (a space or a tab, which
`input_format_csv_allow_whitespace_or_tab_as_delimiter` allows; double quotes as CSV quotes), every column
Nullable(String), ragged rows allowed; the same column names and types as servicelogs (`to*OrNull` casts, `nullIf`
of the null token, `parseDateTime64BestEffortOrNull` for ISO times, `parseDateTimeOrNull` for a strptime format,
the same small regexes as the DuckDB baseline for ip:port and the request line); region from the file's path,
partitions from the event time; `INSERT INTO FUNCTION file(…) PARTITION BY` to zstd Parquet, one folder per
`region=…/year=…/month=…/day=…`. JSON records: each object as one string (RawBLOB), its records unnested with
`JSONExtractArrayRaw`, keys typed with `JSONExtract*` (nested values as JSON text). Like the DuckDB baseline it is a
yardstick: it drops what it cannot parse, records no rejects, and keeps the partition columns inside the files.
"""

from __future__ import annotations

from pathlib import Path

from duckdb_baseline import HOST, PORT, PROTOCOL, URL, header_names

from servicelogs import formats
from servicelogs.spec import EPOCH_SECONDS, Field, HeaderDelimited, JsonRecords, LogFormat, Split
from servicelogs.types import BIGINT, BOOLEAN, DOUBLE, INT, STRING, TIMESTAMP

CASTS = {INT: "toInt32OrNull", BIGINT: "toInt64OrNull", DOUBLE: "toFloat64OrNull", BOOLEAN: "toBoolOrNull"}


def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _clickhouse_time_format(strptime: str) -> str:
    """A strptime pattern in ClickHouse's parseDateTime (MySQL) syntax: minutes and seconds are %i and %s."""
    return strptime.replace("%M", "%i").replace("%S", "%s")


def _typed(f: Field, expr: str) -> str:
    value = f"nullIf({expr}, {_q(f.null)})" if f.null is not None else expr
    if f.type == TIMESTAMP and f.time_format == EPOCH_SECONDS:
        return f"toDateTime64(toInt64OrNull({value}), 6, 'UTC')"
    if f.type == TIMESTAMP and f.time_format:
        parsed = f"parseDateTimeOrNull({value}, {_q(_clickhouse_time_format(f.time_format))}, 'UTC')"
        return f"toDateTime64({parsed}, 6, 'UTC')"
    if f.type == TIMESTAMP:
        return f"parseDateTime64BestEffortOrNull({value}, 6, 'UTC')"
    return value if f.type == STRING else f"{CASTS[f.type]}({value})"


def _source(source: Path) -> str:
    return _q(str(source) + "/**")


def _partitioned(fmt: LogFormat, target: Path, select: str, threads: int, settings: str) -> str:
    """`select` (which gives `region` where the format partitions by it), partitioned and written."""
    when = fmt.event_time
    parts = {
        "region": "region",
        **{
            p: f"ifNull(formatDateTime({when}, '%{c}'), 'unknown')"
            for p, c in (("year", "Y"), ("month", "m"), ("day", "d"))
        },
    }
    chosen = [p for p in fmt.partitions if p in parts]
    path = ", '/', ".join(f"'{p}=', {p}" for p in chosen)
    return f"""
INSERT INTO FUNCTION file({_q(str(target) + "/{_partition_id}/data.parquet")}, 'Parquet')
PARTITION BY concat({path})
SELECT *, {", ".join(f"{parts[p]} AS {p}" for p in chosen if p != "region")}
FROM ({select})
SETTINGS max_threads = {threads}, output_format_parquet_compression_method = 'zstd'{settings}
"""


def _region(fmt: LogFormat) -> str:
    layout = fmt.key_layouts[0].regex
    return f"regexpExtract(_path, {_q(layout.pattern)}, {layout.groupindex['region']})"


def _csv_settings(delimiter: str, skip: int = 0) -> str:
    return (
        f", format_csv_delimiter = {_q(delimiter)}, input_format_csv_allow_whitespace_or_tab_as_delimiter = 1, "
        "input_format_csv_allow_variable_number_of_columns = 1, input_format_allow_errors_ratio = 1, "
        "input_format_csv_skip_trailing_empty_lines = 1, "
        f"input_format_csv_skip_first_lines = {skip}"
    )


def _split(token_split: Split | None, col: str) -> list[str]:
    if token_split is None:
        return [col]
    col = f"ifNull({col}, '')"  # a ragged row's missing column is NULL, which the string functions refuse
    if token_split is Split.HOST_PORT:
        return [f"regexpExtract({col}, {_q(HOST)}, 1)", f"regexpExtract({col}, {_q(PORT)}, 1)"]
    if token_split is Split.HTTP_REQUEST:
        return [
            f"splitByChar(' ', {col})[1]",
            f"regexpExtract({col}, {_q(URL)}, 1)",
            f"regexpExtract({col}, {_q(PROTOCOL)}, 1)",
        ]
    raise NotImplementedError(token_split)


def chdb_sql(fmt_name: str, source: Path, target: Path, threads: int, header: list[str] | None = None) -> str:
    """The statement for `fmt_name` (for a header-defined format, `header` is the objects' header lines)."""
    fmt = formats.get(fmt_name)
    grammar = fmt.grammar
    if isinstance(grammar, JsonRecords):
        return _json_records_sql(fmt, source, target, threads)
    if isinstance(grammar, HeaderDelimited):
        names = header_names(grammar, header or [])
        structure = ", ".join(f"t{i} Nullable(String)" for i in range(len(names)))
        position = {name: f"t{i}" for i, name in enumerate(names)}
        selects = [
            f"{_typed(f, position[name])} AS {f.name}"
            for name in names
            if (token := grammar.by_name.get(name)) is not None
            for f in token.fields
        ]
        for join in grammar.joins:
            if all(t in position for t in join.tokens):
                expr = f"concatWithSeparator({_q(join.separator)}, {', '.join(position[t] for t in join.tokens)})"
                selects.append(f"{_typed(join.field, expr)} AS {join.field.name}")
        settings = _csv_settings(grammar.delimiter, len(header or []))
    else:
        structure = ", ".join(f"t{i} Nullable(String)" for i in range(grammar.piece_count))
        selects, at = [], 0
        for token in grammar.tokens:
            pieces = [f"t{i}" for i in range(at, at + token.pieces)]
            at += token.pieces
            col = (
                pieces[0] if len(pieces) == 1 else f"concatWithSeparator({_q(grammar.delimiter)}, {', '.join(pieces)})"
            )
            exprs = _split(token.split, col)
            if token.split is not None:  # an empty match of the regexes is no value
                exprs = [f"nullIf({e}, '')" for e in exprs]
            selects += [f"{_typed(f, e)} AS {f.name}" for f, e in zip(token.fields, exprs, strict=True)]
        settings = _csv_settings(grammar.delimiter)
    region = _region(fmt) if "region" in fmt.partitions else "''"
    select = (
        f"SELECT {', '.join(selects)}, {region} AS region, _path AS source_key "
        f"FROM file({_source(source)}, 'CSV', {_q(structure)})"
    )
    return _partitioned(fmt, target, select, threads, settings)


def _json_value(key: str, f: Field) -> str:
    record = "r"
    if f.type == STRING:
        return f"JSONExtract({record}, {_q(key)}, 'Nullable(String)')"
    if f.type == TIMESTAMP:
        return f"parseDateTime64BestEffortOrNull(JSONExtractString({record}, {_q(key)}), 6, 'UTC')"
    if f.type == BOOLEAN:
        return f"JSONExtract({record}, {_q(key)}, 'Nullable(Bool)')"
    if f.type in (INT, BIGINT, DOUBLE):
        return f"{CASTS[f.type]}(JSONExtractRaw({record}, {_q(key)}))"
    return f"nullIf(JSONExtractRaw({record}, {_q(key)}), '')"  # JSON, structs, lists: their JSON text


def _json_records_sql(fmt: LogFormat, source: Path, target: Path, threads: int) -> str:
    grammar = fmt.grammar
    assert isinstance(grammar, JsonRecords)
    selects = [f"{_json_value(k.key, k.field)} AS {k.field.name}" for k in grammar.keys]
    select = (
        f"SELECT {', '.join(selects)}, region, source_key FROM ("
        f"SELECT arrayJoin(JSONExtractArrayRaw(raw, {_q(grammar.records_key)})) AS r, {_region(fmt)} AS region, "
        f"_path AS source_key FROM file({_source(source)}, 'RawBLOB', 'raw String'))"
    )
    return _partitioned(fmt, target, select, threads, "")


if __name__ == "__main__":
    import sys

    print(chdb_sql(sys.argv[1], Path("SOURCE"), Path("TARGET"), 2))
