"""`servicelogs deploy glue`: build the package, put it and the job script on S3, create or update the Glue job.

The job runs servicelogs.glue_job with the Spark engine; Glue installs the wheel (and its dependencies) on the
driver and the workers from `--additional-python-modules`. Deploying again updates the job in place
(UpdateJob replaces the whole definition, so the job is always exactly what the last deploy said). Job
bookmarks are disabled: the table's ledger decides what is new.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicelogs.errors import ServiceLogsError, UsageError

SCRIPT_NAME = "servicelogs_glue_job.py"
GLUE_VERSION = "5.0"  # Spark 3.5, Python 3.11
WORKER_TYPE = "G.1X"  # 4 vCPU, 16 GB
WORKERS = 2


class DeployError(ServiceLogsError):
    """An AWS call of the deploy failed: names the call and the resource."""


@dataclass(frozen=True)
class GlueJob:
    """What a deploy says: the job, what it converts, and where its code goes."""

    name: str
    role: str
    format: str
    source: str  # s3://bucket/prefix of the raw logs
    target: str  # s3://bucket/prefix/<table folder>
    artifacts: str  # s3://bucket/prefix for the wheel and the script
    glue_version: str = GLUE_VERSION
    worker_type: str = WORKER_TYPE
    workers: int = WORKERS
    database: str = ""
    table: str = ""
    raw_database: str = ""
    raw_table: str = ""

    def arguments(self, wheel_url: str) -> dict[str, str]:
        """The job's default arguments: the original tool's names (see servicelogs.glue_job)."""
        args = {
            "--additional-python-modules": wheel_url,
            "--job-bookmark-option": "job-bookmark-disable",
            "--format": self.format,
            "--s3_source_location": self.source,
            "--s3_converted_target": self.target,
        }
        names = {
            "--converted_database_name": self.database,
            "--converted_table_name": self.table,
            "--raw_database_name": self.raw_database,
            "--raw_table_name": self.raw_table,
        }
        return {**args, **{k: v for k, v in names.items() if v}}

    def definition(self, script_url: str, wheel_url: str) -> dict[str, Any]:
        """The job as CreateJob takes it (less its Name) and UpdateJob's JobUpdate."""
        return {
            "Description": f"servicelogs: {self.format} logs from {self.source} to {self.target}",
            "Role": self.role,
            "Command": {"Name": "glueetl", "ScriptLocation": script_url, "PythonVersion": "3"},
            "DefaultArguments": self.arguments(wheel_url),
            "GlueVersion": self.glue_version,
            "WorkerType": self.worker_type,
            "NumberOfWorkers": self.workers,
        }


def build_wheel(out: Path) -> Path:
    """A wheel of this checkout of servicelogs (pip's own build: no extra tool needed), pure Python: the Glue
    job's Python and platform are AWS's, not this machine's, and a compiled tokenizer built here might not load
    there (the job tokenizes with Arrow's CSV reader, the same rows)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").exists():
        raise UsageError("servicelogs is not installed from a source checkout: build a wheel and pass --wheel PATH")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(root), "-w", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "SERVICELOGS_PURE_PYTHON": "1"},
    )
    wheels = sorted(out.glob("servicelogs-*.whl"))
    if done.returncode or not wheels:
        raise UsageError(f"could not build the servicelogs wheel: {done.stderr.strip()[-500:]}")
    return wheels[-1]


def deploy_glue(
    job: GlueJob,
    *,
    wheel: Path | None = None,
    start: bool = False,
    glue: Any = None,
    s3: Any = None,
    endpoint_url: str | None = None,
) -> dict[str, str]:
    """Upload the wheel and the script under `job.artifacts`, create or update the job, start a run if asked.

    Returns what was done: the job's name, "created" or "updated", the script's and the wheel's URLs, and the
    run id when started. `glue` and `s3` are boto3 clients (default: new ones on `endpoint_url`)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    if not job.artifacts.startswith("s3://") or not job.role:
        raise UsageError("deploy glue needs --artifacts s3://bucket/prefix and --role (the job's IAM role)")
    try:
        return _deploy(job, wheel, start, glue or boto3.client("glue", endpoint_url=endpoint_url), s3, endpoint_url)
    except (BotoCoreError, ClientError) as e:
        raise DeployError(f"deploying Glue job {job.name!r} (artifacts {job.artifacts}): {e}") from e


def _deploy(job: GlueJob, wheel: Path | None, start: bool, glue: Any, s3: Any, endpoint_url: str | None) -> dict:
    import boto3

    from servicelogs import glue_job
    from servicelogs.s3 import split_url

    s3 = s3 or boto3.client("s3", endpoint_url=endpoint_url)
    bucket, prefix = split_url(job.artifacts)
    prefix = prefix.strip("/")
    with tempfile.TemporaryDirectory(prefix="servicelogs-wheel-") as tmp:
        wheel = wheel or build_wheel(Path(tmp))
        keys = {name: f"{prefix}/{name}" if prefix else name for name in (wheel.name, SCRIPT_NAME)}
        s3.put_object(Bucket=bucket, Key=keys[wheel.name], Body=wheel.read_bytes())  # ~100 KB
    s3.put_object(Bucket=bucket, Key=keys[SCRIPT_NAME], Body=Path(glue_job.__file__).read_bytes())
    script_url, wheel_url = (f"s3://{bucket}/{keys[name]}" for name in (SCRIPT_NAME, wheel.name))
    definition = job.definition(script_url, wheel_url)
    try:
        glue.get_job(JobName=job.name)
    except glue.exceptions.EntityNotFoundException:
        glue.create_job(Name=job.name, **definition)
        action = "created"
    else:
        glue.update_job(JobName=job.name, JobUpdate=definition)
        action = "updated"
    done = {"job": job.name, "action": action, "script": script_url, "wheel": wheel_url}
    if start:
        done["run_id"] = glue.start_job_run(JobName=job.name)["JobRunId"]
    return done
