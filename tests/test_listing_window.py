"""The listing window (servicelogs.listing): a run lists only the delivery days from the ledger's latest less the
late days; a full listing finds what was delivered later; status says when the last one ran.

S3 runs go against moto in server mode over HTTP; what the listing asked S3 for is recorded from the boto3
client's own request parameters (an event hook, one entry per ListObjectsV2 request sent)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import date
from pathlib import Path

import duckdb
import pytest
from exactly_once_support import ACCOUNT, FIXTURE

from servicelogs import formats, listing, run
from servicelogs.cli import main
from servicelogs.engines import local
from servicelogs.ledger import Ledger, State
from servicelogs.sources import LocalSource, SourceObject
from servicelogs.status import status
from servicelogs.storage import LocalStore

ALB_LINE = FIXTURE.read_text().splitlines()[0] + "\n"
S3_LINE = (Path(__file__).parent / "fixtures/s3_access/aws-docs-s3-userguide-LogFormat-current.log").read_text()
S3_LINE = S3_LINE.splitlines()[0] + "\n"
ELB = f"AWSLogs/{ACCOUNT}/elasticloadbalancing"
_counter = itertools.count()


def alb_key(region: str, day: str, n: int = 0) -> str:
    y, m, d = day.split("-")
    return (
        f"{ELB}/{region}/{y}/{m}/{d}/{ACCOUNT}_elasticloadbalancing_{region}_app.lb.50dc6c495c0c9188_"
        f"{y}{m}{d}T0000Z_10.0.0.1_o{n}.log"
    )


def convert(source, lake: Path, fmt: str = "alb", **kw) -> run.RunSummary:  # type: ignore[no-untyped-def]
    return run.run(formats.get(fmt), source, LocalStore(lake), engine=local.execute, workers=1, **kw)


def done_keys(lake: Path, table: str = "alb") -> list[str]:
    return sorted(Ledger(LocalStore(lake), f"_servicelogs/{table}").load().done)


# -- S3: moto in server mode ---------------------------------------------------------------------------


@pytest.fixture
def s3(moto, aws_env):
    """A client that talks to moto, and the endpoint the code under test is given."""
    return moto.client, moto.url


class Bucket:
    """A fresh source bucket, and an S3Source over `prefix` that records each ListObjectsV2 request it sends
    as (Prefix, Delimiter, StartAfter)."""

    def __init__(self, s3, prefix: str) -> None:  # type: ignore[no-untyped-def]
        from servicelogs.s3 import S3Source

        self.client, endpoint = s3
        self.name = f"window-{next(_counter)}"
        self.client.create_bucket(Bucket=self.name)
        self.source = S3Source(f"s3://{self.name}/{prefix}", endpoint_url=endpoint)
        self.requests: list[tuple[str, str, str]] = []
        self.source.store.s3.client.meta.events.register("provide-client-params.s3.ListObjectsV2", self._record)

    def _record(self, params: dict, **_: object) -> None:
        self.requests.append((params["Prefix"], params.get("Delimiter", ""), params.get("StartAfter", "")))

    def put(self, key: str, body: str) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body.encode())

    def asked(self) -> list[tuple[str, str, str]]:
        """The requests sent since the last call, sorted (the listing sends them from several threads)."""
        out, self.requests = sorted(self.requests), []
        return out

    def url(self, key: str) -> str:
        return f"s3://{self.name}/{key}"


def test_s3_a_normal_run_lists_only_the_window_and_a_full_listing_finds_what_came_later(s3, tmp_path) -> None:
    b = Bucket(s3, "logs")
    first = ["2024-01-05", "2024-05-01", "2024-05-10", "2024-05-11"]
    for n, day in enumerate(first):
        b.put("logs/" + alb_key("eu-west-1" if day < "2024-05" else "us-east-1", day, n), ALB_LINE)
    lake = tmp_path / "lake"

    s = convert(b.source, lake)
    assert (s.listing, s.listing_from, s.listing_why) == (
        "full", "", "the first run of the table: the ledger holds no delivery day yet"
    )  # fmt: skip
    assert (s.objects_new, s.prefixes_listed, s.list_requests) == (4, 1, 1)
    assert b.asked() == [("logs/", "", "")]
    first_run = s.run_id
    assert Ledger(LocalStore(lake), "_servicelogs/alb").load().latest_day == "2024-05-11"

    late_inside = "logs/" + alb_key("us-east-1", "2024-05-09", 10)  # 2 days before the latest: in the window
    late_outside = "logs/" + alb_key("us-east-1", "2024-05-02", 11)  # 9 days before: outside it
    b.put(late_inside, ALB_LINE)
    b.put(late_outside, ALB_LINE)

    s = convert(b.source, lake)
    assert (s.listing, s.listing_from, s.listing_why) == (
        "window", "2024-05-08", "the ledger's latest delivery day 2024-05-11 less 3 days"
    )  # fmt: skip
    assert (s.objects_listed, s.objects_new, s.objects_done_before) == (3, 1, 2)
    east, west = f"logs/{ELB}/us-east-1/", f"logs/{ELB}/eu-west-1/"
    assert b.asked() == sorted(
        [
            ("logs/", "/", ""),
            ("logs/AWSLogs/", "/", ""),
            (f"logs/AWSLogs/{ACCOUNT}/", "/", ""),
            (f"logs/{ELB}/", "/", ""),
            (west, "/", ""),
            (f"{west}2024/", "/", ""),  # its only month, 01, is before the window: not listed
            (east, "/", ""),
            (f"{east}2024/", "/", ""),
            (f"{east}2024/05/", "/", ""),
            (f"{east}2024/05/09/", "", ""),
            (f"{east}2024/05/10/", "", ""),
            (f"{east}2024/05/11/", "", ""),
        ]
    )
    assert (s.prefixes_listed, s.list_requests) == (12, 12)
    assert b.url(late_inside) in done_keys(lake) and b.url(late_outside) not in done_keys(lake)
    st = status(LocalStore(lake), "alb")
    assert st["latest_delivery_day"] == "2024-05-11"
    assert st["last_full_listing"] == {
        "run_id": first_run,
        "started": f"{first_run[:4]}-{first_run[4:6]}-{first_run[6:8]} {first_run[9:11]}:{first_run[11:13]}:"
        f"{first_run[13:15]} UTC",
        "why": "the first run of the table: the ledger holds no delivery day yet",
        "source": b.source.url,
    }
    assert st["last_runs"][0]["listing"] == "window" and st["last_runs"][0]["listing_from"] == "2024-05-08"

    s = convert(b.source, lake, full_listing=True)
    assert (s.listing, s.listing_why, s.objects_listed, s.objects_new) == (
        "full",
        "asked for with --full-listing",
        6,
        1,
    )
    assert b.asked() == [("logs/", "", "")]
    assert done_keys(lake) == sorted(
        [b.url("logs/" + alb_key("eu-west-1" if d < "2024-05" else "us-east-1", d, n)) for n, d in enumerate(first)]
        + [b.url(late_inside), b.url(late_outside)]
    )
    assert status(LocalStore(lake), "alb")["last_full_listing"]["run_id"] == s.run_id
    rows = duckdb.sql(
        f"SELECT source_key, elb_status_code FROM read_parquet('{lake}/alb/**/*.parquet', hive_partitioning=false) "
        f"WHERE source_key = '{b.url(late_outside)}'"
    ).fetchall()
    assert rows == [(b.url(late_outside), int(ALB_LINE.split(" ")[8]))]


def test_s3_since_and_until_replace_the_window(s3, tmp_path) -> None:
    b = Bucket(s3, "")
    for n, day in enumerate(["2024-04-30", "2024-05-01", "2024-05-02", "2024-05-10"]):
        b.put(alb_key("us-east-1", day, n), ALB_LINE)
    lake = tmp_path / "lake"
    convert(b.source, lake, until=date(2024, 4, 30))
    b.asked()
    s = convert(b.source, lake, since=date(2024, 5, 1), until=date(2024, 5, 1))
    assert (s.listing, s.listing_from, s.listing_why, s.objects_new) == ("window", "2024-05-01", "from --since", 1)
    east = f"{ELB}/us-east-1/"
    assert b.asked() == sorted(
        [
            ("", "/", ""),
            ("AWSLogs/", "/", ""),
            (f"AWSLogs/{ACCOUNT}/", "/", ""),
            (f"{ELB}/", "/", ""),
            (east, "/", ""),
            (f"{east}2024/", "/", ""),
            (f"{east}2024/05/", "/", ""),
            (f"{east}2024/05/01/", "", ""),
        ]
    )
    # The last run listed only --since/--until, so the ledger's mark does not vouch for the days before it:
    # the next run lists everything (run._unsettled), --until alone ending it.
    s = convert(b.source, lake, until=date(2024, 5, 2))
    assert (s.listing, s.listing_from, s.objects_new, s.objects_done_before) == ("full", "", 1, 2)
    assert "listed only --since/--until" in s.listing_why
    # Once a run without a window settled everything, the next one lists the window again.
    settled = convert(b.source, lake)
    assert (settled.listing, settled.objects_new) == ("full", 1)
    again = convert(b.source, lake)
    assert (again.listing, again.listing_from, again.objects_new) == ("window", "2024-05-07", 0)


def test_s3_access_simple_prefix_starts_after_the_first_day_of_the_window(s3, tmp_path) -> None:
    b = Bucket(s3, "s3logs")
    partitioned = f"s3logs/{ACCOUNT}/us-west-1/bucket1/"
    old = [f"s3logs/2024-04-{d:02d}-00-00-00-OLD{d}" for d in range(1, 6)]
    for key in [*old, "s3logs/2024-05-10-08-00-00-AAAA", f"{partitioned}2024/05/10/2024-05-10-09-00-00-BBBB"]:
        b.put(key, S3_LINE)
    lake = tmp_path / "lake"
    assert convert(b.source, lake, fmt="s3_access").objects_new == 7
    b.asked()
    new = ["s3logs/2024-05-10-10-00-00-CCCC", f"{partitioned}2024/05/10/2024-05-10-11-00-00-DDDD"]
    b.put(new[0], S3_LINE)
    b.put(new[1], S3_LINE)
    b.put("s3logs/2024-05-06-00-00-00-LATE", S3_LINE)  # before the window (from 2024-05-07): not asked for

    s = convert(b.source, lake, fmt="s3_access")
    assert (s.listing, s.listing_from, s.objects_listed, s.objects_new) == ("window", "2024-05-07", 4, 2)
    assert b.asked() == sorted(
        [
            ("s3logs/", "/", ""),  # its first page meets 2024-04-01-…: the listing starts over after the window's
            ("s3logs/", "/", "s3logs/2024-05-07-"),
            (f"s3logs/{ACCOUNT}/", "/", ""),  # the account folder sorts before the dated names: still walked
            (f"s3logs/{ACCOUNT}/us-west-1/", "/", ""),
            (partitioned, "/", ""),
            (f"{partitioned}2024/", "/", ""),
            (f"{partitioned}2024/05/", "/", ""),
            (f"{partitioned}2024/05/10/", "", ""),
        ]
    )
    assert {b.url(k) for k in new} <= set(done_keys(lake, "s3_access"))
    assert b.url("s3logs/2024-05-06-00-00-00-LATE") not in done_keys(lake, "s3_access")
    assert convert(b.source, lake, fmt="s3_access", full_listing=True).objects_new == 1


def test_cloudfront_names_start_after_each_distribution_and_the_window(s3, tmp_path) -> None:
    b = Bucket(s3, "cf")
    keys = [f"cf/{dist}.2024-05-{d:02d}-00.abc{d}.gz" for dist in ("E1AAA", "E2BBB") for d in (1, 2, 20)]
    for key in keys:
        b.put(key, "")
    lake = tmp_path / "lake"
    convert(b.source, lake, fmt="cloudfront")
    b.asked()
    s = convert(b.source, lake, fmt="cloudfront")
    assert (s.listing_from, s.objects_listed) == ("2024-05-17", 2)
    assert b.asked() == sorted(
        [("cf/", "/", ""), ("cf/", "/", "cf/E1AAA.2024-05-17-"), ("cf/", "/", "cf/E2BBB.2024-05-17-")]
    )


# -- local folders -------------------------------------------------------------------------------------


def put_local(root: Path, key: str, body: str = ALB_LINE) -> str:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path.as_posix()


def test_local_window_walks_only_the_days_and_a_full_listing_finds_the_late_object(tmp_path) -> None:
    src, lake = tmp_path / "src", tmp_path / "lake"
    for n, day in enumerate(["2023-12-31", "2024-05-01", "2024-05-10"]):
        put_local(src, alb_key("us-east-1", day, n))
    assert convert(LocalSource(src), lake).listing == "full"
    inside = put_local(src, alb_key("us-east-1", "2024-05-08", 5))
    outside = put_local(src, alb_key("us-east-1", "2024-05-06", 6))

    s = convert(LocalSource(src), lake)
    # root, AWSLogs, account, elasticloadbalancing, us-east-1, 2024, 05, 08, 10 (2023 and days 01, 06 pruned)
    assert (s.listing, s.listing_from, s.prefixes_listed, s.objects_listed, s.objects_new) == (
        "window", "2024-05-07", 9, 2, 1
    )  # fmt: skip
    assert inside in done_keys(lake) and outside not in done_keys(lake)
    s = convert(LocalSource(src), lake, full_listing=True)
    assert (s.listing, s.objects_listed, s.objects_new) == ("full", 5, 1)
    assert outside in done_keys(lake)


def test_an_object_a_run_failed_is_retried_by_a_full_listing_however_old(tmp_path) -> None:
    """The high-water mark is the latest day committed: it does not vouch for an older object a run left
    unconverted, so the run after one that failed an object lists everything, and retries it."""
    src, lake = tmp_path / "src", tmp_path / "lake"
    put_local(src, alb_key("us-east-1", "2024-05-10", 1))
    broken = src / (alb_key("us-east-1", "2024-05-01", 2) + ".gz")
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"\x1f\x8b not gzip after all")
    first = convert(LocalSource(src), lake)
    assert (first.listing, first.objects_converted, first.objects_failed) == ("full", 1, 1)
    assert Ledger(LocalStore(lake), "_servicelogs/alb").load().latest_day == "2024-05-10"

    import gzip

    broken.write_bytes(gzip.compress(ALB_LINE.encode()))  # the object is readable now, 9 days before the mark
    retry = convert(LocalSource(src), lake)
    assert (retry.listing, retry.objects_new, retry.objects_converted) == ("full", 1, 1)
    assert retry.listing_why.endswith("left objects unconverted or failed: the days before the ledger's latest "
                                      "may hold objects not converted")  # fmt: skip
    assert broken.resolve().as_posix() in done_keys(lake)
    assert convert(LocalSource(src), lake).listing == "window"  # everything settled: the window again


def test_local_time_sorted_names_before_the_window_are_not_listed(tmp_path) -> None:
    src, lake = tmp_path / "src", tmp_path / "lake"
    for d in (1, 2, 3, 20):
        put_local(src, f"2024-05-{d:02d}-00-00-00-N{d}", S3_LINE)
    convert(LocalSource(src), lake, fmt="s3_access")
    late = put_local(src, "2024-05-16-00-00-00-LATE", S3_LINE)  # before the window (from 2024-05-17)
    new = put_local(src, "2024-05-21-00-00-00-NEW", S3_LINE)
    s = convert(LocalSource(src), lake, fmt="s3_access")
    assert (s.listing_from, s.objects_listed, s.objects_new) == ("2024-05-17", 2, 1)
    assert new in done_keys(lake, "s3_access") and late not in done_keys(lake, "s3_access")


def test_keys_outside_a_dated_layout_are_listed_in_full(tmp_path) -> None:
    """Objects in folders no layout dates (here ALB objects by file name only) are listed on every run,
    whatever the day in their name; and a format whose layouts hold no day lists everything."""
    src, lake = tmp_path / "src", tmp_path / "lake"
    put_local(src, alb_key("us-east-1", "2024-05-10"))
    convert(LocalSource(src), lake)
    flat = put_local(src, "flat/" + alb_key("us-east-1", "2023-01-01", 7).rsplit("/", 1)[1])
    s = convert(LocalSource(src), lake)
    assert (s.listing, s.objects_new) == ("window", 1) and flat in done_keys(lake)

    alb = formats.get("alb")
    undated = dataclasses.replace(alb, key_layouts=tuple(dataclasses.replace(k, days=None) for k in alb.key_layouts))
    plan = listing.plan(undated, date(2024, 5, 10))
    assert (plan.window, plan.kind, plan.why) == (None, "full", "no alb key layout holds a delivery day")
    s = run.run(undated, LocalSource(src), LocalStore(lake), engine=local.execute, workers=1)
    assert (s.listing, s.listing_why, s.objects_listed, s.objects_done_before) == (
        "full", "no alb key layout holds a delivery day", 2, 2
    )  # fmt: skip


def test_a_high_water_mark_in_the_future_counts_as_today_so_the_clock_only_widens_the_window() -> None:
    alb = formats.get("alb")
    plan = listing.plan(alb, date(2099, 1, 1), today=date(2024, 5, 10))
    assert (plan.first, plan.why) == (
        "2024-05-07", "today, 2024-05-10, before the ledger's latest delivery day 2099-01-01, less 3 days"
    )  # fmt: skip
    plan = listing.plan(alb, date(2024, 5, 1), today=date(2024, 5, 10), late_days=0)
    assert (plan.kind, plan.first) == ("window", "2024-05-01")


def test_the_high_water_mark_is_committed_state_and_survives_a_checkpoint(tmp_path) -> None:
    store = LocalStore(tmp_path / "lake")
    ledger = Ledger(store, "_servicelogs/alb")
    state = State()
    obj = SourceObject("/x/a.log", 1, "e")
    ledger.commit(state, "b1", "r", (obj,), [], latest_day="2024-05-10")
    ledger.commit(state, "b2", "r", (SourceObject("/x/b.log", 1, "e"),), [], latest_day="2024-05-02")
    ledger.commit(state, "b3", "r", (SourceObject("/x/c.log", 1, "e"),), [])  # no dated key
    assert state.latest_day == "2024-05-10"
    assert ledger.load().latest_day == "2024-05-10"  # from the commits
    ledger.checkpoint(state, "r")
    for key, _ in list(store.list("_servicelogs/alb/ledger/commits")):
        store.delete(key)  # only the checkpoint can tell now
    assert ledger.load().latest_day == "2024-05-10"


def test_delivery_days_of_every_dated_layout() -> None:
    cases = {
        "alb": alb_key("us-east-1", "2024-05-28"),
        "vpc_flow": "AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=us-east-1/"
        "year=2024/month=05/day=28/123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20240528T0815Z_fe123456.log.gz",
        "cloudtrail": "AWSLogs/o-exampleorgid/123456789012/CloudTrail/us-east-2/2024/05/28/"
        "123456789012_CloudTrail_us-east-2_20240528T0210Z_Mu0KsOhtH1ar15ZZ.json.gz",
        "cloudfront": "cloudfront/EMLARXS9EXAMPLE.2024-05-28-20.RT4KCN4SGK9.gz",
        "s3_access": "s3-logs/2024-05-28-00-00-38-0A1B2C3D4E5F6A7B",
    }
    assert {name: listing.delivery_day(formats.get(name), key) for name, key in cases.items()} == dict.fromkeys(
        cases, date(2024, 5, 28)
    )
    for fmt in formats.names():
        for layout in formats.get(fmt).key_layouts:
            expected = None if layout.days is None else listing.delivery_day(formats.get(fmt), layout.example)
            assert (layout.days is None) == (expected is None), (fmt, layout.name)


# -- the options: CLI and TOML config -------------------------------------------------------------------


def test_cli_full_listing_and_late_days(tmp_path, capsys) -> None:
    src, lake = tmp_path / "src", tmp_path / "lake"
    put_local(src, alb_key("us-east-1", "2024-05-10"))
    assert main(["convert", "alb", str(src), str(lake), "--json", "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["convert", "alb", str(src), str(lake), "--json", "--workers", "1", "--late-days", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["listing"], out["listing_from"]) == ("window", "2024-05-09")
    assert main(["convert", "alb", str(src), str(lake), "--json", "--workers", "1", "--full-listing"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["listing"], out["listing_why"]) == ("full", "asked for with --full-listing")
    assert main(["status", str(lake), "--table", "alb"]) == 0
    text = capsys.readouterr().out
    assert f", run {out['run_id']} (asked for with --full-listing)\n" in text
    assert "  last full listing:   2" in text  # the run's start, from its id
    with pytest.raises(SystemExit) as e:
        main(["convert", "alb", str(src), str(lake), "--late-days", "-1"])
    assert e.value.code == 2
    assert "-1 is not a number of days (0 or more)" in capsys.readouterr().err


def test_config_full_listing_and_late_days(tmp_path, capsys) -> None:
    src, lake = tmp_path / "src", tmp_path / "lake"
    put_local(src, alb_key("us-east-1", "2024-05-10"))
    config = tmp_path / "sources.toml"
    config.write_text(
        f'[[source]]\nformat = "alb"\nsource = "{src}"\ntarget = "{lake}"\ncatalog = "none"\nlate_days = 2\n'
    )
    assert main(["run", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["listing"] == "full"
    assert main(["run", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["listing_from"] == "2024-05-08"
    assert main(["run", "--config", str(config), "--json", "--full-listing"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["listing_why"] == "asked for with --full-listing"
    config.write_text(config.read_text() + "full_listing = true\n")
    assert main(["run", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["listing"] == "full"
    config.write_text(config.read_text().replace("full_listing = true", 'full_listing = "yes"'))
    assert main(["run", "--config", str(config)]) == 2
    assert "source[0].full_listing: must be true or false, not 'yes'" in capsys.readouterr().err
