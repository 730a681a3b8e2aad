"""The local engine: one machine, a process per core, Arrow kernels on the hot path.

Data flow: list the source → keep the keys of the format's layouts → group objects into batches
(deterministic: sorted keys, bounded bytes) → each worker reads its batch's objects as blocks of lines,
parses them in bulk, writes rows and rejects to staged Parquet files → the batch commits in the ledger
(servicelogs.ledger: one conditional write) and its files are published into the table. An object that
cannot be read fails alone: its batch is redone without it, so none of its rows show.
"""

from __future__ import annotations

import contextlib
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

from servicelogs.errors import ServiceLogsError, UsageError
from servicelogs.ledger import Ledger, State
from servicelogs.sources import Source, SourceObject, delivery_date
from servicelogs.spec import LogFormat
from servicelogs.storage import Store, open_store
from servicelogs.summary import ObjectProblem, RunSummary

BATCH_BYTES = 32 << 20  # source bytes per batch: bounds a batch's output files and its redo cost
BATCH_OBJECTS = 2000


@dataclass(frozen=True)
class Layout:
    """Where a converted table and its companions live, as keys under the target store's root."""

    table_name: str

    @property
    def table(self) -> str:
        return self.table_name

    @property
    def rejects(self) -> str:
        return f"{self.table_name}_rejects"

    @property
    def state(self) -> str:
        return f"_servicelogs/{self.table_name}"

    def visible(self, rel: str) -> str:
        """The table key of a staged file: 'table/...' goes to the table, 'rejects/...' to the rejects."""
        kind, rest = rel.split("/", 1)
        return f"{self.table if kind == 'table' else self.rejects}/{rest}"


Item = tuple[SourceObject, tuple[tuple[str, str], ...]]  # an object and its key groups


@dataclass(frozen=True)
class BatchTask:
    format_name: str
    source: Source
    store: Store
    layout: Layout
    run_id: str
    objects: tuple[Item, ...]
    head: int = 0  # the ledger's last commit as the run saw it: where the worker's commit starts looking


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
    committed: int = 0
    lost: list[str] = field(default_factory=list)  # batches another run committed first


Progress = Callable[[int, int, int], None]  # (source bytes, text bytes, rows) since the last call
REWRITE_POLICIES = ("report", "convert")


def run(
    fmt: LogFormat,
    source: Source,
    target: Path | str | Store,
    *,
    workers: int | None = None,
    table_name: str | None = None,
    progress: Progress | None = None,
    since: date | None = None,
    until: date | None = None,
    on_rewrite: str = "report",
    batch_bytes: int = BATCH_BYTES,
    batch_objects: int = BATCH_OBJECTS,
) -> RunSummary:
    """List the source, subtract the ledger, convert and commit what is new (see servicelogs.ledger).

    `since`/`until` (inclusive) keep objects whose key names a delivery date in that window; a later run
    without a window takes the rest. `on_rewrite` says what to do with a key converted before that now
    holds other content: "report" (the default) lists it in the summary and converts nothing, so no line
    is counted twice; "convert" converts the new content too, leaving both versions' rows in the table.
    """
    if on_rewrite not in REWRITE_POLICIES:
        raise UsageError(f"on_rewrite must be one of {', '.join(REWRITE_POLICIES)}, not {on_rewrite!r}")
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    store = target if not isinstance(target, (str, Path)) else open_store(target)
    layout = Layout(table_name or fmt.name)
    ledger = Ledger(store, layout.state)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    summary = RunSummary(run_id, fmt.name, str(source), store.url)
    tuning = (batch_bytes, batch_objects)

    with store.lease(run_id, ledger.runs):
        try:
            _run(fmt, source, store, ledger, layout, summary, workers, progress, since, until, on_rewrite, tuning)
        except ServiceLogsError as e:
            # Recorded for `servicelogs status`, best effort: the store may be what failed.
            summary.error = str(e)
            with contextlib.suppress(ServiceLogsError):
                store.put(f"{ledger.runs}/{run_id}.json", summary.to_json().encode())
            raise
        summary.seconds = time.perf_counter() - started
        summary.cpu_seconds = _cpu_seconds() - cpu_started
        store.put(f"{ledger.runs}/{run_id}.json", summary.to_json().encode())
    store.end_lease(run_id, ledger.runs)
    return summary


