"""The AWS Glue Data Catalog (boto3, imported here only).

Tables are rendered by `servicelogs.render.hive`. Partitions go in with BatchCreatePartition, 100 at a
time (Glue's cap), and are read with GetPartitions page by page; what exists already is skipped, so adding
is idempotent. A schema upgrade appends the new columns (an existing column's type is kept), updates the
table with the VersionId it read (a concurrent update makes it fail rather than be lost) and then the
storage descriptors of the existing partitions (BatchUpdatePartition). The ledger mark is the converted
table's parameter `servicelogs.ledger_seq`. boto errors become CatalogError subclasses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from servicelogs.catalogs.base import (
    CONVERTED,
    RAW,
    Catalog,
    CatalogConflictError,
    CatalogError,
    NoSuchDatabaseError,
    NoSuchTableError,
    Partition,
    Table,
)
from servicelogs.render import hive

BATCH = 100  # BatchCreatePartition / BatchUpdatePartition take at most 100 entries
MARK = "servicelogs.ledger_seq"
_TRANSIENT = {
    "ThrottlingException",
    "InternalServiceException",
    "OperationTimeoutException",
    "ResourceNumberLimitExceededException",
}


def table_def(table: Table) -> hive.TableDef:
    if table.kind == CONVERTED:
        return hive.converted_table(table.fmt, table.name, table.location)
    if table.kind == RAW:
        return hive.raw_table(table.fmt, table.name, table.location, table.header)
    return hive.rejects_table(table.name, table.location)


class GlueCatalog(Catalog):
    def __init__(self, client: Any) -> None:
        """`client`: a boto3 Glue client (or anything with its methods)."""
        self.glue = client

    @classmethod
    def connect(cls, *, region: str | None = None, endpoint_url: str | None = None) -> GlueCatalog:
        import boto3

        return cls(boto3.client("glue", region_name=region, endpoint_url=endpoint_url))

    @contextmanager
    def _errors(self, operation: str, name: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            message = e.response.get("Error", {}).get("Message", str(e))
            if code == "EntityNotFoundException":
                kind = NoSuchDatabaseError if "atabase" in message and "able" not in message else NoSuchTableError
                raise kind(operation, name, message) from e
            if code == "ConcurrentModificationException":
                raise CatalogConflictError(operation, name, message) from e
            raise CatalogError(operation, name, f"{code}: {message}", transient=code in _TRANSIENT) from e
        except BotoCoreError as e:
            raise CatalogError(operation, name, str(e), transient=True) from e

    # -- the contract ------------------------------------------------------------------------------------
    def create_database(self, name: str) -> None:
        from botocore.exceptions import ClientError

        with self._errors("create database", name):
            try:
                self.glue.create_database(DatabaseInput={"Name": name})
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "AlreadyExistsException":
                    raise

    def _get(self, database: str, name: str) -> dict | None:
        from botocore.exceptions import ClientError

        with self._errors("get table", f"{database}.{name}"):
            try:
                return self.glue.get_table(DatabaseName=database, Name=name)["Table"]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "EntityNotFoundException":
                    message = e.response["Error"].get("Message", "")
                    if "atabase" in message and not self._database_exists(database):
                        raise NoSuchDatabaseError("get table", f"{database}.{name}", message) from e
                    return None
                raise

    def _database_exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.glue.get_database(Name=name)
            return True
        except ClientError:
            return False

    def create_table(self, database: str, table: Table) -> bool:
        rendered = table_def(table)
        extra = hive.projection_parameters(rendered) if table.projection and rendered.partition_keys else {}
        current = self._get(database, table.name)
        qualified = f"{database}.{table.name}"
        if current is None:
            if not self._database_exists(database):
                raise NoSuchDatabaseError("create table", qualified, f"no database {database!r}")
            with self._errors("create table", qualified):
                self.glue.create_table(DatabaseName=database, TableInput=hive.table_input(rendered, extra))
            return True
        old_columns = current.get("StorageDescriptor", {}).get("Columns", [])
        have = {c["Name"].lower() for c in old_columns}
        added = [c for c in hive.storage_descriptor(rendered)["Columns"] if c["Name"].lower() not in have]
        columns = [*old_columns, *added]  # appended; an existing column keeps its type
        params = {k: v for k, v in current.get("Parameters", {}).items() if k == MARK}
        wanted = hive.table_input(rendered, {**extra, **params})
        wanted["StorageDescriptor"]["Columns"] = columns
        if _same(current, wanted):
            return False
        with self._errors("update table", qualified):
            self.glue.update_table(
                DatabaseName=database, TableInput=wanted, VersionId=str(current.get("VersionId", ""))
            )
        if added or current.get("StorageDescriptor", {}).get("SerdeInfo") != wanted["StorageDescriptor"]["SerdeInfo"]:
            self._update_partitions(database, table.name, wanted["StorageDescriptor"])
        return True

    def _update_partitions(self, database: str, table: str, descriptor: dict) -> None:
        """Existing partitions take the table's new columns and SerDe (their locations stay)."""
        entries = [
            {
                "PartitionValueList": list(p["Values"]),
                "PartitionInput": {
                    "Values": list(p["Values"]),
                    "StorageDescriptor": {**descriptor, "Location": p["StorageDescriptor"]["Location"]},
                },
            }
            for p in self._partitions(database, table)
        ]
        for i in range(0, len(entries), BATCH):
            with self._errors("update partitions of", f"{database}.{table}"):
                answer = self.glue.batch_update_partition(
                    DatabaseName=database, TableName=table, Entries=entries[i : i + BATCH]
                )
            if answer.get("Errors"):
                raise CatalogError("update partitions of", f"{database}.{table}", str(answer["Errors"][0]))

    def _partitions(self, database: str, table: str) -> Iterator[dict]:
        token = ""
        while True:
            with self._errors("get partitions of", f"{database}.{table}"):
                page = self.glue.get_partitions(
                    DatabaseName=database, TableName=table, **({"NextToken": token} if token else {})
                )
            yield from page.get("Partitions", [])
            token = page.get("NextToken") or ""
            if not token:
                return

    def add_partitions(self, database: str, table: str, partitions: Sequence[Partition]) -> int:
        current = self._get(database, table)
        if current is None:
            raise NoSuchTableError("add partitions to", f"{database}.{table}", "no such table")
        have = {tuple(p["Values"]) for p in self._partitions(database, table)}
        new = sorted({p.values: p for p in partitions if p.values not in have}.values())
        descriptor = current["StorageDescriptor"]
        inputs = [{"Values": list(p.values), "StorageDescriptor": {**descriptor, "Location": p.location}} for p in new]
        for i in range(0, len(inputs), BATCH):
            with self._errors("add partitions to", f"{database}.{table}"):
                answer = self.glue.batch_create_partition(
                    DatabaseName=database, TableName=table, PartitionInputList=inputs[i : i + BATCH]
                )
            errors = [e for e in answer.get("Errors", []) if e["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"]
            if errors:
                raise CatalogError("add partitions to", f"{database}.{table}", str(errors[0]["ErrorDetail"]))
        return len(new)

    def list_partitions(self, database: str, table: str) -> list[Partition]:
        if self._get(database, table) is None:
            raise NoSuchTableError("list partitions of", f"{database}.{table}", "no such table")
        return sorted(
            Partition(tuple(p["Values"]), p["StorageDescriptor"]["Location"]) for p in self._partitions(database, table)
        )

    def table_exists(self, database: str, table: str) -> bool:
        try:
            return self._get(database, table) is not None
        except NoSuchDatabaseError:
            return False

    def drop_table(self, database: str, table: str) -> None:
        with self._errors("drop", f"{database}.{table}"):
            self.glue.delete_table(DatabaseName=database, Name=table)

    def mark(self, database: str, table: str) -> int:
        try:
            current = self._get(database, table)
        except NoSuchDatabaseError:
            return 0
        return int((current or {}).get("Parameters", {}).get(MARK, 0))

    def set_mark(self, database: str, table: str, seq: int) -> None:
        current = self._get(database, table)
        if current is None:
            raise NoSuchTableError("set the mark of", f"{database}.{table}", "no such table")
        params = current.get("Parameters", {})
        if int(params.get(MARK, 0)) >= seq:
            return
        wanted = _as_input(current)
        wanted["Parameters"] = {**params, MARK: str(seq)}
        with self._errors("set the mark of", f"{database}.{table}"):
            self.glue.update_table(
                DatabaseName=database, TableInput=wanted, VersionId=str(current.get("VersionId", ""))
            )


_INPUT_KEYS = (
    "Name",
    "Description",
    "Owner",
    "Retention",
    "StorageDescriptor",
    "PartitionKeys",
    "TableType",
    "Parameters",
)


def _as_input(table: dict) -> dict:
    """A TableInput from GetTable's answer (the answer has read-only fields UpdateTable refuses)."""
    return {k: table[k] for k in _INPUT_KEYS if k in table}


def _same(current: dict, wanted: dict) -> bool:
    have = _as_input(current)
    return (
        have.get("Parameters", {}) == wanted["Parameters"]
        and [(k["Name"], k["Type"]) for k in have.get("PartitionKeys", [])]
        == [(k["Name"], k["Type"]) for k in wanted["PartitionKeys"]]
        and _descriptor(have.get("StorageDescriptor", {})) == _descriptor(wanted["StorageDescriptor"])
    )


def _descriptor(sd: dict) -> tuple:
    return (
        [(c["Name"], c["Type"]) for c in sd.get("Columns", [])],
        sd.get("Location"),
        sd.get("InputFormat"),
        sd.get("OutputFormat"),
        sd.get("SerdeInfo", {}).get("SerializationLibrary"),
        sd.get("SerdeInfo", {}).get("Parameters", {}),
    )
