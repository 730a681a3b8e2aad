"""The one-process engine stages the next batch while the run commits the current one (engines.local.one_ahead)."""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from exactly_once_support import FIXTURE, alb_key, source_objects, write_local

from servicelogs import formats, run, sources
from servicelogs.engines import arrow_parse, batch
from servicelogs.engines.local import one_ahead
from servicelogs.errors import StagingStopped
from servicelogs.layout import Layout
from servicelogs.ledger import Ledger
from servicelogs.run import BatchTask, StagedBatch
from servicelogs.sources import LocalSource, SourceObject
from servicelogs.storage import LocalStore
from servicelogs.summary import RunSummary


def _tasks(n: int) -> list[BatchTask]:
    return [cast(BatchTask, f"batch-{i}") for i in range(n)]  # one_ahead only hands tasks to `stage`


def test_the_next_batch_stages_while_the_caller_commits_this_one() -> None:
    started: list[str] = []
    second_started = threading.Event()

    def stage(task: Any, stopped: threading.Event) -> StagedBatch:
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
    def stage(task: Any, stopped: threading.Event) -> StagedBatch:
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

    def stage(task: Any, stopped: threading.Event) -> StagedBatch:
        started.append(task)
        if task == "batch-1":
            running.set()
            time.sleep(0.2)  # still staging when the caller stops (and not looking at `stopped`)
            finished.set()
        return StagedBatch(task)

    batches = one_ahead(stage, _tasks(3))
    next(batches)
    assert running.wait(10)
    batches.close()  # the run stopped (fenced, say): the batch being staged ends first, no further one starts
    assert finished.is_set()
    assert started == ["batch-0", "batch-1"]


def test_one_task_is_staged_in_the_caller_s_thread() -> None:
    threads: list[threading.Thread] = []

    def stage(task: Any, stopped: threading.Event) -> StagedBatch:
        threads.append(threading.current_thread())
        return StagedBatch(task)

    assert [b.batch_id for b in one_ahead(stage, _tasks(1))] == ["batch-0"]
    assert threads == [threading.current_thread()]


class _SlowBatch:
    """A stage whose batch-1 has many objects, each slow to stage, and looks at `stopped` between them, as
    batch.stage_batch does. Its first object is still in progress when the caller stops: it runs `first_object`,
    then lasts until `stopped` is set (10 s at most: a one_ahead that never sets it fails on the count, not by
    hanging)."""

    OBJECTS = 50

    def __init__(self, first_object: Callable[[], object]) -> None:
        self.first_object = first_object
        self.started: list[str] = []
        self.objects_staged = 0
        self.ended_by: BaseException | None = None

    def __call__(self, task: Any, stopped: threading.Event) -> StagedBatch:
        self.started.append(task)
        if task != "batch-1":
            return StagedBatch(task)
        try:
            for i in range(self.OBJECTS):
                if stopped.is_set():
                    raise StagingStopped(task)
                if i == 0:
                    self.first_object()
                    stopped.wait(10)
                else:
                    time.sleep(0.05)
                self.objects_staged += 1
        except BaseException as e:
            self.ended_by = e
            raise
        return StagedBatch(task)


@pytest.mark.parametrize("stop", ["closes the generator", "raises KeyboardInterrupt"])
def test_a_caller_that_stops_waits_for_the_object_being_staged_not_for_the_rest_of_its_batch(stop: str) -> None:
    in_progress = threading.Event()
    stage = _SlowBatch(first_object=in_progress.set)
    if stop == "closes the generator":
        batches = one_ahead(stage, _tasks(3))
        next(batches)
        assert in_progress.wait(10)
        batches.close()
    else:
        with pytest.raises(KeyboardInterrupt):
            # As the run holds it (run.Committer.convert): the loop's own, closed as the interrupt leaves the loop.
            for _ in one_ahead(stage, _tasks(3)):
                assert in_progress.wait(10)  # Ctrl-C while the run commits batch 0, batch 1 staging ahead
                raise KeyboardInterrupt
    assert stage.objects_staged == 1  # the object in progress when the caller stopped, of 50
    assert isinstance(stage.ended_by, StagingStopped)
    assert stage.started == ["batch-0", "batch-1"]


