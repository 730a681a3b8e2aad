"""Neutral types → Arrow types and schemas."""

from __future__ import annotations

import pyarrow as pa

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


def schema(fmt: LogFormat) -> pa.Schema:
    """The schema of the converted table's Parquet files (partition columns excluded)."""
    return pa.schema([arrow_field(f) for f in fmt.columns])


def rejects_schema() -> pa.Schema:
    return pa.schema([arrow_field(f) for f in REJECT_FIELDS])
