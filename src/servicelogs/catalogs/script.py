"""The embedded catalog of a lake on S3: a DuckDB SQL script in the lake, `<target>/catalog.sql`.

DuckDB binds a view when it is created, and binding an s3:// glob needs the httpfs extension, which is not
built in and may not be downloaded here: a DuckDB file of views over S3 cannot be written. The script
holds the same views instead, rendered exactly as the embedded catalog renders them (`render.duckdb`),
for the user's DuckDB that loads httpfs to run (`duckdb -init catalog.sql`, or `.read catalog.sql`).

Each table's state (its view, partitions and ledger mark) is one object under `_servicelogs_catalog/`
(not under `_servicelogs/`, where each folder is a table's ledger); `catalog.sql` is rewritten from
them after each change, so the script is always whole (one PUT). Two
runs of different tables at once may each rewrite it from a listing that misses the other's newest view:
the next run of that table writes it again (each sync checks that its views are in the script).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from servicelogs.catalogs.base import (
    RAW,
    Catalog,
    NoSuchDatabaseError,
    NoSuchTableError,
    Partition,
    Table,
)
from servicelogs.render import duckdb as sql
from servicelogs.storage import Store

SCRIPT = "catalog.sql"
STATE = "_servicelogs_catalog"  # not under _servicelogs/, whose folders are the tables' ledgers

PREAMBLE = """\
-- The servicelogs catalog of {url}: one view per table, rewritten by each run (do not edit).
-- Run it in a DuckDB that can load httpfs (`INSTALL httpfs;` downloads it once):
--   aws s3 cp {url}/catalog.sql . && duckdb -init catalog.sql      (or `.read catalog.sql` in a shell)
-- S3 credentials: CREATE SECRET (TYPE s3, PROVIDER credential_chain) with the aws extension, or
-- SET s3_region, s3_access_key_id, s3_secret_access_key; another endpoint: SET s3_endpoint, s3_url_style.
LOAD httpfs;
"""


def view_statement(database: str, table: Table, has_files: bool) -> str:
    """The statement the embedded catalog runs for `table` (a typed view without rows until it has files)."""
    from servicelogs.catalogs.embedded import select

    return sql.create_view(database, table.name, select(table, table.location if has_files else None))


class ScriptCatalog(Catalog):
    default_database = "main"

    def __init__(self, store: Store) -> None:
        """`store`: the lake (the target), where the script and the catalog's state live."""
        self.store = store

    def _key(self, database: str, table: str) -> str:
        return f"{STATE}/{database}/{table}.json"

    def _load(self, database: str, table: str) -> dict | None:
        data = self.store.get(self._key(database, table))
        return None if data is None else json.loads(data)

    def _save(self, database: str, table: str, state: dict) -> None:
        self.store.put(self._key(database, table), json.dumps(state, sort_keys=True).encode())

    def _require(self, database: str, table: str, operation: str) -> dict:
        state = self._load(database, table)
        if state is None:
            raise NoSuchTableError(operation, f"{database}.{table}", "no such table")
        return state

    def _has_files(self, table: Table) -> bool:
        if table.kind == RAW:
            return True  # the source the run just read
        if not table.location.startswith(self.store.url + "/"):
            return False  # not in this lake: nothing to look at
        folder = table.location[len(self.store.url) :].strip("/")
        return any(key.endswith(".parquet") for key, _ in self.store.list(folder))

    def script(self) -> str:
        """The whole script: the preamble, then each database and its views, in name order."""
        states = [
            json.loads(self.store.get(key) or b"{}")
            for key, _ in sorted(self.store.list(STATE))
            if key.endswith(".json")
        ]
        databases = sorted({s["database"] for s in states if s})
        lines = [PREAMBLE.format(url=self.store.url)]
        lines += [f"CREATE SCHEMA IF NOT EXISTS {sql.ident(d)};" for d in databases if d != "main"]
        lines += [f"{s['statement']};" for s in states if s]
        return "\n".join(lines) + "\n"

    def _write_script(self) -> None:
        self.store.put(SCRIPT, self.script().encode())

    # -- the contract ------------------------------------------------------------------------------------
    def create_database(self, name: str) -> None:
        if self.store.get(f"{STATE}/{name}.database") is None:
            self.store.put(f"{STATE}/{name}.database", b"")

    def create_table(self, database: str, table: Table) -> bool:
        if self.store.get(f"{STATE}/{database}.database") is None:
            raise NoSuchDatabaseError("create table", f"{database}.{table.name}", f"no database {database!r}")
        state = self._load(database, table.name) or {"database": database, "partitions": [], "mark": 0}
        statement = view_statement(database, table, self._has_files(table))
        if state.get("statement") == statement:
            script = self.store.get(SCRIPT) or b""
            if f"{statement};".encode() not in script:  # lost to a concurrent rewrite: write it again
                self._write_script()
            return False
        self._save(database, table.name, {**state, "statement": statement})
        self._write_script()
        return True

    def add_partitions(self, database: str, table: str, partitions: Sequence[Partition]) -> int:
        state = self._require(database, table, "add partitions to")
        have = {tuple(v) for v, _ in state["partitions"]}
        new = sorted({p.values: p for p in partitions if p.values not in have}.values())
        if new:
            state["partitions"] += [[list(p.values), p.location] for p in new]
            self._save(database, table, state)
        return len(new)

    def list_partitions(self, database: str, table: str) -> list[Partition]:
        state = self._require(database, table, "list partitions of")
        return sorted(Partition(tuple(v), location) for v, location in state["partitions"])

    def table_exists(self, database: str, table: str) -> bool:
        return self._load(database, table) is not None

    def drop_table(self, database: str, table: str) -> None:
        self._require(database, table, "drop")
        self.store.delete(self._key(database, table))
        self._write_script()

    def mark(self, database: str, table: str) -> int:
        state = self._load(database, table)
        return int(state["mark"]) if state else 0

    def set_mark(self, database: str, table: str, seq: int) -> None:
        state = self._require(database, table, "set the mark of")
        if seq > state["mark"]:
            self._save(database, table, {**state, "mark": seq})
