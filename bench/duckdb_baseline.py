"""The plain DuckDB pipeline a user would write, rendered from a format declaration.

read_csv over the raw objects with the format's delimiter and quote (every column VARCHAR, ragged rows padded,
errors ignored), the same column names and types as servicelogs (try_cast, NULLIF of the null token, small
regexes for ip:port and the request line), region from the file name, partitions from the event time, and
COPY … PARTITION_BY to zstd Parquet. It is the yardstick, not a reimplementation: it drops what it cannot parse.
"""

from __future__ import annotations

from pathlib import Path

from servicelogs import formats
from servicelogs.spec import Field, HeaderDelimited, JsonRecords, LogFormat, Split
from servicelogs.types import BIGINT, BOOLEAN, DOUBLE, INT, STRING, TIMESTAMP

SQL_TYPES = {
    STRING: "VARCHAR",
    INT: "INTEGER",
    BIGINT: "BIGINT",
    DOUBLE: "DOUBLE",
    BOOLEAN: "BOOLEAN",
    TIMESTAMP: "TIMESTAMPTZ",
}


def _typed(f: Field, expr: str) -> str:
    value = f"NULLIF({expr}, '{f.null}')" if f.null is not None else expr
    if f.type == TIMESTAMP and f.time_format == "%s":
        return f"to_timestamp(TRY_CAST({value} AS BIGINT))"
    if f.type == TIMESTAMP and f.time_format:
        return f"try_strptime({value}, {_q(f.time_format)})"
    return value if f.type == STRING else f"TRY_CAST({value} AS {SQL_TYPES[f.type]})"


HOST, PORT = r"^\[?(.*?)\]?:[0-9]+$", r":([0-9]+)$"
URL, PROTOCOL = r"^[^ ]+ (.*?)( HTTP/[^ ]+)?$", r" (HTTP/[^ ]+)$"


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def baseline_sql(fmt_name: str, source: Path, target: Path, threads: int, header: list[str] | None = None) -> str:
    """The pipeline for `fmt_name`. For a header-defined format, `header` is the objects' header lines (a user
    reads their own header once and writes the column list from it)."""
    fmt = formats.get(fmt_name)
    grammar = fmt.grammar
    if isinstance(grammar, HeaderDelimited):
        return _header_defined_sql(fmt, source, target, threads, header or [])
    if isinstance(grammar, JsonRecords):
        return _json_records_sql(fmt, source, target, threads)
    columns = ", ".join(f"'t{i}': 'VARCHAR'" for i in range(grammar.piece_count))
    selects = []
    at = 0
    for token in grammar.tokens:
        pieces = [f"t{i}" for i in range(at, at + token.pieces)]
        at += token.pieces
        col = pieces[0] if len(pieces) == 1 else f"concat_ws({_q(grammar.delimiter)}, {', '.join(pieces)})"
        if token.split is None:
            parts = [(token.fields[0], col)]
        elif token.split is Split.HOST_PORT:
            parts = list(
                zip(
                    token.fields,
                    (f"regexp_extract({col}, {_q(HOST)}, 1)", f"regexp_extract({col}, {_q(PORT)}, 1)"),
                    strict=True,
                )
            )
        elif token.split is Split.HTTP_REQUEST:
            parts = list(
                zip(
                    token.fields,
                    (
                        f"split_part({col}, ' ', 1)",
                        f"regexp_extract({col}, {_q(URL)}, 1)",
                        f"regexp_extract({col}, {_q(PROTOCOL)}, 1)",
                    ),
                    strict=True,
                )
            )
        else:
            raise NotImplementedError(token.split)
        selects += [f"{_typed(f, expr)} AS {f.name}" for f, expr in parts]
    layout = fmt.key_layouts[0].regex
    region = f"regexp_extract(filename, {_q(layout.pattern)}, {layout.groupindex['region']})"
    when = fmt.event_time
    return f"""
SET threads = {threads};
COPY (
  SELECT *, strftime({when}, '%Y') AS year, strftime({when}, '%m') AS month, strftime({when}, '%d') AS day
  FROM (
    SELECT {", ".join(selects)}, {region} AS region, filename AS source_key
    FROM read_csv({_q(str(source) + "/**/*")}, delim = {_q(grammar.delimiter)}, quote = {_q(grammar.quote or "")},
                  escape = {_q(grammar.quote or "")}, header = false, columns = {{{columns}}}, null_padding = true,
                  strict_mode = false, ignore_errors = true, filename = true, auto_detect = false)
  )
) TO {_q(str(target))} (FORMAT parquet, PARTITION_BY (region, year, month, day), COMPRESSION zstd);
"""


