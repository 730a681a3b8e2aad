"""The AWS Glue job entry script (Glue 4 and 5), which runs unchanged under plain spark-submit.

    spark-submit glue_job.py --format alb --s3_source_location s3://logs/AWSLogs/ \\
        --s3_converted_target s3://lake/alb [--converted_database_name db --converted_table_name alb ...]

It takes the job arguments of the tool it replaces (awslabs athena-glue-service-logs), so a job switches by
pointing at this script and adding `--format`:
  --s3_source_location       the raw logs (any prefix of the AWS key layout)
  --s3_converted_target      the converted table's folder: the table is written there, as before; its rejects
                             go beside it (<folder>_rejects) and its ledger under <parent>/_servicelogs/
  --converted_database_name, --converted_table_name, --raw_database_name, --raw_table_name
                             the catalog names: when a database is named, the job registers the converted
                             and rejects tables (<converted_table_name>_rejects) in the converted database
                             and the raw table in the raw one, in the Glue Data Catalog (`--catalog duckdb`:
                             the embedded catalog instead, for an s3:// target the script catalog.sql in
                             it), with the partitions its commits added
Glue adds arguments of its own (--JOB_NAME, --job-bookmark-option, --TempDir, ...): they are ignored. Glue's
job bookmarks are not used: what is converted is decided by the table's own ledger, so a bookmark reset, a
re-run or two runs at once never convert a line twice. `awsglue` is not needed: the job's Spark session is
the one Glue (or spark-submit) started.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    # Run as a file from inside the package: its folder leads sys.path, where servicelogs/types.py would
    # shadow the standard library's `types`. The package is imported as installed instead.
    del sys.path[0]

import argparse
import json
import posixpath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servicelogs.storage import Store
    from servicelogs.summary import RunSummary

ORIGINAL_ARGUMENTS = (
    "raw_database_name",
    "raw_table_name",
    "converted_database_name",
    "converted_table_name",
    "s3_source_location",
    "s3_converted_target",
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The job's arguments, in Glue's `--name value` form, ignoring any others (Glue injects its own).

    argparse rather than awsglue's getResolvedOptions: it reads the same form, takes optional arguments
    (getResolvedOptions fails on a missing one) and works off Glue, so one parser serves both."""
    from servicelogs import formats

    parser = argparse.ArgumentParser(prog="glue_job.py", description="servicelogs: convert AWS service logs")
    parser.add_argument("--format", required=True, choices=formats.names(), help="log format")
    parser.add_argument("--s3_source_location", required=True, help="raw logs: s3://bucket/prefix or a folder")
    parser.add_argument("--s3_converted_target", required=True, help="the converted table's folder")
    parser.add_argument("--converted_database_name", default="", help="catalog database of the tables")
    parser.add_argument("--converted_table_name", default="", help="catalog name of the converted table")
    parser.add_argument("--raw_database_name", default="", help="catalog database of the raw table")
    parser.add_argument("--raw_table_name", default="", help="catalog name of the raw table")
    parser.add_argument("--catalog", choices=("glue", "duckdb", "none"), help="default: glue when a database is named")
    parser.add_argument("--endpoint_url", help="S3 endpoint (default: AWS's)")
    parser.add_argument("--master", help="Spark master when no session runs (spark-submit and Glue start one)")
    args, _ignored = parser.parse_known_args(argv)
    return args


def target_layout(converted_target: str) -> tuple[str, str]:
    """(the target root, the table's folder name): the table lands in `converted_target` itself."""
    location = converted_target.rstrip("/")
    root, folder = posixpath.split(location)
    if not folder or not root or root.endswith((":", ":/")):
        raise _usage(f"--s3_converted_target must name the table's folder under a bucket or folder: {converted_target}")
    return root, folder


def main(argv: list[str] | None = None) -> int:
    import servicelogs
    from servicelogs.errors import ServiceLogsError

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        root, folder = target_layout(args.s3_converted_target)
        summary = servicelogs.convert(
            args.format,
            args.s3_source_location,
            root,
            table=folder,
            engine="spark",
            master=args.master,
            endpoint_url=args.endpoint_url,
            catalog="none",  # registered below, under the job's own database and table names
        )
        register_tables(args, root, folder, summary)
        print(json.dumps(summary.to_dict(), default=str))  # one line: one log event in CloudWatch
    except ServiceLogsError as e:
        print(f"servicelogs: error: {e}", file=sys.stderr)
        return 2
    return 0 if summary.ok and not summary.catalog.get("error") else 1


def catalog_kind(args: argparse.Namespace) -> str:
    return args.catalog or ("glue" if args.converted_database_name or args.raw_database_name else "none")


def register_tables(args: argparse.Namespace, root: str, folder: str, summary: RunSummary) -> None:
    """Register the converted, rejects and raw tables and their new partitions under the job's catalog names
    (the converted table's folder is `--s3_converted_target` itself, the raw table's `--s3_source_location`).

    The run's own registration (servicelogs.catalogs.registrar, as `convert` does it) with the names of the
    original tool: idempotent, and a catalog that fails leaves its error in `summary.catalog` (the job then
    exits 1; its next run catches the catalog up, the data is committed either way)."""
    kind = catalog_kind(args)
    if kind == "none":
        return
    from servicelogs import catalogs, formats
    from servicelogs.locations import open_source

    register = catalogs.registrar(
        kind,
        formats.get(args.format),
        open_source(args.s3_source_location, args.endpoint_url),
        database=args.converted_database_name or None,
        table=args.converted_table_name or folder,
        raw=args.raw_table_name,
        raw_database=args.raw_database_name,
        endpoint_url=args.endpoint_url,
    )
    register(_target_store(root, args.endpoint_url), folder, summary)


def _target_store(root: str, endpoint_url: str | None) -> Store:
    from servicelogs.locations import open_store

    if root.startswith("s3://"):
        from servicelogs.s3 import S3Store

        return S3Store.from_url(root, endpoint_url)
    return open_store(root)


def _usage(message: str) -> Exception:
    from servicelogs.errors import UsageError

    return UsageError(message)


if __name__ == "__main__":
    sys.exit(main())
