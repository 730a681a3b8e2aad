"""Time runs over an S3 prefix (moto in server mode on 127.0.0.1) whose objects are all in the ledger already.

    python bench/noop_s3.py [--objects 20000] [--days 365] [--regions 2] [--rounds 3]

Puts that many small ALB-named objects across that many delivery days and regions (filling moto takes
minutes), records them all as done in a local table's ledger through the ledger's own API (commits of 1,000
objects with their latest delivery day, a checkpoint, a few commits after it), then times, each best and
worst of `--rounds`:

- a no-op run with the listing window (the default: the ledger's latest day less 3 days),
- a no-op run with `full_listing=True` (every run before the window: one request per 1,000 keys),
- a run that finds one new object (delivered on the latest day) and converts it.

Targets: the windowed no-op at most 2 s, the one-new-object run at most 5 s. Catalog "none" (the catalog's
own time is the catalog's), one worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # s3_support: the moto server

from noop_run import seed_ledger
from s3_support import ENV, MOTO_SCRIPT, free_port

import servicelogs
from servicelogs.summary import RunSummary

ACCOUNT = "123456789012"
TESTS = Path(__file__).resolve().parent.parent / "tests"
LINE = (TESTS / "fixtures/exactly_once/crowdsecurity-hub-aws-alb-logs.log").read_text().splitlines()[0] + "\n"
LAST_DAY = date(2024, 12, 31)


def key(region: str, day: date, n: int) -> str:
    return (
        f"logs/AWSLogs/{ACCOUNT}/elasticloadbalancing/{region}/{day:%Y/%m/%d}/{ACCOUNT}_elasticloadbalancing_"
        f"{region}_app.lb.50dc6c495c0c9188_{day:%Y%m%d}T{n % 24:02d}00Z_10.0.0.1_o{n:06d}.log"
    )


def fill(client, bucket: str, objects: int, days: int, regions: list[str]) -> None:  # type: ignore[no-untyped-def]
    """One object after the other: moto's server is single-threaded, concurrent puts only queue. Under load it
    now and then answers 500 for good on one request: that put is tried again."""
    import botocore.exceptions

    for n in range(objects):
        key_n = key(regions[n % len(regions)], LAST_DAY - timedelta(days=n % days), n)
        for attempt in range(5):
            try:
                client.put_object(Bucket=bucket, Key=key_n, Body=LINE.encode())
                break
            except botocore.exceptions.ClientError:
                if attempt == 4:
                    raise
                time.sleep(1)
        if (n + 1) % 5000 == 0:
            print(f"  {n + 1:,} objects put", flush=True)


def start_moto(log: Path) -> tuple[subprocess.Popen, int]:
    """moto in server mode, as the tests start it (tests/s3_support.py), its log kept in `log`."""
    port = free_port()
    with log.open("wb") as out:
        moto = subprocess.Popen([sys.executable, "-c", MOTO_SCRIPT, str(port)], stdout=out, stderr=out)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return moto, port
        except OSError:
            time.sleep(0.1)
    moto.kill()
    raise RuntimeError(f"moto server did not start (see {log})")


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far (moto's: the S3 side of a run)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(
    source: str, target: Path, rounds: int, moto: int, **kw: bool
) -> tuple[list[float], list[float], list[float], RunSummary]:
    """Wall seconds, the run's CPU seconds and moto's CPU seconds, per round; the last summary."""
    times, cpu, moto_cpu, summary = [], [], [], None
    for _ in range(rounds):
        t, m = time.perf_counter(), cpu_of(moto)
        summary = servicelogs.convert("alb", source, target, workers=1, catalog="none", **kw)
        times.append(time.perf_counter() - t)
        moto_cpu.append(cpu_of(moto) - m)
        cpu.append(summary.cpu_seconds)
    assert summary is not None
    return times, cpu, moto_cpu, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--regions", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import boto3

    os.environ.update(ENV)
    os.environ.pop("SERVICELOGS_S3_TIMEOUT", None)  # the tests' 2 s read timeout: too short for a loaded moto
    moto, port = start_moto(log=Path(tempfile.gettempdir()) / "servicelogs-noop-s3-moto.log")
    os.environ["SERVICELOGS_S3_ENDPOINT"] = endpoint = f"http://127.0.0.1:{port}"
    base = Path(tempfile.mkdtemp(prefix="servicelogs-noop-s3-"))
    try:
        from botocore.config import Config

        retries = Config(retries={"max_attempts": 10, "mode": "standard"})
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=retries)
        client.create_bucket(Bucket="logs")
        regions = ["us-east-1", "eu-west-1", "ap-south-1", "us-west-2"][: args.regions]
        t0 = time.perf_counter()
        fill(client, "logs", args.objects, args.days, regions)
        source, target = "s3://logs/logs", base / "lake"
        count, _, _ = seed_ledger(source, target, after_checkpoint=5)
        print(f"{count:,} objects over {args.days} days and {len(regions)} regions, set up in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip

        def show(what: str, measured: tuple[list[float], list[float], list[float], RunSummary]) -> None:
            times, cpu, moto_cpu, s = measured
            how = f"window from {s.listing_from}" if s.listing == "window" else s.listing
            print(
                f"  {what:<22} {min(times):6.2f} s best, {max(times):6.2f} s worst of {len(times)} (CPU s: run "
                f"{min(cpu):.2f}, moto {min(moto_cpu):.2f}); listing {how}: {s.prefixes_listed} prefixes, "
                f"{s.list_requests} requests, {s.objects_listed} listed, {s.objects_new} new",
                flush=True,
            )

        for _ in range(2):  # alternate, as the machine's load changes
            measured = timed(source, target, args.rounds, moto.pid)
            assert measured[3].objects_new == 0 and measured[3].listing == "window", measured[3].text()
            show("no-op, listing window", measured)
            measured = timed(source, target, args.rounds, moto.pid, full_listing=True)
            assert measured[3].objects_new == 0 and measured[3].objects_done_before == count, measured[3].text()
            show("no-op, full listing", measured)
        new_times: list[float] = []
        new_cpu: list[float] = []
        new_moto: list[float] = []
        for n in range(args.rounds):
            client.put_object(Bucket="logs", Key=key(regions[0], LAST_DAY, 900_000 + n), Body=LINE.encode())
            times, cpu, moto_cpu, s = timed(source, target, 1, moto.pid)
            assert s.objects_new == 1 and s.objects_converted == 1 and s.rows == 1, s.text()
            new_times, new_cpu, new_moto = new_times + times, new_cpu + cpu, new_moto + moto_cpu
        show("one new object", (new_times, new_cpu, new_moto, s))
    finally:
        moto.kill()
        moto.wait()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
