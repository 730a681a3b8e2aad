"""Exactly once on local disks: incremental runs, crashes at every side effect, random kills, concurrent
runs, backfill windows, rewritten keys. Every proof ends with the oracle: zero duplicated, zero missing."""

from __future__ import annotations

import os
import random
import shutil
import time
import zlib
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pytest
from exactly_once_support import (
    FOREIGN,
    alb_key,
    expected_lines,
    finish,
    full_location,
    oracle,
    point_numbers,
    resume,
    run_cli,
    source_objects,
    start_cli,
    visible_junk,
    wait_stopped,
    write_local,
)

import servicelogs
from servicelogs import run
from servicelogs.engines import local
from servicelogs.errors import FencedError
from servicelogs.layout import Layout
from servicelogs.ledger import Fence, Ledger, State
from servicelogs.sources import LocalSource
from servicelogs.storage import LocalStore
from servicelogs.summary import RunSummary

SOAK_KILLS = int(os.environ.get("SERVICELOGS_SOAK_KILLS", "20"))
PAUSE_STRIDE = int(os.environ.get("SERVICELOGS_PAUSE_STRIDE", "10"))


@pytest.fixture
def corpus(tmp_path: Path):
    objects = source_objects(8)
    write_local(tmp_path / "src", objects)
    return tmp_path / "src", tmp_path / "lake", objects


def cli_args(src: Path, lake: Path, *extra: str) -> list[str]:
    return ["convert", "alb", str(src), str(lake), "--workers", "1", "--batch-objects", "2", *extra]


def assert_clean(lake: Path, objects: dict[str, bytes]) -> None:
    verdict = oracle(expected_lines(objects), lake, root=lake.parent / "src")  # every test's source is there
    assert verdict.ok, str(verdict)
    assert visible_junk(lake) == []
    state = lake / "_servicelogs" / "alb"
    assert [p for p in (state / "staging").rglob("*") if p.is_file()] == []
    assert list((state / "ledger" / "intents").glob("*")) == []
    assert [p for p in state.rglob(".*")] == [], "temporary files left behind"
    ledger = Ledger(LocalStore(lake), "_servicelogs/alb")
    committed = [o.key for c in ledger.commits() for o in c.sources]
    root = (lake.parent / "src").resolve()
    assert sorted(committed) == sorted(f"{root}/{k}" for k in objects), "each source committed exactly once"


def test_first_run_converts_typed_rows_and_second_run_reads_no_object(corpus, monkeypatch) -> None:
    src, lake, objects = corpus
    first = servicelogs.convert("alb", src, lake, workers=1, batch_objects=3)
    assert (first.objects_new, first.objects_converted, first.batches_committed) == (8, 8, 3)
    assert first.rejects == 3 and first.lines == first.rows + first.rejects
    assert_clean(lake, objects)

    row = duckdb.sql(
        f"SELECT time, client_port, elb_status_code, sent_bytes, request_processing_time, region, source_key "
        f"FROM read_parquet('{lake}/alb/**/*.parquet', hive_partitioning = true) "
        f"WHERE source_key = '{src.resolve() / alb_key('eu-west-1', 1, 0)}' AND line_number = 1"
    ).fetchall()[0]
    assert row[0].astimezone(timezone.utc) == datetime(2023, 4, 26, 12, 22, 55, 463821, tzinfo=timezone.utc)
    assert (row[1], row[2], row[3], row[4], row[5]) == (44740, 200, 366, 0.0, "eu-west-1")
    reject = duckdb.sql(f"SELECT raw_line, reason FROM read_parquet('{lake}/alb_rejects/*.parquet')").fetchall()[0]
    assert reject[0] == FOREIGN and reject[1]

    def no_read(self, obj):
        raise AssertionError(f"a no-op run read {obj.key}")

    monkeypatch.setattr(LocalSource, "open", no_read)
    second = servicelogs.convert("alb", src, lake, workers=1)
    assert (second.objects_done_before, second.objects_new, second.batches_committed, second.files_written) == (
        8,
        0,
        0,
        0,
    )
    assert_clean(lake, objects)


def test_new_objects_are_picked_up_and_old_ones_not_read_again(corpus) -> None:
    src, lake, objects = corpus
    servicelogs.convert("alb", src, lake, workers=1)
    more = source_objects(12)
    write_local(src, {k: v for k, v in more.items() if k not in objects})
    second = servicelogs.convert("alb", src, lake, workers=2, batch_objects=1)
    assert (second.objects_done_before, second.objects_new, second.batches_committed) == (8, 4, 4)
    assert_clean(lake, more)


