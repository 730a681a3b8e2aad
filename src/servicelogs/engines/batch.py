"""One batch of source objects → staged Parquet files and counts: the work of a worker process.

The run (servicelogs.run) plans the batches, commits and publishes them; this module converts one. It is the
only part of the local engine that needs pyarrow (and DuckDB, for JSON record formats), so a run with several
workers never imports it: only its workers do.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servicelogs import formats
from servicelogs.engines.arrow_parse import DelimitedParser, Opener, Parsed, Parser
from servicelogs.engines.header_parse import HeaderDelimitedParser
from servicelogs.engines.writer import PartitionedWriter, WrittenFile
from servicelogs.errors import SourceError, StagingStopped
from servicelogs.lean import hide_pandas, keep_freed_memory
from servicelogs.prefetch import RawOpener, prefetched
from servicelogs.render.arrow import per_object_column, rejects_schema, schema
from servicelogs.run import BatchTask, Progress, ProgressEvent, StagedBatch, report
from servicelogs.sources import SourceObject, decompressed, delivery_date
from servicelogs.spec import Delimited, Grammar, HeaderDelimited, JsonRecords, LogFormat
from servicelogs.storage import StagedFile
from servicelogs.summary import Counts, ObjectProblem, reason_kind

KeyGroups = tuple[tuple[str, str], ...]  # an object's key layout groups, as a batch's items carry them


def _json_records_parser(fmt: LogFormat) -> Parser:
    from servicelogs.engines.json_parse import JsonRecordsParser  # DuckDB loads only for JSON formats

    return JsonRecordsParser(fmt)


# Grammar kind → the parser that implements it in Arrow (arrow_parse.Parser: one interface for every grammar).
PARSERS: dict[type[Grammar], Callable[[LogFormat], Parser]] = {
    Delimited: DelimitedParser,
    HeaderDelimited: HeaderDelimitedParser,
    JsonRecords: _json_records_parser,
}


def parser_for(fmt: LogFormat) -> Parser:
    return PARSERS[type(fmt.grammar)](fmt)


# -- progress ------------------------------------------------------------------------------------------

_progress_queue: multiprocessing.Queue | _CallbackQueue | None = None


class _CallbackQueue:
    def __init__(self, callback: Progress) -> None:
        self.callback = callback

    def put(self, event: ProgressEvent) -> None:
        report(self.callback, event)


@contextlib.contextmanager
def reporting_to(progress: Progress | None) -> Iterator[None]:
    """Batches converted in this process report their progress to `progress` (a run with one worker)."""
    global _progress_queue
    _progress_queue = _CallbackQueue(progress) if progress else None
    try:
        yield
    finally:
        _progress_queue = None


def init_worker(q: multiprocessing.Queue) -> None:
    """In a worker process: report progress to the run through `q`, keep freed memory, load no pandas."""
    global _progress_queue
    _progress_queue = q
    keep_freed_memory()
    hide_pandas()


def stage_batch(task: BatchTask, stopped: threading.Event | None = None, *, attempt: int = 0) -> StagedBatch:
    """Convert one batch's objects into staged files, with their sizes and checksums, and its counts. An
    object that cannot be read stops the batch: nothing of it stays staged, and the object is reported in
    `failed` (the run redoes the batch without it). A retried attempt (Spark) stages apart.

    Once `stopped` is set (the run no longer waits for this batch: engines.local.one_ahead), the batch stops
    before its next object or block with StagingStopped, and nothing of it stays staged."""
    staging = task.staging_of(attempt)
    staged = StagedBatch(task.batch_id, staging=staging)
    fmt = formats.get(task.format_name)
    with task.store.lease(task.run_id, task.runs):  # the run counts as alive while any of its workers is
        work = task.store.work_dir(staging)
        file_name = f"part-{task.batch_id}.parquet"
        rows = PartitionedWriter(work / "table", file_name, schema(fmt))
        rejects = PartitionedWriter(work / "rejects", file_name, rejects_schema())
        try:
            _convert_objects(fmt, task, rows, rejects, staged, stopped)
            written = rows.close() + rejects.close()
        except SourceError as e:
            rows.abort()
            rejects.abort()
            shutil.rmtree(work, ignore_errors=True)
            return StagedBatch(task.batch_id, failed=[ObjectProblem(e.key, e.reason)], staging=staging)
        except BaseException:  # a full disk, say: the run stops, the partial files go
            rows.abort()
            rejects.abort()
            shutil.rmtree(work, ignore_errors=True)
            raise
        staged.files = task.store.stage(work, staging, _staged_files(task, work, staging, written))
    return staged


def _staged_files(task: BatchTask, work: Path, staging: str, written: list[WrittenFile]) -> list[StagedFile]:
    """The writers' files as the commit will name them: staged key, visible key, size and CRC-32."""
    files = []
    for w in written:
        rel = w.path.relative_to(work).as_posix()
        files.append(StagedFile(f"{staging}/{rel}", task.layout.visible(rel), w.size, w.crc32))
    return files


