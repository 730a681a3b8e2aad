"""VPC Flow Logs through the real engine: default and custom formats, Transit Gateway, keys, bad input."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import FIXTURES, SAMPLES, shared_sample

FIX = FIXTURES / "vpc_flow"
NAME = "123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20240528T0815Z_fe123456.log.gz"
KEY = f"AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/05/28/{NAME}"
DOC = "awsdocs-amazon-vpc-user-guide-flow-logs-records-examples-"
V2_HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"
)


def epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def fixture(name: str) -> bytes:
    return (FIX / name).read_bytes()


def sample(name: str) -> bytes:
    return shared_sample("vpc_flow", name)


def one(rows: list[dict], line_number: int) -> dict:
    (row,) = [r for r in rows if r["line_number"] == line_number]
    return row


# -- default format (v2, no header) -----------------------------------------------------------------------------


def test_default_format_without_header(convert):
    out = convert("vpc_flow", {KEY: fixture(DOC + "default-v2.log")})
    s = out.summary
    assert (s.lines, s.rows, s.rejects, s.header_lines) == (7, 7, 0, 0)
    assert s.generations == {"2": 7}
    ssh = one(out.rows, 1)
    assert ssh == ssh | {
        "version": 2,
        "account_id": "123456789010",
        "interface_id": "eni-1235b8ca123456789",
        "srcaddr": "172.31.16.139",
        "dstaddr": "172.31.16.21",
        "srcport": 20641,
        "dstport": 22,
        "protocol": 6,
        "packets": 20,
        "bytes": 4249,
        "start": epoch(1418530010),
        "end": epoch(1418530070),
        "action": "ACCEPT",
        "log_status": "OK",
        "vpc_id": None,
        "tcp_flags": None,
        "record_region": None,
        "tgw_id": None,
        "extra_fields": None,
        "log_account_id": "123456789012",
        "region": "us-east-1",
        "year": "2014",
        "month": "12",
        "day": "14",
        "source_key": out.key(KEY),
    }
    for line, status, eni in ((3, "NODATA", "eni-1235b8ca123456789"), (4, "SKIPDATA", "eni-11111111aaaaaaaaa")):
        row = one(out.rows, line)
        assert row == row | {
            "log_status": status,
            "interface_id": eni,
            "srcaddr": None,
            "dstaddr": None,
            "srcport": None,
            "dstport": None,
            "protocol": None,
            "packets": None,
            "bytes": None,
            "action": None,
            "start": epoch(1431280876),
            "end": epoch(1431280934),
        }
    icmp = one(out.rows, 6)
    assert (icmp["protocol"], icmp["srcport"], icmp["dstport"], icmp["action"]) == (1, 0, 0, "REJECT")
    ipv6 = one(out.rows, 7)
    assert (ipv6["srcaddr"], ipv6["dstaddr"], ipv6["bytes"]) == (
        "2001:db8:1234:a100:8d6e:3477:df66:f105",
        "2001:db8:1234:a102:3304:8879:34cf:4071",
        8855,
    )


def test_real_gzipped_delivery_file_with_default_header(convert):
    out = convert("vpc_flow", {KEY: fixture("coralogix-aws-shipper-vpcflow.log.gz")})
    s = out.summary
    assert (s.lines, s.rows, s.rejects, s.header_lines) == (3, 2, 0, 1)
    assert s.generations == {"2": 2}
    row = one(out.rows, 3)
    assert (row["interface_id"], row["dstaddr"], row["bytes"], row["start"]) == (
        "eni-abc123de",
        "172.31.9.21",
        5060,
        epoch(1418530010),
    )


# -- custom formats: the header decides -------------------------------------------------------------------------


def test_v3_custom_order_with_tcp_flags(convert):
    out = convert("vpc_flow", {KEY: fixture(DOC + "custom-v3-tcp-flags.log")})
    s = out.summary
    assert (s.lines, s.rows, s.rejects, s.header_lines) == (9, 7, 1, 1)
    row = one(out.rows, 2)
    assert row == row | {
        "version": 3,
        "vpc_id": "vpc-abcdefab012345678",
        "subnet_id": "subnet-aaaaaaaa012345678",
        "instance_id": "i-01234567890123456",
        "interface_id": "eni-1235b8ca123456789",
        "account_id": "123456789010",
        "type": "IPv4",
        "srcaddr": "52.213.180.42",
        "dstaddr": "10.0.0.62",
        "srcport": 43416,
        "dstport": 5001,
        "pkt_srcaddr": "52.213.180.42",
        "pkt_dstaddr": "10.0.0.62",
        "protocol": 6,
        "bytes": 568,
        "packets": 8,
        "start": epoch(1566848875),
        "end": epoch(1566848933),
        "action": "ACCEPT",
        "tcp_flags": 2,
        "log_status": "OK",
        "extra_fields": None,
    }
    assert [one(out.rows, n)["tcp_flags"] for n in (3, 6, 8)] == [18, 1, 3]
    # The doc's line 9 holds a double space: an empty token shifts the rest, and the shift is caught, not kept.
    (reject,) = out.rejects
    assert (reject["line_number"], reject["reason"]) == (
        9,
        "two spaces after field 11 (dstport): field 'protocol': '52.213.180.42' is not an integer",
    )


def test_v5_fields_in_a_non_default_order(convert):
    out = convert("vpc_flow", {KEY: fixture(DOC + "custom-v5-traffic-path.log")})
    assert (out.summary.rows, out.summary.rejects) == (2, 0)
    assert out.summary.generations == {"5 custom (29 fields)": 2}
    ingress, egress = one(out.rows, 2), one(out.rows, 3)
    assert ingress == ingress | {
        "version": 5,
        "srcaddr": "52.95.128.179",
        "dstaddr": "10.0.0.71",
        "srcport": 80,
        "dstport": 34210,
        "start": epoch(1616729292),
        "end": epoch(1616729349),
        "type": "IPv4",
        "packets": 14,
        "bytes": 15044,
        "account_id": "123456789012",
        "instance_id": "i-0c50d5961bcb2d47b",
        "record_region": "ap-southeast-2",
        "az_id": "apse2-az3",
        "sublocation_type": None,
        "sublocation_id": None,
        "tcp_flags": 19,
        "pkt_src_aws_service": "S3",
        "pkt_dst_aws_service": None,
        "traffic_path": None,
        "flow_direction": "ingress",
        "log_status": "OK",
        "region": "us-east-1",  # the partition, from the key
    }
    assert (egress["traffic_path"], egress["flow_direction"], egress["pkt_dst_aws_service"]) == (8, "egress", "S3")


def test_v7_ecs_fields(convert):
    out = convert("vpc_flow", {KEY: fixture("otel-collector-contrib-awslogsencoding-valid_vpc_flow_log_ecs.log")})
    row = one(out.rows, 2)
    assert row == row | {
        "version": 5,
        "packets": 15,
        "bytes": 3500,
        "ecs_cluster_arn": "arn:aws:ecs:us-east-1:123456789012:cluster/my-cluster",
        "ecs_cluster_name": "my-cluster",
        "ecs_container_instance_id": "abcdef1234567890",
        "ecs_container_id": "container-1",
        "ecs_second_container_id": "container-2",
        "ecs_service_name": "my-service",
        "ecs_task_definition_arn": "arn:aws:ecs:us-east-1:123456789012:task-definition/my-task:1",
        "ecs_task_arn": "arn:aws:ecs:us-east-1:123456789012:task/my-cluster/abcdef",
        "ecs_task_id": "abcdef1234567890",
        "extra_fields": None,
    }


def test_transit_gateway_flow_log(convert):
    out = convert("vpc_flow", {KEY: fixture("otel-collector-contrib-awslogsencoding-valid_tgw_flow_log.log")})
    assert (out.summary.rows, out.summary.rejects, out.summary.header_lines) == (1, 0, 1)
    assert out.summary.generations == {"tgw custom (31 fields)": 1}
    row = out.rows[0]
    assert row == row | {
        "version": 6,
        "account_id": "123456789012",
        "tgw_id": "tgw-0abc12345def67890",
        "tgw_attachment_id": "tgw-attach-0abc12345def67890",
        "tgw_src_vpc_id": "vpc-0abc12345def67890",
        "tgw_dst_subnet_id": "subnet-0def12345abc67890",
        "tgw_src_eni": "eni-0abc12345def67890",
        "tgw_dst_az_id": "use1-az2",
        "tgw_pair_attachment_id": "tgw-attach-0def12345abc67890",
        "srcport": 12345,
        "dstport": 443,
        "packets": 10,
        "bytes": 1000,
        "packets_lost_no_route": 1,
        "packets_lost_blackhole": 2,
        "packets_lost_mtu_exceeded": 3,
        "packets_lost_ttl_expired": 4,
        "start": epoch(1700000000),
        "end": epoch(1700000060),
        "log_status": "OK",
        "type": "IPv4",
        "tcp_flags": 2,
        "flow_direction": "ingress",
        "record_region": "us-east-1",
        "interface_id": None,
    }


def test_custom_format_without_start_is_partitioned_by_the_key_date(convert):
    out = convert("vpc_flow", {KEY: fixture(DOC + "custom-nat-gateway.log")})
    s = out.summary
    assert (s.lines, s.rows, s.rejects, s.header_lines) == (7, 6, 0, 1)
    first = one(out.rows, 2)
    assert first == first | {
        "instance_id": None,
        "interface_id": "eni-1235b8ca123456789",
        "srcaddr": "10.0.1.5",
        "dstaddr": "10.0.0.220",
        "pkt_srcaddr": "10.0.1.5",
        "pkt_dstaddr": "203.0.113.5",
        "start": None,
        "version": None,
        "year": "2024",
        "month": "05",
        "day": "28",
    }
    # The doc annotates two records with a trailing comment: values past the header are kept, not rejected.
    assert one(out.rows, 6)["extra_fields"] == [
        "#Traffic",
        "from",
        "the",
        "source",
        "instance",
        "to",
        "host",
        "on",
        "the",
        "internet",
    ]


@pytest.mark.parametrize("case", json.loads(fixture("vectordotdev-vrl-parse_aws_vpc_flow_log.cases.json")))
def test_vectordotdev_vrl_cases(convert, case: dict):
    """vrl's oracle (MPL-2.0): its format strings use underscores where AWS headers use hyphens."""
    content = case["input"] + "\n"
    if case["format"]:
        content = case["format"].replace("_", "-") + "\n" + content
    out = convert("vpc_flow", {KEY: content})
    assert (out.summary.rows, out.summary.rejects) == (1, 0)
    row = out.rows[0]
    for name, value in case["expected"].items():
        column = "record_region" if name == "region" else name
        expected = epoch(value) if name in ("start", "end") and value is not None else value
        assert row[column] == expected, name


