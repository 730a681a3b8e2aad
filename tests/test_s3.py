"""S3 as source and target, against a real S3 API (moto in server mode over HTTP, behind a fault proxy):
listing (pages, odd keys), streamed reads, multipart writes, conditional commits, faults per operation,
crashes at every side effect, concurrent runs, and the hygiene of what a reader can see."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import pytest
from exactly_once_support import (
    expected_lines,
    finish,
    oracle,
    point_numbers,
    resume,
    run_cli,
    source_objects,
    start_cli,
    wait_stopped,
)

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

from s3_support import ENV, download, keys, start_moto, start_proxy  # noqa: E402

import servicelogs  # noqa: E402
from servicelogs.ledger import Fence, Ledger  # noqa: E402

SRC_PREFIX = "logs with space/a+b=c/ünïcode"
_counter = itertools.count()


@pytest.fixture(scope="session")
def s3():
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    moto, port = start_moto()
    proxy, server = start_proxy(port)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    yield proxy, client
    server.shutdown()
    moto.kill()
    moto.wait()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class World:
    """Two fresh buckets (source, lake) and the objects put in the source."""

    def __init__(self, s3, tmp_path: Path, count: int = 8) -> None:
        self.proxy, self.client = s3
        self.proxy.clear()
        n = next(_counter)
        self.src_bucket, self.lake_bucket = f"src-{n}", f"lake-{n}"
        for b in (self.src_bucket, self.lake_bucket):
            self.client.create_bucket(Bucket=b)
        self.objects = source_objects(count)
        for key, data in self.objects.items():
            self.client.put_object(Bucket=self.src_bucket, Key=f"{SRC_PREFIX}/{key}", Body=data)
        self.source = f"s3://{self.src_bucket}/{SRC_PREFIX}"
        self.target = f"s3://{self.lake_bucket}/lake"
        self.tmp = tmp_path

    def args(self, *extra: str) -> list[str]:
        return [
            "convert", "alb", self.source, self.target, "--workers", "1", "--batch-objects", "2",
            "--endpoint-url", self.proxy.url, *extra,
        ]  # fmt: skip

    def convert(self, **kw):  # type: ignore[no-untyped-def]
        kw.setdefault("batch_objects", 2)
        return servicelogs.convert("alb", self.source, self.target, workers=1, endpoint_url=self.proxy.url, **kw)

    def check(self, *, finished: bool = True) -> None:
        """The oracle on what a reader of the bucket sees; when finished, no staging/upload/intent is left."""
        dest = self.tmp / f"dl-{next(_counter)}"
        dest.mkdir()
        download(self.client, self.lake_bucket, "lake/", dest)
        verdict = oracle(expected_lines(self.objects), dest, root=self.source)
        if finished:
            assert verdict.ok, str(verdict)
        else:
            assert not verdict.duplicates and not verdict.unexpected, str(verdict)
        visible = keys(self.client, self.lake_bucket, "lake/alb")
        assert all(k.rsplit("/", 1)[1].startswith("part-") and k.endswith(".parquet") for k in visible)
        if finished:
            assert keys(self.client, self.lake_bucket, "lake/_servicelogs/alb/staging") == []
            assert keys(self.client, self.lake_bucket, "lake/_servicelogs/alb/ledger/intents") == []
            assert self.client.list_multipart_uploads(Bucket=self.lake_bucket).get("Uploads", []) == []

            committed = [o.key for c in self.ledger().commits() for o in c.sources]
            assert sorted(committed) == sorted(f"{self.source}/{k}" for k in self.objects)

    def ledger(self) -> Ledger:
        from servicelogs.locations import open_store

        store = open_store(self.target)
        store.s3.endpoint_url = self.proxy.url  # type: ignore[attr-defined]
        return Ledger(store, "_servicelogs/alb")

    def fences(self) -> list[Fence]:
        ledger = self.ledger()
        return [r for r in map(ledger.read, range(1, ledger.load().head + 1)) if isinstance(r, Fence)]

    def env(self, **extra: str) -> dict[str, str]:
        return {**ENV, **extra}


@pytest.fixture
def world(s3, tmp_path: Path) -> World:
    return World(s3, tmp_path)


def test_convert_s3_to_s3_then_a_second_run_reads_no_object(world: World) -> None:
    first = world.convert()
    assert first.ok and (first.objects_new, first.batches_committed) == (8, 4), first.text()
    world.check()
    ops = {op for op, _ in world.proxy.log}
    assert {"PutObject If-None-Match", "UploadPart", "CompleteMultipartUpload", "CopyObject", "GetObject"} <= ops
    world.proxy.clear()
    second = world.convert()
    assert (second.objects_done_before, second.objects_new, second.files_written) == (8, 0, 0)
    source_reads = [p for op, p in world.proxy.log if op == "GetObject" and p.startswith(f"/{world.src_bucket}/")]
    assert source_reads == []
    world.check()


def test_listing_pages_and_odd_keys(world: World) -> None:
    """1,100 extra objects (more than a page) that are not ALB logs: listed, skipped, never read."""
    for i in range(1100):
        world.client.put_object(Bucket=world.src_bucket, Key=f"{SRC_PREFIX}/other/ key + {i} = ü.txt", Body=b"x")
    summary = world.convert()
    assert summary.objects_listed == 1108 and summary.objects_skipped == 1100 and summary.objects_new == 8
    assert any(p.key == f"{world.source}/other/ key + 7 = ü.txt" for p in summary.skipped)
    assert [op for op, _ in world.proxy.log].count("ListObjectsV2") >= 2
    world.check()


def test_status_over_s3(world: World, capsys) -> None:
    from servicelogs.cli import main

    assert main(world.args()) == 0
    capsys.readouterr()
    assert main(["status", world.target, "--endpoint-url", world.proxy.url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)[0]
    assert status["done_objects"] == 8 and status["commits"] == 4 and status["pending_batches"] == []


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
def test_transient_faults_on_every_operation_are_retried(world: World, kind: str) -> None:
    """Each operation fails once (twice for 503 and resets) in the same run: every one is retried. With
    "drop" the first attempt did land: a retried conditional commit must see its own commit, not a loss."""
    times = 2 if kind in ("503", "reset") else 1
    faults = [world.proxy.fail(op, kind, times=times) for op in OPS]
    summary = world.convert()
    assert [f.hits for f in faults] == [times] * len(OPS)
    assert summary.ok, summary.text()
    world.check()


@pytest.mark.parametrize("op", OPS)
def test_permanent_fault_names_the_operation_and_the_next_run_completes(world: World, op: str) -> None:
    world.proxy.fail(op, "503", times=-1, key_contains=WHERE.get(op, ""))
    failed = run_cli(world.args(), world.env())
    assert failed.code in (1, 2), failed.output
    assert f"S3 {op}" in failed.output or (op == "GetObject" and "GetObject" in failed.output), failed.output
    assert "gave up after 4 attempts" in failed.output
    world.check(finished=False)  # nothing partial visible
    world.proxy.clear()
    time.sleep(1.1)  # the failed run's lease lapses: its leftovers are abandoned
    done = run_cli(world.args(), world.env())
    assert done.code == 0, done.output
    world.check()


def test_crash_at_every_side_effect_on_s3(s3, tmp_path: Path) -> None:
    """Every point with SERVICELOGS_S3_CRASH_STRIDE=1 (the closing note); CI takes every 8th."""
    stride = int(os.environ.get("SERVICELOGS_S3_CRASH_STRIDE", "8"))
    points = 0
    for n in range(1, 300, stride):
        world = World(s3, tmp_path, count=6)
        crashed = run_cli(world.args(), world.env(SERVICELOGS_CRASH_AT=str(n)))
        if not crashed.killed:
            assert crashed.code == 0, crashed.output
            world.check()
            break
        points += 1
        world.check(finished=False)
        time.sleep(1.05)  # the killed run's lease lapses (SERVICELOGS_LEASE_SECONDS=1)
        rerun = world.convert()
        assert rerun.ok, rerun.text()
        world.check()
    print(f"S3: {points} crash points checked (every {stride}th of about {points * stride})")
    assert points * stride >= 60, f"only {points * stride} crash points"


def test_random_kills_on_s3(s3, tmp_path: Path) -> None:
    import random

    world = World(s3, tmp_path, count=12)
    rng = random.Random(3)
    kills = 0
    for _ in range(int(os.environ.get("SERVICELOGS_SOAK_KILLS", "10"))):
        proc, out = start_cli(world.args(), world.env())
        time.sleep(rng.uniform(0.1, 1.5))
        proc.kill()
        kills += finish(proc, out).killed
        world.check(finished=False)
    time.sleep(1.05)
    done = run_cli(world.args(), world.env())
    assert done.code == 0, done.output
    world.check()
    print(f"S3 soak: {kills} runs killed mid-way, then one run to completion: 0/0")
    assert kills >= 1


@pytest.mark.parametrize("runs", [2, 4])
def test_concurrent_runs_on_s3(s3, tmp_path: Path, runs: int) -> None:
    world = World(s3, tmp_path, count=12)
    procs = [start_cli(world.args(), world.env()) for _ in range(runs)]
    results = [finish(p, out) for p, out in procs]
    for r in results:
        # Exit 2 only if fenced: on a loaded machine a heartbeat can miss the tests' 1 s lease, and the
        # others then take the run for dead. That costs work (a run after them), never lines.
        assert_clear_exit(r, (0, 2, 3))
    if any(r.code == 2 for r in results):
        assert_clear_exit(run_cli(world.args(), world.env()), (0,))
    world.check()


def test_abandoned_multipart_upload_is_aborted_by_the_next_run(world: World) -> None:
    log = world.tmp / "points.log"
    run_cli(world.args(), world.env(SERVICELOGS_CRASH_LOG=str(log)))
    lines = log.read_text().splitlines()
    second_part = next(int(line.split("\t")[0]) for line in lines if "\tUploadPart 2 " in line)
    world.client.delete_objects(
        Bucket=world.lake_bucket, Delete={"Objects": [{"Key": k} for k in keys(world.client, world.lake_bucket)]}
    )
    crashed = run_cli(world.args(), world.env(SERVICELOGS_CRASH_AT=str(second_part)))
    assert crashed.killed
    assert len(world.client.list_multipart_uploads(Bucket=world.lake_bucket).get("Uploads", [])) == 1
    time.sleep(1.05)
    summary = world.convert()
    assert summary.uploads_aborted == 1 and summary.staging_cleaned == 1
    world.check()


def test_import_servicelogs_does_not_import_boto3() -> None:
    import subprocess
    import sys

    code = "import sys, servicelogs, servicelogs.cli, servicelogs.ledger; print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- issue 10, items 4-6 on S3 ----------------------------------------------------------------------------

DAY_ONE = "AWSLogs/123456789012/elasticloadbalancing/eu-west-1/2024/05/01"


def test_s3_sub_prefix_then_parent_converts_each_object_once(world: World) -> None:
    day = servicelogs.convert("alb", f"{world.source}/{DAY_ONE}", world.target, workers=1, endpoint_url=world.proxy.url)
    assert day.objects_new == 2 and day.ok, day.text()
    whole = world.convert()
    assert (whole.objects_done_before, whole.objects_new) == (2, 6), whole.text()
    world.check()
    committed = [o.key for c in world.ledger().commits() for o in c.sources]
    assert f"s3://{world.src_bucket}/{SRC_PREFIX}/{sorted(k for k in world.objects if DAY_ONE in k)[0]}" in committed


def test_s3_parent_then_sub_prefix_finds_nothing_new(world: World) -> None:
    assert world.convert().objects_new == 8
    day = servicelogs.convert(
        "alb", f"{world.source}/{DAY_ONE}/", world.target, workers=1, endpoint_url=world.proxy.url
    )
    assert (day.objects_listed, day.objects_done_before, day.objects_new) == (2, 2, 0)
    world.check()


def test_s3_overlapping_prefixes_at_once_give_each_line_once(world: World) -> None:
    def argv(where: str) -> list[str]:
        args = world.args("--batch-objects", "1")  # the last --batch-objects wins
        return [*args[:2], where, *args[3:]]

    runs = [
        start_cli(argv(where), world.env())
        for where in (world.source, f"{world.source}/{DAY_ONE}", f"{world.source}/AWSLogs")
    ]
    codes = [finish(*run).code for run in runs]
    assert all(code in (0, 3) for code in codes), codes
    world.check()


def test_s3_target_inside_the_source_is_refused(world: World, capsys) -> None:
    argv = ["convert", "alb", world.source, f"{world.source}/lake", "--endpoint-url", world.proxy.url]
    from servicelogs.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is inside the source" in err[0]
    assert keys(world.client, world.src_bucket, f"{SRC_PREFIX}/lake") == []


def test_s3_runs_clean_the_temp_folders_of_dead_runs(world: World) -> None:
    import subprocess
    import sys
    import tempfile

    from servicelogs.s3 import S3Store

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    leftover = Path(tempfile.gettempdir()) / f"servicelogs-{gone.pid}-x1y2z3"
    (leftover / "table").mkdir(parents=True)
    (leftover / "table" / "part-1.parquet").write_bytes(b"left by a killed run")
    mine = S3Store("b").work_dir("staging")  # this live process's: kept
    assert mine.name.startswith(f"servicelogs-{os.getpid()}-")
    assert world.convert().ok
    assert not leftover.exists() and mine.exists()
    mine.rmdir()


def assert_clear_exit(done, allowed: tuple[int, ...] = (0, 3)) -> None:  # type: ignore[no-untyped-def]
    assert done.code in allowed, done.output
    assert "Traceback" not in done.output and "damaged" not in done.output, done.output
    if done.code == 2:
        assert " was fenced by run " in done.output, done.output


def pause_points(world: World) -> list[int]:
    """The side effects of a whole run on a fresh lake, by number (the next World gets the same input)."""
    log = world.tmp / f"points-{next(_counter)}.log"
    assert run_cli(world.args(), world.env(SERVICELOGS_CRASH_LOG=str(log))).code == 0
    return list(range(1, len(log.read_text().splitlines()) + 1))


def test_a_run_paused_past_its_lease_at_every_side_effect_is_fenced(s3, tmp_path: Path) -> None:
    """SIGSTOP a run at its N-th side effect until its lease (1 s) lapses, let another run take it for dead
    (fence, clean its staging) and finish, then SIGCONT the first: it must not commit files that are gone.
    Every point with SERVICELOGS_S3_PAUSE_STRIDE=1 (the closing note); CI takes every 16th."""
    stride = int(os.environ.get("SERVICELOGS_S3_PAUSE_STRIDE", "16"))
    points = pause_points(World(s3, tmp_path, count=6))
    fenced = 0
    for n in points[::stride]:
        world = World(s3, tmp_path, count=6)
        proc, out = start_cli(world.args(), world.env(SERVICELOGS_PAUSE_AT=str(n)))
        assert wait_stopped(proc), f"point {n} not reached"
        time.sleep(1.1)  # past the paused run's lease
        assert_clear_exit(run_cli(world.args(), world.env()))
        resume(proc)
        paused = finish(proc, out)
        assert_clear_exit(paused, (0, 2, 3))
        fenced += paused.code == 2
        world.check(finished=False)
        assert_clear_exit(run_cli(world.args(), world.env()), (0,))
        world.check()
    print(f"S3 pause: {len(points[::stride])} of {len(points)} points, {fenced} paused runs fenced: 0/0")
    assert fenced >= 1


def test_a_host_whose_clock_is_700_s_ahead_fences_a_live_run_and_nothing_is_lost(s3, tmp_path: Path) -> None:
    """A second host, its clock 700 s ahead, takes a live run (lease 600 s) for dead: it fences it and
    cleans its staging. The live run's next commit is refused (exit 2, 'fenced by run ...'), never made
    over files that are gone; a run after them finds every line once. CI pauses before the first two
    commit writes; SERVICELOGS_S3_PAUSE_STRIDE=1 before each."""
    long_lease = {"SERVICELOGS_LEASE_SECONDS": "600"}
    probe = World(s3, tmp_path, count=6)
    log = tmp_path / "points.log"
    assert run_cli(probe.args(), probe.env(SERVICELOGS_CRASH_LOG=str(log), **long_lease)).code == 0
    commits = point_numbers(log, "PUT If-None-Match", "/ledger/commits/")  # a batch staged, not committed
    outcomes = []
    for n in commits if os.environ.get("SERVICELOGS_S3_PAUSE_STRIDE") == "1" else commits[:2]:
        world = World(s3, tmp_path, count=6)
        proc, out = start_cli(world.args(), world.env(SERVICELOGS_PAUSE_AT=str(n), **long_lease))
        assert wait_stopped(proc)
        ahead = run_cli(world.args(), world.env(SERVICELOGS_CLOCK_OFFSET="700", **long_lease))
        assert_clear_exit(ahead)
        assert [f.run_id for f in world.fences()] == [ahead.output.split("run ", 1)[1].split(":")[0]]
        resume(proc)
        live = finish(proc, out)
        assert_clear_exit(live, (2,))
        outcomes.append(live.code)
        world.check(finished=False)
        assert_clear_exit(run_cli(world.args(), world.env(**long_lease)), (0,))
        world.check()
    print(f"S3 clocks 700 s apart: live runs fenced, exit codes {outcomes}, then 0/0")


def test_staged_objects_deleted_before_the_commit_make_the_batch_be_redone(world: World) -> None:
    log = world.tmp / "points.log"
    probe = World((world.proxy, world.client), world.tmp)
    assert run_cli(probe.args(), probe.env(SERVICELOGS_CRASH_LOG=str(log))).code == 0
    first_commit = point_numbers(log, "PUT If-None-Match", "/ledger/commits/")[0]
    proc, out = start_cli(world.args(), world.env(SERVICELOGS_PAUSE_AT=str(first_commit - 1)))
    assert wait_stopped(proc)
    staged = keys(world.client, world.lake_bucket, "lake/_servicelogs/alb/staging/")
    assert staged
    world.client.delete_objects(Bucket=world.lake_bucket, Delete={"Objects": [{"Key": k} for k in staged]})
    resume(proc)
    assert_clear_exit(finish(proc, out), (0,))
    world.check()
    for commit in world.ledger().commits():
        assert commit.files
        for f in commit.files:
            head = world.client.head_object(Bucket=world.lake_bucket, Key=f"lake/{f.visible}")
            assert head["ContentLength"] == f.size and f.etag