def test_crash_at_every_side_effect_then_rerun(tmp_path: Path) -> None:
    """SIGKILL at the 1st, 2nd, ... side effect (write, fsync, link, rename, publish, delete) of a small
    run until a run gets through; each time, a run to completion must leave exactly the input."""
    objects = source_objects(8)
    src = tmp_path / "src"
    write_local(src, objects)
    log = tmp_path / "points.log"
    points = resumed = 0
    for n in range(1, 400):
        lake = tmp_path / f"lake{n}"
        crashed = run_cli(cli_args(src, lake), {"SERVICELOGS_CRASH_AT": str(n), "SERVICELOGS_CRASH_LOG": str(log)})
        if not crashed.killed:
            assert crashed.code == 0, crashed.output
            break
        points += 1
        rerun = servicelogs.convert("alb", src, lake, workers=1, batch_objects=2)
        assert rerun.ok, rerun.text()
        resumed += rerun.batches_resumed
        assert_clean(lake, objects)
        shutil.rmtree(lake)
    print(f"local: {points} crash points checked, {resumed} crashed batches redone from their intent")
    assert points >= 60, f"only {points} crash points"
    assert resumed > 0
    names = {line.split("\t")[2].split(" ")[0] for line in log.read_text().splitlines()}
    assert {"write", "link", "rename", "publish", "create", "close", "fsync", "delete"} <= names


def test_random_kills_until_done(tmp_path: Path) -> None:
    """Runs killed at random moments, again and again; then one run to completion. Full counts: set
    SERVICELOGS_SOAK_KILLS (200+ in the closing note)."""
    objects = source_objects(40)
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_local(src, objects)
    rng = random.Random(7)
    kills = 0
    while kills < SOAK_KILLS:
        proc, out = start_cli(cli_args(src, lake, "--workers", "2"))
        time.sleep(rng.uniform(0.0, 0.6))
        proc.kill()
        done = finish(proc, out)
        kills += done.killed
        if not done.killed:
            assert done.code == 0, done.output
            verdict = oracle(expected_lines(objects), lake, root=src)
            assert not verdict.duplicates, str(verdict)
            if not verdict.missing:
                shutil.rmtree(lake)  # finished before the kill: start over to keep killing mid-run
    final = run_cli(cli_args(src, lake))
    assert final.code == 0, final.output
    assert_clean(lake, objects)
    print(f"local soak: {kills} runs killed at random, then one run to completion: 0/0")


@pytest.mark.parametrize("runs", [2, 4, 8])
def test_concurrent_runs(tmp_path: Path, runs: int) -> None:
    objects = source_objects(16)
    src = tmp_path / "src"
    write_local(src, objects)
    for attempt in range(2):
        lake = tmp_path / f"lake{attempt}"
        procs = [start_cli(cli_args(src, lake)) for _ in range(runs)]
        results = [finish(p, out) for p, out in procs]
        assert all(r.code in (0, 3) for r in results), [r.output for r in results]
        assert all("Traceback" not in r.output for r in results)
        lost = [r for r in results if r.code == 3]
        assert all("CONCURRENT: " in r.output for r in lost)
        print(f"{runs} concurrent runs: exit codes {sorted(r.code for r in results)}")
        assert_clean(lake, objects)


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


def test_deterministic_names_make_a_replay_overwrite(tmp_path: Path) -> None:
    objects = source_objects(6)
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_local(src, objects)
    servicelogs.convert("alb", src, lake, workers=1, batch_objects=2)
    names = sorted(p.relative_to(lake) for p in lake.rglob("part-*.parquet"))
    shutil.rmtree(lake / "_servicelogs")  # the ledger is lost: the replay writes the same names
    servicelogs.convert("alb", src, lake, workers=1, batch_objects=2)
    assert sorted(p.relative_to(lake) for p in lake.rglob("part-*.parquet")) == names
    assert oracle(expected_lines(objects), lake, root=src).ok