def test_v11_fields(convert):
    header = "version srcaddr dstaddr srcport dstport protocol start end action log-status reject-reason resource-id"
    header += " encryption-status interface-type"
    line = (
        "11 10.0.0.71 52.95.128.179 34210 80 6 1616729292 1616729349 REJECT OK BPA nat-0c50d5961bcb2d47b 1 nat_gateway"
    )
    row = convert("vpc_flow", {KEY: f"{header}\n{line}\n"}).rows[0]
    assert (row["reject_reason"], row["resource_id"], row["encryption_status"], row["interface_type"]) == (
        "BPA",
        "nat-0c50d5961bcb2d47b",
        1,
        "nat_gateway",
    )


def test_an_unknown_header_field_rejects_its_lines_naming_it(convert):
    content = fixture("otel-collector-contrib-awslogsencoding-valid_vpc_flow_log_multi.log").decode()
    content = content.replace("interface-id", "interface-idd", 1)
    out = convert("vpc_flow", {KEY: content})
    assert (out.summary.rows, out.summary.rejects, out.summary.header_lines) == (0, 2, 1)
    assert {r["reason"] for r in out.rejects} == {
        "the object's header names 'interface-idd', not a known vpc_flow field: its columns cannot be placed"
    }


def test_a_header_naming_a_field_twice_rejects_its_lines(convert):
    content = fixture("otel-collector-contrib-awslogsencoding-valid_vpc_flow_log_multi.log").decode()
    out = convert("vpc_flow", {KEY: content.replace("dstport", "srcport", 1)})
    assert {r["reason"] for r in out.rejects} == {"the object's header names 'srcport' more than once"}
    assert (out.summary.rows, out.summary.rejects) == (0, 2)


