"""Where a table, its rejects and its state live: keys under the target store's root, named here only."""

from __future__ import annotations

from dataclasses import dataclass

STATE_ROOT = "_servicelogs"


@dataclass(frozen=True)
class Layout:
    """The keys of one table and its companions. Staging, intents and commits are the ledger's (under
    `state`); a staged file's path below its batch's staging folder starts with "table/" or "rejects/"."""

    table_name: str

    @property
    def table(self) -> str:
        return self.table_name

    @property
    def rejects(self) -> str:
        return f"{self.table_name}_rejects"

    @property
    def state(self) -> str:
        return f"{STATE_ROOT}/{self.table_name}"

    def visible(self, rel: str) -> str:
        """The table key of a staged file: 'table/...' goes to the table, 'rejects/...' to the rejects."""
        kind, rest = rel.split("/", 1)
        return f"{self.table if kind == 'table' else self.rejects}/{rest}"
