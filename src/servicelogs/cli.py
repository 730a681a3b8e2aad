"""The command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import os
import sys
import time

from servicelogs import __version__, formats
from servicelogs.errors import ServiceLogsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="servicelogs", description="AWS service logs into typed, partitioned Parquet tables."
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

    demo = sub.add_parser("demo", help="make a small ALB corpus, convert it and query it with DuckDB")
    demo.add_argument("--dir", default="servicelogs-demo", help="where to put the corpus and the table")

    sub.add_parser("formats", help="list the log formats")

    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            return _convert(args)
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
    summary = servicelogs.convert(
        args.format,
        args.source,
        args.target,
        workers=args.workers,
        table=args.table,
        progress=bar.update if bar else None,
    )
    if bar:
        bar.close()
    print(summary.to_json() if args.json else summary.text())
    return 0 if summary.ok else 1


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
