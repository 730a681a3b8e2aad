"""Throughput of the Spark engine (local[N]) beside the local engine (N workers), on one corpus.

    python bench/spark_throughput.py alb --mb 200 [--cores 2]

Uses bench/throughput.py's corpus (real sample lines in the AWS key layout, gzipped, cached under bench/out/).
Each pipeline runs in its own process:
  jvm start      a local[N] session started and one empty task run: Spark's fixed cost per run
  spark          `servicelogs convert FORMAT SRC DST --engine spark --master local[N]`
  local          `servicelogs convert FORMAT SRC DST --workers N`
and prints MB/s of uncompressed log text per core: for Spark with the JVM start included and with it taken
out. The original tool's figure is 10 GB in 18 min on 10 DPU (40 vCPU): ~0.23 MB/s per vCPU; the target is
20x that, 5 MB/s per core.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import TEMPLATES, corpus, measure  # noqa: E402

ORIGINAL_MB_S_PER_VCPU = 10_000 / (18 * 60) / 40
JVM_START = (
    "from servicelogs.engines.spark import session; session('local[{cores}]').sparkContext.parallelize([0], 1).count()"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=sorted(TEMPLATES))
    parser.add_argument("--mb", type=float, default=200, help="MB of uncompressed log text to generate")
    parser.add_argument("--cores", type=int, default=2, help="Spark local[N] threads and local engine workers")
    args = parser.parse_args()

    root = corpus(args.format, args.mb)
    source = root / "source"
    text_mb = int((root / ".complete").read_text().split(", ")[1].split()[0]) / 1e6
    print(f"corpus: {root} ({(root / '.complete').read_text().strip()}); {args.cores} cores\n")
    exe = [sys.executable, "-m", "servicelogs", "convert", args.format, str(source)]
    jvm = measure([sys.executable, "-c", JVM_START.format(cores=args.cores)])
    runs = {}
    for name, extra in (
        ("spark", ["--engine", "spark", "--master", f"local[{args.cores}]"]),
        ("local", ["--workers", str(args.cores)]),
    ):
        target = root / f"{name}-engine-target"
        shutil.rmtree(target, ignore_errors=True)
        runs[name] = measure([*exe, str(target), *extra, "--json"])

    per_core = {
        "spark local[N], JVM start included": text_mb / runs["spark"].wall / args.cores,
        "spark local[N], JVM start apart": text_mb / (runs["spark"].wall - jvm.wall) / args.cores,
        "local engine, N workers": text_mb / runs["local"].wall / args.cores,
    }
    print(f"jvm start (session + one task): {jvm.wall:.2f} s")
    print(f"spark run: {runs['spark'].wall:.2f} s wall; local run: {runs['local'].wall:.2f} s wall\n")
    print(f"{'pipeline':40} {'MB/s per core':>14} {'x original':>11}")
    for name, rate in per_core.items():
        print(f"{name:40} {rate:14.1f} {rate / ORIGINAL_MB_S_PER_VCPU:11.0f}")
    print(f"\noriginal tool (10 GB / 18 min / 40 vCPU): {ORIGINAL_MB_S_PER_VCPU:.2f} MB/s per vCPU; target 5 MB/s")


if __name__ == "__main__":
    main()
