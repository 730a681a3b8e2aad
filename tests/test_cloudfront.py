"""CloudFront standard logs through the real engine: real lines of every field generation, headers, bad input."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import FIXTURES, SAMPLES, shared_sample

from servicelogs.formats import cloudfront

FIX = FIXTURES / "cloudfront"
KEY = "logs/cf/E2EXAMPLE1.2019-12-04-21.a1b2c3d4"
NAMES = [t.name for t in cloudfront.TOKENS]
DOC_2020 = "awsdocs-amazon-cloudfront-developer-guide-AccessLogs-web-2020-01-28-4a03911.log"
UA_2019 = (
    "Mozilla/5.0%20(Windows%20NT%2010.0;%20Win64;%20x64)%20AppleWebKit/537.36%20(KHTML,%20like%20Gecko)"
    "%20Chrome/78.0.3904.108%20Safari/537.36"
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def fixture(name: str) -> bytes:
    return (FIX / name).read_bytes()


def sample(name: str) -> bytes:
    return shared_sample("cloudfront", name)


def header(names: list[str]) -> str:
    return "#Version: 1.0\n#Fields: " + " ".join(names) + "\n"


def data_lines(content: bytes) -> list[str]:
    return [line for line in content.decode().splitlines() if not line.startswith("#")]


def one(rows: list[dict], line_number: int) -> dict:
    (row,) = [r for r in rows if r["line_number"] == line_number]
    return row


# -- generations: exact typed values from real lines ------------------------------------------------------


def test_33_fields_with_header(convert):
    out = convert("cloudfront", {KEY: fixture(DOC_2020)})
    s = out.summary
    assert (s.lines, s.rows, s.rejects, s.header_lines) == (8, 6, 0, 2)
    assert s.generations == {"33": 6}
    first = one(out.rows, 3)
    assert first == first | {
        "time": utc(2019, 12, 4, 21, 2, 31),
        "location": "LAX1",
        "bytes": 392,
        "request_ip": "192.0.2.100",
        "method": "GET",
        "host": "d111111abcdef8.cloudfront.net",
        "uri": "/index.html",
        "status": 200,
        "referrer": None,
        "user_agent": UA_2019,
        "query_string": None,
        "cookie": None,
        "result_type": "Hit",
        "request_id": "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==",
        "host_header": "d111111abcdef8.cloudfront.net",
        "request_protocol": "https",
        "request_bytes": 23,
        "time_taken": 0.001,
        "forwarded_for": None,
        "ssl_protocol": "TLSv1.2",
        "ssl_cipher": "ECDHE-RSA-AES128-GCM-SHA256",
        "response_result_type": "Hit",
        "http_version": "HTTP/2.0",
        "fle_status": None,
        "fle_encrypted_fields": None,
        "c_port": 11040,
        "time_to_first_byte": 0.001,
        "x_edge_detailed_result_type": "Hit",
        "sc_content_type": "text/html",
        "sc_content_len": 78,
        "sc_range_start": None,
        "sc_range_end": None,
        "extra_fields": None,
        "distribution_id": "E2EXAMPLE1",
        "source_key": out.key(KEY),
        "year": "2019",
        "month": "12",
        "day": "04",
    }
    # AWS's own example ends line 5 with an extra tab: an appended (empty) field, kept, not a reject.
    assert one(out.rows, 5)["extra_fields"] == [""]
    last = one(out.rows, 8)
    assert (last["status"], last["user_agent"], last["c_port"], last["x_edge_detailed_result_type"]) == (
        502,
        "curl/7.55.1",
        12644,
        "OriginDnsError",
    )
    assert {(r["year"], r["month"], r["day"]) for r in out.rows} == {("2019", "12", "04"), ("2019", "12", "13")}


def test_real_gzipped_delivery_file(convert):
    out = convert("cloudfront", {"E1EXAMPLE.2024-01-08-16.x1y2z3.gz": fixture("coralogix-aws-shipper-cloudfront.gz")})
    assert (out.summary.rows, out.summary.rejects, out.summary.header_lines) == (4, 0, 2)
    row = one(out.rows, 3)
    assert (row["time"], row["location"], row["bytes"], row["status"], row["ssl_protocol"], row["http_version"]) == (
        utc(2024, 1, 8, 16, 56, 53),
        "EZE50-P2",
        780,
        502,
        "TLSv1.3",
        "HTTP/2.0",
    )


def test_double_encoded_user_agent_kept_as_written(convert):
    out = convert(
        "cloudfront", {KEY: fixture("awsdocs-amazon-cloudfront-developer-guide-AccessLogs-web-2019-12-20-1a74ec8.log")}
    )
    assert out.summary.rows == 6
    assert one(out.rows, 3)["user_agent"].startswith("Mozilla/5.0%2520(Windows%2520NT%252010.0;")


def test_23_fields_without_header(convert):
    out = convert("cloudfront", {KEY: fixture("logstash-patterns-core-aws_spec.log")})
    assert (out.summary.rows, out.summary.rejects, out.summary.header_lines) == (2, 0, 0)
    assert out.summary.generations == {"23": 1, "33": 1}
    row = one(out.rows, 1)
    assert row == row | {
        "time": utc(2016, 6, 10, 18, 41, 39),
        "bytes": 224281,
        "referrer": "https://example.com/",
        "request_bytes": 883,
        "time_taken": 0.036,
        "ssl_protocol": "TLSv1.2",
        "response_result_type": "RefreshHit",
        "http_version": None,
        "c_port": None,
    }


def test_24_fields_without_header(convert):
    out = convert("cloudfront", {KEY: fixture("dpetzold-aws-log-parser-cloudfront_entry2.csv")})
    assert out.summary.generations == {"24": 1}
    row = one(out.rows, 1)
    assert row == row | {
        "time": utc(2014, 5, 23, 1, 13, 12),
        "location": "LAX1",
        "bytes": 2390282,
        "status": 304,
        "query_string": "a=b&c=d",
        "cookie": "zip=98101",
        "request_bytes": None,
        "time_taken": 0.002,
        "http_version": "HTTP/1.1",
        "fle_status": None,
    }


def test_18_and_19_field_headers_real_2014_files(convert):
    out = convert(
        "cloudfront",
        {
            "a/E18.2014-04-28-09.aaaa": sample("github-issue-goaccess-108.log"),
            "b/E19.2014-07-21-01.bbbb": sample("github-issue-matomo-log-analytics-27.log"),
        },
    )
    assert out.summary.generations == {"18": 1, "19": 1}
    r18, r19 = out.rows
    assert (r18["status"], r18["bytes"], r18["request_bytes"], r18["time_taken"]) == (206, 1658497, 827, None)
    assert r18["time"] == utc(2014, 4, 28, 9, 59, 49)
    assert (r19["status"], r19["result_type"], r19["time_taken"], r19["distribution_id"]) == (
        301,
        "Redirect",
        0.0,
        "E19",
    )


def test_26_field_header(convert):
    out = convert("cloudfront", {KEY: sample("matomo-log-analytics-amazon_cloudfront_web.log")})
    assert out.summary.generations == {"26": 1}
    row = out.rows[0]
    assert (row["fle_status"], row["fle_encrypted_fields"], row["c_port"], row["request_bytes"]) == (
        None,
        None,
        None,
        217,
    )


# -- the header decides -----------------------------------------------------------------------------------


def test_several_header_blocks_in_one_object(convert):
    block_24 = header(NAMES[:24]) + fixture("dpetzold-aws-log-parser-cloudfront_entry2.csv").decode()
    out = convert("cloudfront", {KEY: fixture(DOC_2020).decode() + block_24})
    s = out.summary
    assert (s.lines, s.rows, s.rejects, s.header_lines) == (11, 7, 0, 4)
    assert s.generations == {"33": 6, "24": 1}
    assert one(out.rows, 11)["query_string"] == "a=b&c=d"


def test_any_order_of_the_header(convert):
    line = data_lines(fixture(DOC_2020))[0].split("\t")
    order = list(reversed(range(33)))
    content = header([NAMES[i] for i in order]) + "\t".join(line[i] for i in order) + "\n"
    reordered = convert("cloudfront", {KEY: content}).rows[0]
    assert reordered["time"] == utc(2019, 12, 4, 21, 2, 31)
    assert (reordered["user_agent"], reordered["c_port"], reordered["request_id"]) == (
        UA_2019,
        11040,
        "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==",
    )


def test_header_names_unknown_to_the_declaration_go_to_extra_fields(convert):
    line = data_lines(fixture(DOC_2020))[0].split("\t")
    names = [*NAMES[:5], "x-new-thing", *NAMES[5:], "asn"]
    values = [*line[:5], "new", *line[5:], "16509"]
    out = convert("cloudfront", {KEY: header(names) + "\t".join(values) + "\n"})
    row = out.rows[0]
    assert (row["request_ip"], row["method"], row["sc_range_end"]) == ("192.0.2.100", "GET", None)
    assert row["extra_fields"] == ["new", "16509"]
    assert out.summary.extra_field_rows == 1


def test_rtmp_distribution_logs_are_rejects_that_say_so(convert):
    out = convert(
        "cloudfront", {KEY: fixture("awsdocs-amazon-cloudfront-developer-guide-AccessLogs-rtmp-2019-12-12-9e9a209.log")}
    )
    assert (out.summary.rows, out.summary.rejects, out.summary.header_lines) == (0, 6, 2)
    assert {r["reason"] for r in out.rejects} == {
        "a CloudFront RTMP distribution log line (x-event/x-sname fields), not a web distribution log line"
    }


def test_header_only_object(convert):
    out = convert("cloudfront", {KEY: header(NAMES)})
    assert (out.summary.lines, out.summary.rows, out.summary.rejects, out.summary.header_lines) == (2, 0, 0, 2)
    assert out.summary.objects_converted == 1


# -- keys ---------------------------------------------------------------------------------------------------


def test_distribution_id_from_the_key_and_non_log_keys_skipped(convert):
    content = fixture("dpetzold-aws-log-parser-cloudfront_entry.csv")
    out = convert(
        "cloudfront",
        {
            "prefix/EMLARXS9EXAMPLE.2014-05-23-01.RT4KCN4S.gz": gzip.compress(content),
            "prefix/notes.txt": content,
            "cf-logs-E2OTHER.2014-05-23-01.abcd.gz": gzip.compress(content),
            "prefix/EMLARXS9EXAMPLE.2014-05-23-01.RT4KCN4S.gz.tmp": content,
        },
    )
    assert out.summary.objects_skipped == 2
    assert [r["distribution_id"] for r in out.rows] == ["E2OTHER", "EMLARXS9EXAMPLE"]
    parts = {
        p.relative_to(out.target / "cloudfront").parent.as_posix() for p in out.target.rglob("cloudfront/**/*.parquet")
    }
    assert parts == {"year=2014/month=05/day=23"}


# -- bad input -----------------------------------------------------------------------------------------------


def test_truncated_gzip_fails_alone_and_empty_object_is_fine(convert):
    good = fixture(DOC_2020)
    out = convert(
        "cloudfront",
        {
            "E1.2019-12-04-21.aaaa.gz": gzip.compress(good),
            "E2.2019-12-04-21.bbbb.gz": gzip.compress(good)[:-30],
            "E3.2019-12-04-21.cccc.gz": b"",
        },
    )
    s = out.summary
    assert (s.objects_converted, s.objects_failed, s.rows) == (2, 1, 6)
    assert s.failed[0].key == out.key("E2.2019-12-04-21.bbbb.gz") and "decompress" in s.failed[0].reason
    assert {r["source_key"] for r in out.rows} == {out.key("E1.2019-12-04-21.aaaa.gz")}


def test_crlf_lines_parse_like_lf(convert):
    crlf = fixture(DOC_2020).replace(b"\n", b"\r\n")
    out = convert("cloudfront", {KEY: crlf})
    assert (out.summary.rows, out.summary.rejects, out.summary.header_lines) == (6, 0, 2)
    assert one(out.rows, 8)["sc_range_end"] is None and one(out.rows, 8)["sc_content_len"] == 507


def test_invalid_utf8_long_line_too_few_and_too_many_fields(convert):
    lines = data_lines(fixture(DOC_2020))
    long_ua = lines[0].replace(UA_2019, "A" * (1 << 20))
    bad_utf8 = lines[1].encode().replace(b"/index.html", b"/ind\xffex.html")
    too_few = "\t".join(lines[2].split("\t")[:10])
    too_many = lines[3] + "\tnew1\tnew2"
    content = header(NAMES).encode() + b"\n".join([long_ua.encode(), bad_utf8, too_few.encode(), too_many.encode()])
    out = convert("cloudfront", {KEY: content})
    s = out.summary
    assert (s.lines, s.rows, s.rejects, s.header_lines) == (6, 2, 2, 2)
    assert len(one(out.rows, 3)["user_agent"]) == 1 << 20
    assert one(out.rows, 6)["extra_fields"] == ["new1", "new2"]
    reasons = {r["line_number"]: r["reason"] for r in out.rejects}
    assert reasons[4].startswith("invalid UTF-8 at byte")
    assert reasons[5] == "10 fields; the object's header names 33"
    assert one_reject(out.rejects, 4)["raw_line"].startswith("2019-12-04\t21:02:31")


def one_reject(rejects: list[dict], line_number: int) -> dict:
    (r,) = [r for r in rejects if r["line_number"] == line_number]
    return r


def test_bad_values_name_field_and_value(convert):
    bad_status = data_lines(fixture(DOC_2020))[0].split("\t")
    bad_status[8] = "2OO"
    bad_time = data_lines(fixture(DOC_2020))[1].split("\t")
    bad_time[1] = "25:61:00"
    content = header(NAMES) + "\t".join(bad_status) + "\n" + "\t".join(bad_time) + "\n"
    out = convert("cloudfront", {KEY: content})
    assert (out.summary.rows, out.summary.rejects) == (0, 2)
    assert [r["reason"] for r in out.rejects] == [
        "field 'status': '2OO' is not an integer",
        "field 'time': '2019-12-04 25:61:00' is not a timestamp",
    ]


# -- every line of every sample file is a row, a reject with an expected reason, or a header line --------------

RTMP = "a CloudFront RTMP distribution log line (x-event/x-sname fields), not a web distribution log line"
EXPECTED = {  # file: (rows, rejects, header lines, reasons)
    "awsdocs-amazon-cloudfront-developer-guide-AccessLogs-rtmp-2019-12-12-9e9a209.log": (0, 6, 2, {RTMP}),
    # the doc page lost its tabs (single spaces): one token per line under a 26-name header
    "awsdocs-amazon-cloudfront-developer-guide-AccessLogs-web-2018-01-24-2084580.log": (
        0,
        2,
        2,
        {"1 fields; the object's header names 26"},
    ),
    "awsdocs-amazon-cloudfront-developer-guide-AccessLogs-web-2019-12-20-1a74ec8.log": (6, 0, 2, set()),
    DOC_2020: (6, 0, 2, set()),
    "coralogix-aws-shipper-cloudfront.gz": (4, 0, 2, set()),
    "crowdsecurity-hub-aws-cloudfront-logs.log": (2, 0, 0, set()),
    "dpetzold-aws-log-parser-cloudfront-multiple.log": (6, 0, 2, set()),
    "dpetzold-aws-log-parser-cloudfront_entry.csv": (1, 0, 0, set()),
    "dpetzold-aws-log-parser-cloudfront_entry2.csv": (1, 0, 0, set()),
    "dpetzold-aws-log-parser-cloudfront_entry_broken_cookie.csv": (1, 0, 0, set()),
    "dpetzold-aws-log-parser-cloudfront_entry_cookie_with_encoding.csv": (1, 0, 0, set()),
    "github-issue-aws-waf-security-automations-188.log": (1, 0, 0, set()),
    "github-issue-goaccess-108.log": (1, 0, 2, set()),
    "github-issue-matomo-log-analytics-27.log": (1, 0, 2, set()),
    "logstash-patterns-core-aws_spec.log": (2, 0, 0, set()),
    "matomo-log-analytics-amazon_cloudfront_rtmp.log": (0, 2, 2, {RTMP}),
    "matomo-log-analytics-amazon_cloudfront_web.log": (1, 0, 2, set()),
}


def _sample_files() -> list[Path]:
    folder = SAMPLES / "cloudfront" if (SAMPLES / "cloudfront").is_dir() else FIX
    return sorted(p for p in folder.iterdir() if p.name in EXPECTED or not p.name.endswith((".json", ".md")))


@pytest.mark.parametrize("path", _sample_files(), ids=lambda p: p.name)
def test_every_line_of_every_sample_is_accounted_for(convert, path: Path):
    assert path.name in EXPECTED, f"new sample file {path.name}: add its expected outcome"
    rows, rejects, headers, reasons = EXPECTED[path.name]
    data = path.read_bytes()
    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    out = convert("cloudfront", {f"E9SAMPLE.2020-01-01-00.{abs(hash(path.name)) % 10**8}": data})
    s = out.summary
    assert s.lines == len(text.splitlines())
    assert (s.rows, s.rejects, s.header_lines) == (rows, rejects, headers)
    assert s.lines == s.rows + s.rejects + s.header_lines
    assert {r["reason"] for r in out.rejects} == reasons
    assert len(out.rows) == rows


def test_a_short_line_without_header(convert):
    line = fixture("dpetzold-aws-log-parser-cloudfront_entry.csv").decode().rstrip("\n").split("\t")
    out = convert("cloudfront", {KEY: "\t".join(line[:10]) + "\n" + "\t".join(line) + "\n"})
    assert (out.summary.rows, out.summary.rejects) == (1, 1)
    assert out.rejects[0]["reason"] == (
        "10 fields; a line of CloudFront standard logs (web distributions) without a header has at least 18"
    )
    assert out.rows[0]["line_number"] == 2