def header_names(grammar: HeaderDelimited, header: list[str]) -> list[str]:
    """The token names the objects' header lines give, in order."""
    return next(m.group("names").split() for line in header if (m := grammar.header_regex.match(line)))


def _header_defined_sql(fmt: LogFormat, source: Path, target: Path, threads: int, header: list[str]) -> str:
    grammar = fmt.grammar
    assert isinstance(grammar, HeaderDelimited)
    names = header_names(grammar, header)
    columns = ", ".join(f"'t{i}': 'VARCHAR'" for i in range(len(names)))
    position = {name: f"t{i}" for i, name in enumerate(names)}
    selects = []
    for name in names:
        token = grammar.by_name.get(name)
        if token is not None:
            selects += [f"{_typed(f, position[name])} AS {f.name}" for f in token.fields]
    for join in grammar.joins:
        if all(t in position for t in join.tokens):
            expr = f"concat_ws({_q(join.separator)}, {', '.join(position[t] for t in join.tokens)})"
            selects.append(f"{_typed(join.field, expr)} AS {join.field.name}")
    when = fmt.event_time
    parts = [p for p in fmt.partitions if p != "region"]
    region = ""
    if "region" in fmt.partitions:
        layout = fmt.key_layouts[0].regex
        region = f", regexp_extract(filename, {_q(layout.pattern)}, {layout.groupindex['region']}) AS region"
    return f"""
SET threads = {threads};
COPY (
  SELECT *, strftime({when}, '%Y') AS year, strftime({when}, '%m') AS month, strftime({when}, '%d') AS day
  FROM (
    SELECT {", ".join(selects)}{region}, filename AS source_key
    FROM read_csv({_q(str(source) + "/**/*")}, delim = {_q(grammar.delimiter)}, quote = '', header = false,
                  skip = {len(header)}, columns = {{{columns}}}, null_padding = true, strict_mode = false,
                  ignore_errors = true, filename = true, auto_detect = false)
  )
) TO {_q(str(target))} (FORMAT parquet, PARTITION_BY ({", ".join((["region"] if region else []) + parts)}),
                        COMPRESSION zstd);
"""


def _json_records_sql(fmt: LogFormat, source: Path, target: Path, threads: int) -> str:
    """read_json of whole objects (types detected by DuckDB), unnest of the records array, COPY."""
    grammar = fmt.grammar
    assert isinstance(grammar, JsonRecords)
    layout = fmt.key_layouts[0].regex
    region = f"regexp_extract(filename, {_q(layout.pattern)}, {layout.groupindex['region']})"
    when = f"TRY_CAST(r.{fmt.event_time} AS TIMESTAMPTZ)"
    return f"""
SET threads = {threads};
COPY (
  SELECT r.*, {region} AS region, filename AS source_key,
         strftime({when}, '%Y') AS year, strftime({when}, '%m') AS month, strftime({when}, '%d') AS day
  FROM (SELECT unnest({grammar.records_key}) AS r, filename
        FROM read_json({_q(str(source) + "/**/*")}, format = 'auto', maximum_object_size = 1000000000,
                       filename = true))
) TO {_q(str(target))} (FORMAT parquet, PARTITION_BY (region, year, month, day), COMPRESSION zstd);
"""


if __name__ == "__main__":
    import sys

    print(baseline_sql(sys.argv[1], Path("SOURCE"), Path("TARGET"), 2))