def _run(
    fmt: LogFormat,
    source: Source,
    store: Store,
    ledger: Ledger,
    layout: Layout,
    summary: RunSummary,
    workers: int | None,
    progress: Progress | None,
    since: date | None,
    until: date | None,
    on_rewrite: str,
    tuning: tuple[int, int],
) -> None:
    run_id = summary.run_id
    state = ledger.load()
    summary.commits_repaired = ledger.publish_pending(state)
    summary.staging_cleaned, summary.uploads_aborted = clean_abandoned(store, ledger, run_id, state)
    new = _new_objects(fmt, source, state, summary, since, until, on_rewrite)
    batches = _resume_intents(ledger, state, new, summary) + list(plan_batches(new, *tuning))
    tasks = [BatchTask(fmt.name, source, store, layout, run_id, b, state.head) for b in batches]
    for result in _execute(tasks, workers or os.cpu_count() or 1, progress):
        _add(summary, result)
    summary.objects_failed = len(summary.failed)
    ledger.catch_up(state)
    ledger.checkpoint(state, run_id)
    store.delete_prefix(f"{ledger.prefix}/staging/{run_id}")
    store.abort_uploads(f"{ledger.prefix}/staging/{run_id}")
    summary.ledger_head = state.head


def _new_objects(
    fmt: LogFormat,
    source: Source,
    state: State,
    summary: RunSummary,
    since: date | None,
    until: date | None,
    on_rewrite: str,
) -> list[Item]:
    """The listing minus the ledger: objects of this format, in the window, not converted yet."""
    new: list[Item] = []
    for obj in source.list():
        summary.objects_listed += 1
        groups = fmt.match_key(obj.key)
        ignored = fmt.explain_ignored_key(obj.key)
        if ignored or groups is None:
            reason = ignored or f"not a {fmt.name} log object (its key matches no {fmt.name} key layout)"
            summary.skipped.append(ObjectProblem(obj.key, reason))
            continue
        if since or until:
            day = delivery_date(obj.key, groups)
            if day is None or (since and day < since) or (until and day > until):
                summary.objects_outside_window += 1
                continue
        if state.is_done(obj):
            summary.objects_done_before += 1
            continue
        if obj.key in state.done:
            size, etag = state.done[obj.key]
            problem = ObjectProblem(
                obj.key, f"rewritten since it was converted (size {size} -> {obj.size}, version {etag} -> {obj.etag})"
            )
            summary.rewritten.append(problem)
            if on_rewrite == "report":
                continue
        new.append((obj, tuple(sorted(groups.items()))))
    summary.objects_skipped = len(summary.skipped)
    summary.objects_new = len(new)
    return new


def _resume_intents(ledger: Ledger, state: State, new: list[Item], summary: RunSummary) -> list[tuple[Item, ...]]:
    """Batches a crashed run had started, redone with the same source set when it is still all new;
    intents of committed batches are dropped. The chosen items leave `new`."""
    by_key = {obj.key: i for i, (obj, _) in enumerate(new)}
    resumed: list[tuple[Item, ...]] = []
    taken: set[int] = set()
    for bid, sources in ledger.intents():
        if bid in state.batches or any(state.is_done(o) for o in sources):
            # Stale: committed, or overtaken. Intents only steer the redo; dropping one is always safe.
            ledger.store.delete(ledger.intent_key(bid))
            continue
        idx = [by_key.get(o.key) for o in sources]
        if all(i is not None and i not in taken and new[i][0] == o for i, o in zip(idx, sources, strict=True)):
            resumed.append(tuple(new[i] for i in idx))  # type: ignore[index]
            taken.update(idx)  # type: ignore[arg-type]
    new[:] = [item for i, item in enumerate(new) if i not in taken]
    summary.batches_resumed = len(resumed)
    return resumed


