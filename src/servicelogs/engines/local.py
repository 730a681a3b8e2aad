"""The local engine: one machine, a process per core, Arrow kernels on the hot path.

Data flow: list the source → keep the keys of the format's layouts → group objects into batches
(deterministic: sorted keys, bounded bytes) → each worker reads its batch's objects as blocks of lines,
parses them in bulk, writes rows and rejects to staged Parquet files → the batch commits by rename.
An object that cannot be read fails alone: its batch is redone without it, so none of its rows show.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import resource
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from servicelogs import formats
from servicelogs.engines.arrow_parse import DelimitedParser, Parsed
from servicelogs.engines.header_parse import HeaderDelimitedParser
from servicelogs.engines.writer import PartitionedWriter, commit_files
from servicelogs.errors import SourceError
from servicelogs.render.arrow import per_object_column, rejects_schema, schema
from servicelogs.sources import LocalSource, SourceObject, decompressed
from servicelogs.spec import Delimited, HeaderDelimited, JsonRecords, LogFormat
from servicelogs.summary import ObjectProblem, RunSummary

BATCH_BYTES = 32 << 20  # source bytes per batch: bounds a batch's output files and its redo cost
BATCH_OBJECTS = 2000
UNKNOWN = "unknown"


def _json_records_parser(fmt: LogFormat):  # type: ignore[no-untyped-def]
    from servicelogs.engines.json_parse import JsonRecordsParser  # DuckDB loads only for JSON formats

    return JsonRecordsParser(fmt)


# Grammar kind → the parser that implements it in Arrow. Each parser takes the format declaration and
# offers parse(stream, key) -> Iterator[Parsed]; a Parsed may carry `notes` (reason → count) for
# values recognised as not records and skipped (a digest, an empty records array).
PARSERS: dict[type, Callable[[LogFormat], DelimitedParser | HeaderDelimitedParser]] = {
    Delimited: DelimitedParser,
    HeaderDelimited: HeaderDelimitedParser,
    JsonRecords: _json_records_parser,
}


def parser_for(fmt: LogFormat) -> DelimitedParser | HeaderDelimitedParser:
    return PARSERS[type(fmt.grammar)](fmt)


@dataclass(frozen=True)
class Layout:
    """Where a converted table and its companions live under the target folder."""

    target: Path
    table_name: str

    @property
    def table(self) -> Path:
        return self.target / self.table_name

    @property
    def rejects(self) -> Path:
        return self.target / f"{self.table_name}_rejects"

    @property
    def state(self) -> Path:
        return self.target / "_servicelogs" / self.table_name

    def staging(self, batch_id: str) -> Path:
        return self.state / "staging" / batch_id


@dataclass(frozen=True)
class BatchTask:
    format_name: str
    source: LocalSource
    layout: Layout
    run_id: str
    objects: tuple[tuple[SourceObject, tuple[tuple[str, str], ...]], ...]  # object, key groups


@dataclass
class BatchResult:
    batch_id: str = ""
    objects_converted: int = 0
    lines: int = 0
    rows: int = 0
    rejects: int = 0
    header_lines: int = 0
    extra_field_rows: int = 0
    bytes_read: int = 0
    bytes_text: int = 0
    files: list[str] = field(default_factory=list)
    generations: Counter[str] = field(default_factory=Counter)
    failed: list[ObjectProblem] = field(default_factory=list)
    skipped: list[ObjectProblem] = field(default_factory=list)  # objects that held no records (a digest)
    notes: Counter[str] = field(default_factory=Counter)


Progress = Callable[[int, int, int], None]  # (source bytes, text bytes, rows) since the last call


def run(
    fmt: LogFormat,
    source: LocalSource,
    target: Path,
    *,
    workers: int | None = None,
    table_name: str | None = None,
    progress: Progress | None = None,
) -> RunSummary:
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    layout = Layout(target, table_name or fmt.name)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    summary = RunSummary(run_id, fmt.name, str(source), str(target))

    wanted: list[tuple[SourceObject, tuple[tuple[str, str], ...]]] = []
    for obj in source.list():
        summary.objects_listed += 1
        groups = fmt.match_key(obj.key)
        ignored = fmt.explain_ignored_key(obj.key)
        if ignored:
            summary.skipped.append(ObjectProblem(obj.key, ignored))
        elif groups is None:
            summary.skipped.append(
                ObjectProblem(obj.key, f"not a {fmt.name} log object (its key matches no {fmt.name} key layout)")
            )
        else:
            wanted.append((obj, tuple(sorted(groups.items()))))
    summary.objects_skipped = len(summary.skipped)

    tasks = [BatchTask(fmt.name, source, layout, run_id, batch) for batch in plan_batches(wanted)]
    for result in _execute(tasks, workers or os.cpu_count() or 1, progress):
        summary.objects_converted += result.objects_converted
        summary.lines += result.lines
        summary.rows += result.rows
        summary.rejects += result.rejects
        summary.header_lines += result.header_lines
        summary.extra_field_rows += result.extra_field_rows
        summary.bytes_read += result.bytes_read
        summary.bytes_text += result.bytes_text
        summary.files_written += len(result.files)
        for gen, n in result.generations.items():
            summary.generations[gen] = summary.generations.get(gen, 0) + n
        summary.failed += result.failed
        summary.skipped += result.skipped
        summary.objects_skipped += len(result.skipped)
        for note, n in result.notes.items():
            summary.notes[note] = summary.notes.get(note, 0) + n
    summary.objects_failed = len(summary.failed)
    summary.seconds = time.perf_counter() - started
    summary.cpu_seconds = _cpu_seconds() - cpu_started
    runs = layout.state / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{run_id}.json").write_text(summary.to_json())
    return summary


def plan_batches(
    objects: list[tuple[SourceObject, tuple[tuple[str, str], ...]]],
) -> Iterator[tuple[tuple[SourceObject, tuple[tuple[str, str], ...]], ...]]:
    """Sorted by key, cut at BATCH_BYTES or BATCH_OBJECTS: the same listing always gives the same batches."""
    batch: list[tuple[SourceObject, tuple[tuple[str, str], ...]]] = []
    size = 0
    for item in sorted(objects, key=lambda item: item[0].key):
        if batch and (size + item[0].size > BATCH_BYTES or len(batch) >= BATCH_OBJECTS):
            yield tuple(batch)
            batch, size = [], 0
        batch.append(item)
        size += item[0].size
    if batch:
        yield tuple(batch)


def batch_id(objects: tuple[tuple[SourceObject, tuple[tuple[str, str], ...]], ...]) -> str:
    """Derived from the batch's source set, so a replay writes the same file names."""
    h = hashlib.sha256()
    for obj, _ in objects:
        h.update(f"{obj.key}\t{obj.size}\t{obj.etag}\n".encode())
    return h.hexdigest()[:20]


