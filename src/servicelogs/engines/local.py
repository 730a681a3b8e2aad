"""The local engine: one machine, a process per core, Arrow kernels on the hot path.

The run (servicelogs.run) plans the batches and commits them; this engine only converts: each worker process
stages one batch at a time (servicelogs.engines.batch) and hands back its staged files and counts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from servicelogs.run import BatchTask, Progress, StagedBatch, report
from servicelogs.summary import ObjectProblem, RunSummary

# Converting needs pyarrow, numpy and the parsers, ~0.5 CPU-seconds of imports: the run imports the batch module
# only when it converts a batch itself (one worker). With several workers, a fork server imports it once and
# forks the workers from that (a spawned worker would import it anew: ~1 CPU-second more for two). Pickling a
# function takes its module, so the pool is handed these two small functions of this module.
_WORKER_MODULES = ["servicelogs.engines.batch"]

# Below this many source bytes (as stored) a run converts in its own process whatever `workers` says: a pool costs
# ~0.6 s and ~0.7 CPU-s to start (the fork server's imports, the workers' set-up), more than a second core saves
# on ~1 CPU-second of work (16 MiB of gzip is ~70 MB of log text). Incremental runs every few minutes are this
# small. SERVICELOGS_POOL_MIN_BYTES sets it (0: a pool whenever there are several workers and batches).
POOL_MIN_BYTES = 16 << 20


def _pool_min_bytes() -> int:
    return int(os.environ.get("SERVICELOGS_POOL_MIN_BYTES", POOL_MIN_BYTES))


def _init_worker(q: multiprocessing.Queue[Any]) -> None:
    from servicelogs.engines import batch

    batch.init_worker(q)


def stage_batch(task: BatchTask) -> StagedBatch:
    """Convert one batch into staged files (servicelogs.engines.batch.stage_batch)."""
    from servicelogs.engines import batch

    return batch.stage_batch(task)


def execute(
    tasks: list[BatchTask], workers: int, progress: Progress | None, summary: RunSummary
) -> Iterator[StagedBatch]:
    """The run's Engine: the batches in this process (one worker, one batch, or a run too small to pay for a
    pool: POOL_MIN_BYTES), else in a pool of worker processes."""
    stored = sum(obj.size for task in tasks for obj, _ in task.objects)
    if workers <= 1 or len(tasks) <= 1 or stored < _pool_min_bytes():
        from servicelogs.engines import batch

        with batch.reporting_to(progress):
            for task in tasks:
                yield batch.stage_batch(task)
        return
    ctx = _worker_context()
    q: multiprocessing.Queue[Any] = ctx.Queue()
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker, initargs=(q,))
    clean = False
    try:
        futures: dict[Future[StagedBatch], BatchTask] = {}
        for i, task in enumerate(tasks):
            try:
                futures[pool.submit(stage_batch, task)] = task
            except BrokenProcessPool:  # a worker died while the batches were being handed out
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


def _worker_context() -> multiprocessing.context.BaseContext:
    """Worker processes forked from a fork server that has imported the batch module: a clean process (not a
    fork of the run and its threads) that costs no imports. The fork server is this process's (multiprocessing
    keeps one): it outlives the pool for the next run's, and exits with this process. Where the caller already
    started it, its workers import what they need themselves."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_WORKER_MODULES)
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
