"""The Spark engine in local mode (local[2], two attempts per task): bad input as the local engine gives it,
attempts of one batch stage apart and one is committed, a task retried after staging is committed once, and
a Spark run killed at random re-runs to zero duplicates and zero missing. Every format's tables, row for row
as the local engine's: the engine contract, tests/test_engine_contract.py."""

from __future__ import annotations

import random
import time
from datetime import datetime
from pathlib import Path

import pytest

pyspark = pytest.importorskip("pyspark")

from conftest import read_rejects, read_table  # noqa: E402
from exactly_once_support import (  # noqa: E402
    expected_lines,
    finish,
    oracle,
    run_cli,
    source_objects,
    start_cli,
    visible_junk,
    write_local,
)
from spark_support import fixture_corpus, without_run_id  # noqa: E402

import servicelogs  # noqa: E402
from servicelogs import run  # noqa: E402
from servicelogs.engines import batch  # noqa: E402
from servicelogs.engines import spark as spark_engine  # noqa: E402
from servicelogs.layout import Layout  # noqa: E402
from servicelogs.ledger import Ledger  # noqa: E402
from servicelogs.sources import LocalSource  # noqa: E402
from servicelogs.storage import LocalStore  # noqa: E402
from servicelogs.summary import RunSummary  # noqa: E402

MASTER = "local[2,2]"  # two cores; a failed task is tried once more, as a cluster retries a lost executor's
BATCH_OBJECTS = 3  # several batches per format, so several tasks run at once


@pytest.fixture(scope="module")
def spark():
    from pyspark import SparkContext

    # A session left by another module (the engine contract's local[2]) would be reused, and it never
    # retries a failed task: this module's tests need MASTER's retry.
    if SparkContext._active_spark_context is not None:  # type: ignore[attr-defined]  # pyspark's own handle
        SparkContext._active_spark_context.stop()  # type: ignore[attr-defined]
    session = spark_engine.session(MASTER)
    yield session
    session.stop()


def test_bad_input_gives_the_same_rejects_and_failures(spark, tmp_path: Path) -> None:
    """A line that is not a record is a reject with its reason; an object that is not gzip fails alone."""
    good = source_objects(2)
    corpus = {**good, next(iter(good)).replace("obj0000", "obj0099") + ".gz": b"not gzip at all\n"}
    write_local(tmp_path / "src", corpus)
    results = {}
    for engine in ("local", "spark"):
        summary = servicelogs.convert("alb", tmp_path / "src", tmp_path / engine, engine=engine, workers=1)
        results[engine] = (summary, read_rejects(tmp_path / engine, "alb"))
    (local_summary, local_rejects), (spark_summary, spark_rejects) = results["local"], results["spark"]
    assert [r["raw_line"] for r in spark_rejects] == ["this line is not an ALB access log line"]
    assert without_run_id(spark_rejects) == without_run_id(local_rejects)
    assert [p.key for p in spark_summary.failed] == [p.key for p in local_summary.failed]
    assert len(spark_summary.failed) == (1 if local_summary.failed else 0)


def committer_for(source: Path, target: Path, run_id: str) -> run.Committer:
    store = LocalStore(target)
    summary = RunSummary(run_id, "alb", str(source), store.url)
    ledger = Ledger(store, "_servicelogs/alb")
    return run.Committer("alb", LocalSource(source), store, Layout("alb"), ledger, ledger.load(), summary)


def test_two_attempts_at_a_batch_stage_apart_and_one_is_committed(tmp_path: Path) -> None:
    """Spark may run a task twice (a lost executor, a speculative copy): each attempt stages in its own
    folder, so neither deletes the other's files, and the driver commits the one Spark hands it."""
    objects = source_objects(6)
    write_local(tmp_path / "src", objects)
    committer = committer_for(tmp_path / "src", tmp_path / "dst", "20240101T000000Z-aaaaaa")
    fmt = servicelogs.formats.get("alb")
    items = [(obj, tuple(sorted(fmt.match_key(obj.key).items()))) for obj in LocalSource(tmp_path / "src").list()]
    tasks = [committer.task(batch) for batch in run.plan_batches(items, batch_objects=BATCH_OBJECTS)]
    first = [batch.stage_batch(t, attempt=0) for t in tasks]
    second = [batch.stage_batch(t, attempt=1) for t in tasks]
    assert [s.staging for s in second] == [f"{t.staging}.1" for t in tasks]
    assert all(committer.store.is_staged(f) for s in first + second for f in s.files)
    assert [committer.settle(t, s) for t, s in zip(tasks, second, strict=True)] == [None, None]
    assert (committer.summary.batches_committed, committer.summary.batches_lost) == (2, 0)
    commits = list(committer.ledger.commits())
    assert [c.batch_id for c in commits] == [t.batch_id for t in tasks]
    assert all(f.staged.startswith(f"{t.staging}.1/") for c, t in zip(commits, tasks, strict=True) for f in c.files)
    verdict = oracle(expected_lines(objects), tmp_path / "dst", root=tmp_path / "src")
    assert verdict.ok, str(verdict)