def _convert_objects(
    fmt: LogFormat,
    task: BatchTask,
    rows: PartitionedWriter,
    rejects: PartitionedWriter,
    staged: StagedBatch,
    stopped: threading.Event | None,
) -> None:
    groups = {obj.key: key_groups for obj, key_groups in task.objects}
    counts: dict[str, Counts] = {}  # objects parsed on their own: whether one held records is known at its end
    # Unnamed, so that a batch that stops midway (stopped, a full disk) closes the parser, and the read-ahead's
    # threads, as the exception leaves the loop: a name would keep it open as long as the exception's traceback.
    for objs, parsed in parser_for(fmt).parse_objects(_openers(task, stopped)):
        _raise_if_stopped(stopped, task)  # between the blocks of a large object too: it may be most of a batch
        if parsed is None:
            for obj in objs:
                _add_object(obj, counts.pop(obj.key, None), staged)
            continue
        # A batch that fails stages nothing, so the rows of objects parsed together count at once.
        into = counts.setdefault(objs[0].key, Counts()) if parsed.objects is None else staged.counts
        if parsed.headers:
            staged.headers.update({objs[i].key: names for i, names in parsed.headers.items()})
        _add_block(fmt, task, objs, groups, parsed, into, rows, rejects)


def _openers(task: BatchTask, stopped: threading.Event | None) -> Iterator[tuple[SourceObject, str, Opener]]:
    """The batch's objects in order, each with an opener over its decompressed bytes; on S3 read ahead of
    the parser (servicelogs.prefetch), within a budget of bytes."""
    for obj, open_raw in prefetched(task.source, [obj for obj, _ in task.objects]):
        # Before each object, not only each parsed block: a group of small objects (thousands, of S3 access
        # logs) is read whole before its first block.
        _raise_if_stopped(stopped, task)
        # A partial, not a function decorated per object: contextmanager's wrapping cost ~10 µs an object.
        yield obj, obj.key, functools.partial(_decompressed, obj.key, open_raw)


def _raise_if_stopped(stopped: threading.Event | None, task: BatchTask) -> None:
    if stopped is not None and stopped.is_set():
        raise StagingStopped(task.batch_id)


@contextlib.contextmanager
def _decompressed(key: str, open_raw: RawOpener) -> Iterator[BinaryIO]:
    with open_raw() as raw:
        yield decompressed(raw, key)


def _add_block(
    fmt: LogFormat,
    task: BatchTask,
    objs: list[SourceObject],
    groups: dict[str, KeyGroups],
    parsed: Parsed,
    counts: Counts,
    rows: PartitionedWriter,
    rejects: PartitionedWriter,
) -> None:
    counts.lines += parsed.lines
    counts.bytes_text += parsed.text_bytes
    counts.rows += parsed.rows.num_rows
    counts.rejects += len(parsed.reject_lines)
    counts.header_lines += parsed.header_lines
    counts.extra_field_rows += parsed.extra_rows
    counts.generations.update(parsed.generations)
    counts.notes.update(parsed.notes)
    counts.reject_reasons.update(reason_kind(reason) for reason in parsed.reject_reasons)
    if parsed.rows.num_rows:
        _write_rows(fmt, parsed.rows, objs, parsed.objects, groups, task.run_id, rows)
    if parsed.reject_lines:
        rejects.write("", _rejects_table(parsed, objs, task.run_id))
    if _progress_queue is not None:
        _progress_queue.put(("parsed", objs[0].key, parsed.text_bytes, parsed.rows.num_rows))


