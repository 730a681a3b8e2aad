"""The command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date

from servicelogs import __version__, formats
from servicelogs.errors import ServiceLogsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="servicelogs",
        description="AWS service logs into typed, partitioned Parquet tables.",
        epilog="exit status: 0 done; 1 some objects could not be read (listed; the next run retries them); "
        "2 error (named operation and key; nothing partial is visible, the next run goes on); "
        "3 done, but a concurrent run committed some of the batches first.",
    )
    parser.add_argument("--version", action="version", version=f"servicelogs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    conv = sub.add_parser("convert", help="convert new source objects into the table")
    conv.add_argument("format", help=f"log format: {', '.join(formats.names())}")
    conv.add_argument("source", help="folder holding the logs (the AWS key layout, any prefix)")
    conv.add_argument("target", help="folder of the tables: <target>/<format>/ and <target>/<format>_rejects/")
    conv.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: all cores)")
    conv.add_argument("--table", help="table name under the target (default: the format name)")
    conv.add_argument("--json", action="store_true", help="print the summary as JSON, no progress bar")
    conv.add_argument("--since", type=_date, help="only objects delivered on or after this date (YYYY-MM-DD)")
    conv.add_argument("--until", type=_date, help="only objects delivered on or before this date (YYYY-MM-DD)")
    conv.add_argument(
        "--on-rewrite",
        choices=("report", "convert"),
        default="report",
        help="a converted key now holding other content: report it and convert nothing (default), or convert "
        "the new content as well",
    )
    conv.add_argument("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3 or AWS's)")
    conv.add_argument("--engine", choices=("local", "spark"), default="local", help="local processes or Spark tasks")
    conv.add_argument("--master", help="Spark master for --engine spark (default: the job's, else local[*])")
    conv.add_argument("--batch-objects", type=int, help=argparse.SUPPRESS)
    conv.add_argument("--batch-mb", type=float, help=argparse.SUPPRESS)

    stat = sub.add_parser("status", help="show a table's ledger: done objects, pending batches, last runs")
    stat.add_argument("target", help="folder or s3:// URL of the tables")
    stat.add_argument("--table", help="table name (default: every table under the target)")
    stat.add_argument("--json", action="store_true", help="print as JSON")
    stat.add_argument("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3 or AWS's)")

    demo = sub.add_parser("demo", help="make a small ALB corpus, convert it and query it with DuckDB")
    demo.add_argument("--dir", default="servicelogs-demo", help="where to put the corpus and the table")

    sub.add_parser("formats", help="list the log formats")

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
    deploy.add_argument("--workers", type=int, default=2, help="number of workers")
    for name in ("database", "table", "raw-database", "raw-table"):
        deploy.add_argument(f"--{name}", default="", help=f"catalog {name.replace('-', ' ')} name")
    deploy.add_argument("--wheel", help="a built servicelogs wheel (default: build this checkout's)")
    deploy.add_argument("--start", action="store_true", help="start a job run once deployed")
    deploy.add_argument("--endpoint-url", help="AWS endpoint for S3 and Glue (default: AWS's)")

    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            return _convert(args)
        if args.command == "status":
            return _status(args)
        if args.command == "deploy":
            return _deploy(args)
        if args.command == "demo":
            from servicelogs.demo import run_demo

            return run_demo(args.dir)
        for fmt in formats.all_formats():
            print(f"{fmt.name:12} {fmt.title}")
        return 0
    except ServiceLogsError as e:
        print(f"servicelogs: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("servicelogs: interrupted", file=sys.stderr)
        return 130


def _convert(args: argparse.Namespace) -> int:
    import servicelogs

    bar = None if args.json or not sys.stderr.isatty() else ProgressBar()
    tuning = {}
    if args.batch_objects:
        tuning["batch_objects"] = args.batch_objects
    if args.batch_mb:
        tuning["batch_bytes"] = int(args.batch_mb * (1 << 20))
    summary = servicelogs.convert(
        args.format,
        args.source,
        args.target,
        workers=args.workers,
        table=args.table,
        progress=bar.update if bar else None,
        since=args.since,
        until=args.until,
        on_rewrite=args.on_rewrite,
        endpoint_url=args.endpoint_url,
        engine=args.engine,
        master=args.master,
        **tuning,
    )
    if bar:
        bar.close()
    print(summary.to_json() if args.json else summary.text())
    if not summary.ok:
        return 1
    return EXIT_CONCURRENT if summary.batches_lost else 0


EXIT_CONCURRENT = 3
"""Every object is converted, but some batches were committed by a concurrent run (this one dropped its copy)."""


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
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    from servicelogs import ledger
    from servicelogs.storage import open_store

    store = open_store(args.target)
    if args.endpoint_url and hasattr(store, "s3"):
        store.s3.endpoint_url = args.endpoint_url  # type: ignore[union-attr]
    names = [args.table] if args.table else ledger.tables(store)
    if not names:
        print(f"no servicelogs table under {args.target}", file=sys.stderr)
        return 1
    found = [ledger.status(store, name) for name in names]
    print(json.dumps(found, indent=2) if args.json else "\n".join(ledger.status_text(s) for s in found))
    return 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from e


class ProgressBar:
    """One status line on stderr: objects, MB of log text, rows per second."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.objects = self.source_bytes = self.text_bytes = self.rows = 0
        self._last = 0.0

    def update(self, source_bytes: int, text_bytes: int, rows: int) -> None:
        self.objects += 1 if source_bytes else 0
        self.source_bytes += source_bytes
        self.text_bytes += text_bytes
        self.rows += rows
        now = time.perf_counter()
        if now - self._last >= 0.25:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        sys.stderr.write(
            f"\r{self.objects} objects  {self.text_bytes / 1e6:,.1f} MB  {self.rows:,} rows  "
            f"{self.rows / elapsed:,.0f} rows/s  {self.text_bytes / 1e6 / elapsed:,.1f} MB/s "
        )
        sys.stderr.flush()

    def close(self) -> None:
        self._draw(time.perf_counter())
        sys.stderr.write("\n")