def test_a_task_retried_after_it_staged_is_committed_once(spark, tmp_path: Path, monkeypatch) -> None:
    """Each task stages its batch, then its first attempt dies (an executor lost before it reported): Spark
    runs the task again, which stages apart; the driver commits the retry's files, once per batch."""
    objects = source_objects(6)
    write_local(tmp_path / "src", objects)
    convert_attempt = spark_engine.convert_attempt

    def lost_after_staging(task: run.BatchTask) -> run.StagedBatch:
        from pyspark import TaskContext

        result = convert_attempt(task)
        if TaskContext.get().attemptNumber() == 0:
            raise RuntimeError("executor lost after staging")
        return result

    monkeypatch.setattr(spark_engine, "convert_attempt", lost_after_staging)
    summary = servicelogs.convert("alb", tmp_path / "src", tmp_path / "dst", engine="spark", batch_objects=3)
    assert (summary.batches_committed, summary.batches_lost) == (2, 0)  # a retry is not a concurrent run
    assert (summary.rows, summary.rejects) == (12, 2)
    verdict = oracle(expected_lines(objects), tmp_path / "dst", root=tmp_path / "src")
    assert verdict.ok, str(verdict)
    assert (verdict.rows, verdict.rejects) == (12, 2)
    assert visible_junk(tmp_path / "dst") == []
    assert not list((tmp_path / "dst" / "_servicelogs" / "alb" / "staging").rglob("*.parquet"))
    state = Ledger(LocalStore(tmp_path / "dst"), "_servicelogs/alb").load()
    assert state.head == 2 and len(state.done) == len(objects)


def test_a_killed_spark_run_reruns_exactly_once(tmp_path: Path) -> None:
    objects = source_objects(12)
    write_local(tmp_path / "src", objects)
    argv = ["convert", "alb", str(tmp_path / "src"), str(tmp_path / "dst"), "--engine", "spark"]
    argv += ["--master", "local[2]", "--batch-objects", "1", "--json"]
    rng = random.Random(14)
    proc, out = start_cli(argv)
    time.sleep(rng.uniform(4, 9))  # while the JVM starts or the tasks run: anywhere is fine
    proc.kill()
    killed = finish(proc, out)
    rerun = run_cli(argv, timeout=180)
    assert rerun.code == 0, rerun.output
    verdict = oracle(expected_lines(objects), tmp_path / "dst", root=tmp_path / "src")
    assert verdict.ok, f"{verdict} (first run: {'killed' if killed.killed else killed.output})"
    assert visible_junk(tmp_path / "dst") == []


def as_pyspark(value: object) -> object:
    """A value as PySpark hands it over: timestamps as naive datetimes in the process's local time."""
    if isinstance(value, datetime):
        return value.astimezone().replace(tzinfo=None)
    if isinstance(value, dict):
        return {k: as_pyspark(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_pyspark(v) for v in value]
    return value


@pytest.mark.parametrize("fmt_name", ["alb", "cloudtrail", "vpc_flow"])
def test_spark_reads_the_table_with_the_declared_types(spark, tmp_path: Path, fmt_name: str) -> None:
    """render.spark's schema: Spark reads the converted table's values as DuckDB does, partitions as text."""
    from servicelogs.render.spark import rejects_schema, schema

    write_local(tmp_path / "src", fixture_corpus(fmt_name))
    servicelogs.convert(fmt_name, tmp_path / "src", tmp_path / "dst", engine="spark")
    fmt = servicelogs.formats.get(fmt_name)
    table = spark.read.schema(schema(fmt)).parquet(str(tmp_path / "dst" / fmt_name))
    assert [f.name for f in table.schema.fields] == [*(c.name for c in fmt.columns), *fmt.partitions]
    by_spark = [row.asDict(recursive=True) for row in table.orderBy("source_key", "line_number").collect()]
    by_duckdb = read_table(tmp_path / "dst", fmt_name, fmt.partitions)
    assert len(by_spark) == len(by_duckdb) > 0
    for got, want in zip(by_spark, by_duckdb, strict=True):
        assert got == {k: as_pyspark(want[k]) for k in got}, got["source_key"]
    rejects = spark.read.schema(rejects_schema()).parquet(str(tmp_path / "dst" / f"{fmt_name}_rejects"))
    assert rejects.count() == len(read_rejects(tmp_path / "dst", fmt_name))


def test_a_master_without_the_spark_engine_is_a_usage_error(tmp_path: Path, capsys) -> None:
    from servicelogs import cli

    (tmp_path / "src").mkdir()
    assert cli.main(["convert", "alb", str(tmp_path / "src"), str(tmp_path / "dst"), "--master", "local[2]"]) == 2
    assert capsys.readouterr().err == "servicelogs: error: a Spark master applies to engine='spark' only\n"