def test_a_later_header_in_the_same_object_changes_the_order(convert):
    default = fixture(DOC + "default-v2.log").decode().splitlines()[0]
    custom = fixture(DOC + "custom-v5-traffic-path.log").decode()
    out = convert("vpc_flow", {KEY: f"{V2_HEADER}\n{default}\n\n{custom}"})
    s = out.summary
    assert (s.lines, s.rows, s.rejects, s.header_lines) == (6, 3, 1, 2)
    assert out.rejects[0]["reason"] == "empty line"
    assert [r["version"] for r in out.rows] == [2, 5, 5]
    assert one(out.rows, 5)["az_id"] == "apse2-az3"


# -- keys ----------------------------------------------------------------------------------------------------------


def test_key_layouts(convert):
    content = fixture("otel-collector-contrib-awslogsencoding-valid_vpc_flow_log_multi.log")
    hourly = f"AWSLogs/111111111111/vpcflowlogs/eu-west-1/2024/05/28/08/{NAME.replace('123456789012', '111111111111')}"
    hive = (
        "AWSLogs/aws-account-id=222222222222/aws-service=vpcflowlogs/aws-region=ap-south-1/year=2024/month=05/"
        f"day=28/hour=08/{NAME.replace('123456789012', '222222222222')}"
    )
    flat = "exports/333333333333_vpcflowlogs_sa-east-1_fl-0a1b2c3d_20240528T0815Z_0123abcd.log"
    out = convert(
        "vpc_flow",
        {hourly: content, hive: content, flat: content, "AWSLogs/123456789012/vpcflowlogs/notes.txt": content},
    )
    assert out.summary.objects_skipped == 1
    got = {(r["source_key"], r["log_account_id"], r["region"]) for r in out.rows}
    assert got == {
        (out.key(hourly), "111111111111", "eu-west-1"),
        (out.key(hive), "222222222222", "ap-south-1"),
        (out.key(flat), "333333333333", "sa-east-1"),
    }


