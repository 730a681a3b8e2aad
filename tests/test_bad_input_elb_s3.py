"""Bad input for the elb and s3_access formats, through the real engine: nothing is lost, nothing is silent."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

import pytest
from conftest import FIXTURES

from servicelogs import formats


@dataclass(frozen=True)
class Case:
    fmt: str
    key: str  # a key of one of the format's layouts
    other_key: str  # a second key of the same layout
    lines: tuple[str, ...]  # real lines (fixtures)
    first_field: str
    min_fields: int
    short_fields: int  # fields in the line's first five pieces


ELB = Case(
    "elb",
    "AWSLogs/123456789012/elasticloadbalancing/us-west-2/2015/05/13/"
    "123456789012_elasticloadbalancing_us-west-2_my-lb_20150513T2340Z_192.0.2.1_20sg8hgm.log",
    "AWSLogs/123456789012/elasticloadbalancing/us-west-2/2015/05/13/"
    "123456789012_elasticloadbalancing_us-west-2_my-lb_20150513T2345Z_192.0.2.1_30sg8hgm.log",
    tuple((FIXTURES / "elb" / "awsdocs-elb-classic-load-balancers-user-guide-examples.log").read_text().splitlines()),
    "timestamp",
    12,
    5,
)
S3 = Case(
    "s3_access",
    "logs/123456789012/us-west-1/amzn-s3-demo-bucket1/2019/02/06/2019-02-06-00-00-38-0A1B2C3D4E5F6A7B",
    "logs/123456789012/us-west-1/amzn-s3-demo-bucket1/2019/02/06/2019-02-06-00-05-38-0A1B2C3D4E5F6A7C",
    tuple(
        (FIXTURES / "s3_access" / "awsdocs-amazon-s3-developer-guide-LogFormat-2019-06-07-2fef737.log")
        .read_text()
        .splitlines()
    ),
    "bucketowner",
    17,
    4,  # the bracketed time is two pieces
)
CASES = pytest.mark.parametrize("case", [ELB, S3], ids=lambda c: c.fmt)


def text(case: Case) -> str:
    return "\n".join(case.lines) + "\n"


@CASES
def test_gzip_objects_and_a_truncated_one_fails_alone(convert, case: Case):
    good = gzip.compress(text(case).encode())
    out = convert(case.fmt, {case.key: good, case.other_key: good[: len(good) // 2]})
    assert out.summary.rows == len(case.lines) and out.summary.objects_failed == 1
    assert out.summary.failed[0].key == out.key(case.other_key) and "decompress" in out.summary.failed[0].reason
    assert {r["source_key"] for r in out.rows} == {out.key(case.key)}


@CASES
def test_gzip_with_a_bad_crc_fails_alone(convert, case: Case):
    bad_crc = bytearray(gzip.compress(text(case).encode()))
    bad_crc[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    out = convert(case.fmt, {case.key: bytes(bad_crc), case.other_key: text(case)})
    assert out.summary.objects_failed == 1 and out.summary.failed[0].key == out.key(case.key)
    assert {r["source_key"] for r in out.rows} == {out.key(case.other_key)}


@CASES
def test_gzip_magic_without_gzip_data_fails_alone(convert, case: Case):
    out = convert(case.fmt, {case.key: b"\x1f\x8bthis is not gzip data\n", case.other_key: text(case)})
    assert out.summary.objects_failed == 1 and out.summary.failed[0].key == out.key(case.key)
    assert out.summary.rows == len(case.lines)


@CASES
def test_empty_and_blank_objects(convert, case: Case):
    out = convert(case.fmt, {case.key: b"", case.other_key: b"\n"})
    assert (out.summary.objects_converted, out.summary.rows, out.summary.objects_failed) == (2, 0, 0)
    assert [(r["line_number"], r["reason"]) for r in out.rejects] == [(1, "empty line")]


@CASES
def test_non_log_keys_are_skipped_and_listed(convert, case: Case):
    out = convert(case.fmt, {case.key: text(case), "README.md": "# notes\n", "AWSLogs/ELBAccessLogTestFile": "x\n"})
    assert out.summary.rows == len(case.lines)
    assert sorted(p.key for p in out.summary.skipped) == [out.key("AWSLogs/ELBAccessLogTestFile"), out.key("README.md")]


def test_elb_enable_access_log_test_line_is_a_named_reject(convert):
    out = convert("elb", {ELB.key: "Enable AccessLog for ELB: my-lb at 2015-05-13T23:39:43.945Z\n" + text(ELB)})
    assert out.summary.rows == len(ELB.lines)
    assert out.rejects[0]["reason"].startswith("the test line ELB writes")


@CASES
def test_crlf_and_no_final_newline(convert, case: Case):
    crlf = "\r\n".join(case.lines)  # CRLF line ends, the last line without one
    out = convert(case.fmt, {case.key: crlf, case.other_key: text(case)})
    assert (out.summary.rows, out.summary.rejects, out.summary.lines) == (2 * len(case.lines), 0, 2 * len(case.lines))
    strip = ("source_key", "run_id")
    by_key = [
        [{k: v for k, v in r.items() if k not in strip} for r in out.rows if r["source_key"] == out.key(key)]
        for key in (case.key, case.other_key)
    ]
    assert by_key[0] == by_key[1]


@CASES
def test_invalid_utf8_rejects_only_that_line(convert, case: Case):
    bad = case.lines[0].encode().replace(b"192.", b"\xff\xfe2.", 1)
    data = b"\n".join([case.lines[0].encode(), bad, *(line.encode() for line in case.lines[1:])]) + b"\n"
    out = convert(case.fmt, {case.key: data})
    assert out.summary.rows == len(case.lines) and out.summary.rejects == 1
    reject = out.rejects[0]
    assert reject["line_number"] == 2 and reject["reason"].startswith("invalid UTF-8 at byte")
    assert "\\xff\\xfe" in reject["raw_line"]


@CASES
def test_a_one_megabyte_line(convert, case: Case):
    big_ua = "A" * (1 << 20)
    ua = "curl/7.38.0" if case.fmt == "elb" else "S3Console/0.4"
    line = case.lines[0].replace(f'"{ua}"', f'"{big_ua}"')
    out = convert(case.fmt, {case.key: f"{case.lines[0]}\n{line}\n{case.lines[1]}\n"})
    assert (out.summary.rows, out.summary.rejects) == (3, 0)
    column = "user_agent" if case.fmt == "elb" else "useragent"
    assert out.rows[1][column] == big_ua and out.rows[2]["line_number"] == 3


@CASES
def test_too_few_fields_is_a_reject_that_says_so(convert, case: Case):
    short = " ".join(case.lines[0].split(" ")[:5])
    out = convert(case.fmt, {case.key: f"{case.lines[0]}\n{short}\n"})
    assert out.summary.rows == 1
    assert out.rejects[0]["line_number"] == 2 and out.rejects[0]["raw_line"] == short
    assert out.rejects[0]["reason"].startswith(
        f"{case.short_fields} fields; a line of {formats.get(case.fmt).title} has at least {case.min_fields}"
    )


@CASES
def test_too_many_fields_are_kept(convert, case: Case):
    longer = case.lines[0] + " later-field-1 later-field-2"
    out = convert(case.fmt, {case.key: f"{longer}\n{case.lines[1]}\n"})
    assert out.summary.rejects == 0
    extra = [r["extra_fields"] for r in out.rows]
    if case.fmt == "elb":
        assert extra == [["later-field-1", "later-field-2"], None]
    else:  # a 24-field line: the next generations' columns take them first
        assert extra == [None, None]
        assert (out.rows[0]["accesspointarn"], out.rows[0]["aclrequired"]) == ("later-field-1", "later-field-2")


@CASES
def test_a_bad_value_names_the_field_and_the_value(convert, case: Case):
    bad = case.lines[0].replace(" 200 ", " 2x0 ", 1)
    out = convert(case.fmt, {case.key: f"{bad}\n{case.lines[1]}\n"})
    assert out.summary.rows == 1
    field = "elb_response_code" if case.fmt == "elb" else "httpstatus"
    assert out.rejects[0]["reason"] == f"field {field!r}: '2x0' is not an integer"


# Arrow's invalid-row callback cannot decode such a row; the block then takes the exact path (as asserted).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_zlib_is_not_gzip(convert):
    # A deflate stream without the gzip magic is read as text: its bytes are invalid UTF-8 lines, each a reject.
    out = convert("elb", {ELB.key: zlib.compress(text(ELB).encode())})
    assert out.summary.rows == 0 and out.summary.rejects == out.summary.lines > 0
