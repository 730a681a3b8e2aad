"""The embedded catalog: one DuckDB database file beside the tables (`<target>/catalog.duckdb`).

A database of the contract is a DuckDB schema (`main` by default, so `duckdb lake/catalog.duckdb` then
`FROM <table>` just works); each table is a view rendered by `servicelogs.render.duckdb` (plain SQL, no UDF:
the `duckdb` command line reads it). Registered partitions and the ledger mark live in the schema
`servicelogs_catalog`. Globs find new Parquet files by themselves, so a view never waits for a
partition; the partitions are kept for the contract and for `list_partitions`.

The file is written with `storage_compatibility_version` v1.5.0, so the 1.5 command line (`pip install
duckdb-cli`) opens a file the newer Python package wrote. DuckDB locks the file: while a user's shell has
it open, connecting fails with CatalogLockedError and the run's data is committed all the same (the
next run catches the catalog up).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from servicelogs.catalogs.base import (
    CONVERTED,
    RAW,
    Catalog,
    CatalogCannotReadError,
    CatalogError,
    CatalogLockedError,
    NoSuchDatabaseError,
    NoSuchTableError,
    Partition,
    Table,
)
from servicelogs.errors import UsageError
from servicelogs.render import duckdb as sql

EMBEDDED_FILE = "catalog.duckdb"
"""The embedded catalog's file, beside the tables under the target: it travels with the lake."""

STORAGE_VERSION = "v1.5.0"  # the duckdb-cli 1.5.x format; the Python package may be newer
META = "servicelogs_catalog"


def select(table: Table, location: str | None) -> str:
    """The query of `table`'s view over the files at `location` (None: a typed view without rows)."""
    if table.kind == CONVERTED:
        return sql.converted_select(table.fmt, location)
    if table.kind == RAW:
        return sql.raw_select(table.fmt, location, table.header)
    return sql.rejects_select(location)


