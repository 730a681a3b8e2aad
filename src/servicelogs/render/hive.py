"""Declarations → Hive/Glue tables: column types, the raw table's SerDe, and Athena's CREATE statements.

Three tables per log source, all rendered from the one declaration:

- the **raw** table reads the source objects where they lie: a line grammar becomes a RegexSerDe regex with
  exactly one capturing group per column (Hive counts groups strictly), later field generations optional
  and anything AWS appends after the last declared token tolerated; a header-defined grammar becomes a
  LazySimpleSerDe table whose column order is the source's own header; a JSON records grammar uses the
  SerDe its declaration names (`JsonRecords.hive_storage`).
- the **converted** table: the Parquet files' columns, their types, the Hive partition keys.
- the **rejects** table: the rejects' Parquet files.

A `TableDef` is the engine- and catalog-neutral description; `table_input` gives Glue's TableInput and
`create_table_sql` Athena's DDL from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from servicelogs.spec import (
    EPOCH_SECONDS,
    PARTITION_FIELDS,
    REJECT_FIELDS,
    Delimited,
    Field,
    HeaderDelimited,
    JsonRecords,
    LogFormat,
    Split,
    Token,
)
from servicelogs.types import BIGINT, BOOLEAN, DOUBLE, INT, JSON, STRING, TIMESTAMP, ListOf, StructOf, Type

_SCALARS: dict[Type, str] = {
    STRING: "string",
    INT: "int",
    BIGINT: "bigint",
    DOUBLE: "double",
    BOOLEAN: "boolean",
    TIMESTAMP: "timestamp",
    JSON: "string",
}

PARQUET = {
    "input": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "output": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "serde": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
}
TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
REGEX_SERDE = "org.apache.hadoop.hive.serde2.RegexSerDe"
LAZY_SIMPLE_SERDE = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"


def hive_type(t: Type) -> str:
    if isinstance(t, ListOf):
        return f"array<{hive_type(t.item)}>"
    if isinstance(t, StructOf):
        return "struct<" + ",".join(f"{name}:{hive_type(member)}" for name, member in t.members) + ">"
    return _SCALARS[t]


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    comment: str = ""


@dataclass(frozen=True)
class TableDef:
    """One table as any catalog needs it: columns, partition keys, where its data lies and how to read it."""

    name: str
    kind: str  # "raw", "converted" or "rejects"
    columns: tuple[Column, ...]
    partition_keys: tuple[Column, ...]
    location: str
    input_format: str
    output_format: str
    serde: str
    serde_parameters: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    partition_template: str = ""
    """Where a partition's data lies, relative to `location`, with `${key}` for each partition key (Athena's
    `storage.location.template` syntax)."""

    def partition_location(self, values: tuple[str, ...]) -> str:
        rel = self.partition_template
        for key, value in zip(self.partition_keys, values, strict=True):
            rel = rel.replace("${" + key.name + "}", value)
        return f"{self.location.rstrip('/')}/{rel}".rstrip("/") + "/"


def _column(f: Field) -> Column:
    return Column(f.name, hive_type(f.type), f.doc)


def hive_partition_path(keys: tuple[Column, ...] | tuple[Field, ...]) -> str:
    return "/".join(f"{k.name}=${{{k.name}}}" for k in keys)


def converted_table(fmt: LogFormat, name: str, location: str) -> TableDef:
    keys = tuple(_column(f) for f in fmt.partition_fields)
    return TableDef(
        name,
        "converted",
        tuple(_column(f) for f in fmt.columns),
        keys,
        location,
        PARQUET["input"],
        PARQUET["output"],
        PARQUET["serde"],
        {"serialization.format": "1"},
        {"classification": "parquet", "parquet.compression": "ZSTD"},
        hive_partition_path(keys),
    )


def rejects_table(name: str, location: str) -> TableDef:
    return TableDef(
        name,
        "rejects",
        tuple(_column(f) for f in REJECT_FIELDS),
        (),
        location,
        PARQUET["input"],
        PARQUET["output"],
        PARQUET["serde"],
        {"serialization.format": "1"},
        {"classification": "parquet"},
    )


# -- the raw table ------------------------------------------------------------------------------------------


def raw_type(f: Field) -> str:
    """A raw column's type: numbers and booleans typed (an unparsable value reads as NULL), timestamps as the
    text AWS wrote (Hive's text SerDes read only `yyyy-MM-dd HH:mm:ss`), epoch seconds as bigint."""
    if f.type == TIMESTAMP:
        return "bigint" if f.time_format == EPOCH_SECONDS else "string"
    return hive_type(f.type)


_PARTITION_START = ("region", "year", "month", "day")


def _layout_folders(fmt: LogFormat) -> str:
    """The folders of the format's main key layout, from its first region or date folder on ('' if none)."""
    template = fmt.key_layouts[0].template
    folders = template.rsplit("/", 1)[0] if "/" in template else ""
    starts = [folders.index("{" + k + "}") for k in _PARTITION_START if "{" + k + "}" in folders]
    return folders[min(starts) :] if starts else ""


def raw_partition_keys(fmt: LogFormat) -> tuple[str, ...]:
    """Partition keys of the raw table: the folders of the format's main key layout from its region or
    date on (a folder the layout names otherwise, such as a bucket, is a key too); none when the objects
    share one folder."""
    return tuple(re.findall(r"\{(\w+)\}", _layout_folders(fmt)))


def raw_partition_template(fmt: LogFormat) -> str:
    """Those folders with `${key}` for each key (Athena's `storage.location.template` syntax); the prefix
    before them is the raw table's location."""
    return re.sub(r"\{(\w+)\}", r"${\1}", _layout_folders(fmt))


def raw_columns(fmt: LogFormat, header: tuple[str, ...] | None = None) -> tuple[Column, ...]:
    """The raw table's columns. Line grammars: one per field, in line order. Header-defined grammars: one
    per token of `header` (the source's own header; default: the grammar's default order); a token that
    is part of a join keeps its own name. JSON records: one per top-level key."""
    g = fmt.grammar
    if isinstance(g, Delimited):
        return tuple(Column(f.name, raw_type(f), f.doc) for t in g.tokens for f in t.fields)
    if isinstance(g, HeaderDelimited):
        out = []
        for name in header or g.default:
            token = g.by_name.get(name)
            if token is None:  # a name the declaration does not know: its text, under its own name
                out.append(Column(token_column(name), "string", "A field this declaration does not know."))
            elif len(token.fields) == 1:
                out.append(Column(token.fields[0].name, raw_type(token.fields[0]), token.fields[0].doc))
            else:
                out.append(Column(token_column(name), "string"))
        return tuple(out)
    if isinstance(g, JsonRecords):
        seen: dict[str, Column] = {}
        for k in g.keys:
            if k.key.lower() not in seen:
                seen[k.key.lower()] = Column(k.key.lower(), hive_type(k.field.type), k.field.doc)
        return tuple(seen.values())
    raise TypeError(f"no raw table for grammar {type(g).__name__}")


def token_column(name: str) -> str:
    """The column of a token that is no field of its own (part of a join): its name as an identifier."""
    return re.sub(r"\W", "_", name).lower()


def _regex_literal(delimiter: str) -> str:
    """The delimiter in a regex, readable (a space stays a space, a tab is \\t)."""
    return {" ": " ", "\t": "\\t"}.get(delimiter, re.escape(delimiter))


def _token_regex(t: Token, delimiter: str) -> str:
    """One capturing group per field of the token."""
    d = _regex_literal(delimiter)
    word = f"[^{d}]*"
    if t.split is Split.HOST_PORT:
        return f"(-|{word}?):?([0-9]*)"  # lazy: the port is the digits after the last colon
    if t.split is Split.HTTP_REQUEST:
        return f'"({word}) ([^"]*?) ([^{d}"]*){d}?"'
    if t.quoted:
        return '"([^"]*)"'
    return "(" + d.join([word] * t.pieces) + ")"


APPENDED_FIELDS = "(?: .*)?"
"""The end of a line regex: fields AWS appends after the last declared one (with the grammar's delimiter)."""


def line_regex(g: Delimited) -> str:
    """The whole-line regex of the raw table: one group per field (Java and RE2 alike), each later
    generation's tokens optional, trailing fields AWS appends later ignored."""
    d = _regex_literal(g.delimiter)
    out = ""
    for gen in reversed(g.generations):
        tokens = [_token_regex(t, g.delimiter) for t in g.tokens if t.since == gen.name]
        joined = d.join(tokens) + out
        out = joined if gen is g.generations[0] else f"(?:{d}{joined})?"
    return out + APPENDED_FIELDS.replace(" ", d)


def header_lines(g: HeaderDelimited) -> int:
    """Lines before the data of an object written in one layout: the header, and a comment line before it
    when the grammar has comments (the `#Version` line)."""
    return 2 if g.comment else 1


def raw_table(
    fmt: LogFormat, name: str, location: str, header: tuple[str, ...] | None = None, skip_lines: int | None = None
) -> TableDef:
    g = fmt.grammar
    keys = tuple(
        Column(k, "string", PARTITION_FIELDS[k].doc if k in PARTITION_FIELDS else "From the object key.")
        for k in raw_partition_keys(fmt)
    )
    columns = raw_columns(fmt, header) if isinstance(g, HeaderDelimited) else raw_columns(fmt)
    return TableDef(name, "raw", columns, keys, location, *_raw_storage(fmt, skip_lines), raw_partition_template(fmt))


def _raw_storage(fmt: LogFormat, skip_lines: int | None) -> tuple[str, str, str, dict[str, str], dict[str, str]]:
    """How Hive reads the grammar's objects: input and output formats, SerDe and its parameters, table
    parameters."""
    g = fmt.grammar
    if isinstance(g, Delimited):
        return TEXT_INPUT, TEXT_OUTPUT, REGEX_SERDE, {"input.regex": line_regex(g)}, {"classification": "text"}
    if isinstance(g, HeaderDelimited):
        skip = skip_lines if skip_lines is not None else header_lines(g)
        delimiter = {"field.delim": g.delimiter, "serialization.format": g.delimiter}
        parameters = {"classification": "text", "skip.header.line.count": str(skip)}
        return TEXT_INPUT, TEXT_OUTPUT, LAZY_SIMPLE_SERDE, delimiter, parameters
    if isinstance(g, JsonRecords):
        if g.hive_storage is None:
            raise TypeError(f"{fmt.name}: its JSON records grammar names no Hive storage for a raw table")
        s = g.hive_storage
        return s.input_format, s.output_format, s.serde, dict(s.serde_parameters), {"classification": "json"}
    raise TypeError(f"no raw table for grammar {type(g).__name__}")


# -- Athena DDL ----------------------------------------------------------------------------------------------


def projection_parameters(table: TableDef, values: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """Athena partition projection for `table`'s partition keys (`projection.*`, `storage.location.template`):
    the date keys as zero-padded integer ranges, the others as enums of `values` (or injected, when no
    values are known: the query must name them)."""
    ranges = {"year": ("2000", "2100", "4"), "month": ("1", "12", "2"), "day": ("1", "31", "2")}
    params = {"projection.enabled": "true"}
    for key in table.partition_keys:
        if key.name in ranges:
            low, high, digits = ranges[key.name]
            params |= {
                f"projection.{key.name}.type": "integer",
                f"projection.{key.name}.range": f"{low},{high}",
                f"projection.{key.name}.digits": digits,
            }
        elif values and values.get(key.name):
            params |= {
                f"projection.{key.name}.type": "enum",
                f"projection.{key.name}.values": ",".join(values[key.name]),
            }
        else:
            params[f"projection.{key.name}.type"] = "injected"
    params["storage.location.template"] = f"{table.location.rstrip('/')}/{table.partition_template}".rstrip("/") + "/"
    return params


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create_table_sql(table: TableDef, database: str = "", projection: bool = False) -> str:
    """Athena's CREATE EXTERNAL TABLE for `table`."""
    qualified = f"`{database}`.`{table.name}`" if database else f"`{table.name}`"
    cols = ",\n".join(f"  `{c.name}` {c.type}" for c in table.columns)
    lines = [f"CREATE EXTERNAL TABLE IF NOT EXISTS {qualified} (\n{cols}\n)"]
    if table.partition_keys:
        lines.append("PARTITIONED BY (" + ", ".join(f"`{k.name}` {k.type}" for k in table.partition_keys) + ")")
    lines.append(f"ROW FORMAT SERDE {_quote(table.serde)}")
    if table.serde_parameters:
        props = ",\n".join(f"  {_quote(k)} = {_quote(v)}" for k, v in table.serde_parameters.items())
        lines.append(f"WITH SERDEPROPERTIES (\n{props}\n)")
    lines.append(f"STORED AS INPUTFORMAT {_quote(table.input_format)}\nOUTPUTFORMAT {_quote(table.output_format)}")
    lines.append(f"LOCATION {_quote(table.location.rstrip('/') + '/')}")
    params = dict(table.parameters)
    if projection and table.partition_keys:
        params |= projection_parameters(table)
    if params:
        props = ",\n".join(f"  {_quote(k)} = {_quote(v)}" for k, v in params.items())
        lines.append(f"TBLPROPERTIES (\n{props}\n)")
    return "\n".join(lines) + ";"


def add_partition_sql(table: TableDef, values: tuple[str, ...], location: str, database: str = "") -> str:
    qualified = f"`{database}`.`{table.name}`" if database else f"`{table.name}`"
    spec = ", ".join(f"`{k.name}` = {_quote(v)}" for k, v in zip(table.partition_keys, values, strict=True))
    return f"ALTER TABLE {qualified} ADD IF NOT EXISTS PARTITION ({spec}) LOCATION {_quote(location)}"


def create_statements(
    fmt: LogFormat, lake: str, source: str, table: str, database: str = "", projection: bool = False
) -> list[str]:
    """Athena's CREATE statements for a source's raw, converted and rejects tables (`servicelogs ddl`)."""
    lake = lake.rstrip("/")
    return [
        create_table_sql(raw_table(fmt, f"{table}_raw", source), database, projection),
        create_table_sql(converted_table(fmt, table, f"{lake}/{table}"), database, projection),
        create_table_sql(rejects_table(f"{table}_rejects", f"{lake}/{table}_rejects"), database),
    ]


# -- Glue ----------------------------------------------------------------------------------------------------


def storage_descriptor(table: TableDef, location: str | None = None) -> dict:
    return {
        "Columns": [
            {"Name": c.name, "Type": c.type, **({"Comment": c.comment[:255]} if c.comment else {})}
            for c in table.columns
        ],
        "Location": location or table.location,
        "InputFormat": table.input_format,
        "OutputFormat": table.output_format,
        "SerdeInfo": {"SerializationLibrary": table.serde, "Parameters": dict(table.serde_parameters)},
        "BucketColumns": [],  # Athena refuses a table whose BucketColumns is missing (AthenaGlueServiceLogs)
        "Compressed": False,
    }


def table_input(table: TableDef, parameters: dict[str, str] | None = None) -> dict:
    """Glue's TableInput for `table`; `parameters` are added to the table's own (projection, marks)."""
    return {
        "Name": table.name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {**table.parameters, "EXTERNAL": "TRUE", **(parameters or {})},
        "StorageDescriptor": storage_descriptor(table),
        "PartitionKeys": [{"Name": k.name, "Type": k.type} for k in table.partition_keys],
    }
