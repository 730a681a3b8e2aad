"""The Glue job entry script, run by a real `spark-submit` (pyspark's, local[2]) as Glue would run it: the
original tool's arguments plus the ones Glue injects; every format from local folders, and from S3 to S3
on moto; the tables equal the local engine's, row for row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

pyspark = pytest.importorskip("pyspark")
boto3 = pytest.importorskip("boto3")

from conftest import read_rejects, read_table  # noqa: E402
from exactly_once_support import write_local  # noqa: E402
from s3_support import ENV, download, start_moto  # noqa: E402
from spark_support import fixture_corpus, without_run_id  # noqa: E402

import servicelogs  # noqa: E402
from servicelogs import glue_job  # noqa: E402
from servicelogs.errors import UsageError  # noqa: E402

JARS = Path(os.environ.get("SERVICELOGS_JARS", Path.home() / ".cache" / "servicelogs" / "jars"))
SPARK_SUBMIT = Path(pyspark.__file__).parent / "bin" / "spark-submit"
# What Glue adds to a job's own arguments (https://docs.aws.amazon.com/glue/latest/dg/aws-glue-programming-etl-glue-arguments.html)
GLUE_INJECTED = [
    "--JOB_ID",
    "j_0123",
    "--JOB_RUN_ID",
    "jr_0123",
    "--JOB_NAME",
    "servicelogs-job",
    "--job-bookmark-option",
    "job-bookmark-enable",
    "--TempDir",
    "s3://aws-glue-temporary/admin",
    "--enable-metrics",
]


def spark_submit(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    python = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.run(
        [str(SPARK_SUBMIT), "--master", "local[2]", "--conf", "spark.ui.enabled=false", glue_job.__file__, *args],
        env={**os.environ, **python, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def local_engine_tables(fmt_name: str, source: Path, target: Path) -> tuple[list[dict], list[dict]]:
    servicelogs.convert(fmt_name, source, target, table="converted", workers=1)
    return read_table(target, "converted", servicelogs.formats.get(fmt_name).partitions), read_rejects(
        target, "converted"
    )


def test_the_original_tools_arguments_are_read_and_glues_own_ignored() -> None:
    args = glue_job.parse_args(
        [
            *GLUE_INJECTED,
            "--format",
            "alb",
            "--raw_database_name",
            "aws_service_logs_raw",
            "--raw_table_name",
            "alb_raw",
            "--converted_database_name",
            "aws_service_logs",
            "--converted_table_name",
            "alb_optimized",
            "--s3_source_location",
            "s3://logs/AWSLogs/",
            "--s3_converted_target",
            "s3://lake/converted/alb/",
        ]
    )
    assert (args.format, args.s3_source_location, args.s3_converted_target) == (
        "alb",
        "s3://logs/AWSLogs/",
        "s3://lake/converted/alb/",
    )
    assert (args.raw_database_name, args.raw_table_name) == ("aws_service_logs_raw", "alb_raw")
    assert (args.converted_database_name, args.converted_table_name) == ("aws_service_logs", "alb_optimized")
    assert glue_job.target_layout(args.s3_converted_target) == ("s3://lake/converted", "alb")
    with pytest.raises(UsageError, match="must name the table's folder"):
        glue_job.target_layout("s3://lake/")


@pytest.mark.parametrize("fmt_name", servicelogs.formats.names())
def test_spark_submit_converts_every_format_from_folders(tmp_path: Path, fmt_name: str) -> None:
    write_local(tmp_path / "raw", fixture_corpus(fmt_name))
    job = [*GLUE_INJECTED, "--format", fmt_name, "--s3_source_location", str(tmp_path / "raw")]
    job += ["--s3_converted_target", str(tmp_path / "lake" / "converted"), "--converted_table_name", "t"]
    done = spark_submit(job)
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: an object of the bad-input fixtures failed
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rows, rejects = local_engine_tables(fmt_name, tmp_path / "raw", tmp_path / "by_local")
    partitions = servicelogs.formats.get(fmt_name).partitions
    assert rows and summary["rows"] == len(rows)
    assert without_run_id(read_table(tmp_path / "lake", "converted", partitions)) == without_run_id(rows)
    assert without_run_id(read_rejects(tmp_path / "lake", "converted")) == without_run_id(rejects)


@pytest.fixture(scope="module")
def moto_s3():
    moto, port = start_moto()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
    )
    yield endpoint, client
    moto.kill()
    moto.wait()


@pytest.mark.parametrize("fmt_name", ["alb", "cloudtrail"])  # a delimited and a JSON records format
def test_spark_submit_converts_from_s3_to_s3(moto_s3, tmp_path: Path, fmt_name: str) -> None:
    endpoint, client = moto_s3
    raw, lake = f"raw-{fmt_name.replace('_', '-')}", f"lake-{fmt_name.replace('_', '-')}"
    client.create_bucket(Bucket=raw)
    client.create_bucket(Bucket=lake)
    corpus = fixture_corpus(fmt_name)
    for key, data in corpus.items():
        client.put_object(Bucket=raw, Key=f"exported/{key}", Body=data)
    job = [*GLUE_INJECTED, "--format", fmt_name, "--s3_source_location", f"s3://{raw}/exported/"]
    job += ["--s3_converted_target", f"s3://{lake}/converted/{fmt_name}", "--endpoint_url", endpoint]
    done = spark_submit(job, env=ENV)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    download(client, lake, "converted", tmp_path / "lake")
    write_local(tmp_path / "raw", corpus)
    rows, rejects = local_engine_tables(fmt_name, tmp_path / "raw", tmp_path / "by_local")
    partitions = servicelogs.formats.get(fmt_name).partitions
    assert rows
    assert without_run_id(read_table(tmp_path / "lake", fmt_name, partitions)) == without_run_id(rows)
    assert without_run_id(read_rejects(tmp_path / "lake", fmt_name)) == without_run_id(rejects)
    assert json.loads(done.stdout.strip().splitlines()[-1])["rows"] == len(rows)
    if fmt_name == "alb":
        assert_spark_reads_it_through_s3a(endpoint, f"s3a://{lake}/converted/{fmt_name}", fmt_name, rows)


def assert_spark_reads_it_through_s3a(endpoint: str, url: str, fmt_name: str, rows: list[dict]) -> None:
    """Spark's own S3 layer (Hadoop S3A) reads the table servicelogs wrote, with the declared types."""
    if not (JARS / "hadoop-aws-3.3.1.jar").exists():
        pytest.fail(f"the S3A jars are not in {JARS}: run .ci/s3a_jars (CI does, at install time)")
    script = Path(__file__).parent / "spark_s3a_read.py"
    done = subprocess.run(
        [sys.executable, str(script), str(JARS), endpoint, url, fmt_name],
        env={**os.environ, **ENV, "PYSPARK_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    fmt = servicelogs.formats.get(fmt_name)
    assert got["fields"] == [*(c.name for c in fmt.columns), *fmt.partitions]
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    want = [
        [r["source_key"], r["line_number"], (r[fmt.event_time] - epoch) // timedelta(microseconds=1)]
        + [r[p] for p in fmt.partitions]
        for r in rows
    ]
    assert got["rows"] == want
