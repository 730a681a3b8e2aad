"""The Spark engine in local mode (local[2], two attempts per task): the engine contract (every format's
fixtures, bad input included, give the same tables as the local engine, row for row), a task retried after
it committed adds no copy, and a Spark run killed at random re-runs to zero duplicates and zero missing."""

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
from spark_support import fixture_corpus, table_files, without_run_id  # noqa: E402

import servicelogs  # noqa: E402
from servicelogs.engines import local  # noqa: E402
from servicelogs.engines import spark as spark_engine  # noqa: E402
from servicelogs.ledger import Ledger  # noqa: E402
from servicelogs.sources import LocalSource  # noqa: E402
from servicelogs.storage import LocalStore  # noqa: E402

MASTER = "local[2,2]"  # two cores; a failed task is tried once more, as a cluster retries a lost executor's
BATCH_OBJECTS = 3  # several batches per format, so several tasks run at once


@pytest.fixture(scope="module")
def spark():
    session = spark_engine.session(MASTER)
    yield session
    session.stop()


@pytest.mark.parametrize("fmt_name", servicelogs.formats.names())
def test_both_engines_give_the_same_tables(spark, tmp_path: Path, fmt_name: str) -> None:
    corpus = fixture_corpus(fmt_name)
    write_local(tmp_path / "src", corpus)
    fmt = servicelogs.formats.get(fmt_name)
    out = {}
    for engine in ("local", "spark"):
        target = tmp_path / engine
        summary = servicelogs.convert(
            fmt_name, tmp_path / "src", target, engine=engine, workers=1, batch_objects=BATCH_OBJECTS
        )
        out[engine] = (
            summary,
            read_table(target, fmt_name, fmt.partitions),
            read_rejects(target, fmt_name),
            table_files(target),
        )
    (by_local, rows, rejects, files), (by_spark, spark_rows, spark_rejects, spark_files) = out["local"], out["spark"]
    assert rows and by_local.batches_committed > 1
    assert without_run_id(spark_rows) == without_run_id(rows)  # values and their Python types, row for row
    assert without_run_id(spark_rejects) == without_run_id(rejects)  # the same lines, with the same reasons
    assert spark_files == files  # same batches, same deterministic file names, same partitions
    for name in ("objects_converted", "lines", "rows", "rejects", "extra_field_rows", "batches_committed"):
        assert getattr(by_spark, name) == getattr(by_local, name), name
    assert [(p.key, p.reason) for p in by_spark.failed] == [(p.key, p.reason) for p in by_local.failed]
    assert {r["run_id"] for r in spark_rows} == {by_spark.run_id}


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


def tasks_for(source: Path, target: Path, run_id: str) -> list[local.BatchTask]:
    fmt = servicelogs.formats.get("alb")
    items = [(obj, tuple(sorted(fmt.match_key(obj.key).items()))) for obj in LocalSource(source).list()]
    store = LocalStore(target)
    return [
        local.BatchTask("alb", LocalSource(source), store, local.Layout("alb"), run_id, batch)
        for batch in local.plan_batches(items, batch_objects=BATCH_OBJECTS)
    ]


def test_an_executor_running_a_batch_twice_adds_no_copy(tmp_path: Path) -> None:
    objects = source_objects(6)
    write_local(tmp_path / "src", objects)
    tasks = tasks_for(tmp_path / "src", tmp_path / "dst", "20240101T000000Z-aaaaaa")
    first = [spark_engine.convert_attempt(t) for t in tasks]
    second = [spark_engine.convert_attempt(t) for t in tasks]
    assert [r.committed for r in first] == [1, 1]
    assert [(r.committed, r.rows, len(r.lost)) for r in second] == [(0, 0, 1), (0, 0, 1)]
    verdict = oracle(expected_lines(objects), tmp_path / "dst", root=tmp_path / "src")
    assert verdict.ok, str(verdict)


def test_a_task_retried_after_its_commit_adds_no_copy(spark, tmp_path: Path, monkeypatch) -> None:
    """Each task converts and commits its batch, then its first attempt dies (an executor lost before it
    reported): Spark runs the task again; the retry's batch is already committed, so it drops its copy."""
    objects = source_objects(6)
    write_local(tmp_path / "src", objects)
    convert_attempt = spark_engine.convert_attempt

    def lost_after_commit(task: local.BatchTask) -> local.BatchResult:
        from pyspark import TaskContext

        result = convert_attempt(task)
        if TaskContext.get().attemptNumber() == 0:
            raise RuntimeError("executor lost after its commit")
        return result

    monkeypatch.setattr(spark_engine, "convert_attempt", lost_after_commit)
    summary = servicelogs.convert("alb", tmp_path / "src", tmp_path / "dst", engine="spark", batch_objects=3)
    assert (summary.batches_committed, summary.batches_lost) == (0, 2)  # the retries found their batches done
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
