"""The catalog contract: what every catalog (the embedded DuckDB file, AWS Glue) does, and nothing more.

A catalog holds, per log source, three tables rendered from the format's declaration (the raw table over
the source objects, the converted table over the Parquet files, the rejects table) and their partitions.
`servicelogs.catalogs.sync` drives it after a run's commits; the catalog records how far into the
ledger it is (a mark), so a run that died between its commit and the catalog update is repaired by the
next one. Errors are CatalogError subclasses; the message names the operation and the table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from servicelogs.errors import ServiceLogsError
from servicelogs.spec import LogFormat

RAW, CONVERTED, REJECTS = "raw", "converted", "rejects"


class CatalogError(ServiceLogsError):
    """A catalog operation failed; the message names the operation and the table."""

    def __init__(self, operation: str, name: str, reason: str, *, transient: bool = False) -> None:
        super().__init__(f"catalog: {operation} {name}: {reason}")
        self.operation, self.name, self.reason = operation, name, reason
        self.transient = transient


class NoSuchDatabaseError(CatalogError):
    pass


class NoSuchTableError(CatalogError):
    pass


class CatalogLockedError(CatalogError):
    """Another process holds the catalog (a `duckdb` shell has the file open): the next run catches up."""

    transient = True


class CatalogCannotReadError(CatalogError):
    """The catalog cannot read the table's location (DuckDB without httpfs, a view over s3://): the table is
    left out, said in the sync's problems, and created by a later sync that can."""


class CatalogConflictError(CatalogError):
    """A concurrent update changed the table first (its version moved on): re-read and retry."""

    transient = True


@dataclass(frozen=True)
class Table:
    """A table to create or update: which of the three, for which format, under which name and where.

    `location`: for the converted and rejects tables the folder of their files, for the raw table the
    source root. `header`: for header-defined formats, the token order of the source's own header."""

    kind: str
    fmt: LogFormat
    name: str
    location: str
    header: tuple[str, ...] | None = None
    projection: bool = False


@dataclass(frozen=True, order=True)
class Partition:
    values: tuple[str, ...]
    location: str


class Catalog(ABC):
    """One contract for every catalog; `tests/test_catalog_contract.py` runs unchanged against each."""

    default_database = "servicelogs"

    @abstractmethod
    def create_database(self, name: str) -> None:
        """Create database `name` if it does not exist.

        Raises:
            CatalogError: the catalog refused or could not be reached.
        """

    @abstractmethod
    def create_table(self, database: str, table: Table) -> bool:
        """Create `table`, or bring an existing one up to its declaration: columns the declaration gained are
        appended (a column's type is never rewritten), existing partitions follow. True if it changed.

        Raises:
            NoSuchDatabaseError: `database` does not exist.
            CatalogConflictError: a concurrent update won; nothing was changed.
            CatalogError: any other refusal.
        """

    @abstractmethod
    def add_partitions(self, database: str, table: str, partitions: Sequence[Partition]) -> int:
        """Register the partitions the table lacks (idempotent); returns how many were new.

        Raises:
            NoSuchTableError: the table does not exist.
            CatalogError: any other refusal.
        """

    @abstractmethod
    def list_partitions(self, database: str, table: str) -> list[Partition]:
        """Every registered partition of the table, sorted.

        Raises:
            NoSuchTableError: the table does not exist.
        """

    @abstractmethod
    def table_exists(self, database: str, table: str) -> bool:
        """Whether the table exists (False also when the database does not).

        Raises:
            CatalogError: the catalog could not be asked.
        """

    @abstractmethod
    def drop_table(self, database: str, table: str) -> None:
        """Drop the table's entry (never its data).

        Raises:
            NoSuchTableError: the table does not exist.
        """

    @abstractmethod
    def mark(self, database: str, table: str) -> int:
        """The last ledger commit whose partitions are registered for `table` (0: none, or no table).

        Raises:
            CatalogError: the catalog could not be asked.
        """

    @abstractmethod
    def set_mark(self, database: str, table: str, seq: int) -> None:
        """Record that the commits up to `seq` are registered (never moves the mark back).

        Raises:
            NoSuchTableError: the table does not exist.
            CatalogConflictError: a concurrent update won (the caller may retry).
        """

    def close(self) -> None:  # noqa: B027 - most catalogs hold nothing to release
        """Release what the catalog holds (a database file's lock)."""
