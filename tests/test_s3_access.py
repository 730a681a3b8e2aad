"""S3 server access logs through the real engine: every generation, raw quotes, offsets, key layouts."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import FIXTURES, SAMPLES, shared_sample

from servicelogs import formats

KEY = "s3-logs/123456789012/us-west-1/amzn-s3-demo-bucket1/2019/02/06/2019-02-06-00-00-38-0A1B2C3D4E5F6A7B"
SIMPLE_KEY = "s3-logs/2019-02-06-00-00-38-0A1B2C3D4E5F6A7B"
OWNER = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
T0 = datetime(2019, 2, 6, 0, 0, 38, tzinfo=timezone.utc)
FIX = FIXTURES / "s3_access"
CURRENT = (FIX / "aws-docs-s3-userguide-LogFormat-current.log").read_text()


def sample(name: str) -> str:
    return shared_sample("s3_access", name).decode()


def test_27_field_layout_every_column(convert):
    out = convert("s3_access", {KEY: CURRENT})
    assert (out.summary.rows, out.summary.rejects) == (2, 0)
    row = out.rows[0]
    assert {k: row[k] for k in list(row)[:27]} == {
        "bucketowner": OWNER,
        "bucket_name": "amzn-s3-demo-bucket1",
        "requestdatetime": T0,
        "remoteip": "192.0.2.3",
        "requester": OWNER,
        "requestid": "3E57427F3EXAMPLE",
        "operation": "REST.GET.VERSIONING",
        "key": None,
        "request_uri": "GET /amzn-s3-demo-bucket1?versioning HTTP/1.1",
        "httpstatus": 200,
        "errorcode": None,
        "bytessent": 113,
        "objectsize": None,
        "totaltime": 7,
        "turnaroundtime": None,
        "referrer": None,
        "useragent": "S3Console/0.4",
        "versionid": None,
        "hostid": "s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234=",
        "sigv": "SigV4",
        "ciphersuite": "ECDHE-RSA-AES128-GCM-SHA256",
        "authtype": "AuthHeader",
        "endpoint": "amzn-s3-demo-bucket1.s3.us-west-1.amazonaws.com",
        "tlsversion": "TLSV1.2",
        "accesspointarn": "arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP",
        "aclrequired": "Yes",
        "sourceregion": "us-east-1",
    }
    assert (row["extra_fields"], row["account_id"], row["region"], row["year"], row["month"], row["day"]) == (
        None,
        "123456789012",
        "us-west-1",
        "2019",
        "02",
        "06",
    )
    assert (out.rows[1]["accesspointarn"], out.rows[1]["aclrequired"], out.rows[1]["sourceregion"]) == (
        None,
        None,
        "us-east-1",
    )
    assert out.summary.generations == {"27": 2}


def test_18_field_layout(convert):
    out = convert(
        "s3_access", {KEY: (FIX / "awsdocs-amazon-s3-developer-guide-LogFormat-2017-12-07-16e8b15.log").read_text()}
    )
    assert (out.summary.rows, out.summary.rejects, out.summary.generations) == (6, 0, {"18": 6})
    put = out.rows[4]
    assert {k: put[k] for k in ("requestdatetime", "operation", "key", "request_uri", "httpstatus")} == {
        "requestdatetime": datetime(2014, 2, 6, 0, 1, 57, tzinfo=timezone.utc),
        "operation": "REST.PUT.OBJECT",
        "key": "s3-dg.pdf",
        "request_uri": "PUT /mybucket/s3-dg.pdf HTTP/1.1",
        "httpstatus": 200,
    }
    assert (put["bytessent"], put["objectsize"], put["totaltime"], put["turnaroundtime"]) == (None, 4406583, 41754, 28)
    assert (put["versionid"], put["hostid"], put["tlsversion"], put["sourceregion"]) == (None, None, None, None)
    assert out.rows[2]["errorcode"] == "NoSuchBucketPolicy" and out.rows[2]["httpstatus"] == 404


def test_24_field_layout(convert):
    out = convert(
        "s3_access", {KEY: (FIX / "awsdocs-amazon-s3-developer-guide-LogFormat-2019-06-07-2fef737.log").read_text()}
    )
    assert (out.summary.rows, out.summary.rejects, out.summary.generations) == (5, 0, {"24": 5})
    row = out.rows[4]
    assert {k: row[k] for k in ("hostid", "sigv", "ciphersuite", "authtype", "endpoint", "tlsversion")} == {
        "hostid": "10S62Zv81kBW7BB6SX4XJ48o6kpcl6LPwEoizZQQxJd5qDSCTLX0TgS37kYUBKQW3+bPdrg1234=",
        "sigv": "SigV4",
        "ciphersuite": "ECDHE-RSA-AES128-SHA",
        "authtype": "AuthHeader",
        "endpoint": "awsexamplebucket.s3.amazonaws.com",
        "tlsversion": "TLSV1.1",
    }
    assert (row["accesspointarn"], row["aclrequired"]) == (None, None)


def test_26_field_layout(convert):
    out = convert(
        "s3_access", {KEY: (FIX / "otel-collector-contrib-awslogsencoding-stream-valid_log_multi.log").read_text()}
    )
    assert (out.summary.rows, out.summary.rejects, out.summary.generations) == (3, 0, {"26": 3})
    assert [(r["accesspointarn"], r["aclrequired"], r["sourceregion"]) for r in out.rows] == [
        ("arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP", "Yes", None),
        (None, None, None),
        (None, "Yes", None),
    ]


def test_17_field_layout_and_utc_offset(convert):
    out = convert("s3_access", {KEY: sample("matomo-log-analytics-s3.log")})
    assert (out.summary.rows, out.summary.generations) == (1, {"17": 1})
    row = out.rows[0]
    # [10/Feb/2012:16:42:07 -0500] is 21:42:07 UTC.
    assert row["requestdatetime"] == datetime(2012, 2, 10, 21, 42, 7, tzinfo=timezone.utc)
    assert (row["operation"], row["key"], row["bytessent"], row["objectsize"], row["totaltime"]) == (
        "WEBSITE.GET.OBJECT",
        "index",
        368,
        368,
        10,
    )
    assert row["useragent"].endswith("Safari/535.11") and row["versionid"] is None


def test_offsets_are_normalised_and_partition_by_utc_day(convert):
    line = CURRENT.splitlines()[0]
    east = line.replace("[06/Feb/2019:00:00:38 +0000]", "[06/Feb/2019:00:30:00 +0200]")
    west = line.replace("[06/Feb/2019:00:00:38 +0000]", "[05/Feb/2019:22:15:00 -0530]")
    out = convert("s3_access", {KEY: f"{east}\n{west}\n"})
    assert [r["requestdatetime"] for r in out.rows] == [
        datetime(2019, 2, 5, 22, 30, tzinfo=timezone.utc),
        datetime(2019, 2, 6, 3, 45, tzinfo=timezone.utc),
    ]
    assert [(r["year"], r["month"], r["day"]) for r in out.rows] == [("2019", "02", "05"), ("2019", "02", "06")]


def test_raw_quotes_in_request_uri_and_user_agent(convert):
    out = convert("s3_access", {KEY: sample("github-issues-real-lines.log")})
    assert (out.summary.rows, out.summary.rejects) == (3, 0)
    uri, ua, old = out.rows
    assert (uri["key"], uri["request_uri"], uri["httpstatus"], uri["errorcode"], uri["bytessent"]) == (
        "%2522",
        'GET /" HTTP/1.1',
        403,
        "AccessDenied",
        243,
    )
    assert (uri["referrer"], uri["useragent"], uri["hostid"][:8], uri["tlsversion"]) == (
        "referer test",
        "curl/7.38.0",
        "uidORkMV",
        "TLSv1.2",
    )
    assert ua["useragent"] == (
        "Mozilla/5.0 (iPad; CPU OS 13_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        'Version/13.0.1 Mobile/15E148 Safari/604.1"'
    )
    assert (ua["referrer"], ua["versionid"], ua["hostid"], ua["endpoint"], ua["extra_fields"]) == (
        "https://example,com/some/url",
        None,
        "someIDstring",
        "s3-ap-northeast-1.amazonaws.com",
        None,
    )
    assert (old["requester"], old["turnaroundtime"], old["requestdatetime"]) == (
        "arn:aws:iam::992889131628:user/firstname.lastname@company.com",
        113,
        datetime(2016, 5, 4, 12, 11, 43, tzinfo=timezone.utc),
    )


def test_doubled_quote_in_referer_and_copy_lines_with_dashes(convert):
    out = convert("s3_access", {KEY: sample("kdgm-logstash-plugins-s3_access_log_spec.unique.log")})
    assert (out.summary.rows, out.summary.rejects) == (30, 0)
    doubled = out.rows[10]
    assert doubled["referrer"] == 'http://kerkdienstgemist.nl/mp3/recorder.php?id=452"'
    assert doubled["useragent"] == "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; WOW64; Trident/5.0)"
    copy = out.rows[11]
    assert (copy["operation"], copy["request_uri"], copy["httpstatus"], copy["objectsize"], copy["useragent"]) == (
        "REST.COPY.OBJECT_GET",
        None,
        200,
        13538337,
        None,
    )


def test_rows_sharing_a_request_id_are_all_kept(convert):
    # A batch delete logs one row per key, all with the request id of the one request (derived doc lines).
    line = CURRENT.splitlines()[0].replace("REST.GET.VERSIONING -", "BATCH.DELETE.OBJECT {key}")
    out = convert("s3_access", {KEY: "".join(line.format(key=k) + "\n" for k in ("a.txt", "b.txt", "a.txt"))})
    assert [(r["requestid"], r["operation"], r["key"]) for r in out.rows] == [
        ("3E57427F3EXAMPLE", "BATCH.DELETE.OBJECT", "a.txt"),
        ("3E57427F3EXAMPLE", "BATCH.DELETE.OBJECT", "b.txt"),
        ("3E57427F3EXAMPLE", "BATCH.DELETE.OBJECT", "a.txt"),
    ]


def test_fields_appended_later_are_kept(convert):
    out = convert("s3_access", {KEY: (FIX / "otel-collector-contrib-awslogsencoding-too_many_values.log").read_text()})
    assert out.summary.rejects == 0
    assert (out.rows[0]["sourceregion"], out.rows[0]["extra_fields"]) == ("us-east-1", ["ExtraUnknownField"])
    assert out.summary.extra_field_rows == 1


def test_simple_prefix_layout_has_no_region(convert):
    out = convert("s3_access", {SIMPLE_KEY: CURRENT, "logs/sub/prefix-2019-02-06-01-00-00-ABCDEF0123456789": CURRENT})
    assert out.summary.rows == 4 and out.summary.objects_skipped == 0
    assert {(r["region"], r["account_id"]) for r in out.rows} == {("unknown", None)}


def test_key_layouts():
    fmt = formats.get("s3_access")
    assert fmt.match_key(KEY) == {"account_id": "123456789012", "region": "us-west-1"}
    assert fmt.match_key(SIMPLE_KEY) == {}
    assert fmt.match_key("2019-02-06-00-00-38-0A1B2C3D4E5F6A7B") == {}
    assert fmt.match_key("logs-2019-02-06-00-00-38-0A1B2C3D4E5F6A7B") == {}
    for layout in fmt.key_layouts:
        assert fmt.match_key(layout.example) is not None
    for other in ("alb", "elb"):
        for layout in formats.get(other).key_layouts:
            assert fmt.match_key(layout.example) is None
    assert fmt.match_key("s3-logs/README.md") is None


def _sample_files() -> list[Path]:
    files = sorted(p for p in FIX.iterdir() if p.name != "README.md")
    here = {p.name for p in files}
    if (SAMPLES / "s3_access").is_dir():
        files += sorted(p for p in (SAMPLES / "s3_access").glob("*.log") if p.name not in here)
    return files


# Lines that are rows but not of a shipped layout: their extra tokens are kept, by position.
ODD_ROWS = {
    # The doc's line 3 ends with a space: an empty 27th field.
    ("awsdocs-amazon-s3-userguide-LogFormat-2022-11-16-a79892c.log", 3): {"sourceregion": ""},
    # Test junk appended to an 18-field line ("- any other fields") lands in the 24-field columns.
    ("kdgm-logstash-plugins-s3_access_log_spec.unique.log", 18): {"hostid": "any", "ciphersuite": "fields"},
    ("panther-labs-panther-s3_server_access_test.go.log", 4): {"accesspointarn": "test1", "aclrequired": "test2"},
}


@pytest.mark.parametrize("path", _sample_files(), ids=lambda p: p.name)
def test_every_sample_line_is_a_row(convert, path: Path):
    data = path.read_bytes()
    out = convert("s3_access", {KEY: data})
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    assert out.summary.lines == n_lines == out.summary.rows, out.rejects
    assert [r["line_number"] for r in out.rows] == list(range(1, n_lines + 1))
    for row in out.rows:
        assert row["bucket_name"] and row["requestdatetime"].tzinfo is not None
        for name, value in ODD_ROWS.get((path.name, row["line_number"]), {}).items():
            assert row[name] == value


@pytest.mark.parametrize("fmt", ["s3_access", "elb"])
def test_slow_path_regex_agrees_with_the_tokenizer_on_well_formed_lines(fmt: str):
    # Lines with no raw quote must give the same pieces on either path (the fast path tokenizes like LineTokenizer).
    from servicelogs.engines.arrow_parse import DelimitedParser

    parser = DelimitedParser(formats.get(fmt))
    rx = parser.grammar.compiled_line_regex
    assert rx is not None
    lines = [
        line
        for path in sorted((FIXTURES / fmt).glob("*.*"))
        if path.suffix != ".md"
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    matched = 0
    for line in lines:
        if rx.fullmatch(line):
            matched += 1
            assert parser._line_tokens(line) == parser.tokenizer.tokens(line), line
    assert matched >= len(lines) - 2  # the fixtures' malformed lines (too short, leading spaces) do not match
