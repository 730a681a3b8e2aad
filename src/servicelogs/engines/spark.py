"""The Spark engine: Spark spreads the run's batches over a cluster; each task stages one batch.

The driver runs servicelogs.run: it lists the source, subtracts the ledger, plans the same deterministic
batches, and commits and publishes what the tasks staged. Each task runs the local worker's conversion
(engines.batch) in an executor's Python worker, so the rows, types, partitions, extra fields and rejects are
the same by construction: no per-format Spark code, no second tokenizer to keep in step with the first.
Executors read and write through the project's own Store (local disk, or S3 with boto3), so no Hadoop S3
connector is needed.

Exactly once under Spark's retries: a retried task (an executor lost, a speculative copy) stages the same
batch apart (staging/<run>/<batch>.<attempt>), so no attempt deletes another's staged files; Spark hands the
driver one attempt's result per task, and the driver commits that one. The other attempts' files are never
named by a commit; the run's staging folder goes at its end.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from servicelogs.run import BatchTask, Engine, Progress, StagedBatch
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

    if SparkContext._active_spark_context is not None:
        return SparkSession.builder.getOrCreate()
    # Executors' Python workers run this interpreter, which has servicelogs, unless the cluster says otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("servicelogs").master(master or DEFAULT_MASTER)
    for key, value in SESSION_CONF.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def convert_attempt(task: BatchTask) -> StagedBatch:
    """In an executor: stage one batch, apart when Spark retries the task."""
    from pyspark import TaskContext

    from servicelogs.engines import batch

    context = TaskContext.get()
    return batch.stage_batch(task, attempt=context.attemptNumber() if context is not None else 0)


def executor(master: str | None = None) -> Engine:
    """The run's Engine that runs each batch as a Spark task."""

    def execute(
        tasks: list[BatchTask], workers: int, progress: Progress | None, summary: RunSummary
    ) -> Iterator[StagedBatch]:
        if not tasks:
            return  # nothing new: no JVM to start
        context = session(master).sparkContext
        context.setJobDescription(f"servicelogs {tasks[0].format_name}: {len(tasks)} batches, run {tasks[0].run_id}")
        # One partition per batch: Spark hands each to a free core; `convert_attempt` is looked up here, when
        # the job is built, so a test can wrap it (a task that fails after committing).
        results = context.parallelize(tasks, len(tasks)).map(convert_attempt).collect()
        for task, result in zip(tasks, results, strict=True):
            if progress:  # executors report nothing as they go: a batch's objects show once it is done
                progress.parsed(task.objects[0][0].key, result.counts.bytes_text, result.counts.rows)
                for obj, _ in task.objects:
                    progress.object_done(obj.key, obj.size)
            yield result

    return execute
