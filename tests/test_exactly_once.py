"""Exactly once, each proof written once and run on every store: a local disk and S3 (moto in server mode
over HTTP, behind a fault proxy, one server a session, fresh buckets a test), through `Lake`
(exactly_once_support), which says where the stores differ. Incremental runs, backfill windows, rewritten
keys, crashes at every side effect, random kills, concurrent runs, pauses and skewed clocks with fencing,
staged files that vanish, damage named, a corrupt object failing alone. Every proof ends with the oracle
(the table read back with DuckDB): zero duplicated, zero missing, zero unexpected. What one store alone has
is at the end of this file (local) and in tests/test_s3.py."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pytest
from exactly_once_support import (
    FOREIGN,
    SIDE_EFFECTS,
    STATE,
    Lake,
    alb_key,
    clear_exit,
    cli_args,
    expected_lines,
    finish,
    oracle,
    resume,
    run_cli,
    source_objects,
    start_cli,
    wait_stopped,
    write_local,
)

import servicelogs
from servicelogs import run
from servicelogs.cli import main
from servicelogs.engines import local
from servicelogs.errors import FencedError
from servicelogs.layout import Layout
from servicelogs.ledger import Fence, Ledger, State
from servicelogs.summary import RunSummary

__all__ = ["cli_args"]  # tests/test_full_disk.py runs the proofs' command line from here


def per_store(local: tuple[str, int], s3: tuple[str, int]) -> dict[str, int]:
    """A number of points or kills per store, each from its environment variable (name, CI default)."""
    return {kind: int(os.environ.get(name, default)) for kind, (name, default) in (("local", local), ("s3", s3))}


# The S3 variants of the slow loops sample their points: the local variant takes every crash point.
CRASH_STRIDE = per_store(("SERVICELOGS_CRASH_STRIDE", 1), ("SERVICELOGS_S3_CRASH_STRIDE", 8))
PAUSE_STRIDE = per_store(("SERVICELOGS_PAUSE_STRIDE", 10), ("SERVICELOGS_S3_PAUSE_STRIDE", 16))
SOAK_KILLS = per_store(("SERVICELOGS_SOAK_KILLS", 20), ("SERVICELOGS_S3_SOAK_KILLS", 10))


def items(lake: Lake) -> tuple[run.Item, ...]:
    """The source's objects as one batch's items (object, partition values)."""
    fmt = servicelogs.formats.get("alb")
    return tuple((o, tuple(sorted(fmt.match_key(o.key).items()))) for o in sorted(lake.open_source().list()))  # type: ignore[union-attr]


def convert_as(lake: Lake, run_id: str, batch: tuple[run.Item, ...], head: int = 0) -> RunSummary:
    """Convert and commit `batch` as run `run_id` would, from the ledger as of `head` (a stale view)."""
    summary = RunSummary(run_id, "alb", lake.source, lake.target)
    state = State(head=head)
    committer = run.Committer("alb", lake.open_source(), lake.store, Layout("alb"), lake.ledger(), state, summary)
    committer.convert([committer.task(batch)], local.execute, 1, None)
    return summary


# -- incremental runs ----------------------------------------------------------------------------------------


def test_first_run_converts_typed_rows_and_a_second_run_reads_no_object(lake: Lake, monkeypatch) -> None:
    first = lake.convert()
    assert first.ok, first.text()
    assert (first.objects_new, first.objects_converted, first.batches_committed) == (8, 8, 4)
    assert first.rejects == 3 and first.lines == first.rows + first.rejects
    lake.check()

    tables = lake.tables()
    row = duckdb.sql(
        f"SELECT time, client_port, elb_status_code, sent_bytes, request_processing_time, region, source_key "
        f"FROM read_parquet('{tables}/alb/**/*.parquet', hive_partitioning = true) "
        f"WHERE source_key = '{lake.key(alb_key('eu-west-1', 1, 0))}' AND line_number = 1"
    ).fetchall()[0]
    assert row[0].astimezone(timezone.utc) == datetime(2023, 4, 26, 12, 22, 55, 463821, tzinfo=timezone.utc)
    assert (row[1], row[2], row[3], row[4], row[5]) == (44740, 200, 366, 0.0, "eu-west-1")
    reject = duckdb.sql(f"SELECT raw_line, reason FROM read_parquet('{tables}/alb_rejects/*.parquet')").fetchall()[0]
    assert reject[0] == FOREIGN and reject[1]

    def no_read(self, obj):  # type: ignore[no-untyped-def]
        raise AssertionError(f"a no-op run read {obj.key}")

    monkeypatch.setattr(type(lake.open_source()), "open", no_read)
    second = lake.convert()
    assert (second.objects_done_before, second.objects_new, second.batches_committed, second.files_written) == (
        8,
        0,
        0,
        0,
    )
    lake.check()


def test_new_objects_are_picked_up_and_old_ones_not_read_again(lake: Lake) -> None:
    lake.convert()
    more = source_objects(12)
    lake.put({k: v for k, v in more.items() if k not in lake.objects})
    second = lake.convert(workers=2, batch_objects=1)
    assert (second.objects_done_before, second.objects_new, second.batches_committed) == (8, 4, 4)
    lake.check(more)


def test_deterministic_names_make_a_replay_overwrite(lake: Lake) -> None:
    lake.convert()
    names = sorted(lake.keys("alb") + lake.keys("alb_rejects"))
    assert names
    lake.store.delete_prefix("_servicelogs")  # the ledger is lost: the replay writes the same names
    lake.convert()
    assert sorted(lake.keys("alb") + lake.keys("alb_rejects")) == names
    assert lake.verdict().ok


def test_backfill_window_then_the_rest_then_late_objects(lake: Lake) -> None:
    objects = lake.objects
    window = lake.convert(since=date(2024, 5, 2), until=date(2024, 5, 3))
    in_window = {k for k in objects if "/2024/05/02/" in k or "/2024/05/03/" in k}
    # The window's days are all the listing asks for (servicelogs.listing): the other days are not even listed.
    assert window.objects_new == len(in_window) == window.objects_listed == 4 and window.objects_outside_window == 0
    assert {k for k, _ in lake.verdict().missing} == set(objects) - in_window

    rest = lake.convert()
    assert (rest.objects_done_before, rest.objects_new) == (4, 4)
    lake.check()

    late = {alb_key("eu-west-1", 2, 99): objects[alb_key("eu-west-1", 1, 0)]}  # delivered late into an old day
    lake.put(late)
    again = lake.convert(since=date(2024, 5, 1), until=date(2024, 5, 2))
    assert again.objects_new == 1
    lake.check({**objects, **late})


def test_rewritten_key_is_reported_not_counted_twice(lake: Lake) -> None:
    objects = lake.objects
    lake.convert()
    key = sorted(objects)[0]
    lake.put({key: objects[key] + objects[key]})  # same key, new content (another size, mtime and ETag)
    second = lake.convert()
    assert [p.key for p in second.rewritten] == [lake.key(key)]
    assert "rewritten since it was converted" in second.text()
    assert second.objects_new == 0
    lake.check()  # the old content's lines, once each
    third = lake.convert(on_rewrite="convert")
    assert third.objects_new == 1
    seen = lake.verdict({**objects, key: objects[key] + objects[key]})
    assert not seen.missing and not seen.unexpected
    assert {k for k, _ in seen.duplicates} == {key}  # both versions' lines, as the policy says


def test_status_shows_the_ledger_and_the_last_run(lake: Lake, capsys) -> None:
    assert main(lake.args()) == 0
    capsys.readouterr()
    assert main(["status", lake.target, *lake.endpoint]) == 0
    text = capsys.readouterr().out
    assert "done objects:        8" in text and "commits:             4 (checkpoint at 4)" in text
    assert "pending batches:     0" in text and "  ok\n" in text and "8 listed, 8 new, 8 converted, 0 failed" in text
    assert main(["status", lake.target, *lake.endpoint, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)[0]
    assert status["done_objects"] == 8 and status["commits"] == 4 and status["pending_batches"] == []


def test_status_shows_pending_batches_and_abandoned_staging(lake: Lake, capsys) -> None:
    crashed = run_cli(lake.args(), lake.env(SERVICELOGS_CRASH_AT=str(lake.commit_points(lake.probe())[0])))
    assert crashed.killed  # a batch staged, its intent recorded, not committed
    lake.lease_lapse()
    assert main(["status", lake.target, *lake.endpoint, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)[0]
    assert status["pending_batches"] and [r["alive"] for r in status["staging_runs"]] == [False]
    assert main(lake.args()) == 0
    lake.check()


def test_a_batch_partly_taken_by_another_run_converts_only_the_rest(lake: Lake) -> None:
    """A run planned a batch from a stale ledger; another run committed some of its sources meanwhile:
    the commit is refused, the staged copy dropped, and the remaining sources go in a new batch."""
    lake.convert(since=date(2024, 5, 1), until=date(2024, 5, 2))
    result = convert_as(lake, "stale-run", items(lake))
    assert (result.batches_lost, result.batches_committed, result.objects_converted) == (1, 1, 4)
    lake.check()


def test_a_corrupt_object_fails_alone_with_its_key_and_none_of_its_rows(lake: Lake) -> None:
    """A gzip object cut short: the run converts the others, exits 1 naming it, shows none of its lines and
    does not mark it done; the next run tries it again."""
    bad = alb_key("eu-west-1", 3, 77) + ".gz"
    lake.put({bad: gzip.compress(b"".join(lake.objects.values()) * 20)[:-30]})
    failed = run_cli(lake.args(), lake.env())
    assert failed.code == 1 and f"FAILED:  {lake.key(bad)}: " in failed.output, failed.output
    assert "cannot decompress" in failed.output and "Traceback" not in failed.output
    lake.check()  # the others' lines once each; a row of the corrupt one would be unexpected
    again = lake.convert()
    assert (again.objects_new, again.objects_failed, [p.key for p in again.failed]) == (1, 1, [lake.key(bad)])
    lake.check()


# -- crashes, kills, concurrent runs -------------------------------------------------------------------------


def test_crash_at_every_side_effect_then_rerun(lakes: Callable[..., Lake]) -> None:
    """SIGKILL at the 1st, 2nd, ... side effect of a small run until a run gets through; each time a run to
    completion must leave exactly the input. Locally every point (8 objects, 4 batches); on S3 every 8th
    (6 objects, 3 batches, about 83 points: SERVICELOGS_S3_CRASH_STRIDE=1 takes all)."""
    lake = lakes(8, s3=6)
    stride = CRASH_STRIDE[lake.kind]
    log = lake.tmp / "points.log"
    points = resumed = 0
    for n in range(1, 400, stride):
        target = lake.fresh()
        crashed = run_cli(target.args(), target.env(SERVICELOGS_CRASH_AT=str(n), SERVICELOGS_CRASH_LOG=str(log)))
        if not crashed.killed:
            assert crashed.code == 0, crashed.output
            target.check()
            break
        points += 1
        target.check(finished=False)  # nothing partial visible
        target.lease_lapse()
        rerun = target.convert()
        assert rerun.ok, rerun.text()
        resumed += rerun.batches_resumed
        target.check()
    print(f"{lake.kind}: {points} crash points checked (every {stride}th), {resumed} crashed batches redone")
    assert points * stride >= 60, f"only {points * stride} crash points"
    assert resumed > 0
    names = {line.split("\t")[2].split(" ")[0] for line in log.read_text().splitlines()}
    assert SIDE_EFFECTS[lake.kind] <= names


@pytest.mark.parametrize("workers", ["1", "2"])
def test_random_kills_until_done(lakes: Callable[..., Lake], workers: str) -> None:
    """Runs killed at random moments, again and again; then one run to completion. With one worker the next
    batch stages while this one commits (engines.local.one_ahead), with two the pool's workers stage ahead:
    orders the numbered crash points above do not take. Full counts: SERVICELOGS_SOAK_KILLS (local),
    SERVICELOGS_S3_SOAK_KILLS (S3)."""
    lake = lakes(40, s3=12)
    longest = 0.6 if lake.kind == "local" else 1.5  # a whole run takes about that long
    rng = random.Random(7)
    kills = 0
    for _ in range(3 * SOAK_KILLS[lake.kind]):
        proc, out = start_cli(lake.args("--workers", workers), lake.env())
        time.sleep(rng.uniform(0.0, longest))
        proc.kill()
        done = finish(proc, out)
        if done.killed:
            kills += 1
            lake.check(finished=False)
            if kills == SOAK_KILLS[lake.kind]:
                break
        else:  # finished before the kill: start over, to keep killing mid-run
            clear_exit(done, (0,))
            lake.check()
            lake = lake.fresh()
    assert kills == SOAK_KILLS[lake.kind]
    lake.lease_lapse()
    clear_exit(run_cli(lake.args(), lake.env()), (0,))
    lake.check()
    print(f"{lake.kind} soak: {kills} runs killed at random, then one run to completion: 0/0")


@pytest.mark.parametrize(
    ("store", "runs"), [("local", 2), ("local", 4), ("local", 8), ("s3", 2), ("s3", 4)], indirect=["store"]
)
def test_concurrent_runs_on_one_table(lakes: Callable[..., Lake], runs: int) -> None:
    """Several runs at once on one table (twice locally): each ends 0, or 3 when another committed a batch
    first; on S3 a run whose heartbeat misses the tests' 1 s lease on a loaded machine may be taken for dead
    and fenced (exit 2: work lost, never lines), and a run after them finishes."""
    first = lakes(16, s3=12)
    for lake in (first, first.fresh()) if first.kind == "local" else (first,):
        procs = [start_cli(lake.args(), lake.env()) for _ in range(runs)]
        results = [finish(p, out) for p, out in procs]
        for r in results:
            clear_exit(r, (0, 2, 3) if lake.leases else (0, 3))
        assert all("CONCURRENT: " in r.output for r in results if r.code == 3)
        print(f"{runs} concurrent runs ({lake.kind}): exit codes {sorted(r.code for r in results)}")
        if any(r.code == 2 for r in results):
            clear_exit(run_cli(lake.args(), lake.env()), (0,))
        lake.check()


# -- fencing: pauses, clocks, runs taken for dead ------------------------------------------------------------


def test_a_run_paused_at_every_side_effect_while_another_runs(lakes: Callable[..., Lake]) -> None:
    """SIGSTOP a run at its N-th side effect, run another to completion meanwhile, then SIGCONT the first:
    both end with a clear status and the table holds every line once. On S3 the pause outlives the paused
    run's lease (1 s): the other run takes it for dead, fences it, cleans its staging; resumed, it must not
    commit over files that are gone (exit 2, 'fenced by run ...'). Locally the paused run keeps its flock,
    so it is never taken for dead: the commit log alone settles who commits what. Every 10th point locally,
    every 16th on S3 (SERVICELOGS_PAUSE_STRIDE=1, SERVICELOGS_S3_PAUSE_STRIDE=1 take all)."""
    lake = lakes(8, s3=6)
    stride = PAUSE_STRIDE[lake.kind]
    points = range(1, len(lake.probe().read_text().splitlines()) + 1)
    assert len(points) >= 60
    codes = []
    for n in points[::stride]:
        target = lake.fresh()
        proc, out = start_cli(target.args(), target.env(SERVICELOGS_PAUSE_AT=str(n)))
        assert wait_stopped(proc), f"point {n} not reached"
        target.lease_lapse()  # past the paused run's lease (S3); locally it still holds its lock
        clear_exit(run_cli(target.args(), target.env()))
        resume(proc)
        paused = finish(proc, out)
        clear_exit(paused, (0, 2, 3) if lake.leases else (0, 3))
        codes.append(paused.code)
        target.check(finished=False)
        clear_exit(run_cli(target.args(), target.env()), (0,))
        target.check()
    print(f"{lake.kind} pause: {len(codes)} of {len(points)} points, paused runs' exit codes {sorted(codes)}: 0/0")
    assert (2 in codes) == lake.leases, codes  # fenced: on S3 some, locally never


def test_a_host_whose_clock_is_700_s_ahead_and_a_live_run_paused_before_its_commit(
    lakes: Callable[..., Lake],
) -> None:
    """A second host, its clock 700 s ahead, meets a live run (lease 600 s) paused before a commit write. On
    S3 it takes the run for dead: fences it and cleans its staging; the live run's commit is refused (exit
    2, 'fenced by run ...'), never made over files that are gone. Locally no clock judges liveness: the
    live run is not fenced, and the commit log settles who commits what. Either way a run after them finds
    every line once. CI pauses before the first two commit writes; SERVICELOGS_S3_PAUSE_STRIDE=1 before each."""
    lake = lakes(6)
    long_lease = {"SERVICELOGS_LEASE_SECONDS": "600"}
    commits = lake.commit_points(lake.probe(**long_lease))
    outcomes = []
    for n in commits if os.environ.get("SERVICELOGS_S3_PAUSE_STRIDE") == "1" else commits[:2]:
        target = lake.fresh()
        proc, out = start_cli(target.args(), target.env(SERVICELOGS_PAUSE_AT=str(n), **long_lease))
        assert wait_stopped(proc)
        ahead = run_cli(target.args(), target.env(SERVICELOGS_CLOCK_OFFSET="700", **long_lease))
        clear_exit(ahead)
        ahead_run = ahead.output.split("run ", 1)[1].split(":")[0]
        assert [f.run_id for f in target.fences()] == ([ahead_run] if lake.leases else [])
        resume(proc)
        live = finish(proc, out)
        clear_exit(live, (2,) if lake.leases else (0, 3))
        outcomes.append(live.code)
        target.check(finished=False)
        clear_exit(run_cli(target.args(), target.env(**long_lease)), (0,))
        target.check()
    print(f"{lake.kind}, clocks 700 s apart: live runs' exit codes {outcomes}, then 0/0")


def test_a_fenced_run_commits_nothing_and_says_so(lake: Lake) -> None:
    """Another run took this one for dead and fenced it: its batch is refused, none of its files is
    visible, its staging goes, and the next run converts everything once."""
    ledger = lake.ledger()
    assert ledger.fence(ledger.load(), "paused-run", by="other-run")
    assert not ledger.fence(ledger.load(), "paused-run", by="third-run"), "one fence is enough"
    fence = ledger.read(1)
    assert fence == Fence(1, "other-run", "paused-run", fence.token, fence.time)  # type: ignore[union-attr]
    with pytest.raises(FencedError, match="run paused-run was fenced by run other-run at ledger position 1"):
        convert_as(lake, "paused-run", items(lake))
    verdict = lake.verdict()
    assert (verdict.rows, verdict.rejects, len(verdict.missing)) == (0, 0, sum(expected_lines(lake.objects).values()))
    assert list(ledger.commits()) == []
    assert lake.keys(f"{STATE}/staging/paused-run") == []
    done = lake.convert()
    assert done.ok and done.batches_resumed == 1, done.text()
    lake.check()
    assert ledger.load().fenced == {"paused-run": (1, "other-run")}  # kept by the checkpoint too


def test_a_killed_run_is_fenced_before_its_staging_is_deleted(lake: Lake) -> None:
    """Killed after its first commit, while publishing it: the next run publishes the commit, fences the
    killed run, and only then deletes its staging."""
    killed = run_cli(lake.args(), lake.env(SERVICELOGS_CRASH_AT=str(lake.publish_points(lake.probe())[1])))
    assert killed.killed
    (run_id,) = lake.store.staged_runs(f"{STATE}/staging")
    lake.lease_lapse()
    done = lake.convert()
    assert done.ok and done.staging_cleaned == 1 and done.commits_repaired == 1, done.text()
    assert [(f.fenced, f.run_id) for f in lake.fences()] == [(run_id, done.run_id)]
    lake.check()


def test_a_commit_made_before_the_fence_stands_and_the_fencer_publishes_it(lake: Lake, monkeypatch) -> None:
    """Run A commits a batch after run B read the ledger, then dies before publishing it. B takes A for dead:
    its fence lands after A's commit, so B reads that commit on the way and publishes it before it deletes
    A's staging. (Deleting first, as a clock-trusting cleaner would, loses the batch's lines for good.)"""
    ledger = lake.ledger()
    seen_by_b = ledger.load()

    class Died(Exception):
        pass

    def die(self, commit):  # type: ignore[no-untyped-def]
        raise Died

    batch = items(lake)[:2]
    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "publish", die)
        with pytest.raises(Died):
            convert_as(lake, "run-a", batch)
    assert lake.verdict().rows == 0 and len(list(ledger.commits())) == 1

    lake.lease_lapse()
    assert run.clean_abandoned(lake.store, ledger, "run-b", seen_by_b) == (1, 0)
    fence = ledger.read(2)
    assert isinstance(fence, Fence) and fence.fenced == "run-a"
    a_objects = {key: data for key, data in lake.objects.items() if lake.key(key) in {o.key for o, _ in batch}}
    assert len(a_objects) == 2
    verdict = lake.verdict(a_objects)
    assert not verdict.missing and not verdict.duplicates, str(verdict)
    assert lake.keys(f"{STATE}/staging/run-a") == []
    done = lake.convert()
    assert done.ok, done.text()
    lake.check()


# -- files as written, damage named -------------------------------------------------------------------------


def test_staged_files_deleted_before_the_commit_make_the_batch_be_redone(lake: Lake) -> None:
    """Someone cleans the staging folder while a run is between writing its files and committing them: the
    batch is not committed with fewer files (its lines would be lost for good), it is redone."""
    for n in lake.staging_points(lake.probe()):
        target = lake.fresh()
        proc, out = start_cli(target.args(), target.env(SERVICELOGS_PAUSE_AT=str(n)))
        assert wait_stopped(proc)
        assert target.keys(f"{STATE}/staging")
        target.store.delete_prefix(f"{STATE}/staging")
        resume(proc)
        clear_exit(finish(proc, out), (0,))
        target.check()
        target.assert_files_as_committed()


def test_a_committed_file_gone_from_staging_and_table_is_named_as_damage(lake: Lake) -> None:
    killed = run_cli(lake.args(), lake.env(SERVICELOGS_CRASH_AT=str(lake.publish_points(lake.probe())[0])))
    assert killed.killed  # committed, not published
    staged = next(k for k in lake.keys(f"{STATE}/staging") if k.endswith(".parquet"))
    lake.store.delete(staged)  # not by us: fencing keeps our own cleanup from doing this
    damaged = run_cli(lake.args(), lake.env())
    assert damaged.code == 2, damaged.output
    assert "the ledger is damaged" in damaged.output and staged.rsplit("/", 1)[1] in damaged.output
    assert "Traceback" not in damaged.output


def test_an_unparsable_ledger_record_is_named_not_a_traceback(lake: Lake) -> None:
    """What an older version could leave on a full disk: a truncated commit. Every command names it."""
    clear_exit(run_cli(lake.args(), lake.env()), (0,))
    for checkpoint in lake.keys(f"{STATE}/ledger/checkpoints"):
        lake.store.delete(checkpoint)
    record = f"{STATE}/ledger/commits/{2:020d}.json"
    lake.store.put(record, lake.store.get(record)[:37])  # type: ignore[index]
    for argv in (lake.args(), ["status", lake.target, *lake.endpoint]):
        failed = run_cli(argv, lake.env())
        assert failed.code == 2, failed.output
        assert f"{lake.target}/{record}: ledger record does not parse" in failed.output, failed.output
        assert "damaged" in failed.output and "Traceback" not in failed.output


# -- the local store alone -----------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_a_local_run_is_alive_while_paused_and_dead_at_once_when_killed(lake: Lake) -> None:
    """Locally a run's liveness is an flock on its lock file: a stopped process still holds it; the kernel
    drops it with a killed one, so the next run need not wait for anything to lapse."""
    proc, out = start_cli(lake.args(), lake.env(SERVICELOGS_PAUSE_AT=str(lake.commit_points(lake.probe())[0])))
    assert wait_stopped(proc)
    (run_id,) = lake.store.staged_runs(f"{STATE}/staging")
    runs = f"{STATE}/runs"
    assert lake.keys(runs) == [f"{runs}/{run_id}.lock"] and not lake.store.is_dead(run_id, runs)
    proc.kill()
    assert finish(proc, out).killed
    assert lake.store.is_dead(run_id, runs)  # at once: no lease to wait out
    assert lake.keys(runs) == [], "the judge removes a dead run's lock file"
    assert lake.convert().staging_cleaned == 1
    lake.check()


def test_oracle_catches_broken_variants(tmp_path: Path, monkeypatch) -> None:
    objects = source_objects(6)
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_local(src, objects)
    servicelogs.convert("alb", src, lake, workers=1, batch_objects=2)
    expected = expected_lines(objects)
    assert oracle(expected, lake, root=src).ok

    part = next((lake / "alb").rglob("*.parquet"))
    shutil.copy(part, part.with_name("part-copy.parquet"))
    assert oracle(expected, lake, root=src).duplicates
    part.with_name("part-copy.parquet").unlink()
    saved = part.read_bytes()
    part.unlink()
    assert oracle(expected, lake, root=src).missing
    part.write_bytes(saved)
    assert oracle(expected, lake, root=src).ok

    # At-least-once (what a lost Glue bookmark gives): the state is lost and file names are random.
    real = run.batch_id
    monkeypatch.setattr(run, "batch_id", lambda objs: real(objs) + os.urandom(3).hex())
    shutil.rmtree(lake / "_servicelogs")
    servicelogs.convert("alb", src, lake, workers=1, batch_objects=2)
    assert len(oracle(expected, lake, root=src).duplicates) == sum(expected.values())


def test_duckdb_globs_see_dot_and_underscore_files(tmp_path: Path) -> None:
    """Why nothing temporary may ever sit inside a table folder: unlike Athena and Spark (which skip
    names starting with '_' or '.'), DuckDB's `**/*.parquet` matches them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in ("a=1/part-x.parquet", "a=1/.tmp.parquet", "a=1/_tmp.parquet", "_staging/part-y.parquet"):
        (tmp_path / "t" / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"v": [1]}), tmp_path / "t" / name)
    seen = duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/t/**/*.parquet')").fetchall()
    assert seen == [(4,)]
