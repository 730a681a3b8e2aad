"""One batch of source objects → staged Parquet files → a ledger commit: the work of a worker process.

`engines.local` plans the batches and runs them; this module converts one. It is the only part of the local
engine that needs pyarrow (and DuckDB, for JSON record formats), so a run with several workers never imports it:
only its workers do.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from servicelogs import formats
from servicelogs.engines import local
from servicelogs.engines.arrow_parse import DelimitedParser, Opener, Parsed
from servicelogs.engines.header_parse import HeaderDelimitedParser
from servicelogs.engines.local import BatchResult, BatchTask, Progress
from servicelogs.engines.writer import PartitionedWriter, WrittenFile
from servicelogs.errors import ConflictError, FencedError, SourceError, StorageError
from servicelogs.ledger import Ledger, State
from servicelogs.render.arrow import per_object_column, rejects_schema, schema
from servicelogs.sources import SourceObject, decompressed, delivery_date
from servicelogs.spec import Delimited, HeaderDelimited, JsonRecords, LogFormat
from servicelogs.storage import StagedFile
from servicelogs.summary import ObjectProblem, reason_kind

UNKNOWN = "unknown"


def _json_records_parser(fmt: LogFormat):  # type: ignore[no-untyped-def]
    from servicelogs.engines.json_parse import JsonRecordsParser  # DuckDB loads only for JSON formats

    return JsonRecordsParser(fmt)


# Grammar kind → the parser that implements it in Arrow. Each parser takes the format declaration and offers
# parse_objects(objects) -> Iterator[(object, Parsed | None)]: a batch's objects in order, each one's parsed
# blocks then None at its end (JSON records share DuckDB statements across objects). A Parsed may carry
# `notes` (reason → count) for values recognised as not records and skipped (a digest, an empty records array).
PARSERS: dict[type, Callable[[LogFormat], DelimitedParser | HeaderDelimitedParser]] = {
    Delimited: DelimitedParser,
    HeaderDelimited: HeaderDelimitedParser,
    JsonRecords: _json_records_parser,
}


def parser_for(fmt: LogFormat) -> DelimitedParser | HeaderDelimitedParser:
    return PARSERS[type(fmt.grammar)](fmt)


# -- progress ------------------------------------------------------------------------------------------

_progress_queue: multiprocessing.Queue | _CallbackQueue | None = None


class _CallbackQueue:
    def __init__(self, callback: Progress) -> None:
        self.put = lambda event: local.report(callback, event)


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
    """In a worker process: report progress to the run through `q`, die with the run, keep freed memory."""
    global _progress_queue
    _progress_queue = q
    _die_with_parent()
    _keep_freed_memory()


def _keep_freed_memory() -> None:
    """glibc hands large freed blocks back to the system at once, so a worker that allocates and frees blocks
    of a few MB all run long pays page faults for each anew: a quarter of the CPU on JSON records (152k faults
    per 100 MB, 70k with this). Blocks up to 32 MB then come from the heap, which keeps up to 128 MB free.
    Only in worker processes: a library does not retune the allocator of its caller's process."""
    import ctypes

    m_trim_threshold, m_mmap_threshold = -1, -3
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator's defaults stand
        libc = ctypes.CDLL(None)
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 128 << 20)


def _die_with_parent() -> None:
    """A worker must not outlive its run: a killed run's batches are redone by the next run, which must
    not race a straggler of the dead one."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    if os.getppid() == 1:
        os._exit(1)


def convert_batch(task: BatchTask) -> BatchResult:
    """Convert one batch and commit it: intent → staged files → ledger commit → publish.

    An object that cannot be read is dropped and the batch redone without it (a new batch id, so no name
    is shared with the failed attempt). A batch another run committed first is dropped; if only some of
    its sources were taken, the rest is converted as a new batch. A staged file that is gone or altered
    before the commit (someone cleaned the target) makes the batch be redone: a commit only names files
    that exist, as written. A run fenced by another (taken for dead) stops with FencedError.
    """
    ledger = Ledger(task.store, task.layout.state)
    with task.store.lease(task.run_id, ledger.runs):
        return _convert_batch(task, ledger)


REDO_VANISHED = 3  # attempts at a batch whose staged files keep vanishing before it is committed


def _convert_batch(task: BatchTask, ledger: Ledger) -> BatchResult:
    fmt = formats.get(task.format_name)
    # Starting at the run's head: a fence of this run can only follow its first staged file, so it lies
    # after the head the run read before staging anything; the commit reads every record after that.
    state = State(head=task.head)
    objects = task.objects
    outcome = BatchResult()
    vanished = 0
    while objects:
        result = BatchResult(batch_id=local.batch_id(objects))  # looked up when called: a test replaces it
        sources = tuple(obj for obj, _ in objects)
        ledger.record_intent(result.batch_id, sources)
        staging = ledger.staging(task.run_id, result.batch_id + (f".{task.attempt}" if task.attempt else ""))
        work = task.store.work_dir(staging)
        file_name = f"part-{result.batch_id}.parquet"
        rows = PartitionedWriter(work / "table", file_name, schema(fmt))
        rejects = PartitionedWriter(work / "rejects", file_name, rejects_schema())
        try:
            _convert_objects(fmt, task, objects, rows, rejects, result)
            written = rows.close() + rejects.close()
        except SourceError as e:
            rows.abort()
            rejects.abort()
            shutil.rmtree(work, ignore_errors=True)
            task.store.delete_prefix(staging)
            task.store.delete(ledger.intent_key(result.batch_id))
            outcome.failed.append(ObjectProblem(e.key, e.reason))
            objects = tuple(item for item in objects if item[0].key != e.key)
            continue
        except BaseException:  # a full disk, say: the run stops, the partial files go
            rows.abort()
            rejects.abort()
            shutil.rmtree(work, ignore_errors=True)
            raise
        try:
            files = task.store.stage(work, staging, _staged_files(task, work, staging, written))
        except StorageError:
            _stop_if_fenced(ledger, state, task.run_id, staging)  # our uploads were aborted by a fencing run
            raise
        gone = [f.staged for f in files if not task.store.is_staged(f)]
        if gone:
            _stop_if_fenced(ledger, state, task.run_id, staging)
            task.store.delete_prefix(staging)
            vanished += 1
            if vanished >= REDO_VANISHED:
                raise StorageError("stage", gone[0], f"staged files vanished before their commit, {vanished} times")
            continue  # the same batch again: its sources are not done, and must not be marked done
        try:
            commit = ledger.commit(state, result.batch_id, task.run_id, sources, files)
        except ConflictError:
            task.store.delete_prefix(staging)
            task.store.delete(ledger.intent_key(result.batch_id))
            outcome.lost.append(result.batch_id)
            objects = tuple(item for item in objects if not state.is_done(item[0]))
            continue
        except FencedError:
            task.store.delete_prefix(staging)  # never to be committed; the intent stays for the next run
            raise
        ledger.publish(commit)
        ledger.finish(commit)
        _merge(outcome, result)
        outcome.files += [f.visible for f in files]
        outcome.committed += 1
        break
    return outcome


def _stop_if_fenced(ledger: Ledger, state: State, run_id: str, staging: str) -> None:
    """When a staged file is gone or an upload aborted, a fencing run may be why: then say so, and stop."""
    ledger.catch_up(state)
    if run_id in state.fenced:
        ledger.store.delete_prefix(staging)
        state.refuse_if_fenced(run_id)


def _staged_files(task: BatchTask, work: Path, staging: str, written: list[WrittenFile]) -> list[StagedFile]:
    """The writers' files as the commit will name them: staged key, visible key, size and CRC-32."""
    files = []
    for w in written:
        rel = w.path.relative_to(work).as_posix()
        files.append(StagedFile(f"{staging}/{rel}", task.layout.visible(rel), w.size, w.crc32))
    return files


