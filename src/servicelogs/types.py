"""Engine-neutral column types.

A format declares its columns with these; `servicelogs.render` turns them into Arrow, Hive/Glue and
DuckDB types, so no engine or catalog keeps a column list of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Type:
    """A scalar column type, named as a SQL user would think of it."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ListOf(Type):
    item: Type = Type("string")

    def __str__(self) -> str:
        return f"list<{self.item}>"


@dataclass(frozen=True)
class StructOf(Type):
    """A record of named, typed members (a JSON object); members keep their source names."""

    members: tuple[tuple[str, Type], ...] = ()

    def __str__(self) -> str:
        return "struct<" + ", ".join(f"{name}: {t}" for name, t in self.members) + ">"


STRING = Type("string")
INT = Type("int")  # 32-bit: status codes, ports
BIGINT = Type("bigint")  # 64-bit: byte counts
DOUBLE = Type("double")  # timings in seconds
BOOLEAN = Type("boolean")
TIMESTAMP = Type("timestamp")  # microseconds, UTC
STRING_LIST = ListOf("list", STRING)
JSON = Type("json")  # JSON text, kept as written: SQL JSON functions (json_extract) read it