# -- bad input -------------------------------------------------------------------------------------------------------


def test_header_only_object(convert):
    out = convert("vpc_flow", {KEY: V2_HEADER + "\n"})
    s = out.summary
    assert (s.objects_converted, s.lines, s.rows, s.rejects, s.header_lines) == (1, 1, 0, 0, 1)


def test_too_few_and_too_many_fields(convert):
    out = convert(
        "vpc_flow",
        {
            KEY: fixture("otel-collector-contrib-awslogsencoding-vpc_flow_log_too_few_fields.log"),
            KEY.replace("fe123456", "fe654321"): fixture(
                "otel-collector-contrib-awslogsencoding-vpc_flow_log_too_many_fields.log"
            ),
        },
    )
    assert [r["reason"] for r in out.rejects] == ["13 fields; the object's header names 14"]
    (row,) = out.rows
    assert (row["log_status"], row["extra_fields"], row["account_id"]) == ("NODATA", ["one-too-many"], "12345678910")


def test_corrupt_gzip_crlf_and_invalid_utf8(convert):
    good = fixture(DOC + "default-v2.log")
    out = convert(
        "vpc_flow",
        {
            KEY: gzip.compress(good.replace(b"\n", b"\r\n")),
            KEY.replace("fe123456", "fe000001"): gzip.compress(good)[:40],
            KEY.replace("fe123456", "fe000002"): V2_HEADER.encode() + b"\n2 12345\xff 1 2 3 4 5 6 7 8 9 10 11 12\n",
            KEY.replace("fe123456", "fe000003"): b"",
        },
    )
    s = out.summary
    assert (s.objects_converted, s.objects_failed, s.rows, s.rejects) == (3, 1, 7, 1)
    assert out.rejects[0]["reason"].startswith("invalid UTF-8 at byte")
    assert one(out.rows, 7)["bytes"] == 8855 and one(out.rows, 7)["log_status"] == "OK"