def test_ctrl_c_while_the_caller_waits_for_a_batch_reaches_it_and_stops_that_batch() -> None:
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's KeyboardInterrupt here")
    caller_waits = threading.Event()

    def interrupt_the_caller() -> None:
        assert caller_waits.wait(10)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # as Ctrl-C: to the main thread

    stage = _SlowBatch(first_object=interrupt_the_caller)
    batches = one_ahead(stage, _tasks(3))
    assert next(batches).batch_id == "batch-0"
    with pytest.raises(KeyboardInterrupt):
        try:
            caller_waits.set()
            next(batches)  # waits for batch 1: the interrupt comes meanwhile
        finally:
            batches.close()  # in case it came before the wait began
    assert stage.objects_staged == 1
    assert isinstance(stage.ended_by, StagingStopped)
    assert stage.started == ["batch-0", "batch-1"]


def _one_batch(tmp_path: Path, source: LocalSource) -> BatchTask:
    """The source's objects as one batch, as a run plans it, staged under tmp_path/dst."""
    store = LocalStore(tmp_path / "dst")
    ledger = Ledger(store, "_servicelogs/alb")
    summary = RunSummary("20240101T000000Z-aaaaaa", "alb", str(source), store.url)
    committer = run.Committer("alb", source, store, Layout("alb"), ledger, ledger.load(), summary)
    fmt = formats.get("alb")
    items = [(obj, tuple(sorted(fmt.match_key(obj.key).items()))) for obj in source.list()]
    [objects] = run.plan_batches(items, batch_objects=len(items))
    return committer.task(objects)


def test_a_batch_told_to_stop_stops_at_its_next_object_and_stages_nothing(tmp_path: Path) -> None:
    """Through batch.stage_batch itself: the run stops while the batch's first object is being read."""
    write_local(tmp_path / "src", source_objects(6))
    stopped = threading.Event()
    opened: list[str] = []

    class StopsTheRunAtItsFirstRead(LocalSource):
        def open(self, obj: SourceObject) -> BinaryIO:
            opened.append(obj.key)
            stopped.set()
            return super().open(obj)

    task = _one_batch(tmp_path, StopsTheRunAtItsFirstRead(tmp_path / "src"))
    with pytest.raises(StagingStopped):
        batch.stage_batch(task, stopped)
    assert len(opened) == 1  # of 6
    assert not task.store.work_dir(task.staging).exists()
    # As the next run would: the same batch, not told to stop, stages whole.
    assert batch.stage_batch(task).counts.objects_converted == 6


class _BlocksParsed:
    """A run's progress that counts the blocks parsed, calling `then` after each."""

    def __init__(self, then: Callable[[], object] = lambda: None) -> None:
        self.then = then
        self.blocks = 0

    def planned(self, objects: int, source_bytes: int) -> None:
        pass

    def parsed(self, key: str, text_bytes: int, rows: int) -> None:
        self.blocks += 1
        self.then()

    def object_done(self, key: str, source_bytes: int) -> None:
        pass


def test_a_large_object_told_to_stop_stops_at_its_next_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object read block by block, which may be most of a batch, does not wait for its end: the run stops
    once its first block is parsed. (Blocks of 4 KiB here, for a small object to have many.)"""
    monkeypatch.setattr(arrow_parse, "SMALL_OBJECT_BYTES", 0)
    monkeypatch.setattr(arrow_parse, "line_blocks", functools.partial(sources.line_blocks, block_size=4 << 10))
    write_local(tmp_path / "src", {alb_key("eu-west-1", 1, 0): FIXTURE.read_bytes() * 4})
    task = _one_batch(tmp_path, LocalSource(tmp_path / "src"))
    stopped = threading.Event()
    told_to_stop = _BlocksParsed(then=stopped.set)
    with batch.reporting_to(told_to_stop), pytest.raises(StagingStopped):
        batch.stage_batch(task, stopped)
    not_told = _BlocksParsed()
    with batch.reporting_to(not_told):
        batch.stage_batch(task)
    assert told_to_stop.blocks == 1
    assert not_told.blocks > 4
