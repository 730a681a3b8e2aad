"""The one-process engine stages the next batch while the run commits the current one (engines.local.one_ahead)."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import pytest

from servicelogs.engines.local import one_ahead
from servicelogs.run import BatchTask, StagedBatch


def _tasks(n: int) -> list[BatchTask]:
    return [cast(BatchTask, f"batch-{i}") for i in range(n)]  # one_ahead only hands tasks to `stage`


def test_the_next_batch_stages_while_the_caller_commits_this_one() -> None:
    started: list[str] = []
    second_started = threading.Event()

    def stage(task: Any) -> StagedBatch:
        started.append(task)
        if task == "batch-1":
            second_started.set()
        return StagedBatch(task)

    batches = one_ahead(stage, _tasks(3))
    first = next(batches)
    # The caller holds batch 0 (as the run does while committing it): batch 1 stages meanwhile, batch 2 not yet.
    assert second_started.wait(10)
    assert first.batch_id == "batch-0" and started == ["batch-0", "batch-1"]
    assert [b.batch_id for b in batches] == ["batch-1", "batch-2"]
    assert started == ["batch-0", "batch-1", "batch-2"]


def test_a_staging_error_reaches_the_caller_in_its_batch_s_turn() -> None:
    def stage(task: Any) -> StagedBatch:
        if task == "batch-1":
            raise OSError(28, "No space left on device")
        return StagedBatch(task)

    batches = one_ahead(stage, _tasks(3))
    assert next(batches).batch_id == "batch-0"
    with pytest.raises(OSError, match="No space left"):
        next(batches)


def test_a_caller_that_stops_leaves_no_staging_running() -> None:
    started: list[str] = []
    running = threading.Event()
    finished = threading.Event()

    def stage(task: Any) -> StagedBatch:
        started.append(task)
        if task == "batch-1":
            running.set()
            time.sleep(0.2)  # still staging when the caller stops
            finished.set()
        return StagedBatch(task)

    batches = one_ahead(stage, _tasks(3))
    next(batches)
    assert running.wait(10)
    batches.close()  # the run stopped (fenced, say): the batch being staged is finished, no further one starts
    assert finished.is_set()
    assert started == ["batch-0", "batch-1"]


def test_one_task_is_staged_in_the_caller_s_thread() -> None:
    threads: list[threading.Thread] = []

    def stage(task: Any) -> StagedBatch:
        threads.append(threading.current_thread())
        return StagedBatch(task)

    assert [b.batch_id for b in one_ahead(stage, _tasks(1))] == ["batch-0"]
    assert threads == [threading.current_thread()]
