"""servicelogs: AWS service logs → typed, partitioned Parquet tables, incrementally and exactly once.

The API is small::

    import servicelogs
    summary = servicelogs.convert("alb", "logs/", "lake/")   # a RunSummary
    servicelogs.formats.names()                                # ('alb', ...)

Importing servicelogs is cheap: Arrow, DuckDB and the engines load when a conversion starts.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from servicelogs import formats
from servicelogs.errors import ServiceLogsError, UsageError

if TYPE_CHECKING:
    from datetime import date

    from servicelogs.catalogs import Catalog
    from servicelogs.run import Progress
    from servicelogs.summary import RunSummary

__all__ = ["ServiceLogsError", "convert", "formats"]
__version__ = "0.1.0"


def convert(
    format: str,
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    workers: int | None = None,
    table: str | None = None,
    progress: Progress | None = None,
    since: date | None = None,
    until: date | None = None,
    on_rewrite: str = "report",
    endpoint_url: str | None = None,
    catalog: str | Catalog | None = None,
    database: str | None = None,
    raw_table: str = "",
    rejects_table: str = "",
    projection: bool = False,
    engine: str = "local",
    master: str | None = None,
    full_listing: bool = False,
    late_days: int | None = None,
    **tuning: int,
) -> RunSummary:
    """Convert the logs of `format` under `source` into the table under `target`.

    `source` and `target` are local folders or s3://bucket/prefix URLs. Only objects not yet in the
    table's ledger are read; see `servicelogs.run.run` for `since`, `until` and `on_rewrite`.
    Returns the run summary; an object that could not be read is listed in `summary.failed` (the run
    goes on). `engine="spark"` runs the batches as Spark tasks (servicelogs.engines.spark; `master` as for
    spark-submit, default the active session's or local[*]); the rows are the same. Raises UsageError for an
    unknown format or a source that is not there, StorageError when
    the target cannot be written (naming the operation and the key).

    `catalog` registers the tables after the commits: "duckdb" (the default for a local target: the file
    `<target>/catalog.duckdb`), "glue", "none", or a `servicelogs.catalogs.Catalog`; `database`,
    `raw_table` and `rejects_table` name them (default: the catalog's database, `<table>_raw`,
    `<table>_rejects`); `projection` declares Athena partition projection instead of partitions. The
    outcome is in `summary.catalog`; a catalog that fails fails no data (the next run catches up).

    The source is listed only from the ledger's latest delivery day less `late_days` (default 3) on, where the
    format's key layouts hold the day (servicelogs.listing); `full_listing=True` lists all of it, to find
    objects delivered later than that: run one on a schedule (`servicelogs status` says when the last ran).
    """
    from servicelogs import run
    from servicelogs.engines import local
    from servicelogs.locations import open_source, open_store

    fmt = formats.get(format)
    if engine not in ("local", "spark"):
        raise UsageError(f"engine must be local or spark, not {engine!r}")
    if master and engine != "spark":
        raise UsageError("a Spark master applies to engine='spark' only")
    if engine == "spark":
        from servicelogs.engines import spark

    target_store = open_store(os.fspath(target), endpoint_url)
    source_objects = open_source(os.fspath(source), endpoint_url)
    if catalog is None:
        catalog = "none" if "://" in target_store.url else "duckdb"
    register = None
    if catalog != "none":
        from servicelogs.catalogs import registrar

        register = registrar(
            catalog,
            fmt,
            source_objects,
            database=database,
            table=table,
            raw=raw_table,
            rejects=rejects_table,
            projection=projection,
        )
    return run.run(
        fmt,
        source_objects,
        target_store,
        engine=spark.executor(master) if engine == "spark" else local.execute,
        register=register,
        workers=workers,
        table_name=table,
        progress=progress,
        since=since,
        until=until,
        on_rewrite=on_rewrite,
        full_listing=full_listing,
        **({} if late_days is None else {"late_days": late_days}),
        **tuning,
    )
