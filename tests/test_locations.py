"""Issue 10, items 4-6 on a local disk: one identity per object whatever the prefix, locations checked before
anything is written, no hung run and no silent skip (listing faults, a worker killed mid-batch)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from exactly_once_support import (
    ACCOUNT,
    expected_lines,
    finish,
    oracle,
    run_cli,
    source_objects,
    start_cli,
    write_local,
)

import servicelogs
from servicelogs import demo
from servicelogs.cli import main
from servicelogs.ledger import Ledger
from servicelogs.sources import LocalSource
from servicelogs.storage import LocalStore

DAY_ONE = f"AWSLogs/{ACCOUNT}/elasticloadbalancing/eu-west-1/2024/05/01"


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    objects = source_objects(12)
    write_local(tmp_path / "src", objects)
    return tmp_path / "src", tmp_path / "lake", objects


def on_day_one(objects: dict[str, bytes]) -> int:
    return sum(k.startswith(DAY_ONE + "/") for k in objects)


# -- 4. one identity per object, whatever the prefix --------------------------------------------------------


def test_sub_prefix_then_parent_converts_each_object_once(corpus) -> None:
    src, lake, objects = corpus
    day = servicelogs.convert("alb", src / DAY_ONE, lake, workers=1)
    assert (day.objects_new, day.objects_converted) == (on_day_one(objects), on_day_one(objects)) == (3, 3)
    whole = servicelogs.convert("alb", src, lake, workers=1)
    assert (whole.objects_done_before, whole.objects_new) == (3, 9), whole.text()
    verdict = oracle(expected_lines(objects), lake, root=src)
    assert verdict.ok, str(verdict)
    key = sorted(k for k in objects if k.startswith(DAY_ONE))[0]
    rows = servicelogs.convert("alb", src, lake, workers=1)
    assert (rows.objects_done_before, rows.objects_new) == (12, 0)
    import duckdb

    got = duckdb.sql(f"SELECT DISTINCT source_key FROM read_parquet('{lake}/alb/**/*.parquet')").fetchall()
    assert (f"{src.resolve()}/{key}",) in got and len(got) == 12


def test_parent_then_sub_prefix_finds_nothing_new(corpus) -> None:
    src, lake, objects = corpus
    assert servicelogs.convert("alb", src, lake, workers=1).objects_new == 12
    day = servicelogs.convert("alb", src / DAY_ONE, lake, workers=1)
    assert (day.objects_listed, day.objects_done_before, day.objects_new) == (3, 3, 0)
    assert oracle(expected_lines(objects), lake, root=src).ok


def test_the_same_folder_through_a_symlinked_path_is_the_same_objects(corpus, tmp_path: Path) -> None:
    src, lake, _ = corpus
    (tmp_path / "alias").symlink_to(src)
    servicelogs.convert("alb", tmp_path / "alias", lake, workers=1)
    again = servicelogs.convert("alb", src, lake, workers=1)
    assert (again.objects_done_before, again.objects_new) == (12, 0)


def test_overlapping_prefixes_at_once_give_each_line_once(corpus) -> None:
    src, lake, objects = corpus
    runs = [
        start_cli(["convert", "alb", str(where), str(lake), "--workers", "1", "--batch-objects", "1", "--json"])
        for where in (src, src / DAY_ONE, src / "AWSLogs")
    ]
    codes = [finish(*run).code for run in runs]
    assert all(code in (0, 3) for code in codes), codes
    verdict = oracle(expected_lines(objects), lake, root=src)
    assert verdict.ok, str(verdict)
    assert servicelogs.convert("alb", src, lake, workers=1).objects_new == 0


def test_a_file_rewritten_between_listing_and_reading_is_recorded_by_what_is_read(corpus, monkeypatch) -> None:
    src, lake, objects = corpus
    key = sorted(objects)[0]
    listing = LocalSource.list

    def list_then_rewrite(self, window=None):  # type: ignore[no-untyped-def]
        yield from listing(self, window)
        if not getattr(list_then_rewrite, "done", False):
            list_then_rewrite.done = True  # type: ignore[attr-defined]
            (src / key).write_bytes(objects[key] * 2)  # after the listing, before the batch reads it

    monkeypatch.setattr(LocalSource, "list", list_then_rewrite)
    first = servicelogs.convert("alb", src, lake, workers=1)
    (failure,) = first.failed
    assert failure.key == f"{src.resolve()}/{key}" and "changed between listing and reading" in failure.reason
    assert not first.ok and first.objects_converted == 11
    second = servicelogs.convert("alb", src, lake, workers=1)
    assert (second.objects_new, second.rewritten, second.ok) == (1, [], True)
    third = servicelogs.convert("alb", src, lake, workers=1, on_rewrite="convert")
    assert (third.objects_new, third.rewritten) == (0, [])
    verdict = oracle(expected_lines({**objects, key: objects[key] * 2}), lake, root=src)
    assert verdict.ok, str(verdict)


def _as_version_0_1(lake: Path, src: Path, recorded_source: str) -> None:
    """Make a lake look written by servicelogs 0.1: keys relative to the source, no table.json."""
    state = lake / "_servicelogs" / "alb"
    base = f"{src.resolve()}/"
    for path in (state / "ledger" / "commits").glob("*.json"):
        commit = json.loads(path.read_bytes())
        commit["sources"] = [[k.removeprefix(base), s, e] for k, s, e in commit["sources"]]
        path.write_text(json.dumps(commit))
    for path in (state / "ledger" / "checkpoints").glob("*"):
        path.unlink()
    for path in (state / "runs").glob("*.json"):
        run = json.loads(path.read_bytes())
        path.write_text(json.dumps({**run, "source": recorded_source}))
    (state / "table.json").unlink()


def test_a_lake_of_version_0_1_is_migrated_in_one_commit(corpus) -> None:
    src, lake, objects = corpus
    servicelogs.convert("alb", src / DAY_ONE, lake, workers=1)
    _as_version_0_1(lake, src / DAY_ONE, str(src / DAY_ONE))
    head = Ledger(LocalStore(lake), "_servicelogs/alb").load().head
    whole = servicelogs.convert("alb", src, lake, workers=1)
    assert (whole.identities_migrated, whole.objects_done_before, whole.objects_new) == (3, 3, 9), whole.text()
    commits = list(Ledger(LocalStore(lake), "_servicelogs/alb").commits())
    migration = commits[head]
    assert migration.batch_id == "identities-full-locations" and migration.files == ()
    assert sorted(o.key for o in migration.sources) == sorted(f"{src.resolve()}/{k}" for k in objects if DAY_ONE in k)
    again = servicelogs.convert("alb", src, lake, workers=1)
    assert (again.identities_migrated, again.objects_new) == (0, 0)
    assert json.loads((lake / "_servicelogs/alb/table.json").read_text()) == {"format": "alb"}


def test_a_lake_of_version_0_1_with_a_relative_source_elsewhere_is_refused(corpus, monkeypatch, capsys) -> None:
    src, lake, _ = corpus
    servicelogs.convert("alb", src, lake, workers=1)
    _as_version_0_1(lake, src, "logs-of-another-folder")
    monkeypatch.chdir(src.parent)
    assert main(["convert", "alb", str(src), str(lake)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "relative to the folder 'logs-of-another-folder'" in err[0]


# -- 5. locations checked before anything is written --------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("src", "src/lake", "is inside the source"),
        ("src", "src", "is inside the source"),
        ("lake/logs", "lake", "is inside the target"),
        ("src", "afile", "is a file, not a folder"),
    ],
)
def test_overlapping_or_wrong_locations_exit_2_with_one_line(tmp_path, capsys, source, target, message) -> None:
    write_local(tmp_path / "src", source_objects(2))
    write_local(tmp_path / "lake" / "logs", source_objects(2))
    (tmp_path / "afile").write_text("not a folder")
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["convert", "alb", str(tmp_path / source), str(tmp_path / target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(p for p in tmp_path.rglob("*")) == before, "nothing written"


@pytest.mark.parametrize("table", ["../../x", "a/b", "..", "ALB", "my-table", "x" * 248])
def test_table_names_must_be_glue_names(corpus, capsys, table) -> None:
    src, lake, _ = corpus
    assert main(["convert", "alb", str(src), str(lake), "--table", table]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lower-case letters, digits and _" in err[0]
    assert not lake.exists() and not (src.parent.parent / "x").exists()


def test_a_table_keeps_its_format(corpus, capsys) -> None:
    src, lake, _ = corpus
    assert main(["convert", "alb", str(src), str(lake), "--table", "web_2024"]) == 0
    capsys.readouterr()
    assert main(["convert", "elb", str(src), str(lake), "--table", "web_2024"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "table 'web_2024'" in err[0] and "holds alb logs, not elb" in err[0]
    runs = list((lake / "_servicelogs" / "web_2024" / "runs").iterdir())
    assert len(runs) == 1 and runs[0].suffix == ".json", "no lock or summary of the refused run"


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path, capsys) -> None:
    mine = tmp_path / "important"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert main(["demo", "--dir", str(mine)]) == 2
    assert "did not make" in capsys.readouterr().err and (mine / "thesis.tex").read_text() == "years of work"
    ours = tmp_path / "demo"
    demo._fresh(ours)
    (ours / "source").mkdir()
    demo._fresh(ours)  # its own folder: replaced
    assert sorted(p.name for p in ours.iterdir()) == [demo.MARKER]


# -- 6. no silent skip, no hung run ------------------------------------------------------------------------


def test_listing_faults_are_named_and_fail_the_run(corpus, tmp_path: Path, capsys) -> None:
    src, lake, objects = corpus
    day = src / DAY_ONE
    (day / "dangling.log").symlink_to(tmp_path / "nowhere")
    (day / "outside.log").symlink_to("/etc/hostname")
    (day / "inside.log").symlink_to(day / sorted(os.listdir(day))[0])  # a second name: listed once
    (src / "elsewhere").symlink_to("/etc", target_is_directory=True)
    os.mkfifo(day / "pipe.log")
    bad_name = os.fsencode(str(day)) + b"/caf\xe9.log"
    with open(bad_name, "wb") as f:
        f.write(b"x\n")
    assert main(["convert", "alb", str(src), str(lake), "--json", "--workers", "1"]) == 1
    summary = json.loads(capsys.readouterr().out)
    root = src.resolve()
    unlisted = {p["key"]: p["reason"] for p in summary["unlisted"]}
    assert unlisted == {
        f"{root / DAY_ONE}/caf\\xe9.log": "its name is not valid UTF-8: rename it to convert it",
        f"{root / DAY_ONE}/dangling.log": f"a dangling symbolic link (to {tmp_path / 'nowhere'}): not followed",
        f"{root}/elsewhere": "a symbolic link to /etc, outside the source: not followed",
        f"{root / DAY_ONE}/outside.log": f"a symbolic link to {Path('/etc/hostname').resolve()}, outside the source: "
        "not followed",
        f"{root / DAY_ONE}/pipe.log": "not a regular file",
    }
    assert summary["ok"] is False and summary["objects_converted"] == 12 and summary["objects_failed"] == 0
    assert oracle(expected_lines(objects), lake, root=src).ok
    assert "UNLISTED" in servicelogs.convert("alb", src, lake, workers=1).text()


def test_a_file_removed_while_listed_fails_alone(corpus, monkeypatch) -> None:
    src, lake, _ = corpus
    walk = os.walk

    def walk_seeing_a_ghost(top, **kw):  # type: ignore[no-untyped-def]
        for dirpath, dirnames, filenames in walk(top, **kw):
            yield dirpath, dirnames, filenames + (["gone.log"] if dirpath.endswith("05/01") else [])

    monkeypatch.setattr(os, "walk", walk_seeing_a_ghost)
    summary = servicelogs.convert("alb", src, lake, workers=1)
    assert [(p.key, p.reason) for p in summary.unlisted] == [
        (f"{src.resolve()}/{DAY_ONE}/gone.log", "removed while the source was listed")
    ]
    assert not summary.ok and summary.objects_converted == 12


def test_an_unreadable_folder_is_named_not_skipped() -> None:
    """Root reads any folder: as root, the listing runs in a child process that has become `nobody`."""
    import multiprocessing
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="unreadable-"))
    try:
        write_local(top, source_objects(4))
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        closed = top / DAY_ONE
        closed.chmod(0)
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()

        def list_unprivileged() -> None:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            source = LocalSource(top)
            keys = [o.key for o in source.list()]
            out.put((keys, [(p.key, p.reason) for p in source.unlisted]))

        child = ctx.Process(target=list_unprivileged)
        child.start()
        keys, unlisted = out.get(timeout=60)
        child.join()
        assert unlisted == [(str(closed), "cannot list this folder: Permission denied")]
        assert sorted(keys) == sorted(f"{top}/{k}" for k in source_objects(4) if not k.startswith(DAY_ONE + "/"))
        assert len(keys) == 3  # one of the four is in the closed folder
    finally:
        (top / DAY_ONE).chmod(0o755)
        shutil.rmtree(top)


def _workers_of(pid: int) -> list[int]:
    """The pool's worker processes: the children of the run's fork server (engines.local forks them from it)."""
    return [
        w for server in _children(pid) if b"multiprocessing.forkserver" in _cmdline(server) for w in _children(server)
    ]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def test_a_worker_killed_mid_batch_fails_its_batch_and_the_next_run_redoes_it(tmp_path: Path) -> None:
    objects = source_objects(120)
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_local(src, objects)
    argv = ["convert", "alb", str(src), str(lake), "--workers", "2", "--batch-objects", "1", "--json"]
    proc, out = start_cli(argv)
    intents = lake / "_servicelogs" / "alb" / "ledger" / "intents"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (intents.is_dir() and any(intents.iterdir())):
        time.sleep(0.01)
    workers = _workers_of(proc.pid)
    while not workers and time.monotonic() < deadline:
        time.sleep(0.01)
        workers = _workers_of(proc.pid)
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)
    first = finish(proc, out, timeout=60)  # ends by itself, within the bound
    assert first.code == 1, first.output
    assert "Traceback" not in first.output, first.output
    summary = json.loads(first.output[first.output.index("{") :])
    assert summary["ok"] is False and summary["batches_failed"], summary
    assert all("a worker process died" in p["reason"] for p in summary["batches_failed"])
    runs = lake / "_servicelogs" / "alb" / "runs"
    assert list(runs.glob("*.lock")) == [], "the lock of the failed run is gone"
    second = run_cli(argv)
    assert second.code == 0, second.output
    verdict = oracle(expected_lines(objects), lake, root=src)
    assert verdict.ok, str(verdict)


def test_a_killed_run_takes_its_workers_with_it(tmp_path: Path) -> None:
    """Workers are the fork server's children, and the fork server lives while they do: each watches its run,
    so none stages on after the run is gone (the next run redoes the batches, and must not race a straggler)."""
    objects = source_objects(120)
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_local(src, objects)
    argv = ["convert", "alb", str(src), str(lake), "--workers", "2", "--batch-objects", "1", "--json"]
    proc, _out = start_cli(argv)
    deadline = time.monotonic() + 120
    workers = _workers_of(proc.pid)
    while not workers and time.monotonic() < deadline:
        time.sleep(0.01)
        workers = _workers_of(proc.pid)
    assert workers, "no worker process found"
    servers = [p for p in _children(proc.pid) if b"multiprocessing.forkserver" in _cmdline(p)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    Path(_out).unlink(missing_ok=True)
    left = set(workers + servers)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {p for p in left if _alive(p)}
    assert not left, f"processes of the killed run still alive: {sorted(left)}"
    assert run_cli(argv).code == 0
    verdict = oracle(expected_lines(objects), lake, root=src)
    assert verdict.ok, str(verdict)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_failed_run_leaves_no_lock_file(corpus, monkeypatch) -> None:
    src, lake, _ = corpus
    from servicelogs import run
    from servicelogs.errors import StorageError

    def store_fails(*args: object) -> None:
        raise StorageError("write", "somewhere", "No space left on device")

    monkeypatch.setattr(run, "_run", store_fails)
    with pytest.raises(StorageError):
        servicelogs.convert("alb", src, lake, workers=1)
    runs = lake / "_servicelogs" / "alb" / "runs"
    assert [p.suffix for p in runs.iterdir()] == [".json"]  # the failed run's summary, no lock
