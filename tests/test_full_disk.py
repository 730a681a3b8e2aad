"""A full or read-only disk under the target never truncates the ledger: writes are whole or fail, the run
exits 2 naming the path, and a run with space again completes with every line once.

The target is a small tmpfs (mounting one needs root: the tests skip, saying why, where it is not
allowed); free space is swept by a ballast file. SERVICELOGS_DISK_SWEEP=all sweeps 0-280 KB in 4 KB steps
(the closing note); CI takes a few points."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from exactly_once_support import expected_lines, oracle, run_cli, source_objects, write_local
from test_exactly_once import cli_args as ledger_cli_args


def cli_args(src: Path, lake: Path) -> list[str]:
    """The ledger on a small disk: the embedded catalog's DuckDB file (its own, larger, writes) is left out;
    a catalog that cannot be written fails no data, tested in tests/test_catalog_contract.py."""
    return ledger_cli_args(src, lake, "--catalog", "none")


KB = 1024
SWEEP = range(0, 284, 4) if os.environ.get("SERVICELOGS_DISK_SWEEP") == "all" else (0, 12, 40, 96, 160, 280)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1024k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves `leave` bytes free on `disk`."""
    ballast = disk / "ballast"
    st = os.statvfs(disk)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    with open(ballast, "wb") as f:
        while size > 0:
            size -= f.write(b"\0" * min(size, 1 << 20))
    return ballast


def assert_clean_exit(done, disk: Path, error: str) -> bool:  # type: ignore[no-untyped-def]
    """Exit 0, or exit 2 with one line naming the error and a path on the disk; True when it failed."""
    assert "Traceback" not in done.output and "does not parse" not in done.output, done.output
    assert done.code in (0, 2), done.output
    if done.code == 2:
        assert error in done.output and str(disk) in done.output, done.output
    return done.code == 2


def test_free_space_sweep_then_a_run_with_space_completes(small_disk: Path, tmp_path: Path) -> None:
    objects = source_objects(8)
    src = tmp_path / "src"
    write_local(src, objects)
    failed = 0
    for free in SWEEP:
        lake = small_disk / "lake"
        ballast = fill(small_disk, free * KB)
        failed += assert_clean_exit(run_cli(cli_args(src, lake)), small_disk, "No space left on device")
        status = run_cli(["status", str(lake)])  # the ledger still reads
        no_table = status.code == 2 and "no servicelogs table" in status.output  # stopped before its first write
        assert (status.code in (0, 1) or no_table) and "Traceback" not in status.output, status.output
        ballast.unlink()
        again = run_cli(cli_args(src, lake))
        assert again.code == 0, again.output
        assert oracle(expected_lines(objects), lake, root=src).ok
        assert run_cli(["status", str(lake)]).code == 0
        shutil.rmtree(lake)
    print(f"full disk: {len(SWEEP)} points of free space, {failed} runs stopped by ENOSPC (exit 2), then 0/0 each")
    assert failed >= len(SWEEP) // 2


def test_read_only_disk_exits_2_naming_the_path(small_disk: Path, tmp_path: Path) -> None:
    objects = source_objects(8)
    src, lake = tmp_path / "src", small_disk / "lake"
    write_local(src, dict(list(objects.items())[:4]))
    assert run_cli(cli_args(src, lake)).code == 0
    write_local(src, objects)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        done = run_cli(cli_args(src, lake))
        assert assert_clean_exit(done, small_disk, "Read-only file system")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert oracle(expected_lines(dict(list(objects.items())[:4])), lake, root=src).ok
    again = run_cli(cli_args(src, lake))
    assert again.code == 0, again.output
    assert oracle(expected_lines(objects), lake, root=src).ok
