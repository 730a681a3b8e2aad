"""Writing to S3: the wall time of a run whose batch writes several files into an S3 target, with latency.

    python bench/s3_writes.py [--objects 40] [--latency-ms 20] [--rounds 4] [--src /old/src]

A moto server (the tests' one) behind bench/latency_proxy.py holds a source of small ALB objects over two
regions and several days (tests/exactly_once_support.source_objects: each batch writes a file per partition)
and the target. Each round runs `servicelogs convert alb s3://src s3://lake/<fresh> --workers 1` once with this
tree and, with `--src`, once with another (alternating), and prints the wall time of each: a batch's uploads,
the checks before its commit and its publishing copies each wait a round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import latency_proxy  # noqa: E402
from exactly_once_support import source_objects  # noqa: E402
from s3_support import start_moto  # noqa: E402
from s3_throughput import CREDENTIALS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--src", type=Path, help="also run servicelogs from this source tree (an older src/)")
    args = parser.parse_args()

    import boto3

    os.environ.update(CREDENTIALS)
    moto, port = start_moto()
    proxy = latency_proxy.start(port, args.latency_ms / 1000)
    endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
    client.create_bucket(Bucket="src")
    client.create_bucket(Bucket="lake")
    for key, data in source_objects(args.objects).items():
        client.put_object(Bucket="src", Key=key, Body=data)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    trees = [("this tree", str(HERE.parent / "src"))] + ([("--src", str(args.src))] if args.src else [])
    walls: dict[str, list[float]] = {}
    try:
        for round_ in range(args.rounds):
            for label, src in trees:
                cmd = [sys.executable, "-m", "servicelogs", "convert", "alb", "s3://src"]
                cmd += [f"s3://lake/{round_}-{len(walls.get(label, []))}-{label[:2]}", "--endpoint-url", endpoint]
                cmd += ["--workers", "1", "--catalog", "none", "--json"]
                started = time.perf_counter()
                out = subprocess.run(cmd, env={**env, "PYTHONPATH": src}, capture_output=True, text=True, check=True)
                wall = time.perf_counter() - started
                summary = json.loads(out.stdout)
                walls.setdefault(label, []).append(wall)
                print(
                    f"  {label:10} {wall:6.2f} s  {summary['files_written']} files, "
                    f"{summary['batches_committed']} batches",
                    flush=True,
                )
    finally:
        proxy.shutdown()
        moto.kill()
        moto.wait()
    for label, times in walls.items():
        times.sort()
        print(f"{label:10} min {times[0]:.2f} s, median {times[len(times) // 2]:.2f} s over {len(times)} runs")


if __name__ == "__main__":
    main()
