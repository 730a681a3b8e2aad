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
from servicelogs.errors import ServiceLogsError

if TYPE_CHECKING:
    from servicelogs.engines.local import Progress
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
) -> RunSummary:
    """Convert the logs of `format` under `source` into the table under `target`.

    Returns the run summary; an object that could not be read is listed in `summary.failed` (the run
    goes on). Raises UsageError for an unknown format or a source that is not there.
    """
    from pathlib import Path

    from servicelogs.engines import local
    from servicelogs.sources import open_source

    fmt = formats.get(format)
    return local.run(
        fmt, open_source(os.fspath(source)), Path(target), workers=workers, table_name=table, progress=progress
    )
