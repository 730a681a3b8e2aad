"""`servicelogs deploy glue` against moto in server mode over HTTP (S3 and Glue): the wheel is built and
uploaded with the job script, the job is created with the job arguments and worker settings, and a run
starts. moto has no UpdateJob: the update path runs against botocore's Stubber, which checks the request
against Glue's API model (JobName + JobUpdate, no Name in it) and its exact values."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

from botocore.stub import Stubber  # noqa: E402
from s3_support import ENV, start_moto  # noqa: E402

from servicelogs import cli, deploy, glue_job  # noqa: E402
from servicelogs.deploy import DeployError, GlueJob, deploy_glue  # noqa: E402

ROLE = "arn:aws:iam::123456789012:role/servicelogs-glue"
JOB = GlueJob(
    name="servicelogs-alb",
    role=ROLE,
    format="alb",
    source="s3://raw-logs/AWSLogs/",
    target="s3://lake/converted/alb",
    artifacts="s3://artifacts/servicelogs/",
    workers=4,
    worker_type="G.2X",
    database="aws_service_logs",
    table="alb",
)


@pytest.fixture(scope="module")
def aws(monkeypatch_module):
    for name, value in ENV.items():
        monkeypatch_module.setenv(name, value)
    moto, port = start_moto()
    endpoint = f"http://127.0.0.1:{port}"
    yield endpoint, boto3.client("s3", endpoint_url=endpoint), boto3.client("glue", endpoint_url=endpoint)
    moto.kill()
    moto.wait()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """This checkout built once, as deploy builds it."""
    return deploy.build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_the_spark_engine_and_the_job(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {"servicelogs/engines/spark.py", "servicelogs/glue_job.py", "servicelogs/render/spark.py"} <= set(names)
    # Pure Python, for any platform and Python AWS runs the job on: no tokenizer compiled for this machine's.
    assert wheel.name.endswith("-py3-none-any.whl") and not [n for n in names if n.endswith(".so")]


def test_deploy_creates_the_job_and_starts_a_run(aws, wheel: Path, capsys) -> None:
    endpoint, s3, glue = aws
    s3.create_bucket(Bucket="artifacts")
    argv = ["deploy", "glue", "--name", JOB.name, "--role", ROLE, "--format", "alb", "--source", JOB.source]
    argv += ["--target", JOB.target, "--artifacts", JOB.artifacts, "--workers", "4", "--worker-type", "G.2X"]
    argv += ["--database", "aws_service_logs", "--table", "alb", "--wheel", str(wheel), "--start"]
    assert cli.main([*argv, "--endpoint-url", endpoint]) == 0
    done = json.loads(capsys.readouterr().out)
    script_url = "s3://artifacts/servicelogs/servicelogs_glue_job.py"
    wheel_url = f"s3://artifacts/servicelogs/{wheel.name}"
    assert (done["job"], done["action"], done["script"], done["wheel"]) == (JOB.name, "created", script_url, wheel_url)
    assert done["run_id"]
    uploaded = s3.get_object(Bucket="artifacts", Key=f"servicelogs/{wheel.name}")["Body"].read()
    assert uploaded == wheel.read_bytes()
    script = s3.get_object(Bucket="artifacts", Key="servicelogs/servicelogs_glue_job.py")["Body"].read()
    assert script == Path(glue_job.__file__).read_bytes()
    got = glue.get_job(JobName=JOB.name)["Job"]
    assert got["Role"] == ROLE
    assert got["Command"] == {"Name": "glueetl", "ScriptLocation": script_url, "PythonVersion": "3"}
    assert got["DefaultArguments"] == {
        "--additional-python-modules": wheel_url,
        "--job-bookmark-option": "job-bookmark-disable",
        "--format": "alb",
        "--s3_source_location": "s3://raw-logs/AWSLogs/",
        "--s3_converted_target": "s3://lake/converted/alb",
        "--converted_database_name": "aws_service_logs",
        "--converted_table_name": "alb",
    }
    assert (got["GlueVersion"], got["WorkerType"], got["NumberOfWorkers"]) == ("5.0", "G.2X", 4)
    runs = glue.get_job_runs(JobName=JOB.name)["JobRuns"]
    assert [r["Id"] for r in runs] == [done["run_id"]]
    # The job's arguments are the entry script's: it reads them as Glue passes them.
    args = glue_job.parse_args([part for k, v in got["DefaultArguments"].items() for part in (k, v)])
    assert (args.format, args.s3_converted_target, args.converted_database_name) == (
        "alb",
        "s3://lake/converted/alb",
        "aws_service_logs",
    )


def test_deploying_again_updates_the_job_in_place(aws, wheel: Path) -> None:
    endpoint, s3, _ = aws
    s3.create_bucket(Bucket="artifacts2")
    job = GlueJob(**{**JOB.__dict__, "artifacts": "s3://artifacts2/code", "workers": 10})
    glue = boto3.client("glue", endpoint_url=endpoint)
    expected_update = job.definition(
        "s3://artifacts2/code/servicelogs_glue_job.py", f"s3://artifacts2/code/{wheel.name}"
    )
    assert "Name" not in expected_update and expected_update["NumberOfWorkers"] == 10
    with Stubber(glue) as stub:
        stub.add_response("get_job", {"Job": {"Name": job.name}}, {"JobName": job.name})
        stub.add_response("update_job", {"JobName": job.name}, {"JobName": job.name, "JobUpdate": expected_update})
        done = deploy_glue(job, wheel=wheel, glue=glue, s3=s3)
        stub.assert_no_pending_responses()
    assert done["action"] == "updated"
    assert s3.head_object(Bucket="artifacts2", Key=f"code/{wheel.name}")["ContentLength"] == wheel.stat().st_size


def test_a_failed_aws_call_is_a_clear_error(aws, wheel: Path) -> None:
    endpoint, _, _ = aws
    job = GlueJob(**{**JOB.__dict__, "artifacts": "s3://no-such-bucket/code"})
    with pytest.raises(DeployError, match=r"servicelogs-alb.*no-such-bucket"):
        deploy_glue(job, wheel=wheel, endpoint_url=endpoint)
