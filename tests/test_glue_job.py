"""The Glue job entry script, run by a real `spark-submit` (pyspark's, local[2]) as Glue would run it: the
original tool's arguments plus the ones Glue injects; every format from local folders, and from S3 to S3
on moto; the tables equal the local engine's, row for row."""

from __future__ import annotations

import json
import os
import posixpath
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
from s3_support import keys as s3_keys  # noqa: E402
from spark_support import fixture_corpus, without_run_id  # noqa: E402

import servicelogs  # noqa: E402
from servicelogs import glue_job  # noqa: E402
from servicelogs.errors import UsageError  # noqa: E402
from servicelogs.render import hive  # noqa: E402
from servicelogs.render.hive import raw_partition_keys  # noqa: E402
from servicelogs.spec import HeaderDelimited  # noqa: E402

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


def spark_submit(
    args: list[str], env: dict[str, str] | None = None, script: Path | None = None
) -> subprocess.CompletedProcess[str]:
    python = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    entry = str(script or glue_job.__file__)
    return subprocess.run(
        [str(SPARK_SUBMIT), "--master", "local[2]", "--conf", "spark.ui.enabled=false", entry, *args],
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
    client.create_bucket(Bucket="raw")
    client.create_bucket(Bucket="lake")
    yield endpoint, client
    moto.kill()
    moto.wait()


def s3_to_s3_job(client, fmt_name: str, endpoint: str) -> tuple[list[str], dict[str, bytes]]:  # type: ignore[no-untyped-def]
    """The format's fixture corpus put under s3://raw/exported/<format>/, and the job converting it into
    s3://lake/converted/<format> with the original tool's catalog names."""
    corpus = fixture_corpus(fmt_name)
    for key, data in corpus.items():
        client.put_object(Bucket="raw", Key=f"exported/{fmt_name}/{key}", Body=data)
    job = [*GLUE_INJECTED, "--format", fmt_name, "--s3_source_location", f"s3://raw/exported/{fmt_name}/"]
    job += ["--s3_converted_target", f"s3://lake/converted/{fmt_name}", "--endpoint_url", endpoint]
    job += ["--raw_database_name", "aws_service_logs_raw", "--raw_table_name", f"{fmt_name}_source"]
    job += ["--converted_database_name", "aws_service_logs", "--converted_table_name", f"{fmt_name}_optimized"]
    return job, corpus


def assert_converted_as_by_the_local_engine(client, tmp_path: Path, fmt_name: str, corpus: dict, summary: dict) -> None:  # type: ignore[no-untyped-def]
    download(client, "lake", f"converted/{fmt_name}/", tmp_path / "lake" / fmt_name)
    download(client, "lake", f"converted/{fmt_name}_rejects/", tmp_path / "lake" / f"{fmt_name}_rejects")
    write_local(tmp_path / "raw" / fmt_name, corpus)
    rows, rejects = local_engine_tables(fmt_name, tmp_path / "raw" / fmt_name, tmp_path / "by_local" / fmt_name)
    partitions = servicelogs.formats.get(fmt_name).partitions
    assert rows and summary["rows"] == len(rows)
    local_root, s3_root = f"{(tmp_path / 'raw' / fmt_name).resolve()}/", f"s3://raw/exported/{fmt_name}/"
    got = read_table(tmp_path / "lake", fmt_name, partitions)
    assert same_rows(got, s3_root) == same_rows(rows, local_root)
    assert same_rows(read_rejects(tmp_path / "lake", fmt_name), s3_root) == same_rows(rejects, local_root)


def same_rows(rows: list[dict], source_root: str) -> list[dict]:
    """Rows to compare across runs: no run id, source keys relative to the source (rows name their object by
    its full location)."""
    for row in rows:
        assert row["source_key"].startswith(source_root), row["source_key"]
    return [{**row, "source_key": row["source_key"][len(source_root) :]} for row in without_run_id(rows)]


def assert_registered_in_glue(glue, s3, fmt_name: str, corpus: dict, summary: dict) -> None:  # type: ignore[no-untyped-def]
    """The job's three tables are in the Glue Data Catalog under the job's names, with the declared columns,
    at the folders the files are in, with one partition per folder the job wrote into or read from."""
    fmt = servicelogs.formats.get(fmt_name)
    assert "error" not in summary["catalog"], summary["catalog"]
    problems = summary["catalog"]["problems"]
    if isinstance(fmt.grammar, HeaderDelimited):  # the fixtures' headers differ: named, never silent
        root = f"s3://raw/exported/{fmt_name}/"
        differs = f": its header differs from the raw table's (that of {root}{min(corpus)}); the raw table misreads it"
        assert all(p.endswith(differs) and p[: -len(differs)].removeprefix(root) in corpus for p in problems)
    else:
        assert problems == []
    table, rejects, raw = f"{fmt_name}_optimized", f"{fmt_name}_optimized_rejects", f"{fmt_name}_source"

    def described(database: str, name: str) -> tuple[dict, list[tuple[tuple[str, ...], str]]]:
        got = glue.get_table(DatabaseName=database, Name=name)["Table"]
        parts = glue.get_partitions(DatabaseName=database, TableName=name)["Partitions"]
        return got, sorted((tuple(p["Values"]), p["StorageDescriptor"]["Location"]) for p in parts)

    converted, parts = described("aws_service_logs", table)
    location = f"s3://lake/converted/{fmt_name}"
    assert converted["StorageDescriptor"]["Location"] == location
    rendered = hive.converted_table(fmt, table, location)
    assert [(c["Name"], c["Type"]) for c in converted["StorageDescriptor"]["Columns"]] == [
        (c.name, c.type) for c in rendered.columns
    ]
    assert [k["Name"] for k in converted["PartitionKeys"]] == list(fmt.partitions)
    files = [k for k in s3_keys(s3, "lake", f"converted/{fmt_name}/") if k.endswith(".parquet")]
    folders = sorted({posixpath.dirname(k) for k in files})
    assert parts == [
        (tuple(f.split("=", 1)[1] for f in folder.split("/")[2:]), f"s3://lake/{folder}/") for folder in folders
    ]

    rejects_table, no_parts = described("aws_service_logs", rejects)
    assert rejects_table["StorageDescriptor"]["Location"] == f"{location}_rejects" and no_parts == []
    assert [c["Name"] for c in rejects_table["StorageDescriptor"]["Columns"]] == [
        c.name for c in hive.rejects_table(rejects, "").columns
    ]
    if summary["rejects"]:
        assert any(k.endswith(".parquet") for k in s3_keys(s3, "lake", f"converted/{fmt_name}_rejects/"))

    raw_table, raw_parts = described("aws_service_logs_raw", raw)
    assert raw_table["StorageDescriptor"]["Location"] == f"s3://raw/exported/{fmt_name}"
    keys = raw_partition_keys(fmt)
    assert [k["Name"] for k in raw_table["PartitionKeys"]] == list(keys)
    folders = {posixpath.dirname(k) for k in corpus}  # the raw partition keys are the keys' last folders
    want = {(tuple(f.split("/")[-len(keys) :]), f"s3://raw/exported/{fmt_name}/{f}/") for f in folders}
    assert raw_parts == (sorted(want) if keys else [])
    assert not glue.get_tables(DatabaseName="aws_service_logs_raw", Expression=f"{fmt_name}_optimized.*")["TableList"]


def test_spark_submit_of_the_entry_script_converts_s3_to_s3_and_registers_the_tables(moto_s3, tmp_path: Path) -> None:
    endpoint, client = moto_s3
    job, corpus = s3_to_s3_job(client, "alb", endpoint)
    done = spark_submit(job, env=ENV)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert_converted_as_by_the_local_engine(client, tmp_path, "alb", corpus, summary)
    assert_registered_in_glue(glue_client(endpoint), client, "alb", corpus, summary)
    rows = read_table(tmp_path / "lake", "alb", servicelogs.formats.get("alb").partitions)
    assert_spark_reads_it_through_s3a(endpoint, "s3a://lake/converted/alb", "alb", rows)


def test_one_spark_submit_converts_every_format_s3_to_s3_and_registers_the_tables(moto_s3, tmp_path: Path) -> None:
    """Every declared format, S3 to S3, each a job run of its own in one Spark application (one JVM start)."""
    endpoint, client = moto_s3
    names = [n for n in servicelogs.formats.names() if n != "alb"]  # alb: the entry script's own test above
    jobs = {name: s3_to_s3_job(client, name, endpoint) for name in names}
    runs = Path(__file__).with_name("glue_job_runs.py")
    done = spark_submit([json.dumps([job for job, _ in jobs.values()])], env=ENV, script=runs)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"run_id"')]
    assert [s["format"] for s in summaries] == names
    glue = glue_client(endpoint)
    for (name, (_, corpus)), summary in zip(jobs.items(), summaries, strict=True):
        assert_converted_as_by_the_local_engine(client, tmp_path, name, corpus, summary)
        assert_registered_in_glue(glue, client, name, corpus, summary)


def glue_client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "glue", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
    )


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