# -- workers -------------------------------------------------------------------------------------------

_progress_queue: multiprocessing.Queue | None = None


def _init_worker(q: multiprocessing.Queue) -> None:
    global _progress_queue
    _progress_queue = q


def _execute(tasks: list[BatchTask], workers: int, progress: Progress | None) -> Iterator[BatchResult]:
    if workers <= 1 or len(tasks) <= 1:
        global _progress_queue
        for task in tasks:
            if progress:
                _progress_queue = _CallbackQueue(progress)  # type: ignore[assignment]
            yield convert_batch(task)
        _progress_queue = None
        return
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue = ctx.Queue()
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker, initargs=(q,)) as pool:
        pending: set[Future[BatchResult]] = {pool.submit(convert_batch, t) for t in tasks}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(q, progress)
            for fut in done:
                yield fut.result()
        _drain(q, progress)


def _drain(q: multiprocessing.Queue, progress: Progress | None) -> None:
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return
        if progress:
            progress(*item)


class _CallbackQueue:
    def __init__(self, callback: Progress) -> None:
        self.put = lambda item: callback(*item)


def convert_batch(task: BatchTask) -> BatchResult:
    """Convert one batch; an object that cannot be read is dropped and the batch redone without it."""
    fmt = formats.get(task.format_name)
    objects = task.objects
    failed: list[ObjectProblem] = []
    while True:
        result = BatchResult(batch_id=batch_id(objects), failed=failed)
        staging = task.layout.staging(result.batch_id)
        file_name = f"part-{result.batch_id}.parquet"
        rows = PartitionedWriter(staging / "table", file_name, schema(fmt))
        rejects = PartitionedWriter(staging / "rejects", file_name, rejects_schema())
        try:
            for obj, groups in objects:
                _convert_object(fmt, task, obj, dict(groups), rows, rejects, result)
        except SourceError as e:
            rows.abort()
            rejects.abort()
            failed.append(ObjectProblem(e.key, e.reason))
            objects = tuple(item for item in objects if item[0].key != e.key)
            if not objects:
                return BatchResult(failed=failed)
            continue
        rows.close()
        rejects.close()
        result.files = commit_files(staging / "table", task.layout.table)
        result.files += commit_files(staging / "rejects", task.layout.rejects)
        return result