def clean_abandoned(store: Store, ledger: Ledger, own_run: str, state: State | None = None) -> tuple[int, int]:
    """Remove the staging folders and multipart uploads of runs taken for dead (lock free, lease lapsed).

    Taking a run for dead is a guess (it may be paused, or its host's clock behind), so each is first fenced
    in the ledger: from then on it can commit nothing, and all it did commit lies below the fence, in
    `state`; those commits are published, and only then is its staging deleted. `state` is advanced."""
    state = state if state is not None else ledger.load()
    staging = f"{ledger.prefix}/staging"
    dead = sorted(r for r in store.staged_runs(staging) if r != own_run and store.is_dead(r, ledger.runs))
    aborted = 0
    for r in dead:
        ledger.fence(state, r, by=own_run)
        for commit in state.recent:
            if commit.run_id == r:
                ledger.publish(commit)
        store.delete_prefix(f"{staging}/{r}")
        aborted += store.abort_uploads(f"{staging}/{r}")
    clean_temp = getattr(store, "clean_temp", None)
    if clean_temp:
        clean_temp(ledger.prefix)
    return len(dead), aborted


def _add(summary: RunSummary, result: BatchResult) -> None:
    summary.objects_converted += result.objects_converted
    summary.lines += result.lines
    summary.rows += result.rows
    summary.rejects += result.rejects
    summary.header_lines += result.header_lines
    summary.extra_field_rows += result.extra_field_rows
    summary.bytes_read += result.bytes_read
    summary.bytes_text += result.bytes_text
    summary.files_written += len(result.files)
    summary.batches_committed += result.committed
    summary.batches_lost += len(result.lost)
    for gen, n in result.generations.items():
        summary.generations[gen] = summary.generations.get(gen, 0) + n
    summary.failed += result.failed
    summary.skipped += result.skipped
    summary.objects_skipped += len(result.skipped)
    for note, n in result.notes.items():
        summary.notes[note] = summary.notes.get(note, 0) + n


def plan_batches(
    objects: list[Item], batch_bytes: int = BATCH_BYTES, batch_objects: int = BATCH_OBJECTS
) -> Iterator[tuple[Item, ...]]:
    """Sorted by key, cut at batch_bytes or batch_objects: the same listing always gives the same batches."""
    batch: list[Item] = []
    size = 0
    for item in sorted(objects, key=lambda item: item[0].key):
        if batch and (size + item[0].size > batch_bytes or len(batch) >= batch_objects):
            yield tuple(batch)
            batch, size = [], 0
        batch.append(item)
        size += item[0].size
    if batch:
        yield tuple(batch)


def batch_id(objects: tuple[Item, ...]) -> str:
    """Derived from the batch's source set, so a replay writes the same file names."""
    h = hashlib.sha256()
    for obj, _ in objects:
        h.update(f"{obj.key}\t{obj.size}\t{obj.etag}\n".encode())
    return h.hexdigest()[:20]


# -- workers -------------------------------------------------------------------------------------------
#
# Converting needs pyarrow, which takes ~0.3 CPU-seconds to import: the run imports the batch module only when it
# converts a batch itself (one worker); with several workers only they do. Pickling a function takes its module,
# so the pool is handed these two small functions of this module.


def _init_worker(q: multiprocessing.Queue) -> None:
    from servicelogs.engines import batch

    batch.init_worker(q)


def convert_batch(task: BatchTask) -> BatchResult:
    """Convert one batch and commit it (servicelogs.engines.batch.convert_batch)."""
    from servicelogs.engines import batch

    return batch.convert_batch(task)


def _execute(tasks: list[BatchTask], workers: int, progress: Progress | None) -> Iterator[BatchResult]:
    if workers <= 1 or len(tasks) <= 1:
        from servicelogs.engines import batch

        with batch.reporting_to(progress):
            for task in tasks:
                yield batch.convert_batch(task)
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


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
