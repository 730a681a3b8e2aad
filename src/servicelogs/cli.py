"""The command line: a thin layer over the Python API.

Each subcommand is a `_command_*` function that adds its parser and returns its handler, listed in COMMANDS:
a new subcommand is one function and one entry. Mistakes are one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, NoReturn

from servicelogs import __version__, formats
from servicelogs.errors import ServiceLogsError, UsageError
from servicelogs.lean import lean_process

if TYPE_CHECKING:
    from servicelogs.spec import LogFormat
    from servicelogs.summary import RunSummary

EXIT_OK = 0
EXIT_FAILED_OBJECTS = 1
"""Some objects could not be read or listed, or a worker died: each named in the summary; none of their rows is in
the table."""
EXIT_ERROR = 2
"""A usage error, a store operation that kept failing (named with its key), a full or read-only target, or a
fenced run; nothing partial is visible."""
EXIT_CONCURRENT = 3
"""Every object is converted, but some batches were committed by a concurrent run (this one dropped its copy)."""
EXIT_NOTHING_FOUND = 4
"""The source holds no object of the format: it lists nothing, or no key matches the format's key layouts."""

EPILOG = (
    "exit status: 0 done (also when nothing was new); 1 some objects could not be read or listed, or a worker "
    "process died (each named; the next run retries them); 2 error (a usage error, a store operation that kept "
    "failing, a full or read-only target: named with its key or path; or the run was fenced, taken for dead by "
    "another run; nothing partial is visible); 3 done, but a concurrent run committed some of the batches first; "
    "4 the source holds no object of the format (it lists nothing, or no key matches the format's key layouts)."
)
ENDPOINT_HELP = "S3 endpoint (default: AWS_ENDPOINT_URL_S3 or AWS's)"

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (argparse's own adds the usage text), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"servicelogs: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="servicelogs", description="AWS service logs into typed, partitioned Parquet tables.", epilog=EPILOG
    )
    parser.add_argument("--version", action="version", version=f"servicelogs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    handlers = {name: command(sub) for name, command in COMMANDS.items()}
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except ServiceLogsError as e:
        print(f"servicelogs: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("servicelogs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left early (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush says nothing
        return EXIT_OK


# -- convert -------------------------------------------------------------------------------------------


def _command_convert(sub: argparse._SubParsersAction) -> Handler:
    conv = sub.add_parser("convert", help="convert new source objects into the table", epilog=EPILOG)
    conv.add_argument("format", help=f"log format: {', '.join(formats.names())}")
    conv.add_argument(
        "source", help="where the logs are: a folder or s3://bucket/prefix (the AWS key layout, any prefix)"
    )
    conv.add_argument(
        "target", help="where the tables go: a folder or s3://bucket/prefix (<target>/<table>/, <table>_rejects/)"
    )
    conv.add_argument("--workers", type=_positive, default=os.cpu_count(), help="processes (default: all cores)")
    conv.add_argument("--table", help="table name under the target (default: the format name)")
    conv.add_argument("--json", action="store_true", help="print the summary as JSON, no progress")
    conv.add_argument("--since", type=_date, help="only objects delivered on or after this date (YYYY-MM-DD)")
    conv.add_argument("--until", type=_date, help="only objects delivered on or before this date (YYYY-MM-DD)")
    _listing_options(conv)
    conv.add_argument(
        "--on-rewrite",
        choices=("report", "convert"),
        default="report",
        help="a converted key now holding other content: report it and convert nothing (default), or convert "
        "the new content as well",
    )
    conv.add_argument("--endpoint-url", help=ENDPOINT_HELP)
    conv.add_argument(
        "--catalog",
        choices=("duckdb", "glue", "none"),
        help="register the raw, converted and rejects tables: duckdb (the default for a local target: "
        "<target>/catalog.duckdb), glue (AWS Glue Data Catalog) or none",
    )
    conv.add_argument("--database", help="catalog database (default: main in duckdb, servicelogs in glue)")
    conv.add_argument("--projection", action="store_true", help="Athena partition projection, no partitions")
    conv.add_argument("--engine", choices=("local", "spark"), default="local", help="local processes or Spark tasks")
    conv.add_argument("--master", help="Spark master for --engine spark (default: the job's, else local[*])")
    noise = conv.add_mutually_exclusive_group()
    noise.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    noise.add_argument("-v", "--verbose", action="store_true", help="also a line on stderr per object read")
    conv.add_argument("--batch-objects", type=_positive, help=argparse.SUPPRESS)
    conv.add_argument("--batch-mb", type=float, help=argparse.SUPPRESS)
    return _convert


def _convert(args: argparse.Namespace) -> int:
    import servicelogs

    if args.since and args.until and args.since > args.until:
        raise UsageError(f"--since {args.since} is after --until {args.until}: the window holds no day")
    fmt = formats.get(args.format)
    if args.engine == "local":
        lean_process()
    progress = None
    if args.verbose or not (args.json or args.quiet):  # --json keeps stderr quiet unless -v asks
        from servicelogs.progress import RunProgress

        progress = RunProgress(sys.stderr, terminal=sys.stderr.isatty(), verbose=args.verbose)
    tuning = {}
    if args.batch_objects:
        tuning["batch_objects"] = args.batch_objects
    if args.batch_mb:
        tuning["batch_bytes"] = int(args.batch_mb * (1 << 20))
    try:
        summary = servicelogs.convert(
            fmt.name,
            args.source,
            args.target,
            workers=args.workers,
            table=args.table,
            progress=progress,
            since=args.since,
            until=args.until,
            on_rewrite=args.on_rewrite,
            endpoint_url=args.endpoint_url,
            catalog=args.catalog,
            database=args.database,
            projection=args.projection,
            engine=args.engine,
            master=args.master,
            full_listing=args.full_listing,
            late_days=args.late_days,
            **tuning,
        )
    finally:
        if progress:
            progress.close()
    print(summary.to_json() if args.json else summary.text())
    if not summary.ok:
        return EXIT_FAILED_OBJECTS
    nothing_found = _nothing_found(fmt, summary)
    if nothing_found:
        print(f"servicelogs: {nothing_found}", file=sys.stderr)
        return EXIT_NOTHING_FOUND
    return EXIT_CONCURRENT if summary.batches_lost else EXIT_OK


def _nothing_found(fmt: LogFormat, summary: RunSummary) -> str:
    """Why the source holds nothing to convert, or "" when it holds objects of the format (even if none is new)."""
    of_format = summary.objects_new + summary.objects_done_before + summary.objects_outside_window
    if of_format or summary.rewritten or summary.listing == "window":  # a window's days may just hold none
        return ""
    if not summary.objects_listed:
        where = f"source {summary.source!r} lists no object"
    else:
        where = (
            f"none of the {summary.objects_listed} objects under {summary.source!r} matches a key layout of "
            f"{fmt.title} (each is skipped with its reason in the summary)"
        )
    return f"nothing to convert: {where}; a key of this format looks like {fmt.key_layouts[0].example}"


# -- run --config, ddl -------------------------------------------------------------------------------


def _command_run(sub: argparse._SubParsersAction) -> Handler:
    run = sub.add_parser("run", help="convert every log source a TOML config file names")
    run.add_argument("--config", required=True, help="TOML file of [[source]] tables (see docs/catalogs.md)")
    run.add_argument("--json", action="store_true", help="print the summaries as JSON")
    run.add_argument(
        "--full-listing", action="store_true", help="list every source in full (as `full_listing = true` does)"
    )
    return _run_config


def _run_config(args: argparse.Namespace) -> int:
    import json

    from servicelogs import config

    lean_process()  # a config's sources run on the local engine
    results = config.run_all(config.load(args.config), full_listing=args.full_listing)
    worst = EXIT_OK
    out = []
    for source, result in results:
        if isinstance(result, ServiceLogsError):
            worst = EXIT_ERROR
            out.append({"name": source.name, "error": str(result)})
            if not args.json:
                print(f"[{source.name}] error: {result}")
            continue
        code = EXIT_FAILED_OBJECTS if not result.ok else EXIT_CONCURRENT if result.batches_lost else EXIT_OK
        worst = max(worst, code)
        out.append({"name": source.name, **result.to_dict()})
        if not args.json:
            print(f"[{source.name}] " + result.text())
    if args.json:
        print(json.dumps(out, indent=2))
    return worst


def _command_ddl(sub: argparse._SubParsersAction) -> Handler:
    ddl = sub.add_parser("ddl", help="print Athena CREATE statements for a format's raw, converted and rejects tables")
    ddl.add_argument("format", help=f"log format: {', '.join(formats.names())}")
    ddl.add_argument("--location", default="s3://<bucket>/<lake>", help="the tables' folder (the convert target)")
    ddl.add_argument("--source", default="s3://<bucket>/<logs>", help="where the logs lie (the raw table)")
    ddl.add_argument("--table", help="table name (default: the format name)")
    ddl.add_argument("--database", default="", help="database to qualify the tables with")
    ddl.add_argument("--projection", action="store_true", help="partition projection instead of partitions")
    return _ddl


def _ddl(args: argparse.Namespace) -> int:
    from servicelogs.render.hive import create_statements

    fmt = formats.get(args.format)
    print(
        "\n\n".join(
            create_statements(fmt, args.location, args.source, args.table or fmt.name, args.database, args.projection)
        )
    )
    return EXIT_OK


def _command_deploy(sub: argparse._SubParsersAction) -> Handler:
    deploy = sub.add_parser("deploy", help="deploy servicelogs as a cloud job")
    deploy.add_argument("platform", choices=("glue",), help="glue: an AWS Glue job (servicelogs.deploy)")
    deploy.add_argument("--name", required=True, help="the Glue job's name")
    deploy.add_argument("--role", required=True, help="the job's IAM role (name or ARN)")
    deploy.add_argument("--format", required=True, choices=formats.names(), help="log format")
    deploy.add_argument("--source", required=True, help="s3://bucket/prefix of the raw logs")
    deploy.add_argument("--target", required=True, help="s3://bucket/prefix/<table folder> of the converted table")
    deploy.add_argument("--artifacts", required=True, help="s3://bucket/prefix for the wheel and the job script")
    deploy.add_argument("--glue-version", default="5.0")
    deploy.add_argument("--worker-type", default="G.1X")
    deploy.add_argument("--workers", type=_positive, default=2, help="number of workers")
    for name in ("database", "table", "raw-database", "raw-table"):
        deploy.add_argument(f"--{name}", default="", help=f"catalog {name.replace('-', ' ')} name")
    deploy.add_argument("--wheel", help="a built servicelogs wheel (default: build this checkout's)")
    deploy.add_argument("--start", action="store_true", help="start a job run once deployed")
    deploy.add_argument("--endpoint-url", help="AWS endpoint for S3 and Glue (default: AWS's)")
    return _deploy


def _deploy(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from servicelogs.deploy import GlueJob, deploy_glue

    job = GlueJob(
        args.name, args.role, args.format, args.source, args.target, args.artifacts, args.glue_version,
        args.worker_type, args.workers, args.database, args.table, args.raw_database, args.raw_table,
    )  # fmt: skip
    wheel = Path(args.wheel) if args.wheel else None
    print(json.dumps(deploy_glue(job, wheel=wheel, start=args.start, endpoint_url=args.endpoint_url)))
    return EXIT_OK


# -- status --------------------------------------------------------------------------------------------


def _command_status(sub: argparse._SubParsersAction) -> Handler:
    stat = sub.add_parser("status", help="show a table's ledger and its last runs (source, window, outcome)")
    stat.add_argument("target", help="folder or s3:// URL of the tables")
    stat.add_argument("--table", help="table name (default: every table under the target)")
    stat.add_argument("--runs", type=_positive, default=5, help="how many of the last runs to show (default 5)")
    stat.add_argument("--json", action="store_true", help="print as JSON")
    stat.add_argument("--endpoint-url", help=ENDPOINT_HELP)
    return _status


def _status(args: argparse.Namespace) -> int:
    import json

    from servicelogs import status
    from servicelogs.locations import open_store

    store = open_store(args.target, args.endpoint_url)
    names = [args.table] if args.table else status.tables(store)
    if not names:
        raise UsageError(f"no servicelogs table under {args.target}")
    found = [status.status(store, name, args.runs) for name in names]
    print(json.dumps(found, indent=2) if args.json else "\n".join(status.status_text(s) for s in found))
    return EXIT_OK


# -- formats, demo -------------------------------------------------------------------------------------


def _command_formats(sub: argparse._SubParsersAction) -> Handler:
    fmts = sub.add_parser("formats", help="list the log formats, or show one: columns, partitions, key layouts")
    fmts.add_argument("name", nargs="?", help="a format: print its columns, partition columns and key layouts")
    fmts.add_argument("--json", action="store_true", help="print as JSON")
    return _formats


def _formats(args: argparse.Namespace) -> int:
    import json

    from servicelogs.render import docs

    if args.name:
        fmt = formats.get(args.name)
        print(docs.as_json(fmt) if args.json else docs.as_text(fmt))
    elif args.json:
        print(json.dumps([{"name": f.name, "title": f.title} for f in formats.all_formats()], indent=2))
    else:
        for fmt in formats.all_formats():
            print(f"{fmt.name:12} {fmt.title}")
    return EXIT_OK


def _command_demo(sub: argparse._SubParsersAction) -> Handler:
    demo = sub.add_parser("demo", help="make a small ALB corpus, convert it and query it with DuckDB")
    demo.add_argument("--dir", default="servicelogs-demo", help="where to put the corpus and the table")
    return _demo


def _demo(args: argparse.Namespace) -> int:
    from servicelogs.demo import run_demo

    return run_demo(args.dir)


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Handler]] = {
    "convert": _command_convert,
    "status": _command_status,
    "formats": _command_formats,
    "demo": _command_demo,
    "run": _command_run,
    "ddl": _command_ddl,
    "deploy": _command_deploy,
}


# -- argument types ------------------------------------------------------------------------------------


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from e


def _listing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--full-listing",
        action="store_true",
        help="list the whole source, not only the days from the ledger's latest less --late-days: finds objects "
        "delivered later than that (run one on a schedule; `servicelogs status` says when the last ran)",
    )
    parser.add_argument(
        "--late-days",
        type=_days,
        help="days before the ledger's latest delivery day a normal run still lists (default 3)",
    )


def _whole(minimum: int, whole: str, counted: str) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`, or a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{text!r} is not {whole}") from e
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not {counted} ({minimum} or more)")
        return value

    return parse


_days = _whole(0, "a whole number of days", "a number of days")
_positive = _whole(1, "a whole number", "a positive number")
