"""Time a no-op run (nothing new) over a source whose objects are all in the ledger already.

    python bench/noop_run.py 10000 100000 [--dir /tmp/noop-bench] [--keep] [--full-listing]

For each count: makes that many small ALB-named objects in a local folder, records them all as done in
the table's ledger through the ledger's own API (commits of 1,000 objects, then a checkpoint, then a few
commits after it, as a table fed by regular runs looks, each with its latest delivery day), and times
`servicelogs.convert` over it: list the source, load the ledger, subtract, find nothing to do. By default the
run lists only the listing window's days (the last 4 of the 28); `--full-listing` lists every file, as every
run did before the window. Target: at most 5 s at 100,000 objects, with a full listing.
The S3 counterpart is bench/noop_s3.py.
Converting 100,000 objects for real is the throughput benchmark's job, not this one's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import servicelogs
from servicelogs import formats, listing
from servicelogs.ledger import Ledger, State
from servicelogs.storage import LocalStore
from servicelogs.summary import RunSummary

ACCOUNT = "123456789012"


def make_source(root: Path, count: int) -> None:
    for n in range(count):
        day = 1 + n % 28
        folder = root / f"AWSLogs/{ACCOUNT}/elasticloadbalancing/us-east-1/2024/05/{day:02d}"
        if n < 28:
            folder.mkdir(parents=True, exist_ok=True)
        name = f"{ACCOUNT}_elasticloadbalancing_us-east-1_app.lb.1234_202405{day:02d}T0000Z_10.0.0.1_{n:08d}.log.gz"
        (folder / name).write_bytes(b"x")


def seed_ledger(source: str | Path, target: Path, after_checkpoint: int = 20) -> tuple[int, int, int]:
    """Record every object of `source` as done in `target`'s ledger (commits of 1,000, a checkpoint, then
    `after_checkpoint` commits after it) with the summary of the run that settled them. Returns the objects,
    commits, and commits after the checkpoint."""
    from servicelogs.locations import open_source

    ledger = Ledger(LocalStore(target), "_servicelogs/alb")
    state = State()
    found = open_source(str(source))
    objects = sorted(found.list())
    chunks = [tuple(objects[i : i + 1000]) for i in range(0, len(objects), 1000)]
    split = max(0, len(chunks) - after_checkpoint)
    alb = formats.get("alb")
    for i, chunk in enumerate(chunks):
        day = listing.latest(listing.delivery_day(alb, o.key) for o in chunk)
        ledger.commit(state, f"bench{i:08d}", "bench", chunk, [], latest_day=day)
        if i + 1 == split:
            ledger.checkpoint(state, "bench")
    # The summary a run that converted them all would have left: the next run may then list the window only.
    settled = RunSummary("bench", "alb", str(found), str(target), objects_new=len(objects))
    ledger.store.put(f"{ledger.runs}/bench.json", settled.to_json().encode())
    return len(objects), state.head, state.head - split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("counts", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--dir", default="/tmp/servicelogs-noop-bench")
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    parser.add_argument("--full-listing", action="store_true", help="list every file (no listing window)")
    args = parser.parse_args()
    base = Path(args.dir)
    for count in args.counts:
        shutil.rmtree(base, ignore_errors=True)
        source, target = base / "src", base / "lake"
        t0 = time.perf_counter()
        make_source(source, count)
        _, commits, after = seed_ledger(source, target)
        setup = time.perf_counter() - t0
        times = []
        for _ in range(3):
            t = time.perf_counter()
            summary = servicelogs.convert("alb", source, target, workers=1, full_listing=args.full_listing)
            times.append(time.perf_counter() - t)
            assert summary.objects_new == 0 and summary.objects_done_before == summary.objects_listed, summary.text()
        print(
            f"{count:>8,} objects done ({commits} commits, {after} after the checkpoint): no-op run "
            f"{min(times):.2f} s best, {max(times):.2f} s worst of 3 (setup {setup:.0f} s); listing "
            f"{summary.listing} {summary.listing_from}: {summary.objects_listed} files listed",
            flush=True,
        )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