def test_cloudwatch_exports_and_trailing_junk_real_lines(convert):
    out = convert(
        "vpc_flow",
        {
            KEY: sample("github-issues-real-lines.log"),
            KEY.replace("fe123456", "fe000009"): sample("panther-labs-panther-vpc_flow_test.go.log"),
        },
    )
    # CloudWatch Logs exports put their own timestamp first: the shift is caught on `version`.
    assert {r["reason"].split(":")[0] for r in out.rejects} == {"field 'version'"}
    assert out.summary.rejects == 5
    rows = [r for r in out.rows if "fe000009" in r["source_key"]]
    assert [r["extra_fields"][-1] for r in rows[:2]] == ["extra-data-should-not-break"] * 2
    assert (rows[2]["account_id"], rows[2]["log_status"]) == ("unknown", "NODATA")


# -- every line of every sample file is a row, a reject with an expected reason, or a header line --------------------

EXPECTED = {  # file: (rows, rejects, header lines, reasons)
    DOC + "custom-nat-gateway.log": (6, 0, 1, set()),
    DOC + "custom-transit-gateway.log": (4, 0, 1, set()),
    DOC + "custom-v3-tcp-flags.log": (
        7,
        1,
        1,
        {"two spaces after field 11 (dstport): field 'protocol': '52.213.180.42' is not an integer"},
    ),
    DOC + "custom-v5-traffic-path.log": (2, 0, 1, set()),
    DOC + "default-v2.log": (7, 0, 0, set()),
    "coralogix-aws-shipper-vpcflow.log.gz": (2, 0, 1, set()),
    "github-issues-real-lines.log": (
        0,
        5,
        0,
        {f"field 'version': '2018-09-22T20:{t}.000Z' is not an integer" for t in ("28:14", "28:39", "28:40", "29:12")},
    ),
    "otel-collector-contrib-awslogsencoding-valid_tgw_flow_log.log": (1, 0, 1, set()),
    "otel-collector-contrib-awslogsencoding-valid_vpc_flow_cw_custom.json": (
        0,
        1,
        0,
        {"a JSON document (a CloudWatch Logs subscription payload?), not a flow log record"},
    ),
    "otel-collector-contrib-awslogsencoding-valid_vpc_flow_log.log": (1, 0, 1, set()),
    "otel-collector-contrib-awslogsencoding-valid_vpc_flow_log_ecs.log": (1, 0, 1, set()),
    "otel-collector-contrib-awslogsencoding-valid_vpc_flow_log_multi.log": (2, 0, 1, set()),
    "otel-collector-contrib-awslogsencoding-vpc_flow_log_too_few_fields.log": (
        0,
        1,
        1,
        {"13 fields; the object's header names 14"},
    ),
    "otel-collector-contrib-awslogsencoding-vpc_flow_log_too_many_fields.log": (1, 0, 1, set()),
    "panther-labs-panther-vpc_flow_test.go.log": (3, 0, 0, set()),
}
NOT_LOGS = ("vectordotdev-vrl-parse_aws_vpc_flow_log.cases.json", "github-issues-real-lines.sources.tsv", "README.md")


def _sample_files() -> list[Path]:
    folder = SAMPLES / "vpc_flow" if (SAMPLES / "vpc_flow").is_dir() else FIX
    return sorted(p for p in folder.iterdir() if p.name not in NOT_LOGS)


@pytest.mark.parametrize("path", _sample_files(), ids=lambda p: p.name)
def test_every_line_of_every_sample_is_accounted_for(convert, path: Path):
    assert path.name in EXPECTED, f"new sample file {path.name}: add its expected outcome"
    rows, rejects, headers, reasons = EXPECTED[path.name]
    data = path.read_bytes()
    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    out = convert("vpc_flow", {KEY: data})
    s = out.summary
    assert s.lines == len(text.splitlines())
    assert (s.rows, s.rejects, s.header_lines) == (rows, rejects, headers)
    assert s.lines == s.rows + s.rejects + s.header_lines
    assert {r["reason"] for r in out.rejects} == reasons