def test_backfill_window_then_the_rest_then_late_objects(corpus) -> None:
    src, lake, objects = corpus
    window = servicelogs.convert("alb", src, lake, workers=1, since=date(2024, 5, 2), until=date(2024, 5, 3))
    in_window = {k for k in objects if "/2024/05/02/" in k or "/2024/05/03/" in k}
    # The window's days are all the listing asks for (servicelogs.listing): the other days are not even listed.
    assert window.objects_new == len(in_window) == window.objects_listed == 4 and window.objects_outside_window == 0
    assert {k for k, _ in oracle(expected_lines(objects), lake, root=src).missing} == set(objects) - in_window

    rest = servicelogs.convert("alb", src, lake, workers=1)
    assert (rest.objects_done_before, rest.objects_new) == (4, 4)
    assert_clean(lake, objects)

    late = {alb_key("eu-west-1", 2, 99): objects[alb_key("eu-west-1", 1, 0)]}  # delivered late into an old day
    write_local(src, late)
    again = servicelogs.convert("alb", src, lake, workers=1, since=date(2024, 5, 1), until=date(2024, 5, 2))
    assert again.objects_new == 1
    assert_clean(lake, {**objects, **late})


def test_rewritten_key_is_reported_not_counted_twice(corpus) -> None:
    src, lake, objects = corpus
    servicelogs.convert("alb", src, lake, workers=1)
    key = sorted(objects)[0]
    (src / key).write_bytes(objects[key] + objects[key])  # same key, new content
    os.utime(src / key, ns=(time.time_ns(), time.time_ns()))
    second = servicelogs.convert("alb", src, lake, workers=1)
    assert [p.key for p in second.rewritten] == [(src / key).resolve().as_posix()]
    assert "rewritten since it was converted" in second.text()
    assert second.objects_new == 0
    assert_clean(lake, objects)  # the old content's lines, once each
    third = servicelogs.convert("alb", src, lake, workers=1, on_rewrite="convert")
    assert third.objects_new == 1
    seen = oracle(expected_lines({**objects, key: objects[key] + objects[key]}), lake, root=src)
    assert not seen.missing and not seen.unexpected
    assert {k for k, _ in seen.duplicates} == {key}  # both versions' lines, as the policy says


def test_status_shows_the_ledger(corpus, capsys) -> None:
    src, lake, _ = corpus
    from servicelogs.cli import main

    assert main(cli_args(src, lake)) == 0
    capsys.readouterr()
    assert main(["status", str(lake)]) == 0
    text = capsys.readouterr().out
    assert "done objects:        8" in text and "commits:             4 (checkpoint at 4)" in text
    assert "pending batches:     0" in text and "  ok\n" in text and "8 listed, 8 new, 8 converted, 0 failed" in text


def test_status_shows_pending_batches_and_abandoned_staging(corpus, capsys) -> None:
    src, lake, objects = corpus
    crashed = run_cli(cli_args(src, lake), {"SERVICELOGS_CRASH_AT": "12"})
    assert crashed.killed
    from servicelogs.cli import main

    assert main(["status", str(lake), "--json"]) == 0
    import json

    status = json.loads(capsys.readouterr().out)[0]
    assert status["pending_batches"] and status["staging_runs"][0]["alive"] is False
    assert main(cli_args(src, lake)) == 0
    assert_clean(lake, objects)


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


def test_a_batch_partly_taken_by_another_run_converts_only_the_rest(corpus) -> None:
    """A run planned a batch from a stale ledger; another run committed some of its sources meanwhile:
    the commit is refused, the staged copy dropped, and the remaining sources go in a new batch."""
    src, lake, objects = corpus
    servicelogs.convert("alb", src, lake, workers=1, since=date(2024, 5, 1), until=date(2024, 5, 2))
    source, store = LocalSource(src), LocalStore(lake)
    fmt = servicelogs.formats.get("alb")
    items = tuple((o, tuple(sorted(fmt.match_key(o.key).items()))) for o in sorted(source.list()))  # type: ignore[union-attr]
    result = convert_as(store, source, "stale-run", items)
    assert (result.batches_lost, result.batches_committed, result.objects_converted) == (1, 1, 4)
    assert_clean(lake, objects)


# -- fencing, files as written, damage named ------------------------------------------------------------


def convert_as(
    store: LocalStore, source: LocalSource, run_id: str, items: tuple[run.Item, ...], head: int = 0
) -> RunSummary:
    """Convert and commit `items` as run `run_id` would, from the ledger as of `head` (a stale view)."""
    ledger = Ledger(store, "_servicelogs/alb")
    summary = RunSummary(run_id, "alb", str(source), store.url)
    state = State(head=head)
    committer = run.Committer("alb", source, store, Layout("alb"), ledger, state, summary)
    committer.convert([committer.task(items)], local.execute, 1, None)
    return summary


def _items(src: Path) -> tuple[run.Item, ...]:
    fmt = servicelogs.formats.get("alb")
    return tuple((o, tuple(sorted(fmt.match_key(o.key).items()))) for o in sorted(LocalSource(src).list()))  # type: ignore[union-attr]


