"""The Spark engine: Spark spreads the local engine's batches over a cluster; each task converts one batch.

The driver runs the local engine's run (engines.local.run): it lists the source, subtracts the ledger, plans
the same deterministic batches, and after the batches catches up and checkpoints. Only the execution of the
batches differs: each becomes a Spark task that runs the local worker's conversion (engines.batch) in an
executor's Python worker, so the rows, types, partitions, extra fields and rejects are the same by
construction: no per-format Spark code, no second tokenizer to keep in step with the first. Executors read
and write through the project's own Store (local disk, or S3 with boto3), so no Hadoop S3 connector is needed.

Exactly once under Spark's retries: a retried task (an executor lost, a speculative copy) redoes the same
batch, which has the same batch id and so the same file names; its attempt stages apart (staging/<run>/
<batch>.<attempt>), so no attempt deletes another's staged files, and the ledger refuses a second commit of
the batch (ConflictError): the copy is dropped, never published. Today each task also commits its batch, as
a local worker does (the ledger's conditional writes make concurrent committers safe); moving the commit to
the driver means returning the staged files from `convert_attempt` instead of committing there.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from servicelogs.engines import local
from servicelogs.engines.local import BatchResult, BatchTask, Execute, Progress
from servicelogs.summary import RunSummary

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"

# Settings of a session this engine starts itself (a job's own session keeps its own): instants shown in
# UTC as the table stores them, no web UI to bind a port for nor progress bar on the console, few shuffle
# partitions (nothing is shuffled).
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.showConsoleProgress": "false",
}


def session(master: str | None = None) -> SparkSession:
    """The running Spark session (a Glue job's, spark-submit's), else a new one on `master`."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is not None:  # type: ignore[attr-defined]
        return SparkSession.builder.getOrCreate()
    # Executors' Python workers run this interpreter, which has servicelogs, unless the cluster says otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("servicelogs").master(master or DEFAULT_MASTER)
    for key, value in SESSION_CONF.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def convert_attempt(task: BatchTask) -> BatchResult:
    """In an executor: convert and commit one batch, staging apart when Spark retries the task."""
    from pyspark import TaskContext

    context = TaskContext.get()
    attempt = context.attemptNumber() if context is not None else 0
    return local.convert_batch(dataclasses.replace(task, attempt=attempt))


def executor(master: str | None = None) -> Execute:
    """The `execute` of engines.local.run that runs each batch as a Spark task."""

    def execute(
        tasks: list[BatchTask], workers: int, progress: Progress | None, summary: RunSummary
    ) -> Iterator[BatchResult]:
        if not tasks:
            return  # nothing new: no JVM to start
        context = session(master).sparkContext
        context.setJobDescription(f"servicelogs {tasks[0].format_name}: {len(tasks)} batches, run {tasks[0].run_id}")
        # One partition per batch: Spark hands each to a free core; `convert_attempt` is looked up here, when
        # the job is built, so a test can wrap it (a task that fails after committing).
        results = context.parallelize(tasks, len(tasks)).map(convert_attempt).collect()
        for task, result in zip(tasks, results, strict=True):
            if progress:  # executors report nothing as they go: a batch's objects show once it is done
                progress.parsed(task.objects[0][0].key, result.bytes_text, result.rows)
                for obj, _ in task.objects:
                    progress.object_done(obj.key, obj.size)
            yield result

    return execute
