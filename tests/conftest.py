"""Shared test helpers: put objects in a source folder, convert through the real engine, read back with DuckDB."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from exactly_once_support import Lake
from s3_support import ENV, MotoServer, moto_server

import servicelogs
from servicelogs.storage import LocalStore, Store
from servicelogs.summary import RunSummary

# The tests' inputs are small: without this, a run with several workers would convert them in its own process
# (engines.local.POOL_MIN_TEXT_BYTES), and the worker processes' tests would test nothing. Runs started by the tests
# inherit it. tests/test_process_costs.py checks the default.
os.environ["SERVICELOGS_POOL_MIN_TEXT_BYTES"] = "0"

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


# -- stores: every proof of the Store contract and of exactly-once runs on a local disk and on S3 ------------


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One moto server (and its fault proxy) for the session; each test takes fresh buckets."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto")
    with moto_server() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' AWS settings (fake credentials, quick retries, a 1 s lease), for this test only."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_store(moto: MotoServer, aws_env: None) -> Store:
    """The prefix `lake` of a fresh bucket on the session's moto server, reached through the fault proxy
    (cleared for the test)."""
    from servicelogs.s3 import S3Store

    moto.proxy.clear()
    return S3Store(moto.new_bucket(), "lake", endpoint_url=moto.url)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A target: a local folder, or `s3_store`. `@pytest.mark.parametrize("store", ["local"],
    indirect=True)` takes one of them."""
    if request.param == "local":
        return LocalStore(tmp_path / "target")
    return request.getfixturevalue("s3_store")  # type: ignore[no-any-return]


@pytest.fixture
def lakes(store: Store, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., Lake]:
    """lakes(count, s3=...) -> a Lake: `count` objects (on S3 `s3` of them, if given: a smaller input for
    the slower store) in a fresh source beside `store`, the target."""
    server = None if isinstance(store, LocalStore) else request.getfixturevalue("moto")

    def make(count: int = 8, *, s3: int | None = None) -> Lake:
        return Lake.make(store, tmp_path, server, count if server is None or s3 is None else s3)

    return make


@pytest.fixture
def lake(lakes: Callable[..., Lake]) -> Lake:
    """Eight objects over two regions and four days, a third of them with a reject, and their target."""
    return lakes(8)