def _add_object(obj: SourceObject, counts: Counts | None, staged: StagedBatch) -> None:
    """An object read to its end: its counts join the batch's (a SourceError before leaves them out).
    `counts` are its own, if it was parsed on its own; those of objects parsed together are the batch's already."""
    if _progress_queue is not None:
        _progress_queue.put(("object_done", obj.key, obj.size))
    if counts is None:
        staged.counts.objects_converted += 1
        staged.counts.bytes_read += obj.size
        return
    counts.bytes_read = obj.size
    if counts.notes and not counts.lines:
        staged.skipped.append(ObjectProblem(obj.key, "; ".join(sorted(counts.notes))))
        staged.counts.notes.update(counts.notes)
        staged.counts.bytes_read += obj.size
        return
    counts.objects_converted = 1
    staged.counts.add(counts)


def _rejects_table(parsed: Parsed, objs: list[SourceObject], run_id: str) -> pa.Table:
    n = len(parsed.reject_lines)
    of = parsed.reject_objects
    return pa.table(
        {
            "source_key": pa.repeat(objs[0].key, n) if of is None else pa.array([objs[i].key for i in of], pa.string()),
            "line_number": pa.array(parsed.reject_lines, pa.int64()),
            "raw_line": pa.array(parsed.reject_raw, pa.string()),
            "reason": pa.array(parsed.reject_reasons, pa.string()),
            "run_id": pa.repeat(run_id, n),
        }
    )


_NO_DAY = -(1 << 31)  # a row without an event time, in a partition code


def _write_rows(
    fmt: LogFormat,
    table: pa.Table,
    objs: list[SourceObject],
    row_objects: np.ndarray | None,
    groups: dict[str, KeyGroups],
    run_id: str,
    writer: PartitionedWriter,
) -> None:
    """Rows of one or several objects (`row_objects`: each row's index in `objs`), with their per-object
    columns, into their partitions: one write per partition, whatever the number of objects."""
    n = table.num_rows
    index = pa.array(row_objects if row_objects is not None else np.zeros(n, np.int32), pa.int32())
    keys = [obj.key for obj in objs]
    per_object: dict[str, list[str | None]] = {"source_key": keys}  # type: ignore[dict-item]  # str is str | None
    for f in fmt.key_fields:
        per_object[f.name] = [dict(groups[k]).get(f.name) for k in keys]
    for f in fmt.per_object_fields:
        if f.name == "run_id":
            column = per_object_column(run_id, n)
        else:
            column = pa.array(per_object[f.name], pa.string()).dictionary_encode().take(index)
        table = table.append_column(f.name, column)
    days = pc.cast(table.column(fmt.event_time), pa.date32())
    if days.null_count:
        # A line without an event time (a custom format that leaves it out): the delivery date in its key.
        key_days = pa.array([delivery_date(k, dict(groups[k])) for k in keys], pa.date32())
        days = pc.coalesce(days, key_days.take(index))
    # A row's partition: its object's key groups (objects with the same groups share partitions) and its day.
    identity: dict[KeyGroups, int] = {}
    of_object = np.fromiter((identity.setdefault(groups[k], len(identity)) for k in keys), np.int64, len(keys))
    day_numbers = pc.fill_null(pc.cast(days, pa.int32()), _NO_DAY).to_numpy()
    codes = of_object[index.to_numpy()] << 32 | (day_numbers.astype(np.int64) - _NO_DAY)
    # A hash, not np.unique's sort: ~6 ns a row against ~55 (200k rows), in the order partitions first appear.
    encoded = pc.dictionary_encode(pa.array(codes))
    unique, inverse = encoded.dictionary.to_numpy(), encoded.indices.to_numpy()
    # Runs of rows of one partition: objects in key order keep them few, and a slice per run costs no copy; rows
    # whose partitions alternate (objects of several layouts parsed apart) are put in order once instead.
    starts = np.flatnonzero(np.diff(inverse)) + 1
    if len(starts) + 1 > 4 * len(unique):
        order = np.argsort(inverse, kind="stable")
        table, inverse = table.take(pa.array(order)), inverse[order]
        starts = np.flatnonzero(np.diff(inverse)) + 1
    representative = {i: dict(g) for g, i in identity.items()}
    bounds = [0, *starts.tolist(), n]
    for start, end in itertools.pairwise(bounds):
        code = int(unique[inverse[start]])
        number = (code & 0xFFFFFFFF) + _NO_DAY
        day = None if number == _NO_DAY else _EPOCH + timedelta(days=number)
        part = table if end - start == n else table.slice(start, end - start)
        writer.write(fmt.partition_path(representative[code >> 32], day), part)


_EPOCH = date(1970, 1, 1)
