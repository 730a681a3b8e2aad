"""Helpers of the exactly-once proofs: a small source, the oracle, the CLI in a killable process.

The oracle compares the multiset of (source key, line number) of the input with the rows + rejects in
the output, read the way a user reads them (DuckDB globbing the table folders): duplicates, missing and
unexpected lines must all be zero.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb

FIXTURE = Path(__file__).parent / "fixtures" / "exactly_once" / "crowdsecurity-hub-aws-alb-logs.log"
ACCOUNT = "123456789012"
FOREIGN = "this line is not an ALB access log line"


def alb_key(region: str, day: int, n: int, name: str = "lb") -> str:
    stamp = f"2024/05/{day:02d}"
    return (
        f"AWSLogs/{ACCOUNT}/elasticloadbalancing/{region}/{stamp}/{ACCOUNT}_elasticloadbalancing_{region}_app."
        f"{name}.50dc6c495c0c9188_202405{day:02d}T{n % 24:02d}00Z_10.0.0.{n % 250}_obj{n:04d}.log"
    )


def source_objects(count: int, *, name: str = "lb") -> dict[str, bytes]:
    """`count` objects over two regions and several days, each a few real lines (with two event days,
    so batches span partitions) and, every third object, a line that is not ALB (a reject)."""
    lines = FIXTURE.read_text().splitlines()
    objects = {}
    for n in range(count):
        chosen = [lines[(n + i * 5) % len(lines)] for i in range(1 + n % 3)]
        if n % 3 == 0:
            chosen.append(FOREIGN)
        key = alb_key("us-east-1" if n % 2 else "eu-west-1", 1 + n % 4, n, name)
        objects[key] = ("\n".join(chosen) + "\n").encode()
    return objects


def write_local(root: Path, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def expected_lines(objects: dict[str, bytes]) -> Counter[tuple[str, int]]:
    return Counter((key, i + 1) for key, data in objects.items() for i in range(data.count(b"\n")))


@dataclass
class Verdict:
    duplicates: list[tuple[str, int]]
    missing: list[tuple[str, int]]
    unexpected: list[tuple[str, int]]
    rows: int
    rejects: int

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected)

    def __str__(self) -> str:
        return (
            f"{len(self.duplicates)} duplicated, {len(self.missing)} missing, {len(self.unexpected)} unexpected "
            f"(rows {self.rows}, rejects {self.rejects}); first: "
            f"{(self.duplicates or self.missing or self.unexpected or [None])[0]}"
        )


def full_location(root: Path | str) -> str:
    """A source's location as `source_key` starts with it: the resolved path, or the s3:// URL."""
    return root.resolve().as_posix() if isinstance(root, Path) else root.rstrip("/")


def output_lines(target: Path, table: str = "alb", root: Path | str = "") -> tuple[Counter[tuple[str, int]], int, int]:
    """(source_key, line_number) of every row and reject, as DuckDB's `**/*.parquet` glob sees them; with
    `root` (the source), keys under it are given relative to it, as `source_objects` names them."""
    base = full_location(root) + "/" if root else ""
    con = duckdb.connect()
    seen: Counter[tuple[str, int]] = Counter()
    counts = []
    for folder in (target / table, target / f"{table}_rejects"):
        if not folder.exists() or not any(folder.rglob("*.parquet")):
            counts.append(0)
            continue
        got = con.sql(f"SELECT source_key, line_number FROM read_parquet('{folder}/**/*.parquet')").fetchall()
        seen.update((k[len(base) :] if base and k.startswith(base) else k, int(n)) for k, n in got)
        counts.append(len(got))
    return seen, counts[0], counts[1]


def oracle(expected: Counter[tuple[str, int]], target: Path, table: str = "alb", root: Path | str = "") -> Verdict:
    seen, rows, rejects = output_lines(target, table, root)
    return Verdict(
        duplicates=sorted(k for k, n in seen.items() if n > 1),
        missing=sorted(k for k in expected if k not in seen),
        unexpected=sorted(k for k in seen if k not in expected),
        rows=rows,
        rejects=rejects,
    )


def visible_junk(target: Path) -> list[str]:
    """Files a reader of the table folders could trip on: anything but committed part files."""
    junk = []
    for table in (p for p in target.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for path in table.rglob("*"):
            if path.is_file() and not (path.name.startswith("part-") and path.suffix == ".parquet"):
                junk.append(str(path))
    return junk


# -- the CLI in a process we can SIGKILL ------------------------------------------------------------------

_ctx: multiprocessing.context.BaseContext | None = None


def _context() -> multiprocessing.context.BaseContext:
    """A fork server that has imported the engine once: each run starts in milliseconds, from a clean
    process (not a fork of pytest and its threads), and dies alone when killed."""
    global _ctx
    if _ctx is None:
        _ctx = multiprocessing.get_context("forkserver")
        _ctx.set_forkserver_preload(
            ["servicelogs.cli", "servicelogs.engines.local", "servicelogs.run", "servicelogs.s3", "pyarrow.parquet"]
        )
    return _ctx


def _child(argv: list[str], env: dict[str, str], out: str) -> None:
    os.environ.update(env)
    from servicelogs import cli, crash

    crash.reset()
    with open(out, "w") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        code = cli.main(argv)
    sys.stdout.flush()
    sys.exit(code)


@dataclass
class Finished:
    code: int
    output: str

    @property
    def killed(self) -> bool:
        return self.code == -9


def start_cli(argv: list[str], env: dict[str, str] | None = None) -> tuple[multiprocessing.process.BaseProcess, str]:
    fd, out = tempfile.mkstemp(prefix="servicelogs-cli-", suffix=".txt")
    os.close(fd)
    proc = _context().Process(target=_child, args=(argv, dict(env or {}), out))  # type: ignore[attr-defined]
    proc.start()
    return proc, out


def finish(proc: multiprocessing.process.BaseProcess, out: str, timeout: float = 120) -> Finished:
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise AssertionError(f"run did not finish in {timeout} s: {Path(out).read_text()}")
    text = Path(out).read_text()
    os.unlink(out)
    return Finished(proc.exitcode, text)


def run_cli(argv: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> Finished:
    return finish(*start_cli(argv, env), timeout=timeout)


def wait_stopped(proc: multiprocessing.process.BaseProcess, timeout: float = 120) -> bool:
    """Wait until a run started with SERVICELOGS_PAUSE_AT has SIGSTOPped itself; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.exitcode is not None:
            return False
        try:
            state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state == "T":
            return True
        time.sleep(0.02)
    raise AssertionError(f"run {proc.pid} neither paused nor ended in {timeout} s")


def resume(proc: multiprocessing.process.BaseProcess) -> None:
    os.kill(proc.pid, signal.SIGCONT)


def point_numbers(log: Path, *words: str) -> list[int]:
    """The numbers of the side effects in a SERVICELOGS_CRASH_LOG whose names hold all of `words`."""
    numbers = []
    for line in log.read_text().splitlines():
        n, _, name = line.split("\t", 2)
        if all(w in name for w in words):
            numbers.append(int(n))
    return numbers
