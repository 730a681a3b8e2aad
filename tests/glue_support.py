"""Glue for the tests: a moto server on 127.0.0.1 (one server serves every AWS service), and a client stub
enforcing what moto does not (measured): UpdateTable's VersionId, 100 partitions per batch, pagination."""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError
from s3_support import ENV, start_moto


def glue_server() -> Iterator[Any]:
    """A boto3 Glue client talking HTTP to a moto server on a free port, stopped at the end (a fixture's body)."""
    import boto3

    proc, port = start_moto()
    old = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    try:
        yield boto3.client("glue", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    finally:
        proc.terminate()
        proc.wait(10)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class StrictGlue:
    """A Glue client over a real one that enforces Glue's rules moto skips: UpdateTable with a stale
    VersionId fails (ConcurrentModificationException), a batch of more than 100 partitions is refused,
    GetPartitions answers `page` partitions at a time with a NextToken. Calls are counted."""

    def __init__(self, inner: Any, page: int = 7) -> None:
        self.inner = inner
        self.page = page
        self.versions: dict[tuple[str, str], int] = {}
        self.calls: list[str] = []
        self.batch_sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_table(self, DatabaseName: str, Name: str) -> dict:
        self.calls.append("get_table")
        answer = copy.deepcopy(self.inner.get_table(DatabaseName=DatabaseName, Name=Name))
        answer["Table"]["VersionId"] = str(self.versions.setdefault((DatabaseName, Name), 1))
        return answer

    def update_table(self, DatabaseName: str, TableInput: dict, VersionId: str = "") -> dict:
        self.calls.append("update_table")
        key = (DatabaseName, TableInput["Name"])
        if VersionId != str(self.versions.setdefault(key, 1)):
            raise _error("ConcurrentModificationException", "the table's version moved on", "UpdateTable")
        self.versions[key] += 1
        return self.inner.update_table(DatabaseName=DatabaseName, TableInput=TableInput)

    def batch_create_partition(self, **kw: Any) -> dict:
        self.batch_sizes.append(len(kw["PartitionInputList"]))
        if len(kw["PartitionInputList"]) > 100:
            raise _error("ValidationException", "at most 100 partitions per batch", "BatchCreatePartition")
        return self.inner.batch_create_partition(**kw)

    def batch_update_partition(self, **kw: Any) -> dict:
        self.batch_sizes.append(len(kw["Entries"]))
        if len(kw["Entries"]) > 100:
            raise _error("ValidationException", "at most 100 entries per batch", "BatchUpdatePartition")
        return self.inner.batch_update_partition(**kw)

    def get_partitions(self, DatabaseName: str, TableName: str, NextToken: str = "") -> dict:
        self.calls.append("get_partitions")
        every = []
        token = None
        while True:  # moto answers everything at once; page it ourselves
            page = self.inner.get_partitions(
                DatabaseName=DatabaseName, TableName=TableName, **({"NextToken": token} if token else {})
            )
            every += page["Partitions"]
            token = page.get("NextToken")
            if not token:
                break
        start = int(NextToken or 0)
        answer: dict = {"Partitions": every[start : start + self.page]}
        if start + self.page < len(every):
            answer["NextToken"] = str(start + self.page)
        return answer


_names = itertools.count()


def fresh_database() -> str:
    return f"db{os.getpid()}_{next(_names)}"
