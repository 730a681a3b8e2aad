"""What S3 alone has, against a real S3 API (moto in server mode over HTTP, behind a fault proxy): the
requests a run makes, listing pages and odd keys, faults per operation, multipart uploads left by a killed
run, identities across prefixes, the temp folders of dead runs. The exactly-once proofs themselves (crashes,
kills, concurrent runs, pauses, clocks, fencing, damage) run on S3 and on a local disk from one text:
tests/test_exactly_once.py."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from exactly_once_support import ACCOUNT, Lake, finish, point_numbers, run_cli, start_cli
from s3_support import keys

from servicelogs.storage import Store


@pytest.fixture
def store(s3_store: Store) -> Store:
    """Every Lake here is on S3."""
    return s3_store


def test_a_run_commits_by_conditional_put_uploads_in_parts_publishes_by_copy(lake: Lake) -> None:
    """The requests behind the protocol, as S3 receives them; a no-op run then gets no source object."""
    proxy = lake.s3.proxy  # type: ignore[union-attr]
    assert lake.convert().ok
    ops = {op for op, _ in proxy.log}
    assert {"PutObject If-None-Match", "UploadPart", "CompleteMultipartUpload", "CopyObject", "GetObject"} <= ops
    proxy.clear()
    assert lake.convert().objects_new == 0
    source = f"/{lake.source.removeprefix('s3://')}/"
    assert [p for op, p in proxy.log if op == "GetObject" and p.startswith(source)] == []
    assert [p for op, p in proxy.log if op == "ListObjectsV2"], "it did list"
    lake.check()


def test_a_batchs_files_are_uploaded_checked_and_published_several_at_once(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request waits a round trip (here 0.2 s added by the proxy), and a batch writes a file per partition:
    its uploads, the checks before its commit and its copies go at once, and the commit after them all."""
    monkeypatch.setenv("SERVICELOGS_S3_PART_MB", "64")  # one PutObject a file
    proxy = lake.s3.proxy  # type: ignore[union-attr]
    proxy.delays.update({"PutObject": 0.2, "HeadObject": 0.2, "CopyObject": 0.2})
    summary = lake.convert(batch_objects=8)  # one batch: two regions, several days, and rejects
    assert summary.ok and summary.batches_committed == 1 and summary.files_written >= 4, summary.text()
    assert min(proxy.most_at_once[op] for op in ("PutObject", "HeadObject", "CopyObject")) >= 2, proxy.most_at_once
    staged = [i for i, (op, path) in enumerate(proxy.log) if op == "PutObject" and "/staging/" in path]
    commit = next(
        i for i, (op, path) in enumerate(proxy.log) if op == "PutObject If-None-Match" and "/commits/" in path
    )
    assert len(staged) == summary.files_written and max(staged) < commit
    lake.check()


def test_listing_pages_and_odd_keys(lake: Lake) -> None:
    """1,100 extra objects (more than a page) that are not ALB logs: listed, skipped, never read."""
    lake.put({f"other/ key + {i} = ü.txt": b"x" for i in range(1100)})
    summary = lake.convert()
    assert summary.objects_listed == 1108 and summary.objects_skipped == 1100 and summary.objects_new == 8
    assert any(p.key == lake.key("other/ key + 7 = ü.txt") for p in summary.skipped)
    assert [op for op, _ in lake.s3.proxy.log].count("ListObjectsV2") >= 2  # type: ignore[union-attr]
    lake.check()


OPS = [
    "PutObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "PutObject If-None-Match",
    "CopyObject",
    "GetObject",
    "ListObjectsV2",
]
KINDS = ["429", "500", "503", "reset", "timeout", "drop"]
WHERE = {  # which keys a permanent fault hits (so that the run's lease, say, still gets through)
    "PutObject": "/staging/",
    "CreateMultipartUpload": "/staging/",
    "UploadPart": "/staging/",
    "CompleteMultipartUpload": "/staging/",
    "PutObject If-None-Match": "/ledger/commits/",
    "CopyObject": "/lake/alb/",
}


@pytest.mark.parametrize("kind", KINDS)
def test_transient_faults_on_every_operation_are_retried(lake: Lake, kind: str) -> None:
    """Each operation fails once (twice for 503 and resets) in the same run: every one is retried. With
    "drop" the first attempt did land: a retried conditional commit must see its own commit, not a loss."""
    times = 2 if kind in ("503", "reset") else 1
    faults = [lake.s3.proxy.fail(op, kind, times=times) for op in OPS]  # type: ignore[union-attr]
    summary = lake.convert()
    assert [f.hits for f in faults] == [times] * len(OPS)
    assert summary.ok, summary.text()
    lake.check()