def _convert_object(
    fmt: LogFormat,
    task: BatchTask,
    obj: SourceObject,
    groups: dict[str, str],
    rows: PartitionedWriter,
    rejects: PartitionedWriter,
    result: BatchResult,
) -> None:
    counts = BatchResult()
    with task.source.open(obj) as raw:
        for parsed in parser_for(fmt).parse(decompressed(raw, obj.key), obj.key):
            counts.lines += parsed.lines
            counts.bytes_text += parsed.text_bytes
            counts.rows += parsed.rows.num_rows
            counts.rejects += len(parsed.reject_lines)
            counts.header_lines += parsed.header_lines
            counts.extra_field_rows += parsed.extra_rows
            counts.generations.update(parsed.generations)
            counts.notes.update(getattr(parsed, "notes", ()))
            if parsed.rows.num_rows:
                _write_rows(fmt, parsed.rows, obj.key, groups, task.run_id, rows)
            if parsed.reject_lines:
                rejects.write("", _rejects_table(parsed, obj.key, task.run_id))
            if _progress_queue is not None:
                _progress_queue.put((0, parsed.text_bytes, parsed.rows.num_rows))
    counts.bytes_read = obj.size
    if _progress_queue is not None:
        _progress_queue.put((obj.size, 0, 0))
    # Only a fully read object counts: a SourceError above leaves `result` untouched.
    result.notes.update(counts.notes)
    if counts.notes and not counts.lines:
        result.skipped.append(ObjectProblem(obj.key, "; ".join(sorted(counts.notes))))
        result.bytes_read += obj.size
        return
    result.objects_converted += 1
    for name in ("lines", "bytes_text", "rows", "rejects", "header_lines", "extra_field_rows", "bytes_read"):
        setattr(result, name, getattr(result, name) + getattr(counts, name))
    result.generations.update(counts.generations)


def _rejects_table(parsed: Parsed, key: str, run_id: str) -> pa.Table:
    n = len(parsed.reject_lines)
    return pa.table(
        {
            "source_key": pa.repeat(key, n),
            "line_number": pa.array(parsed.reject_lines, pa.int64()),
            "raw_line": pa.array(parsed.reject_raw, pa.string()),
            "reason": pa.array(parsed.reject_reasons, pa.string()),
            "run_id": pa.repeat(run_id, n),
        }
    )


def _write_rows(
    fmt: LogFormat, table: pa.Table, key: str, groups: dict[str, str], run_id: str, writer: PartitionedWriter
) -> None:
    n = table.num_rows
    values = {**{f.name: groups.get(f.name) for f in fmt.key_fields}, "source_key": key, "run_id": run_id}
    for f in fmt.per_object_fields:
        table = table.append_column(f.name, per_object_column(values[f.name], n))
    days = pc.cast(table.column(fmt.event_time), pa.date32())
    key_day = _key_day(groups)
    if days.null_count and key_day is not None:
        # A line without an event time (a custom format that leaves it out): the delivery date in its key.
        days = pc.fill_null(days, pa.scalar(key_day, pa.date32()))
    unique_days = pc.unique(days).to_pylist()
    for day in unique_days:
        if len(unique_days) == 1:
            part = table
        else:
            part = table.filter(pc.is_null(days) if day is None else pc.fill_null(pc.equal(days, day), False))
        writer.write(_partition_path(fmt, groups, day), part)


def _key_day(groups: dict[str, str]) -> date | None:
    try:
        return date(int(groups["year"]), int(groups["month"]), int(groups["day"]))
    except (KeyError, ValueError):
        return None


def _partition_path(fmt: LogFormat, groups: dict[str, str], day: date | None) -> str:
    values = {
        "region": groups.get("region", UNKNOWN),
        "year": f"{day.year:04d}" if day else UNKNOWN,
        "month": f"{day.month:02d}" if day else UNKNOWN,
        "day": f"{day.day:02d}" if day else UNKNOWN,
    }
    return "/".join(f"{name}={values[name]}" for name in fmt.partitions)


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
