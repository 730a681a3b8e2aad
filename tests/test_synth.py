"""The corpus generator (demo and benchmarks): rows land on the day of the object that holds them."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from conftest import FIXTURES

import servicelogs
from servicelogs import formats
from servicelogs.synth import Address, Digits, Draw, Id, Time, Url, UserAgent, write_corpus

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


# -- corpora with the cardinality of real logs (the benchmarks' VARIATIONS) ----------------------------------

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench():  # the benchmark's template and variation tables, as bench/throughput.py declares them
    import sys

    sys.path.insert(0, str(BENCH))
    try:
        import throughput
    finally:
        sys.path.remove(str(BENCH))
    return throughput


@pytest.mark.parametrize("name", ["alb", "elb", "s3_access", "cloudfront", "vpc_flow", "cloudtrail"])
def test_varied_corpora_convert_without_a_reject_and_ids_are_new_on_every_line(tmp_path: Path, name: str) -> None:
    bench = _bench()
    groups, preambles = bench.template_groups(name)
    framing = {"separator": ",\n", "end": "]}"} if name in bench.JSON_RECORDS else {}
    fmt = formats.get(name)
    corpus = write_corpus(
        fmt,
        tmp_path / "src",
        0.6,
        groups,
        preambles=preambles,
        variations=bench.VARIATIONS[name],
        object_megabytes=0.2,
        **framing,
    )
    summary = servicelogs.convert(name, tmp_path / "src", tmp_path / "lake", workers=1)
    assert summary.rejects == 0 and summary.rows > 300
    if name not in bench.JSON_RECORDS:  # every line but the headers is a row
        assert summary.rows == corpus.lines - sum(len(preambles[i % len(groups)]) for i in range(corpus.objects))
    column = {
        "alb": "trace_id",
        "elb": "request_port",
        "s3_access": "requestid",
        "cloudfront": "request_id",
        "vpc_flow": "srcport",
        "cloudtrail": "eventID",
    }[name]
    ((rows, distinct),) = duckdb.sql(
        f"SELECT count(*), count(DISTINCT {column}) FROM read_parquet('{tmp_path}/lake/{name}/**/*.parquet')"
    ).fetchall()
    assert rows == summary.rows
    assert (
        distinct > 0.9 * rows if column in ("trace_id", "requestid", "request_id", "eventID") else distinct > 0.3 * rows
    )


def test_each_kind_keeps_the_shape_of_the_value_it_replaces() -> None:
    import numpy as np
    import pyarrow as pa

    draw = Draw(np.random.default_rng(1), int(datetime(2024, 3, 1, 10, 5, tzinfo=timezone.utc).timestamp()) * 10**6)
    ids = Id()(pa.array(["Root=1-58337262-36d228ad5d99923122bbe354", "3E57427F3EXAMPLE"] * 50), draw).to_pylist()
    assert all(re.fullmatch(r"Root=1-[0-9]{8}-[0-9a-f]{24}", v) for v in ids[::2])
    assert all(re.fullmatch(r"[0-9A-Z]{16}", v) for v in ids[1::2]) and len(set(ids)) == 100
    addresses = Address(pool=1000, first=10, ports=(80, 443))(
        pa.array(["192.168.1.10:44740", "10.0.0.1", "2001:db8::1"] * 30), draw
    ).to_pylist()
    assert all(re.fullmatch(r"10(\.[0-9]+){3}:(80|443)", v) for v in addresses[::3])
    assert all(re.fullmatch(r"10(\.[0-9]+){3}", v) for v in addresses[1::3])
    assert addresses[2::3] == ["2001:db8::1"] * 30  # IPv6 kept
    numbers = Digits()(pa.array(["366", "0.001", "-1"] * 30), draw).to_pylist()
    assert all(re.fullmatch(r"3[0-9]{2}", v) for v in numbers[::3]) and len(set(numbers[::3])) > 10
    assert all(re.fullmatch(r"0\.[0-9]{3}", v) for v in numbers[1::3]) and numbers[2::3] == ["-1"] * 30
    times = Time()(pa.array(["2018-07-02T22:23:00.186641Z", "2018-07-02T22:23:00Z"] * 50), draw).to_pylist()
    assert all(re.fullmatch(r"2024-03-01T10:0[5-9]:[0-9]{2}\.[0-9]{6}Z", v) for v in times[::2])
    assert all(re.fullmatch(r"2024-03-01T10:0[5-9]:[0-9]{2}Z", v) for v in times[1::2])
    assert times[::2] == sorted(times[::2])
    urls = Url()(pa.array(["GET http://www.example.com:80/ HTTP/1.1", "- - - ", "photos/2019/puppy.jpg"] * 30), draw)
    assert all(re.fullmatch(r"GET http://www\.example\.com:80/[^ ]+ HTTP/1\.1", v) for v in urls.to_pylist()[::3])
    assert urls.to_pylist()[1::3] == ["- - - "] * 30
    assert all(not v.startswith("/") for v in urls.to_pylist()[2::3]) and len(set(urls.to_pylist()[2::3])) > 20


def test_a_quoted_field_is_varied_inside_its_quotes_and_the_null_token_is_kept() -> None:
    import numpy as np
    import pyarrow as pa

    from servicelogs.synth import _varied

    draw = Draw(np.random.default_rng(2), 0)
    out = _varied(pa.array(['"curl/7.46.0"', '"-"', "-", "curl"]), UserAgent(pool=10), draw, '"').to_pylist()
    assert out[0].startswith('"') and out[0].endswith('"') and out[0] != '"curl/7.46.0"'
    assert out[1:3] == ['"-"', "-"] and not out[3].startswith('"')