@pytest.mark.parametrize("op", OPS)
def test_permanent_fault_names_the_operation_and_the_next_run_completes(lake: Lake, op: str) -> None:
    proxy = lake.s3.proxy  # type: ignore[union-attr]
    proxy.fail(op, "503", times=-1, key_contains=WHERE.get(op, ""))
    failed = run_cli(lake.args(), lake.env())
    assert failed.code in (1, 2), failed.output
    assert f"S3 {op}" in failed.output or (op == "GetObject" and "GetObject" in failed.output), failed.output
    assert "gave up after 4 attempts" in failed.output
    lake.check(finished=False)  # nothing partial visible
    proxy.clear()
    lake.lease_lapse()  # the failed run's leftovers are abandoned
    done = run_cli(lake.args(), lake.env())
    assert done.code == 0, done.output
    lake.check()


def test_abandoned_multipart_upload_is_aborted_by_the_next_run(lake: Lake) -> None:
    second_part = point_numbers(lake.probe(), "UploadPart 2 ")[0]
    crashed = run_cli(lake.args(), lake.env(SERVICELOGS_CRASH_AT=str(second_part)))
    assert crashed.killed
    litter = lake.litter()  # the upload, not completed (and any of the batch's others in flight with it)
    assert litter
    lake.lease_lapse()
    summary = lake.convert()
    assert summary.uploads_aborted == len(litter) and summary.staging_cleaned == 1
    lake.check()


def test_s3_runs_clean_the_temp_folders_of_dead_runs(lake: Lake) -> None:
    from servicelogs.s3 import S3Store

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    leftover = Path(tempfile.gettempdir()) / f"servicelogs-{gone.pid}-x1y2z3"
    (leftover / "table").mkdir(parents=True)
    (leftover / "table" / "part-1.parquet").write_bytes(b"left by a killed run")
    mine = S3Store("b").work_dir("staging")  # this live process's: kept
    assert mine.name.startswith(f"servicelogs-{os.getpid()}-")
    assert lake.convert().ok
    assert not leftover.exists() and mine.exists()
    mine.rmdir()


def test_import_servicelogs_does_not_import_boto3() -> None:
    code = "import sys, servicelogs, servicelogs.cli, servicelogs.ledger; print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- one identity per object, whatever the prefix (the local folders' twins: tests/test_locations.py) ---------

DAY_ONE = f"AWSLogs/{ACCOUNT}/elasticloadbalancing/eu-west-1/2024/05/01"


def test_s3_sub_prefix_then_parent_converts_each_object_once(lake: Lake) -> None:
    day = lake.convert(f"{lake.source}/{DAY_ONE}")
    assert day.objects_new == 2 and day.ok, day.text()
    whole = lake.convert()
    assert (whole.objects_done_before, whole.objects_new) == (2, 6), whole.text()
    lake.check()
    committed = [o.key for c in lake.ledger().commits() for o in c.sources]
    assert lake.key(sorted(k for k in lake.objects if DAY_ONE in k)[0]) in committed


def test_s3_parent_then_sub_prefix_finds_nothing_new(lake: Lake) -> None:
    assert lake.convert().objects_new == 8
    day = lake.convert(f"{lake.source}/{DAY_ONE}/")
    assert (day.objects_listed, day.objects_done_before, day.objects_new) == (2, 2, 0)
    lake.check()


def test_s3_overlapping_prefixes_at_once_give_each_line_once(lake: Lake) -> None:
    runs = [
        start_cli(lake.args("--batch-objects", "1", source=where), lake.env())  # the last --batch-objects wins
        for where in (lake.source, f"{lake.source}/{DAY_ONE}", f"{lake.source}/AWSLogs")
    ]
    codes = [finish(*run).code for run in runs]
    assert all(code in (0, 3) for code in codes), codes
    lake.check()


def test_s3_target_inside_the_source_is_refused(lake: Lake, capsys) -> None:
    from servicelogs.cli import main

    argv = ["convert", "alb", lake.source, f"{lake.source}/lake", *lake.endpoint]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is inside the source" in err[0]
    bucket, prefix = lake.source.removeprefix("s3://").split("/", 1)
    assert keys(lake.s3.client, bucket, f"{prefix}/lake") == []  # type: ignore[union-attr]
