"""A run's CPU, process by process: the run's own process, the fork server, its workers, the resource tracker.

    python bench/processes.py alb bench/out/alb-300mb-varied/source [--workers 2] [--rounds 3] [--src /old/src]

Runs `servicelogs convert FMT SOURCE <fresh folder> --json` and samples /proc every 10 ms for the run's process
tree: each process's user + system CPU as last seen, its peak RSS as sampled, and its part (told by its command
line and its parent). Each process's last 10 ms before it exits may go unseen: the total the kernel counts for the
whole tree (wait4, as bench/throughput.py measures) is printed beside the sum, and the difference as "not seen".
With `--rounds`, each part's median. For reading where a run's CPU goes, not for asserting.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import _adopt_orphans, _children, _reap_orphans, proc_table, tree_of  # noqa: E402

PARTS = ("run", "fork server", "worker", "resource tracker", "other")


def _cmdline(pid: int) -> str:
    """The process's command line ("" once it exits, or if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _part(pid: int, run: int, parents: dict[int, int], cmdlines: dict[int, str]) -> str:
    cmdline = cmdlines.get(pid, "")
    if pid == run:
        return "run"
    if "forkserver" in cmdlines.get(parents.get(pid, 0), ""):
        return "worker"
    if "forkserver" in cmdline:
        return "fork server"
    if "resource_tracker" in cmdline:
        return "resource tracker"
    return "other"


def one_run(
    fmt: str, source: str, workers: int, env: dict[str, str]
) -> tuple[dict[str, list[tuple[float, int]]], float, float]:
    """Each part's (CPU seconds, peak RSS KiB), one a process; the kernel's CPU total for the tree; the wall time."""
    target = tempfile.mkdtemp(prefix="servicelogs-processes-")
    shutil.rmtree(target)
    _adopt_orphans()
    ours = _children()
    before = os.times()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "servicelogs", "convert", fmt, source, target, "--workers", str(workers), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    seen: dict[int, float] = {}
    peak: dict[int, int] = {}
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            table = proc_table()
            for p in tree_of(proc.pid, table) & table.keys():
                parents[p], seen[p], rss = table[p]
                peak[p] = max(peak.get(p, 0), rss)
                if cmdline := _cmdline(p):  # an exiting process's reads as empty
                    cmdlines[p] = cmdline
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    _reap_orphans(ours)  # the fork server, reparented to us, and with it the workers it waited for
    stop.set()
    sampler.join()
    shutil.rmtree(target, ignore_errors=True)
    after = os.times()
    total = after.children_user + after.children_system - before.children_user - before.children_system
    parts: dict[str, list[tuple[float, int]]] = {}
    for pid, cpu in sorted(seen.items()):
        parts.setdefault(_part(pid, proc.pid, parents, cmdlines), []).append((cpu, peak[pid]))
    return parts, total, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format")
    parser.add_argument("source")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--src", help="run servicelogs from this source tree (its src/ folder)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    rounds = [one_run(args.format, args.source, args.workers, env) for _ in range(args.rounds)]
    print(f"{args.format}, {args.source}, --workers {args.workers}, {args.rounds} round(s); CPU seconds, median:")
    for name in (n for n in PARTS if any(n in parts for parts, _, _ in rounds)):
        per_round = [sorted(parts.get(name, [])) for parts, _, _ in rounds]
        count = max(map(len, per_round))
        each = [statistics.median(r[i][0] for r in per_round if len(r) > i) for i in range(count)]
        rss_mb = max(rss for r in per_round for _, rss in r) / 1024
        detail = f"   ({' + '.join(f'{c:.2f}' for c in each)})" if count > 1 else ""
        print(f"  {name:17} {sum(each):6.2f}   peak RSS {rss_mb:4.0f} MB{detail}")
    seen = statistics.median(sum(cpu for v in parts.values() for cpu, _ in v) for parts, _, _ in rounds)
    total = statistics.median(t for _, t, _ in rounds)
    wall = statistics.median(w for _, _, w in rounds)
    print(f"  {'seen':17} {seen:6.2f}\n  {'kernel total':17} {total:6.2f}   (not seen: {total - seen:.2f})")
    print(f"  {'wall':17} {wall:6.2f}")


if __name__ == "__main__":
    main()