def assert_clear_exit(done, allowed: tuple[int, ...] = (0, 3)) -> None:  # type: ignore[no-untyped-def]
    assert done.code in allowed, done.output
    assert "Traceback" not in done.output and "damaged" not in done.output, done.output


def test_a_run_paused_at_every_side_effect_while_another_runs(tmp_path: Path) -> None:
    """SIGSTOP a run at its N-th side effect, run another to completion meanwhile, then SIGCONT the first:
    both end with a clear status and the table holds every line once. Locally the paused run keeps its
    flock, so it is never taken for dead: the commit log alone settles who commits what. Every point with
    SERVICELOGS_PAUSE_STRIDE=1 (the closing note); CI takes every 10th."""
    objects = source_objects(8)
    src = tmp_path / "src"
    write_local(src, objects)
    points, codes = 0, []
    for n in range(1, 400, PAUSE_STRIDE):
        lake = tmp_path / f"lake{n}"
        proc, out = start_cli(cli_args(src, lake), {"SERVICELOGS_PAUSE_AT": str(n)})
        if not wait_stopped(proc):
            assert_clear_exit(finish(proc, out), (0,))
            break
        points += 1
        assert_clear_exit(run_cli(cli_args(src, lake)))
        resume(proc)
        paused = finish(proc, out)
        assert_clear_exit(paused)
        codes.append(paused.code)
        assert_clear_exit(run_cli(cli_args(src, lake)), (0,))
        assert_clean(lake, objects)
        shutil.rmtree(lake)
    print(f"local pause: {points} points (every {PAUSE_STRIDE}th), paused runs' exit codes {sorted(codes)}: 0/0")
    assert points * PAUSE_STRIDE >= 60, f"only {points * PAUSE_STRIDE} points"


def test_a_fenced_run_commits_nothing_and_says_so(corpus) -> None:
    """Another run took this one for dead and fenced it: its batch is refused, none of its files is
    visible, its staging goes, and the next run converts everything once."""
    src, lake, objects = corpus
    store = LocalStore(lake)
    ledger = Ledger(store, "_servicelogs/alb")
    state = ledger.load()
    assert ledger.fence(state, "paused-run", by="other-run")
    assert not ledger.fence(ledger.load(), "paused-run", by="third-run"), "one fence is enough"
    assert ledger.read(1) == Fence(1, "other-run", "paused-run", ledger.read(1).token, ledger.read(1).time)  # type: ignore[union-attr]
    with pytest.raises(FencedError, match="run paused-run was fenced by run other-run at ledger position 1"):
        convert_as(store, LocalSource(src), "paused-run", _items(src))
    assert oracle(expected_lines(objects), lake).missing and list(ledger.commits()) == []
    assert not (lake / "_servicelogs/alb/staging/paused-run").exists() or not any(
        p.is_file() for p in (lake / "_servicelogs/alb/staging/paused-run").rglob("*")
    )
    done = servicelogs.convert("alb", src, lake, workers=1, batch_objects=2)
    assert done.ok and done.batches_resumed == 1, done.text()
    assert_clean(lake, objects)
    assert ledger.load().fenced == {"paused-run": (1, "other-run")}  # kept by the checkpoint too


def test_a_killed_run_is_fenced_before_its_staging_is_deleted(corpus) -> None:
    src, lake, objects = corpus
    log = lake.parent / "points.log"
    run_cli(cli_args(src, lake.parent / "probe"), {"SERVICELOGS_CRASH_LOG": str(log)})
    first_commit = point_numbers(log, "link", "/ledger/commits/")[0]
    killed = run_cli(cli_args(src, lake), {"SERVICELOGS_CRASH_AT": str(first_commit + 3)})
    assert killed.killed
    run_id = next((lake / "_servicelogs/alb/staging").iterdir()).name
    done = servicelogs.convert("alb", src, lake, workers=1, batch_objects=2)
    assert done.ok and done.staging_cleaned == 1
    ledger = Ledger(LocalStore(lake), "_servicelogs/alb")
    fences = [r for r in map(ledger.read, range(1, ledger.load().head + 1)) if isinstance(r, Fence)]
    assert [(f.fenced, f.run_id) for f in fences] == [(run_id, done.run_id)]
    assert_clean(lake, objects)