class EmbeddedCatalog(Catalog):
    default_database = "main"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(path)
        self._con: Any = None

    @classmethod
    def beside(cls, target_url: str) -> EmbeddedCatalog:
        if "://" in target_url:
            raise UsageError(
                f"the embedded catalog lives in a local file beside the tables; {target_url} is not local "
                "(choose --catalog glue or none)"
            )
        return cls(os.path.join(target_url, EMBEDDED_FILE))

    # -- connection --------------------------------------------------------------------------------------
    @property
    def con(self) -> Any:
        if self._con is None:
            import duckdb

            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            try:
                self._con = duckdb.connect(self.path, config={"storage_compatibility_version": STORAGE_VERSION})
            except duckdb.IOException as e:
                if "lock" in str(e).lower():
                    raise CatalogLockedError("open", self.path, f"held by another process ({e})") from e
                raise CatalogError("open", self.path, str(e)) from e
            self._con.execute("SET TimeZone = 'UTC'")
            # A view over s3:// must not make DuckDB download httpfs (nothing here downloads).
            self._con.execute("SET autoinstall_known_extensions = false")
            self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {META}")
            self._con.execute(
                f"CREATE TABLE IF NOT EXISTS {META}.tables (database VARCHAR, name VARCHAR, kind VARCHAR, "
                "body VARCHAR, PRIMARY KEY (database, name))"
            )
            self._con.execute(
                f"CREATE TABLE IF NOT EXISTS {META}.partitions (database VARCHAR, table_name VARCHAR, "
                "vals VARCHAR[], location VARCHAR)"
            )
            self._con.execute(
                f"CREATE TABLE IF NOT EXISTS {META}.marks (database VARCHAR, table_name VARCHAR, seq BIGINT, "
                "PRIMARY KEY (database, table_name))"
            )
        return self._con

    @contextmanager
    def _errors(self, operation: str, name: str) -> Iterator[None]:
        import duckdb

        try:
            yield
        except duckdb.Error as e:
            raise CatalogError(operation, name, str(e).splitlines()[0]) from e

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- the contract ------------------------------------------------------------------------------------
    def create_database(self, name: str) -> None:
        with self._errors("create database", name):
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {sql.ident(name)}")

    def _database_exists(self, name: str) -> bool:
        rows = self.con.execute(
            "SELECT 1 FROM duckdb_schemas() WHERE database_name = current_database() AND schema_name = ?", [name]
        ).fetchall()
        return bool(rows)

    def create_table(self, database: str, table: Table) -> bool:
        import duckdb

        qualified = f"{sql.ident(database)}.{sql.ident(table.name)}"
        if not self._database_exists(database):
            raise NoSuchDatabaseError("create table", qualified, f"no database {database!r}")
        with self._errors("create table", qualified):
            before = self.con.execute(
                f"SELECT body FROM {META}.tables WHERE database = ? AND name = ?", [database, table.name]
            ).fetchall()
        body = select(table, table.location)
        if before and before[0][0] == body and self.table_exists(database, table.name):
            # Unchanged: not created again, as binding the view reads every file's footer (`union_by_name`):
            # 1.3 CPU-s for 3,000 files, each run, growing with the table.
            return False
        with self._errors("create table", qualified):
            try:
                self.con.execute(sql.create_view(database, table.name, body))
            except duckdb.Error as e:
                if "httpfs" in str(e):  # binding a view over s3:// (a raw table of an S3 source)
                    raise CatalogCannotReadError(
                        "create table",
                        qualified,
                        f"DuckDB reads {table.location} only with its httpfs extension, which servicelogs never "
                        "downloads: run `INSTALL httpfs;` in DuckDB once, and the next run creates the table",
                    ) from e
                if not isinstance(e, duckdb.IOException) or "No files found" not in str(e):
                    raise
                # No file yet: a typed view without rows until there is one.
                body = select(table, None)
                self.con.execute(sql.create_view(database, table.name, body))
            self.con.execute(
                f"INSERT OR REPLACE INTO {META}.tables VALUES (?, ?, ?, ?)", [database, table.name, table.kind, body]
            )
        return not before or before[0][0] != body

    def table_exists(self, database: str, table: str) -> bool:
        with self._errors("look up", f"{database}.{table}"):
            rows = self.con.execute(
                "SELECT 1 FROM duckdb_views() WHERE database_name = current_database() AND schema_name = ? "
                "AND view_name = ?",
                [database, table],
            ).fetchall()
        return bool(rows)

    def _require(self, database: str, table: str, operation: str) -> None:
        if not self.table_exists(database, table):
            raise NoSuchTableError(operation, f"{database}.{table}", "no such table")

    def drop_table(self, database: str, table: str) -> None:
        self._require(database, table, "drop")
        with self._errors("drop", f"{database}.{table}"):
            self.con.execute(f"DROP VIEW {sql.ident(database)}.{sql.ident(table)}")
            for meta in ("partitions", "marks"):
                self.con.execute(f"DELETE FROM {META}.{meta} WHERE database = ? AND table_name = ?", [database, table])
            self.con.execute(f"DELETE FROM {META}.tables WHERE database = ? AND name = ?", [database, table])

    def add_partitions(self, database: str, table: str, partitions: Sequence[Partition]) -> int:
        self._require(database, table, "add partitions to")
        existing = {p.values for p in self.list_partitions(database, table)}
        new = sorted({p.values: p for p in partitions if p.values not in existing}.values())
        with self._errors("add partitions to", f"{database}.{table}"):
            for at in range(0, len(new), 1000):  # a statement per 1000 rows: executemany runs one a row (17 → 2 ms)
                rows = new[at : at + 1000]
                self.con.execute(
                    f"INSERT INTO {META}.partitions VALUES " + ", ".join(["(?, ?, ?::VARCHAR[], ?)"] * len(rows)),
                    [v for p in rows for v in (database, table, list(p.values), p.location)],
                )
        return len(new)

    def list_partitions(self, database: str, table: str) -> list[Partition]:
        self._require(database, table, "list partitions of")
        rows = self.con.execute(
            f"SELECT vals, location FROM {META}.partitions WHERE database = ? AND table_name = ?", [database, table]
        ).fetchall()
        return sorted(Partition(tuple(v), loc) for v, loc in rows)

    def mark(self, database: str, table: str) -> int:
        with self._errors("read the mark of", f"{database}.{table}"):
            rows = self.con.execute(
                f"SELECT seq FROM {META}.marks WHERE database = ? AND table_name = ?", [database, table]
            ).fetchall()
        return rows[0][0] if rows and self.table_exists(database, table) else 0

    def set_mark(self, database: str, table: str, seq: int) -> None:
        self._require(database, table, "set the mark of")
        with self._errors("set the mark of", f"{database}.{table}"):
            self.con.execute(
                f"INSERT INTO {META}.marks VALUES (?, ?, ?) "
                "ON CONFLICT DO UPDATE SET seq = greatest(seq, EXCLUDED.seq)",
                [database, table, seq],
            )
