"""The corpus generator (demo and benchmarks): rows land on the day of the object that holds them."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
from conftest import FIXTURES

import servicelogs
from servicelogs import formats
from servicelogs.synth import write_corpus

# Real lines of the AWS documentation (the custom v3 example): epoch-second times of 2019-08-26, a header.
EXAMPLE = FIXTURES / "vpc_flow/awsdocs-amazon-vpc-user-guide-flow-logs-records-examples-custom-v3-tcp-flags.log"


def test_epoch_times_move_to_the_objects_day_and_keep_their_distance(tmp_path: Path) -> None:
    header, first = EXAMPLE.read_text().splitlines()[:2]
    start_seconds, end_seconds = (int(v) for v in first.split()[16:18])
    fmt = formats.get("vpc_flow")
    write_corpus(fmt, tmp_path / "src", 0.3, [[first]], preambles=[[header]], object_megabytes=0.05)
    summary = servicelogs.convert("vpc_flow", tmp_path / "src", tmp_path / "lake", workers=1)
    assert summary.rows > 0 and summary.rejects == 0
    rows = duckdb.sql(
        f"SELECT source_key, start, \"end\", day FROM read_parquet('{tmp_path}/lake/vpc_flow/**/*.parquet', "
        "hive_partitioning = true)"
    ).fetchall()
    days = {date(2024, 3, 1) + timedelta(days=i) for i in range(3)}
    for key, start, end, day in rows:
        assert start.date() in days and f"{start.day:02d}" == day
        assert "/".join(key.split("/")[-4:-1]) == start.strftime("%Y/%m/%d")  # the object's own day
        assert (end - start).total_seconds() == end_seconds - start_seconds
    assert {start.date() for _, start, _, _ in rows} == days
