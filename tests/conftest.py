"""Shared test helpers: put objects in a source folder, convert through the real engine, read back with DuckDB."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

import servicelogs
from servicelogs.summary import RunSummary

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def shared_sample(fmt: str, name: str) -> bytes:
    """A sample whose licence keeps it out of tests/fixtures, read in place; the test skips when it is absent."""
    path = SAMPLES / fmt / name
    if not path.exists():
        pytest.skip(f"{path} is not redistributable and not present here")
    return path.read_bytes()


@dataclass
class Converted:
    summary: RunSummary
    rows: list[dict]
    rejects: list[dict]
    target: Path
    source: Path

    def key(self, key: str) -> str:
        """The `source_key` of an object written under `key`: its full location (the resolved path)."""
        return (self.source.resolve() / key).as_posix()


def read_table(target: Path, table: str, partitions: tuple[str, ...]) -> list[dict]:
    files = list((target / table).rglob("*.parquet"))
    if not files:
        return []
    hive_types = ", ".join(f"'{p}': 'VARCHAR'" for p in partitions)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rel = con.sql(
        f"SELECT * FROM read_parquet('{target / table}/**/*.parquet', hive_partitioning = true, "
        f"hive_types = {{{hive_types}}}) ORDER BY source_key, line_number"
    )
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def read_rejects(target: Path, table: str) -> list[dict]:
    files = list((target / f"{table}_rejects").rglob("*.parquet"))
    if not files:
        return []
    rel = duckdb.sql(
        f"SELECT * FROM read_parquet('{target / table}_rejects/**/*.parquet') ORDER BY source_key, line_number"
    )
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


@pytest.fixture
def convert(tmp_path: Path):
    """convert(fmt, {key: bytes | str}) -> Converted: writes the objects, converts them, reads the tables."""

    calls = [0]

    def run(
        fmt: str,
        objects: dict[str, bytes | str],
        *,
        gzip_them: bool = False,
        workers: int = 1,
        again: bool = False,
        raw: bool = False,
    ) -> Converted:
        """Each call converts into fresh folders, unless `again`: then the previous call's source and target.

        Objects under a key ending in .gz are gzipped as AWS does, unless already gzip or `raw` (to test
        what a .gz key holding something else does)."""
        calls[0] += 0 if again else 1
        source = tmp_path / f"source{calls[0]}"
        for key, content in objects.items():
            data = content.encode() if isinstance(content, str) else content
            if gzip_them or (key.endswith(".gz") and not raw and not data.startswith(b"\x1f\x8b")):
                data = gzip.compress(data)
            path = source / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        source.mkdir(exist_ok=True)
        target = tmp_path / f"target{calls[0]}"
        summary = servicelogs.convert(fmt, source, target, workers=workers)
        partitions = servicelogs.formats.get(fmt).partitions
        return Converted(summary, read_table(target, fmt, partitions), read_rejects(target, fmt), target, source)

    return run