def test_staged_files_deleted_before_the_commit_make_the_batch_be_redone(corpus) -> None:
    """Someone cleans the staging folder while a run is between writing its files and committing them: the
    batch is not committed with fewer files (its lines would be lost for good), it is redone."""
    src, lake, objects = corpus
    log = lake.parent / "points.log"
    run_cli(cli_args(src, lake.parent / "probe"), {"SERVICELOGS_CRASH_LOG": str(log)})
    for n in point_numbers(log, "fsync ")[:2]:  # before the first file of the first batch is checked, and after
        proc, out = start_cli(cli_args(src, lake), {"SERVICELOGS_PAUSE_AT": str(n)})
        assert wait_stopped(proc)
        shutil.rmtree(lake / "_servicelogs/alb/staging")
        resume(proc)
        assert_clear_exit(finish(proc, out), (0,))
        assert_clean(lake, objects)
        ledger = Ledger(LocalStore(lake), "_servicelogs/alb")
        for commit in ledger.commits():
            assert commit.files, "a commit names its files"
            for f in commit.files:
                data = (lake / f.visible).read_bytes()
                assert (len(data), zlib.crc32(data)) == (f.size, f.crc32)
        shutil.rmtree(lake)


def test_a_committed_file_gone_from_staging_and_table_is_named_as_damage(corpus) -> None:
    src, lake, _ = corpus
    log = lake.parent / "points.log"
    run_cli(cli_args(src, lake.parent / "probe"), {"SERVICELOGS_CRASH_LOG": str(log)})
    killed = run_cli(cli_args(src, lake), {"SERVICELOGS_CRASH_AT": str(point_numbers(log, "publish ")[0])})
    assert killed.killed  # committed, not published
    staged = next(p for p in (lake / "_servicelogs/alb/staging").rglob("*.parquet"))
    staged.unlink()  # not by us: fencing keeps our own cleanup from doing this
    damaged = run_cli(cli_args(src, lake))
    assert damaged.code == 2, damaged.output
    assert "the ledger is damaged" in damaged.output and staged.name in damaged.output
    assert "Traceback" not in damaged.output


def test_an_unparsable_ledger_record_is_named_not_a_traceback(corpus) -> None:
    """What an older version could leave on a full disk: a truncated commit. Every command names it."""
    src, lake, _ = corpus
    assert run_cli(cli_args(src, lake)).code == 0
    for checkpoint in (lake / "_servicelogs/alb/ledger/checkpoints").iterdir():
        checkpoint.unlink()
    record = lake / "_servicelogs/alb/ledger/commits" / f"{2:020d}.json"
    record.write_bytes(record.read_bytes()[:37])
    for argv in (cli_args(src, lake), ["status", str(lake)]):
        failed = run_cli(argv)
        assert failed.code == 2, failed.output
        assert f"{record}: ledger record does not parse" in failed.output and "damaged" in failed.output
        assert "Traceback" not in failed.output


def test_a_commit_made_before_the_fence_stands_and_the_fencer_publishes_it(corpus, monkeypatch) -> None:
    """Run A commits a batch after run B read the ledger, then dies before publishing it. B takes A for dead:
    its fence lands after A's commit, so B reads that commit on the way and publishes it before it deletes
    A's staging. (Deleting first, as a clock-trusting cleaner would, loses the batch's lines for good.)"""
    src, lake, objects = corpus
    store = LocalStore(lake)
    ledger = Ledger(store, "_servicelogs/alb")
    seen_by_b = ledger.load()

    class Died(Exception):
        pass

    def die(self, commit):  # type: ignore[no-untyped-def]
        raise Died

    monkeypatch.setattr(Ledger, "publish", die)
    items = _items(src)[:2]
    with pytest.raises(Died):
        convert_as(store, LocalSource(src), "run-a", items)
    monkeypatch.undo()
    assert oracle(expected_lines(objects), lake, root=src).rows == 0 and len(list(ledger.commits())) == 1

    assert run.clean_abandoned(store, ledger, "run-b", seen_by_b) == (1, 0)
    assert isinstance(ledger.read(2), Fence) and ledger.read(2).fenced == "run-a"  # type: ignore[union-attr]
    base = full_location(src) + "/"
    a_lines = expected_lines({o.key.removeprefix(base): objects[o.key.removeprefix(base)] for o, _ in items})
    verdict = oracle(a_lines, lake, root=src)
    assert not verdict.missing and not verdict.duplicates, str(verdict)
    assert not (lake / "_servicelogs/alb/staging/run-a").exists()
    done = servicelogs.convert("alb", src, lake, workers=1, batch_objects=2)
    assert done.ok, done.text()
    assert_clean(lake, objects)
