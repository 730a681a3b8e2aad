"""Catalogs: where a converted table, its raw table and its rejects are registered for SQL engines.

Two catalogs, one contract (`base.Catalog`): the embedded one, a DuckDB database file beside the tables
(the default), and the AWS Glue Data Catalog. `sync` is the one place that drives a catalog: after a
run's ledger commits it registers what those commits made visible. It reads the ledger after the mark
the catalog itself keeps, so it is idempotent and repairs a catalog left behind by a run that died after
its commit; the data never waits for the catalog.

Importing this package is light: DuckDB and boto3 load in the catalog modules.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from servicelogs.catalogs.base import (
    CONVERTED,
    RAW,
    REJECTS,
    Catalog,
    CatalogCannotReadError,
    CatalogConflictError,
    CatalogError,
    Partition,
    Table,
)
from servicelogs.errors import SourceError, UsageError
from servicelogs.sources import SourceObject
from servicelogs.spec import HeaderDelimited, LogFormat
from servicelogs.storage import StagedFile

if TYPE_CHECKING:
    from servicelogs.sources import Source
    from servicelogs.storage import Store
    from servicelogs.summary import RunSummary

__all__ = ["Catalog", "CatalogError", "Names", "SyncResult", "open_catalog", "sync"]

CATALOG_KINDS = ("duckdb", "glue", "none")


@dataclass(frozen=True)
class Names:
    """A source's names in a catalog: its database and its three tables (default: the table folder's name,
    `<name>_raw` and `<name>_rejects`); the raw table may live in a database of its own (`raw_db`, as
    the Glue jobs of athena-glue-service-logs have it)."""

    database: str
    table: str
    raw: str = ""
    rejects: str = ""
    raw_db: str = ""

    @property
    def raw_database(self) -> str:
        return self.raw_db or self.database

    @property
    def raw_table(self) -> str:
        return self.raw or f"{self.table}_raw"

    @property
    def rejects_table(self) -> str:
        return self.rejects or f"{self.table}_rejects"


@dataclass
class SyncResult:
    tables_changed: list[str] = field(default_factory=list)
    partitions_added: int = 0
    commits_registered: int = 0
    mark: int = 0
    problems: list[str] = field(default_factory=list)
    """Objects the raw table cannot show (a header that disagrees with the table's, a key outside the
    partitioned layout): reported, never silently dropped."""


def open_catalog(
    kind: str,
    target_url: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    store: Store | None = None,
) -> Catalog:
    """The catalog `kind` ("duckdb": the file beside the tables under `target_url`, or for an s3:// lake the
    script `catalog.sql` in it, written through `store` (default: one opened at `endpoint_url`); "glue")."""
    if kind == "duckdb" and "://" in target_url:
        from servicelogs.catalogs.script import ScriptCatalog
        from servicelogs.s3 import S3Store

        return ScriptCatalog(store or S3Store.from_url(target_url, endpoint_url))
    if kind == "duckdb":
        from servicelogs.catalogs.embedded import EmbeddedCatalog

        return EmbeddedCatalog.beside(target_url)
    if kind == "glue":
        from servicelogs.catalogs.glue import GlueCatalog

        return GlueCatalog.connect(region=region, endpoint_url=endpoint_url)
    raise UsageError(f"unknown catalog {kind!r} (known: {', '.join(CATALOG_KINDS)})")


def _commits_after(store: Store, ledger_prefix: str, mark: int) -> Iterator[dict]:
    """The ledger's commit records after `mark`, read as plain records: a record with no files (a fence)
    adds no partition."""
    start = f"{ledger_prefix}/ledger/commits/{mark:020d}.json" if mark else ""
    for key, _ in store.list(f"{ledger_prefix}/ledger/commits", start_after=start):
        if key.endswith(".json"):
            data = store.get(key)
            if data is not None:
                yield json.loads(data)


def converted_partition(fmt: LogFormat, table_location: str, visible_key: str) -> Partition | None:
    """The partition of a visible file `<table>/k=v/.../part-….parquet` (None: a file of no partition)."""
    folders = visible_key.split("/")[1:-1]
    pairs = [f.split("=", 1) for f in folders]
    if len(pairs) != len(fmt.partitions) or [k for k, _ in pairs] != list(fmt.partitions):
        return None
    return Partition(tuple(v for _, v in pairs), f"{table_location}/{'/'.join(folders)}/")


def raw_partitions(fmt: LogFormat, raw: Table, keys: list[str]) -> tuple[list[Partition], list[str]]:
    """The raw table's partitions of source objects `keys` (one folder each), and the objects it cannot
    show: outside the partitioned layout, or a second folder for one partition. Sources name their objects by
    full location (a path, an s3:// URL); a relative key lies under the raw table's. Objects of one folder share
    a partition, so each folder is matched once (a busy S3 access log folder holds thousands of objects)."""
    from servicelogs.render.hive import raw_partition_keys, raw_partition_template

    names = raw_partition_keys(fmt)
    if not names:
        return [], []
    template = raw_partition_template(fmt)
    folder_pattern = re.compile("(?:^|/)" + re.sub(r"\\\$\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")
    problems: list[str] = []
    by_values: dict[tuple[str, ...], Partition] = {}
    by_folder: dict[str, Partition | None] = {}
    for key in sorted(set(keys)):
        directory = posixpath.dirname(key)
        if directory not in by_folder:
            by_folder[directory] = _folder_partition(folder_pattern, names, raw, directory)
        p = by_folder[directory]
        if p is None:
            problems.append(f"{key}: not in the folders of the partitioned key layout ({template})")
        elif p.values in by_values and by_values[p.values] != p:
            problems.append(
                f"{p.location}: partition {p.values} of the raw table already lies at "
                f"{by_values[p.values].location} (one partition, one folder)"
            )
        else:
            by_values[p.values] = p
    return sorted(by_values.values()), problems


def _folder_partition(
    folder_pattern: re.Pattern[str], names: tuple[str, ...], raw: Table, directory: str
) -> Partition | None:
    m = folder_pattern.search(directory)
    if m is None:
        return None
    # Ledger keys are full locations (a path or an URL); a lake of servicelogs 0.1 named them from the source root.
    full = directory.startswith("/") or "://" in directory
    folder = directory if full else f"{raw.location.rstrip('/')}/{directory}"
    return Partition(tuple(m[k] for k in names), f"{folder}/")


def _absolute(location: str) -> str:
    """A location as catalogs must hold it: an URL, or an absolute path (DuckDB resolves a relative one
    against the working directory, not the database file)."""
    return location.rstrip("/") if "://" in location else os.path.abspath(location)


HEADER_BYTES = 64 << 10
"""How much of an object `read_header` reads: its header lines lie at its start."""


def read_header(fmt: LogFormat, source: Source, obj: SourceObject) -> tuple[tuple[str, ...] | None, int]:
    """The token order an object's own header names (None: no header, the default order) and the number
    of lines before its first data line, told by the run's parser's own rule (`header_parse.object_head`),
    so a header read here is the one a run parsing the object reports (RunSummary.headers). `obj` as the
    ledger recorded it: a rewritten object fails (SourceError) rather than lend the raw table another
    version's header. Reads the object's first `HEADER_BYTES` (decompressed)."""
    from servicelogs.engines.header_parse import object_head  # the parser's module loads pyarrow: not at import
    from servicelogs.sources import decompressed

    g = fmt.grammar
    assert isinstance(g, HeaderDelimited)
    chunks: list[bytes] = []
    size = 0
    with source.open(obj) as raw:
        stream = decompressed(raw, obj.key)
        while size <= HEADER_BYTES:  # a read may return less than asked for (a gzip member's end)
            chunk = stream.read(HEADER_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return object_head(g, b"".join(chunks), whole=size <= HEADER_BYTES)


def sync(
    catalog: Catalog,
    fmt: LogFormat,
    names: Names,
    store: Store,
    source: Source | str | None = None,
    *,
    folder: str | None = None,
    projection: bool = False,
    headers: Mapping[str, tuple[str, ...] | None] | None = None,
) -> SyncResult:
    """Register in `catalog` what the ledger's commits after the catalog's mark made visible.

    Creates the database and the three tables when missing (the raw table only when the source is
    known), brings them up to the declaration, adds the partitions those commits made new (none with
    `projection`: Athena computes them), then advances the mark. `folder` is the table's folder under
    the target (default: `names.table`). `headers`: the first header of objects the run converted
    (RunSummary.headers); any other new object's is read from the source. Idempotent: a repeated or
    interrupted sync adds nothing twice.

    Raises:
        CatalogError: the catalog failed; the mark did not move, so the next sync redoes the work.
    """
    folder = folder or names.table
    result = SyncResult()
    target = _absolute(store.url)
    converted = Table(CONVERTED, fmt, names.table, f"{target}/{folder}", projection=projection)
    rejects = Table(REJECTS, fmt, names.rejects_table, f"{target}/{folder}_rejects")
    catalog.create_database(names.database)
    if names.raw_database != names.database and source is not None:
        catalog.create_database(names.raw_database)
    mark = catalog.mark(names.database, names.table)
    commits = sorted(_commits_after(store, f"_servicelogs/{folder}", mark), key=lambda c: c.get("seq", 0))
    result.mark = max([mark, *(c.get("seq", 0) for c in commits)])

    new_files: list[str] = []
    new_sources: list[SourceObject] = []
    for c in commits:
        new_files += [StagedFile.from_json(f).visible for f in c.get("files") or ()]
        new_sources += [SourceObject(key, size, etag) for key, size, etag in c.get("sources") or ()]

    raw = None
    if source is not None:
        root = _absolute(str(source))
        header = None
        if isinstance(fmt.grammar, HeaderDelimited) and new_sources and not isinstance(source, str):
            known = headers or {}
            found = {}
            for obj in new_sources:
                if obj.key in known:
                    found[obj.key] = known[obj.key]
                    continue
                try:
                    found[obj.key] = read_header(fmt, source, obj)[0]
                except SourceError as e:  # rewritten or gone since it was converted
                    result.problems.append(f"{obj.key}: its header cannot be read: {e}")
            first = min(found, default="")
            header = found.get(first)
            result.problems += [
                f"{key}: its header differs from the raw table's (that of {first}); the raw table misreads it"
                for key, h in sorted(found.items())
                if h != header
            ]
        if header is not None or not catalog.table_exists(names.raw_database, names.raw_table) or new_sources:
            raw = Table(RAW, fmt, names.raw_table, root, header=header, projection=projection)

    for database, table in ((names.database, converted), (names.database, rejects), (names.raw_database, raw)):
        try:
            if table is not None and catalog.create_table(database, table):
                result.tables_changed.append(f"{database}.{table.name}")
        except CatalogCannotReadError as e:
            if table is not raw:
                raise
            result.problems.append(str(e))  # the tables of the converted data are registered all the same
            raw = None

    if not projection:
        parts = {converted_partition(fmt, converted.location, key) for key in new_files if key.startswith(folder + "/")}
        result.partitions_added += catalog.add_partitions(names.database, names.table, sorted(p for p in parts if p))
        if raw is not None and new_sources:
            raw_parts, problems = raw_partitions(fmt, raw, [obj.key for obj in new_sources])
            result.problems += problems
            result.partitions_added += catalog.add_partitions(names.raw_database, names.raw_table, raw_parts)
    if result.mark > mark:
        from servicelogs import crash

        crash.point("advance the catalog mark")
        for attempt in range(3):  # a concurrent run updated the table (its version moved on): read again
            try:
                catalog.set_mark(names.database, names.table, result.mark)
                break
            except CatalogConflictError:
                if attempt == 2:
                    raise
    result.commits_registered = len(commits)
    return result


def registrar(
    catalog: Catalog | str,
    fmt: LogFormat,
    source: Source,
    *,
    database: str | None = None,
    table: str | None = None,
    raw: str = "",
    rejects: str = "",
    raw_database: str = "",
    projection: bool = False,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> Callable[[Store, str, RunSummary], None]:
    """The hook a run calls after its commits (`servicelogs.run.run(register=…)`): sync the catalog and put
    the outcome in the summary. A catalog that fails (a `duckdb` shell holding the file) fails no data:
    the summary says so and the next run catches the catalog up. `raw_database`: the raw table's own
    database (default: `database`)."""

    def register(store: Store, folder: str, summary: RunSummary) -> None:
        from servicelogs import crash

        crash.point("register in the catalog")
        kind = catalog if isinstance(catalog, str) else type(catalog).__name__
        opened = (
            open_catalog(catalog, store.url, region=region, endpoint_url=endpoint_url, store=store)
            if isinstance(catalog, str)
            else catalog
        )
        names = Names(database or opened.default_database, table or folder, raw, rejects, raw_database)
        summary.catalog = {"kind": kind, "database": names.database, "table": names.table}
        try:
            result = sync(
                opened, fmt, names, store, source, folder=folder, projection=projection, headers=summary.headers
            )
            summary.catalog |= asdict(result)
        except CatalogError as e:
            summary.catalog["error"] = str(e)
        except Exception as e:
            summary.catalog["error"] = f"{type(e).__name__}: {e}"
        finally:
            if isinstance(catalog, str):
                opened.close()

    return register
