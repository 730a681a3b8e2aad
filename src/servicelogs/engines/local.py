"""The local engine: one machine, a process per core, Arrow kernels on the hot path.

The run (servicelogs.run) plans the batches and commits them; this engine only converts: each worker process
stages one batch at a time (servicelogs.engines.batch) and hands back its staged files and counts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from servicelogs import crash, formats
from servicelogs.engines import worker
from servicelogs.run import BatchTask, Progress, StagedBatch, report
from servicelogs.spec import Grammar, JsonRecords
from servicelogs.summary import ObjectProblem, RunSummary

# Converting needs pyarrow and numpy, ~0.3 CPU-seconds of imports: the run imports the batch module only when it
# converts a batch itself. With several workers, a fork server imports them, and servicelogs' batch module with
# its own, once, and forks the workers from it (a spawned worker would import them anew: ~1 CPU-second more for
# two, ~0.1 of it servicelogs'). Modules that read the environment as they load read it again in each worker,
# once the run's environment is installed (engines.worker).
# numpy.ma too: pyarrow asks it whether an array it is given is a masked one (~8 ms a worker, at its first block).
_PRELOADED = [
    "numpy", "numpy.ma", "pyarrow", "pyarrow.compute", "pyarrow.csv", "pyarrow.parquet", "isal.igzip",
    "servicelogs.engines.batch",
]  # fmt: skip
# And what a grammar's parser loads on its first block: DuckDB for JSON records (~0.04 CPU-s a worker).
_PRELOADED_FOR: dict[type[Grammar], list[str]] = {JsonRecords: ["duckdb", "servicelogs.engines.json_parse"]}


def execute(
    tasks: list[BatchTask], workers: int, progress: Progress | None, summary: RunSummary
) -> Iterator[StagedBatch]:
    """The run's Engine: the batches in this process (one worker, which the run plans for a small run:
    run.POOL_MIN_TEXT_BYTES; or one batch), else in a pool of worker processes."""
    if workers <= 1 or len(tasks) <= 1:
        from servicelogs.engines import batch

        with batch.reporting_to(progress):
            yield from one_ahead(batch.stage_batch, tasks)
        return
    ctx = _worker_context(_PRELOADED + _PRELOADED_FOR.get(type(formats.get(tasks[0].format_name).grammar), []))
    q: multiprocessing.Queue[Any] = ctx.Queue()
    pool = ProcessPoolExecutor(
        min(workers, len(tasks)), mp_context=ctx, initializer=worker.set_up, initargs=(q, dict(os.environ), os.getpid())
    )
    # Every worker at the first submit, none later: a submit that spawns a worker in place of one just killed
    # races the pool's own thread closing the queues it hands the new worker (EBADF in our process, a traceback
    # from the fork server). CPython spawns them so for the "fork" start method.
    pool._safe_to_dynamically_spawn_children = False  # type: ignore[attr-defined]
    clean = False
    try:
        futures: dict[Future[StagedBatch], BatchTask] = {}
        for i, task in enumerate(tasks):
            try:
                futures[pool.submit(worker.stage_batch, task)] = task
            except (BrokenProcessPool, OSError):  # a worker died while the batches were being handed out
                summary.batches_failed += [_lost(t) for t in tasks[i:]]
                break
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(q, progress)
            for fut in done:
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    summary.batches_failed.append(_lost(futures[fut]))
        _drain(q, progress)
        clean = not summary.batches_failed
    finally:
        _stop(pool, clean, lambda: _drain(q, progress))


def one_ahead(
    stage: Callable[[BatchTask, threading.Event], StagedBatch], tasks: list[BatchTask]
) -> Iterator[StagedBatch]:
    """Each task staged, in order, the next one staging in a thread while the caller commits this one: the
    commit's requests (round trips, on S3) overlap the next batch's reads, parse and uploads. As safe as a pool
    of workers that run ahead of the commits: every batch's intent is recorded before any is staged, and a
    batch staged but never committed (the caller stopped: a fence, an error) is what a crash leaves, redone
    by the next run. At most two batches are staged and not yet committed.

    A caller that stops (Ctrl-C, a fence, an error, the generator closed) sets the event `stage` is given: the
    batch staging ahead stops at its next object or block (batch.stage_batch raises StagingStopped), so the
    caller waits for that object, not for the rest of the batch, and no staging outlives it."""
    stopped = threading.Event()
    # In the caller's thread, which an interrupt stops by itself: a single task, and runs whose side effects are
    # being numbered (the overlapped order's states, a batch staging while the one before commits, are those of
    # several workers, and the random kills of one-worker runs, in tests/test_exactly_once.py).
    if len(tasks) <= 1 or crash.enumerating():
        for task in tasks:
            yield stage(task, stopped)
        return
    ahead = ThreadPoolExecutor(1, thread_name_prefix="stage-ahead")
    try:
        staging = ahead.submit(stage, tasks[0], stopped)
        for task in tasks[1:]:
            staged = staging.result()
            staging = ahead.submit(stage, task, stopped)
            yield staged
        yield staging.result()
    finally:
        stopped.set()  # before the wait below: a batch being staged would otherwise be staged to its end
        ahead.shutdown(cancel_futures=True)


def _worker_context(preloaded: list[str]) -> multiprocessing.context.BaseContext:
    """Worker processes forked from a fork server that has imported the heavy libraries: a clean process (not a
    fork of the run and its threads) that costs few imports. The fork server is this process's (multiprocessing
    keeps one): it outlives the pool for the next run's, and exits with this process. Where the caller (or a run
    before, of another grammar) already started it, its workers import what else they need themselves."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(preloaded)
    return ctx


def _lost(task: BatchTask) -> ObjectProblem:
    """A batch whose worker process died (killed, out of memory): its intent is resumed by the next run."""
    first = task.objects[0][0].key
    return ObjectProblem(
        task.batch_id,
        f"a worker process died before it finished this batch ({len(task.objects)} objects from {first}); "
        "the next run redoes it",
    )


def _stop(pool: ProcessPoolExecutor, clean: bool, drain: Callable[[], None]) -> None:
    """Shut the pool down. After a worker died (or an error), do not wait: a broken pool's shutdown can
    wait forever on a worker that will never answer; kill what is left, whose batches the next run redoes.

    A worker exits only once its progress events are through the queue's pipe, which holds ~64 KB: events
    still on their way after the last result (a burst of `object_done`s of small objects) are drained while
    the workers exit, or the shutdown would wait for them forever."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # private: no public way to kill them
    if clean:
        pool.shutdown(wait=False)
        while processes:
            drain()
            if processes[0].is_alive():
                processes[0].join(0.05)
            else:
                processes.pop(0)
        pool.shutdown(wait=True)
        return
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=10)


def _drain(q: multiprocessing.Queue[Any], progress: Progress | None) -> None:
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return
        if progress:
            report(progress, item)
