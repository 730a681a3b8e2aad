"""Helpers of the exactly-once proofs: a small source, the oracle, the CLI in a killable process, and a
`Lake` (a source and a target on one kind of store) through which each proof is written once for every store.

The oracle compares the multiset of (source key, line number) of the input with the rows + rejects in
the output, read the way a user reads them (DuckDB globbing the table folders): duplicates, missing and
unexpected lines must all be zero.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from s3_support import ENV, MotoServer, download

import servicelogs
from servicelogs.ledger import Fence, Ledger
from servicelogs.locations import open_source
from servicelogs.sources import Source
from servicelogs.storage import LocalStore, Store
from servicelogs.summary import RunSummary

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
    junk: list[str] = []
    if not target.exists():  # a run killed before it made any
        return junk
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


def cli_args(source: Path | str, target: Path | str, *extra: str) -> list[str]:
    """`servicelogs convert` as the proofs run it: one worker, batches of two objects."""
    return ["convert", "alb", str(source), str(target), "--workers", "1", "--batch-objects", "2", *extra]


def store_kind(store: Store) -> str:
    return "local" if isinstance(store, LocalStore) else "s3"


def clear_exit(done: Finished, allowed: tuple[int, ...] = (0, 3)) -> None:
    """A run ended with an allowed status, saying why in one line: never a traceback or a damaged ledger;
    exit 2 only when it was fenced (taken for dead by another run, which may then redo its work)."""
    assert done.code in allowed, done.output
    assert "Traceback" not in done.output and "damaged" not in done.output, done.output
    if done.code == 2:
        assert " was fenced by run " in done.output, done.output


# -- one proof, every store -------------------------------------------------------------------------------

STATE = "_servicelogs/alb"  # the table's ledger and staging, under the target
SRC_PREFIX = "logs with space/a+b=c/ünïcode"  # an S3 source's prefix: the keys must survive URL quoting
_numbers = itertools.count()
SIDE_EFFECTS = {  # what each store's runs do, by the first word of their crash points
    "local": {"write", "link", "rename", "publish", "create", "close", "fsync", "delete"},
    "s3": {
        "PUT",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "COPY",
        "DELETE",
        "create",
        "close",
    },
}


@dataclass
class Lake:
    """Source objects and a target table on one kind of store, with what the proofs do to them and the
    checks they end with: the same calls on a local disk and on S3 (moto over HTTP, behind the fault proxy).

    Where the stores differ, it says so here, once: how a run's liveness is judged (`leases`), which
    side effects a run has (for crash and pause points), and what a run may leave behind (temporary
    files locally, multipart uploads on S3)."""

    store: Store  # the target
    source: str  # a folder, or s3://bucket/prefix
    objects: dict[str, bytes]
    tmp: Path
    s3: MotoServer | None = None

    @classmethod
    def make(cls, store: Store, tmp: Path, s3: MotoServer | None, count: int = 8) -> Lake:
        """`count` objects of `source_objects` in a fresh source beside the target."""
        objects = source_objects(count)
        if s3 is None:
            source = str(tmp / f"src{next(_numbers)}")
        else:
            source = f"s3://{store.bucket}/{SRC_PREFIX}{next(_numbers)}"  # type: ignore[attr-defined]
        lake = cls(store, source, objects, tmp, s3)
        lake.put(objects)
        return lake

    def __repr__(self) -> str:
        return f"Lake({self.kind}: {self.source} -> {self.target}, {len(self.objects)} objects)"

    @property
    def kind(self) -> str:
        return store_kind(self.store)

    @property
    def leases(self) -> bool:
        """A run's liveness is a lease on a clock (S3), which a pause or another host's clock can let lapse
        while it lives; locally it is an flock, held by a live process whatever the clocks, dropped by the
        kernel at once when the process dies."""
        return self.s3 is not None

    @property
    def target(self) -> str:
        return self.store.url

    def fresh(self) -> Lake:
        """The same source, an empty target (a fresh folder, or a fresh bucket)."""
        if self.s3 is None:
            store: Store = LocalStore(self.tmp / f"target{next(_numbers)}")
        else:
            from servicelogs.s3 import S3Store

            store = S3Store(self.s3.new_bucket(), "lake", endpoint_url=self.s3.url)
        return Lake(store, self.source, self.objects, self.tmp, self.s3)

    def put(self, objects: dict[str, bytes]) -> None:
        """Write (or overwrite) objects in the source."""
        if self.s3 is None:
            write_local(Path(self.source), objects)
            return
        bucket, prefix = self.source.removeprefix("s3://").split("/", 1)
        for key, data in objects.items():
            self.s3.client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)

    def key(self, key: str) -> str:
        """The `source_key` of an object put under `key`: its full location."""
        return f"{full_location(self.root)}/{key}"

    @property
    def root(self) -> Path | str:
        return Path(self.source) if self.s3 is None else self.source

    @property
    def endpoint(self) -> list[str]:
        return [] if self.s3 is None else ["--endpoint-url", self.s3.url]

    def args(self, *extra: str, source: str = "") -> list[str]:
        """`servicelogs convert` of the source (or a part of it) into the target, as the proofs run it."""
        return cli_args(source or self.source, self.target, *self.endpoint, *extra)

    def env(self, **extra: str) -> dict[str, str]:
        return {**(ENV if self.s3 else {}), **extra}

    def convert(self, source: str = "", **kw: Any) -> RunSummary:
        kw.setdefault("workers", 1)
        kw.setdefault("batch_objects", 2)
        if self.s3:
            kw["endpoint_url"] = self.s3.url
        return servicelogs.convert("alb", source or self.source, self.target, **kw)

    def open_source(self) -> Source:
        return open_source(self.source, self.s3.url if self.s3 else None)

    def lease_lapse(self) -> None:
        """Wait until a killed or paused run counts as dead: its lease lapses (1 s, SERVICELOGS_LEASE_SECONDS
        in ENV); a local run that died has let go of its flock already."""
        if self.leases:
            time.sleep(1.1)

    # What the runs did, read back.

    def tables(self) -> Path:
        """The table folders as a reader sees them: the target itself, or a downloaded copy of it."""
        if self.s3 is None:
            return self.store.root  # type: ignore[attr-defined,no-any-return]
        dest = self.tmp / f"download{next(_numbers)}"
        dest.mkdir()
        bucket, prefix = self.target.removeprefix("s3://").split("/", 1)
        for table in ("alb", "alb_rejects"):
            download(self.s3.client, bucket, f"{prefix}/{table}/", dest / table)
        return dest

    def verdict(self, objects: dict[str, bytes] | None = None) -> Verdict:
        return oracle(expected_lines(self.objects if objects is None else objects), self.tables(), root=self.root)

    def ledger(self) -> Ledger:
        return Ledger(self.store, STATE)

    def fences(self) -> list[Fence]:
        ledger = self.ledger()
        return [r for r in map(ledger.read, range(1, ledger.load().head + 1)) if isinstance(r, Fence)]

    def keys(self, prefix: str) -> list[str]:
        return [key for key, _ in self.store.list(prefix)]

    def litter(self) -> list[str]:
        """What a run may leave behind that no listing of the store shows: dot-named temporary files of a
        local writer, unfinished multipart uploads on S3."""
        if self.s3 is None:
            return [str(p) for p in (self.store.root / STATE).rglob(".*")]  # type: ignore[attr-defined]
        bucket = self.store.bucket  # type: ignore[attr-defined]
        return [u["Key"] for u in self.s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    def check(self, objects: dict[str, bytes] | None = None, *, finished: bool = True) -> None:
        """The oracle on what a reader sees (while runs are unfinished: nothing twice, nothing foreign); only
        committed part files in the table folders; when finished, nothing staged, pending or left behind,
        and each source committed once."""
        objects = self.objects if objects is None else objects
        tables = self.tables()
        verdict = oracle(expected_lines(objects), tables, root=self.root)
        if finished:
            assert verdict.ok, str(verdict)
        else:
            assert not verdict.duplicates and not verdict.unexpected, str(verdict)
        assert visible_junk(tables) == []
        if finished:
            assert self.keys(f"{STATE}/staging") == []
            assert self.keys(f"{STATE}/ledger/intents") == []
            assert self.litter() == [], "left behind"
            committed = [o.key for c in self.ledger().commits() for o in c.sources]
            assert sorted(committed) == sorted(self.key(k) for k in objects), "each source committed exactly once"

    def assert_files_as_committed(self) -> None:
        """Every committed file is in the table with the size and CRC-32 its commit records (and, on S3, the
        ETag of the staged object it was copied from)."""
        commits = list(self.ledger().commits())
        assert commits
        for commit in commits:
            assert commit.files, "a commit names its files"
            for f in commit.files:
                data = self.store.get(f.visible)
                assert data is not None, f.visible
                assert (len(data), zlib.crc32(data)) == (f.size, f.crc32)
                assert bool(f.etag) == (self.s3 is not None)

    # Side effects by number (SERVICELOGS_CRASH_LOG), by what they do on this store.

    def probe(self, **env: str) -> Path:
        """A whole run on a fresh target, logging its side effects (the next fresh target's run has the same)."""
        log = self.tmp / f"points{next(_numbers)}.log"
        probe = self.fresh()
        assert run_cli(probe.args(), probe.env(SERVICELOGS_CRASH_LOG=str(log), **env)).code == 0
        return log

    def commit_points(self, log: Path) -> list[int]:
        """The conditional writes of commit records: a batch is staged and checked, not yet committed."""
        write = "PUT If-None-Match" if self.s3 else "link"
        return point_numbers(log, write, "/ledger/commits/")

    def publish_points(self, log: Path) -> list[int]:
        """The copies of staged files to their visible names: after their commit."""
        return point_numbers(log, "COPY " if self.s3 else "publish ")

    def staging_points(self, log: Path) -> list[int]:
        """Points at which the first batch's files are staged, in part at least, and not yet checked: locally
        the fsync of each (written in place), on S3 the last upload before the first commit."""
        if self.s3:
            return [self.commit_points(log)[0] - 1]
        return point_numbers(log, "fsync ")[:2]
