"""Progress as a user sees it: the bar drawn on a (pseudo-)terminal, lines in a log, and the batches that keep every
worker busy."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from servicelogs import formats
from servicelogs.run import BATCH_BYTES, MIN_BATCH_BYTES, batch_size, plan_batches
from servicelogs.sources import SourceObject
from servicelogs.synth import write_corpus

MB = 1_000_000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3 MB of ALB log text in a few gzipped objects of the AWS key layout."""
    root = tmp_path_factory.mktemp("corpus")
    fmt = formats.get("alb")
    write_corpus(fmt, root, 3, [[e.line for e in fmt.examples]], object_megabytes=0.4)
    return root


def _objects(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*.gz"))


def run_in_terminal(*args: str, columns: int = 200) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal of `columns` columns: (exit code, what it drew, stdout)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "servicelogs", *args], stdin=slave, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    drawn = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(), drawn.decode(), stdout


def test_the_bar_shows_totals_percent_and_eta_from_its_first_frame(corpus, tmp_path):
    objects = _objects(corpus)
    n, gz_mb = len(objects), sum(p.stat().st_size for p in objects) / MB
    code, drawn, stdout = run_in_terminal("convert", "alb", str(corpus), str(tmp_path / "lake"), "--workers", "2")
    assert code == 0, drawn
    frames = [f for f in re.split(r"[\r\n]+", drawn) if f.strip()]
    first, last = frames[0], frames[-1]
    # The first frame already knows every total: objects, compressed MB; and has its %, rates and ETA fields.
    assert re.match(rf"^\s+0%\|\s*\| ETA \?, 0/{n} objects, 0\.0/" + re.escape(f"{gz_mb:,.1f}") + " MB source, ", first)
    assert re.search(r"MB text, [\d,]+ rows/s, [\d.,]+ MB/s$", first), first
    assert last.startswith("100%|█")
    assert f"{n}/{n} objects, {gz_mb:,.1f}/{gz_mb:,.1f} MB source" in last
    summary_text_mb = re.search(r"([\d.]+) MB of log text", stdout).group(1)  # type: ignore[union-attr]
    assert f", {float(summary_text_mb):,.1f}/~" in last  # the text total, estimated, ends at the true figure
    assert re.search(r"\| ETA 00:00, ", last)
    assert "Traceback" not in drawn


def test_a_narrow_terminal_keeps_the_eta(corpus, tmp_path):
    code, drawn, _ = run_in_terminal("convert", "alb", str(corpus), str(tmp_path / "lake"), columns=80)
    frames = [f for f in re.split(r"[\r\n]+", drawn) if f.strip()]
    assert code == 0 and frames
    assert all(len(f) <= 80 and re.match(r"^\s*\d+%\|.*\| ETA (\?|\d\d:\d\d), \d+/\d+ objects", f) for f in frames), (
        frames
    )


def test_a_log_gets_a_line_every_few_seconds_quiet_none_verbose_one_per_object(corpus, tmp_path):
    def convert(target: str, *flags: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "servicelogs", "convert", "alb", str(corpus), str(tmp_path / target), *flags]
        return subprocess.run(cmd, capture_output=True, text=True)

    n = len(_objects(corpus))
    plain = convert("a")
    assert plain.returncode == 0, plain.stderr
    lines = plain.stderr.splitlines()
    # The first line as soon as the listing is known, the last with the final counts; a fast run has no other.
    assert lines[0].startswith(f"servicelogs:   0% ETA ?, 0/{n} objects, 0.0/")
    assert lines[-1].startswith(f"servicelogs: 100% ETA 00:00, {n}/{n} objects, ") and "\r" not in plain.stderr
    assert convert("b", "--quiet").stderr == ""
    verbose = convert("c", "-v")
    keys = {str(p.resolve()) for p in _objects(corpus)}  # objects are named by their full location
    read = [line for line in verbose.stderr.splitlines() if line.startswith("servicelogs: read ")]
    assert {line.split(" ")[2] for line in read} == keys and len(read) == n
    nothing_new = convert("c")  # incremental: nothing new, no progress line, exit 0
    assert (nothing_new.returncode, nothing_new.stderr) == (0, "")


def test_every_worker_has_work_whatever_the_input_size(tmp_path):
    # ~3 MB compressed: one batch of 32 MiB before, so one process; now batches of 1 MiB, several per worker.
    fmt = formats.get("alb")
    write_corpus(fmt, tmp_path / "src", 16, [[e.line for e in fmt.examples]], object_megabytes=2)
    gz = sum(p.stat().st_size for p in (tmp_path / "src").rglob("*.gz"))
    cli = [sys.executable, "-m", "servicelogs", "convert", "alb", str(tmp_path / "src"), str(tmp_path / "lake")]
    out = subprocess.run(
        [*cli, "--json", "--workers", "2"],
        capture_output=True,
        text=True,
    )
    summary = json.loads(out.stdout)
    sizes = [p.stat().st_size for p in sorted((tmp_path / "src").rglob("*.gz"))]  # in key order, as planned
    assert summary["objects_converted"] == len(sizes) and summary["bytes_read"] == gz
    assert summary["batches_committed"] == len(list(plan_batches(_listing(sizes), workers=2))) >= 3


def _listing(sizes: list[int]) -> list:
    return [(SourceObject(f"k{i:05}", size, f"e{i}"), ()) for i, size in enumerate(sizes)]


@pytest.mark.parametrize(
    ("total_mb", "workers", "batches"),
    [
        (200, 1, 7),  # 200 MB / 3 batches would be 67 MB: capped at 32 MiB
        (200, 2, 7),
        (100, 2, 7),  # 100 MB / (2 workers × 3): 16.7 MB each, the last one smaller
        (1000, 2, 31),  # 1 GB: 32 MiB batches
        (2, 8, 2),  # a small run stays a few batches (1 MiB at least)
    ],
)
def test_batches_are_sized_from_the_total(total_mb, workers, batches):
    listing = _listing([MB] * total_mb)  # 1 MB objects
    planned = list(plan_batches(listing, workers=workers))
    assert len(planned) == batches
    assert sorted(obj.key for b in planned for obj, _ in b) == [o.key for o, _ in listing]
    assert planned == list(plan_batches(list(reversed(listing)), workers=workers))  # the same listing, same batches
    size = batch_size(total_mb * MB, workers)
    assert MIN_BATCH_BYTES <= size <= BATCH_BYTES
    assert all(sum(o.size for o, _ in b) <= size for b in planned)