@pytest.mark.parametrize("ending", [b"\n", b""])
def test_the_header_holds_across_blocks(convert, monkeypatch, ending):
    """Tiny blocks, each holding a line or two: the header's order carries over from block to block, and each
    block's lines are counted by its tokenizer as it reads them, the last one with or without its newline."""
    from servicelogs.engines import arrow_parse, header_parse
    from servicelogs.sources import line_blocks

    monkeypatch.setattr(arrow_parse, "SMALL_OBJECT_BYTES", 0)  # streamed in blocks, not read whole
    monkeypatch.setattr(arrow_parse, "line_blocks", lambda stream, key: line_blocks(stream, key, block_size=100))
    blocks = []
    original = header_parse.HeaderDelimitedParser.parse_block
    monkeypatch.setattr(
        header_parse.HeaderDelimitedParser, "parse_block", lambda self, b, n: blocks.append(b) or original(self, b, n)
    )
    out = convert("vpc_flow", {KEY: fixture(DOC + "custom-v3-tcp-flags.log").rstrip(b"\n") + ending})
    assert len(blocks) >= 5 and blocks[-1].endswith(b"\n") == bool(ending)
    s = out.summary
    assert (s.lines, s.rows, s.rejects, s.header_lines) == (9, 7, 1, 1)
    assert [r["line_number"] for r in out.rows] == [2, 3, 4, 5, 6, 7, 8]
    assert [r["tcp_flags"] for r in out.rows] == [2, 18, 2, 18, 1, 1, 3]
    assert out.rejects[0]["line_number"] == 9


def test_header_with_stray_spaces_is_still_a_header(convert):
    content = fixture(DOC + "custom-v5-traffic-path.log").decode()
    header, rest = content.split("\n", 1)
    out = convert("vpc_flow", {KEY: header.replace(" ", "  ", 3) + " \r\n" + rest})
    assert (out.summary.rows, out.summary.rejects, out.summary.header_lines) == (2, 0, 1)
    assert one(out.rows, 2)["pkt_src_aws_service"] == "S3"


def test_epoch_milliseconds_are_typed_and_out_of_range_values_are_rejects(convert):
    """Issue 11: a SKIPDATA record with epoch milliseconds crashed the whole run (OverflowError in the partition
    path) and wrote nothing. Milliseconds are typed as such; values no reader holds are rejects naming the field."""
    ms = "2 123456789010 eni-4b118871 - - - - - - - 1512564058000 1512564059000 - SKIPDATA"
    seconds = "2 123456789010 eni-4b118871 - - - - - - - 1512564058 1512564059 - SKIPDATA"
    too_far = "2 123456789010 eni-4b118871 - - - - - - - 99999999999999999 1512564059 - SKIPDATA"
    port = "2 123456789010 eni-4b118871 - - 99999999999 - - - - 1512564058 1512564059 - SKIPDATA"
    out = convert("vpc_flow", {KEY: "\n".join([ms, seconds, too_far, port]) + "\n"})
    assert (out.summary.rows, out.summary.rejects, out.summary.objects_failed) == (2, 2, 0)
    assert [(r["line_number"], r["start"], r["end"], r["day"]) for r in out.rows] == [
        (
            1,
            datetime(2017, 12, 6, 12, 40, 58, tzinfo=timezone.utc),
            datetime(2017, 12, 6, 12, 40, 59, tzinfo=timezone.utc),
            "06",
        ),
        (
            2,
            datetime(2017, 12, 6, 12, 40, 58, tzinfo=timezone.utc),
            datetime(2017, 12, 6, 12, 40, 59, tzinfo=timezone.utc),
            "06",
        ),
    ]
    assert [(r["line_number"], r["reason"]) for r in out.rejects] == [
        (3, "field 'start': '99999999999999999' is not a date and time of the years 1 to 9999"),
        (4, "field 'srcport': '99999999999' is outside the 32-bit integer range"),
    ]
