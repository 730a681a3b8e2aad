"""The AWS Glue job entry script (Glue 4 and 5), which runs unchanged under plain spark-submit.

    spark-submit glue_job.py --format alb --s3_source_location s3://logs/AWSLogs/ \\
        --s3_converted_target s3://lake/alb [--converted_database_name db --converted_table_name alb ...]

It takes the job arguments of the tool it replaces (awslabs athena-glue-service-logs), so a job switches by
pointing at this script and adding `--format`:
  --s3_source_location       the raw logs (any prefix of the AWS key layout)
  --s3_converted_target      the converted table's folder: the table is written there, as before; its rejects
                             go beside it (<folder>_rejects) and its ledger under <parent>/_servicelogs/
  --converted_database_name, --converted_table_name, --raw_database_name, --raw_table_name
                             the catalog names; the tables are registered when a database is named
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
        )
        print(json.dumps(summary.to_dict()))  # one line: one log event in CloudWatch
        register_tables(args, root, folder)
    except ServiceLogsError as e:
        print(f"servicelogs: error: {e}", file=sys.stderr)
        return 2
    return 0 if summary.ok else 1


def register_tables(args: argparse.Namespace, root: str, folder: str) -> None:
    """Register the converted, raw and rejects tables under the job's catalog names.

    The hook for the catalogs issue (servicelogs.catalogs: `sync` registers what the ledger's commits made
    visible, idempotently); until that package is part of the build, the names are reported, not used."""
    kind = args.catalog or ("glue" if args.converted_database_name else "none")
    if kind == "none":
        return
    names = {name: getattr(args, name) for name in ORIGINAL_ARGUMENTS if name.endswith("_name")}
    try:
        from servicelogs import catalogs  # type: ignore[attr-defined]
    except ImportError:
        print(json.dumps({"catalog": kind, "registered": False, "reason": "no servicelogs.catalogs", **names}))
        return
    from servicelogs import formats
    from servicelogs.locations import open_source, open_store

    fmt = formats.get(args.format)
    table_names = catalogs.Names(
        database=args.converted_database_name or fmt.name,
        table=args.converted_table_name or folder,
        raw=args.raw_table_name,
    )
    catalog = catalogs.open_catalog(kind, root, endpoint_url=args.endpoint_url)
    store = open_store(root)
    result = catalogs.sync(
        catalog, fmt, table_names, store, open_source(args.s3_source_location, args.endpoint_url), folder=folder
    )
    print(json.dumps({"catalog": kind, "registered": True, **names, "result": str(result)}))


def _usage(message: str) -> Exception:
    from servicelogs.errors import UsageError

    return UsageError(message)


if __name__ == "__main__":
    sys.exit(main())
