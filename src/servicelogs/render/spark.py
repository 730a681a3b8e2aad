"""Neutral types → Spark SQL types: the schemas Spark reads a converted table and its rejects with.

The Spark engine writes with the Arrow schema (render.arrow); these are the same columns as Spark sees them,
with the partition columns as strings ("unknown" is a partition value), so a Spark reader gets the declared
types instead of inferring them (Spark would read `year=2024` as an int and a JSON column as any string).
"""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from servicelogs.spec import REJECT_FIELDS, LogFormat
from servicelogs.types import BIGINT, BOOLEAN, DOUBLE, INT, JSON, STRING, TIMESTAMP, ListOf, StructOf, Type

_SCALARS: dict[Type, DataType] = {
    STRING: StringType(),
    INT: IntegerType(),
    BIGINT: LongType(),
    DOUBLE: DoubleType(),
    BOOLEAN: BooleanType(),
    TIMESTAMP: TimestampType(),  # instants, shown in the session's time zone (the engine's session: UTC)
    JSON: StringType(),
}


def spark_type(t: Type) -> DataType:
    if isinstance(t, ListOf):
        return ArrayType(spark_type(t.item))
    if isinstance(t, StructOf):
        return StructType([StructField(name, spark_type(member)) for name, member in t.members])
    return _SCALARS[t]


def schema(fmt: LogFormat) -> StructType:
    """The converted table as Spark reads it: the declared columns, then the partition columns."""
    columns = [
        StructField(f.name, spark_type(f.type), metadata={"comment": f.doc} if f.doc else {}) for f in fmt.columns
    ]
    return StructType(columns + [StructField(name, StringType()) for name in fmt.partitions])


def rejects_schema() -> StructType:
    return StructType([StructField(f.name, spark_type(f.type)) for f in REJECT_FIELDS])