# What an object adds to its batch's result, and a batch to its outcome (with objects_converted).
_COUNTS = ("lines", "bytes_text", "rows", "rejects", "header_lines", "extra_field_rows", "bytes_read")


def _merge(into: BatchResult, result: BatchResult) -> None:
    into.batch_id = result.batch_id
    for name in ("objects_converted", *_COUNTS):
        setattr(into, name, getattr(into, name) + getattr(result, name))
    into.generations.update(result.generations)
    into.skipped += result.skipped
    into.notes.update(result.notes)
    into.reject_reasons.update(result.reject_reasons)


def _convert_objects(
    fmt: LogFormat,
    task: BatchTask,
    objects: tuple[local.Item, ...],
    rows: PartitionedWriter,
    rejects: PartitionedWriter,
    result: BatchResult,
) -> None:
    groups = {obj.key: dict(key_groups) for obj, key_groups in objects}
    counts: dict[str, BatchResult] = {}
    blocks = parser_for(fmt).parse_objects((obj, obj.key, _opener(task, obj)) for obj, _ in objects)
    for obj, parsed in blocks:
        object_counts = counts.setdefault(obj.key, BatchResult())
        if parsed is None:
            _add_object(obj, object_counts, result)
            continue
        _add_block(fmt, task, obj, groups[obj.key], parsed, object_counts, rows, rejects)


def _opener(task: BatchTask, obj: SourceObject) -> Opener:
    @contextlib.contextmanager
    def opened() -> Iterator[BinaryIO]:
        with task.source.open(obj) as raw:
            yield decompressed(raw, obj.key)

    return opened


def _add_block(
    fmt: LogFormat,
    task: BatchTask,
    obj: SourceObject,
    groups: dict[str, str],
    parsed: Parsed,
    counts: BatchResult,
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
    counts.notes.update(getattr(parsed, "notes", ()))
    counts.reject_reasons.update(reason_kind(reason) for reason in parsed.reject_reasons)
    if parsed.rows.num_rows:
        _write_rows(fmt, parsed.rows, obj.key, groups, task.run_id, rows)
    if parsed.reject_lines:
        rejects.write("", _rejects_table(parsed, obj.key, task.run_id))
    if _progress_queue is not None:
        _progress_queue.put(("parsed", obj.key, parsed.text_bytes, parsed.rows.num_rows))


def _add_object(obj: SourceObject, counts: BatchResult, result: BatchResult) -> None:
    """An object read to its end: its counts join the batch's (a SourceError before leaves them out)."""
    counts.bytes_read = obj.size
    if _progress_queue is not None:
        _progress_queue.put(("object_done", obj.key, obj.size))
    result.notes.update(counts.notes)
    if counts.notes and not counts.lines:
        result.skipped.append(ObjectProblem(obj.key, "; ".join(sorted(counts.notes))))
        result.bytes_read += obj.size
        return
    result.objects_converted += 1
    for name in _COUNTS:
        setattr(result, name, getattr(result, name) + getattr(counts, name))
    result.generations.update(counts.generations)
    result.reject_reasons.update(counts.reject_reasons)


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
    key_day = delivery_date(key, groups)
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


def _partition_path(fmt: LogFormat, groups: dict[str, str], day: date | None) -> str:
    values = {
        "region": groups.get("region", UNKNOWN),
        "year": f"{day.year:04d}" if day else UNKNOWN,
        "month": f"{day.month:02d}" if day else UNKNOWN,
        "day": f"{day.day:02d}" if day else UNKNOWN,
    }
    return "/".join(f"{name}={values[name]}" for name in fmt.partitions)
