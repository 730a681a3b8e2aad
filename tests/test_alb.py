"""ALB access logs through the real engine: every field generation, every sample line, bad input."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest
from conftest import FIXTURES, SAMPLES

from servicelogs import formats
from servicelogs.cli import main

ALB = FIXTURES / "alb"
DAY = "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2024/01/15/"


def key(name: str = "a", gz: bool = False) -> str:
    return f"{DAY}123456789012_elasticloadbalancing_us-east-1_app.my-lb.{name}_20240115T1215Z_10.0.0.1_x.log" + (
        ".gz" if gz else ""
    )


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def lines_of(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode().splitlines()


# -- exact typed values, one line per field generation ---------------------------------------------------

DOCS = ALB / "awsdocs-elb-application-load-balancers-user-guide-examples-history.log"


def test_generation_20_launch_layout(convert):
    out = convert("alb", {key(): lines_of(DOCS)[1] + "\n"})  # the 2016 https example: unquoted domain/cert
    (row,) = out.rows
    assert row["type"] == "https"
    assert row["time"] == utc("2016-08-10T23:39:43.065466Z")
    assert row["elb"] == "app/my-loadbalancer/50dc6c495c0c9188"
    assert (row["client_ip"], row["client_port"], row["target_ip"], row["target_port"]) == (
        "192.168.131.39",
        2817,
        "10.0.0.1",
        80,
    )
    assert (row["request_processing_time"], row["target_processing_time"], row["response_processing_time"]) == (
        0.086,
        0.048,
        0.037,
    )
    assert (row["elb_status_code"], row["target_status_code"], row["received_bytes"], row["sent_bytes"]) == (
        200,
        200,
        0,
        57,
    )
    assert (row["request_verb"], row["request_url"], row["request_proto"]) == (
        "GET",
        "https://www.example.com:443/",
        "HTTP/1.1",
    )
    assert (row["ssl_cipher"], row["ssl_protocol"]) == ("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2")
    assert row["domain_name"] == "www.example.com"
    assert (
        row["chosen_cert_arn"] == "arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012"
    )
    assert row["matched_rule_priority"] is None and row["request_creation_time"] is None
    assert row["extra_fields"] is None
    assert out.summary.generations == {"20": 1}


def test_generations_23_24_25_29_from_the_aws_guide(convert):
    lines = lines_of(DOCS)
    out = convert("alb", {key(): "\n".join([lines[5], lines[10], lines[15], lines[22]]) + "\n"})
    assert out.summary.generations == {"23": 1, "24": 1, "25": 1, "29": 1}
    g23, g24, g25, g29 = out.rows
    assert g23["matched_rule_priority"] == 0
    assert g23["request_creation_time"] == utc("2018-07-02T22:22:48.364Z")
    assert g23["actions_executed"] == "forward" and g23["redirect_url"] is None
    assert g24["redirect_url"] is None and g24["error_reason"] is None
    assert g25["error_reason"] is None and g25["target_port_list"] is None
    assert g29["target_port_list"] == "10.0.0.1:80" and g29["target_status_code_list"] == "200"
    assert g29["classification"] is None and g29["conn_trace_id"] is None


def test_generation_30_trace_id_and_bracketed_ipv6(convert):
    out = convert("alb", {key(): (ALB / "otel-collector-contrib-awslogsencoding-alb_al_valid_logs.log").read_text()})
    v4, v6 = out.rows
    assert v4["conn_trace_id"] == "TID_1234abcd5678ef90"
    assert (v6["client_ip"], v6["client_port"]) == ("fe80::202:b3ff:fe1e:8329", 443)
    assert (v6["target_ip"], v6["target_port"]) == ("2001:db8::1", 80)
    assert out.summary.generations == {"30": 2}


def test_generation_33_transforms(convert):
    line = lines_of(ALB / "crowdsecurity-hub-aws-alb-logs.log")[7]
    out = convert("alb", {key(): line + "\n"})
    (row,) = out.rows
    assert row["time"] == utc("2018-07-02T22:23:00.186641Z")
    assert row["actions_executed"] == "authenticate,forward"
    assert row["conn_trace_id"] == "TID_1234abcd5678ef90"
    assert (row["transformed_host"], row["transformed_uri"], row["request_transform_status"]) == (
        "m.example.com",
        None,
        "TransformSuccess",
    )
    assert out.summary.generations == {"33": 1}


def test_unbracketed_ipv6_quoted_target_list_and_lambda(convert):
    vrl = json.loads((ALB / "vectordotdev-vrl-parse_aws_alb_log.expected.json").read_text())
    ipv6 = next(case["input"] for case in vrl if "2601:6bbc" in case["input"])
    (row,) = convert("alb", {key(): ipv6 + "\n"}).rows
    assert (row["client_ip"], row["client_port"]) == ("2601:6bbc:c529:9dad:6bbc:c529:9dad:6bbc", 50599)
    assert (row["target_ip"], row["target_port"]) == ("fd6d:6bbc:c529:6::face:ed83:f46", 80)


def test_lambda_failure_and_quoted_dash_fields(convert):
    line = (ALB / "dpetzold-aws-log-parser-loadbalancer_lambda_failed_entry.csv").read_text()
    (row,) = convert("alb", {key(): line}).rows
    assert row["target_ip"] is None and row["target_port"] is None
    assert row["elb_status_code"] == 502 and row["target_status_code"] is None
    assert row["error_reason"] == "LambdaInvalidResponse"


def test_negative_timings_and_no_target(convert):
    line = (ALB / "dpetzold-aws-log-parser-loadbalancer_http2_entry_auth_error.csv").read_text()  # no final newline
    (row,) = convert("alb", {key(): line}).rows
    assert (row["request_processing_time"], row["target_processing_time"], row["response_processing_time"]) == (
        -1.0,
        -1.0,
        -1.0,
    )
    assert row["matched_rule_priority"] == -1 and row["target_group_arn"] is None
    assert (row["elb_status_code"], row["target_status_code"]) == (401, None)
    assert row["error_reason"] == "AuthInvalidAWSALBAuthNonce"
    assert row["conn_trace_id"] == "TID_b33932fc40603344b9a76c1b94b208fd"


def test_request_uri_with_spaces_and_without_protocol(convert):
    base = (
        "http 2018-08-26T14:17:23.186641Z app/web/abcdef123 10.0.0.1:11223 - -1 -1 -1 301 - 234 391 "
        '"{request}" "Hello world" - - - "Root=1-123456-abcdef1234567" "-" "-" 0 2018-08-26T14:17:23.186641Z '
        '"redirect" "https://example.com/hello world" "-" "-" "-" "Acceptable" "SpaceInUri"'
    )
    text = "\n".join(
        base.format(request=r)
        for r in (
            "GET http://example.com:80/hello world HTTP/1.1",
            "GET http://example.com:80/hello",
            "- - -",
            "GET http://example.com:80/a b c",
        )
    )
    rows = convert("alb", {key(): text}).rows
    assert [(r["request_verb"], r["request_url"], r["request_proto"]) for r in rows] == [
        ("GET", "http://example.com:80/hello world", "HTTP/1.1"),
        ("GET", "http://example.com:80/hello", None),
        (None, None, None),
        ("GET", "http://example.com:80/a b c", None),
    ]
    assert rows[0]["redirect_url"] == "https://example.com/hello world"
    assert rows[0]["user_agent"] == "Hello world" and rows[0]["classification_reason"] == "SpaceInUri"


def test_fields_appended_later_go_to_extra_fields(convert):
    line = lines_of(ALB / "crowdsecurity-hub-aws-alb-logs.log")[7] + ' "new-field" 42'
    out = convert("alb", {key(): line + "\n"})
    (row,) = out.rows
    assert row["extra_fields"] == ["new-field", "42"]
    assert out.summary.extra_field_rows == 1 and out.summary.rejects == 0
    assert out.summary.generations == {"33+2": 1}


def test_escaped_quote_inside_user_agent_takes_the_exact_path(convert):
    line = lines_of(DOCS)[22].replace('"curl/7.46.0"', r'"Mozilla \"quoted\" agent"')
    lines = [lines_of(DOCS)[22]] * 3 + [line]
    rows = convert("alb", {key(): "\n".join(lines)}).rows
    assert [r["user_agent"] for r in rows] == ["curl/7.46.0"] * 3 + ['Mozilla "quoted" agent']


def test_independent_oracle_vector_vrl(convert):
    """Vector's VRL parser, an independent implementation, agrees on every field both have."""
    cases = json.loads((ALB / "vectordotdev-vrl-parse_aws_alb_log.expected.json").read_text())
    out = convert("alb", {key(): "\n".join(case["input"] for case in cases) + "\n"})
    assert out.summary.rejects == 0
    for case, row in zip(cases, out.rows, strict=True):
        want = case["expected"]
        assert row["time"] == utc(want["timestamp"])
        for ours, theirs, cast in [
            ("type", "type", str),
            ("elb", "elb", str),
            ("elb_status_code", "elb_status_code", int),
            ("target_status_code", "target_status_code", int),
            ("received_bytes", "received_bytes", int),
            ("sent_bytes", "sent_bytes", int),
            ("request_verb", "request_method", str),
            ("request_url", "request_url", str),
            ("request_proto", "request_protocol", str),
            ("request_processing_time", "request_processing_time", float),
            ("target_processing_time", "target_processing_time", float),
            ("response_processing_time", "response_processing_time", float),
            ("trace_id", "trace_id", str),
            ("domain_name", "domain_name", str),
            ("chosen_cert_arn", "chosen_cert_arn", str),
            ("matched_rule_priority", "matched_rule_priority", int),
            ("actions_executed", "actions_executed", str),
            ("redirect_url", "redirect_url", str),
            ("error_reason", "error_reason", str),
            ("user_agent", "user_agent", str),
        ]:
            if theirs in want:
                expected = None if want[theirs] in (None, "-") else cast(want[theirs])
                assert row[ours] == expected, (case["origin"], ours, row[ours], want[theirs])
        if want.get("client_host"):
            assert f"{row['client_ip']}:{row['client_port']}" == want["client_host"].strip("[]").replace("]:", ":")


def test_independent_oracle_crowdsec(convert):
    expected = json.loads((ALB / "crowdsecurity-hub-aws-alb-logs.expected.json").read_text())["records"]
    rows = convert("alb", {key(): (ALB / "crowdsecurity-hub-aws-alb-logs.log").read_text()}).rows
    for want, row in zip(expected, rows, strict=True):
        assert row["elb"] == want["elb"]
        assert str(row["elb_status_code"]) == want["elb_status_code"]
        assert row["request_verb"] == want["http_method"]
        assert row["user_agent"] == want["http_user_agent"]
        assert str(row["matched_rule_priority"]) == want["matched_rule_priority"]
        if "conn_trace_id" in want:
            assert row["conn_trace_id"] == want["conn_trace_id"]


# -- every line of every sample file is a row or a reject with a reason -------------------------------------

EXPECTED_REJECTS = {
    "otel-collector-contrib-awslogsencoding-alb_al_insufficient_fields.log": {1: "3 fields"},
    "otel-collector-contrib-awslogsencoding-alb_al_invalid_syntax.log": {1: "field 'type': 'invalid' is not one of"},
    "otel-collector-contrib-awslogsencoding-elb_control.log": {1: "access logging is enabled"},
    "winebarrel-fluent-plugin-elb-access-log-alb_spec.unique.log": {
        3: "13 fields",
        4: "17 fields",
        5: "field 'time': 'xxx' is not a timestamp",
    },
}


def sample_files() -> list[Path]:
    files = [p for p in sorted(ALB.iterdir()) if p.suffix in (".log", ".gz", ".csv")]
    shared = SAMPLES / "alb"
    if shared.is_dir():  # files whose licence keeps them out of this repository, read in place
        files += [p for p in sorted(shared.iterdir()) if p.suffix == ".log" and not (ALB / p.name).exists()]
    return files


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_every_sample_line_is_a_row_or_a_reject(convert, path: Path):
    lines = lines_of(path)
    out = convert(
        "alb", {key(path.stem.replace("_", "-").replace(".", "-")[:40], gz=path.suffix == ".gz"): path.read_bytes()}
    )
    assert out.summary.lines == len(lines)
    assert out.summary.rows + out.summary.rejects == len(lines)
    numbers = sorted([r["line_number"] for r in out.rows] + [r["line_number"] for r in out.rejects])
    assert numbers == list(range(1, len(lines) + 1))
    reasons = {r["line_number"]: r["reason"] for r in out.rejects}
    expected = EXPECTED_REJECTS.get(path.name, {})
    assert set(reasons) == set(expected), reasons
    for number, fragment in expected.items():
        assert fragment in reasons[number]
    for r in out.rejects:
        assert r["raw_line"] == lines[r["line_number"] - 1]
    for row in out.rows:  # lineage: each row points at its own line
        assert row["time"].strftime("%Y-%m-%dT%H:%M:%S") in lines[row["line_number"] - 1]


def test_connection_log_and_nlb_lines_are_named(convert):
    text = (
        "2024-05-28T08:12:36.431832Z 10.10.10.10 13624 443 TLSv1.3 TLS_AES_128_GCM_SHA256 12 - - - Success "
        "TID_37acbe0641d1c34287fee137ef3a5286\n"
        "tls 2.0 2018-12-20T02:59:40 net/my-network-loadbalancer/c6e77e28c25b2234 g3d4b5e8bb8464cd 72.21.218.154:51341 "
        "172.100.100.185:443 5 2 98 246 - arn:aws:acm:us-east-2:671290407336:certificate/2a108f19 - "
        "ECDHE-RSA-AES128-SHA tlsv12 - my-network-loadbalancer-c6e77e28c25b2234.elb.us-east-2.amazonaws.com - - - "
        "2018-12-20T02:59:30\n"
    )
    reasons = [r["reason"] for r in convert("alb", {key(): text}).rejects]
    assert "connection log" in reasons[0]
    assert "Network Load Balancer" in reasons[1]


# -- the table as query engines see it -------------------------------------------------------------------


def test_duckdb_reads_declared_types_and_zero_padded_partitions(convert):
    out = convert("alb", {key(): lines_of(DOCS)[22] + "\n"})
    con = duckdb.connect()
    rel = con.sql(
        f"SELECT * FROM read_parquet('{out.target}/alb/**/*.parquet', hive_partitioning = true, "
        "hive_types = {'region': 'VARCHAR', 'year': 'VARCHAR', 'month': 'VARCHAR', 'day': 'VARCHAR'})"
    )
    types = dict(zip(rel.columns, [str(t) for t in rel.types], strict=True))
    assert types["time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["client_port"] == "INTEGER" and types["elb_status_code"] == "INTEGER"
    assert types["received_bytes"] == "BIGINT" and types["request_processing_time"] == "DOUBLE"
    assert types["extra_fields"] == "VARCHAR[]" and types["line_number"] == "BIGINT"
    row = dict(zip(rel.columns, rel.fetchall()[0], strict=True))
    assert (row["region"], row["year"], row["month"], row["day"]) == ("us-east-1", "2018", "07", "02")
    assert row["account_id"] == "123456789012" and row["run_id"] == out.summary.run_id
    assert row["source_key"] == out.key(key())
    files = [p.relative_to(out.target).as_posix() for p in out.target.rglob("*.parquet")]
    assert files == [f"alb/region=us-east-1/year=2018/month=07/day=02/part-{files[0].split('part-')[1]}"]


def test_rows_partition_by_their_own_event_day(convert):
    late = lines_of(DOCS)[22].replace("2018-07-02T22:23:00.186641Z", "2018-07-03T00:00:00.5Z", 1)
    out = convert("alb", {key(): lines_of(DOCS)[22] + "\n" + late + "\n"})
    assert [(r["day"], r["line_number"]) for r in out.rows] == [("02", 1), ("03", 2)]


def test_same_input_same_file_names(convert, tmp_path):
    first = convert("alb", {key(): lines_of(DOCS)[22] + "\n"})
    names = sorted(p.name for p in first.target.rglob("*.parquet"))
    second = convert("alb", {}, again=True)
    assert sorted(p.name for p in second.target.rglob("*.parquet")) == names


# -- bad input -------------------------------------------------------------------------------------------

GOOD = (ALB / "otel-collector-contrib-awslogsencoding-alb_al_valid_logs.log").read_text().splitlines()[0] + "\n"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("truncated", gzip.compress(GOOD.encode() * 50)[:-30], "cannot decompress"),
        (
            "bad-crc",
            (lambda g: g[:-8] + bytes([g[-8] ^ 0xFF]) + g[-7:])(gzip.compress(GOOD.encode())),
            "cannot decompress",
        ),
        ("not-gzip", b"PK\x03\x04 this is a zip, not gzip", "not gzip"),
        ("corrupt-deflate", gzip.compress(GOOD.encode())[:12] + b"\xff" * 40, "cannot decompress"),
    ],
)
def test_a_corrupt_object_fails_alone(convert, name, content, reason):
    out = convert("alb", {key("good", gz=True): gzip.compress(GOOD.encode()), key(name, gz=True): content}, raw=True)
    assert out.summary.objects_failed == 1 and out.summary.objects_converted == 1
    (failure,) = out.summary.failed
    assert failure.key == out.key(key(name, gz=True)) and reason in failure.reason
    assert {r["source_key"] for r in out.rows} == {out.key(key("good", gz=True))}
    assert out.summary.rows == 1 and out.summary.lines == 1


def test_cli_exits_non_zero_on_a_corrupt_object(tmp_path, capsys):
    source = tmp_path / "src"
    (source / key("bad", gz=True)).parent.mkdir(parents=True)
    (source / key("bad", gz=True)).write_bytes(gzip.compress(GOOD.encode())[:-5])
    (source / key("ok")).write_text(GOOD)
    assert main(["convert", "alb", str(source), str(tmp_path / "out"), "--json", "--workers", "1"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["objects_failed"] == 1
    assert summary["failed"][0]["key"] == (source / key("bad", gz=True)).resolve().as_posix()
    assert summary["rows"] == 1 and summary["ok"] is False


def test_multi_member_gzip(convert):
    out = convert("alb", {key(gz=True): gzip.compress(GOOD.encode()) + gzip.compress(GOOD.encode())})
    assert out.summary.rows == 2 and [r["line_number"] for r in out.rows] == [1, 2]


def test_empty_objects_and_non_log_keys(convert):
    out = convert(
        "alb", {key("empty", gz=True): b"", key("empty2"): b"", "README": "hello", f"{DAY}notes.txt": "x"}, raw=True
    )
    assert out.summary.objects_converted == 2 and out.summary.lines == 0 and out.summary.rows == 0
    assert sorted(p.key for p in out.summary.skipped) == [out.key(f"{DAY}notes.txt"), out.key("README")]
    assert all("matches no alb key layout" in p.reason for p in out.summary.skipped)


def test_crlf_invalid_utf8_and_no_final_newline(convert):
    bad = GOOD.strip().replace("curl/7.46.0", "curl/\xff").encode("latin-1")
    data = GOOD.strip().encode() + b"\r\n" + bad + b"\r\n" + GOOD.strip().encode()
    out = convert("alb", {key(): data})
    assert [r["line_number"] for r in out.rows] == [1, 3]
    assert all(r["conn_trace_id"] == "TID_1234abcd5678ef90" for r in out.rows)  # no stray \r
    (reject,) = out.rejects
    assert reject["line_number"] == 2 and reject["reason"].startswith("invalid UTF-8 at byte")
    assert "curl/\\xff" in reject["raw_line"]


def test_a_1mb_line(convert):
    long_url = "GET https://example.com:443/" + "a" * (1 << 20) + " HTTP/1.1"
    long_line = GOOD.replace("GET https://www.example.com:443/ HTTP/1.1", long_url)
    garbage = "x" * (1 << 20)
    out = convert("alb", {key(): GOOD + long_line + garbage + "\n" + GOOD})
    assert [r["line_number"] for r in out.rows] == [1, 2, 4]
    assert len(out.rows[1]["request_url"]) == len("https://example.com:443/") + (1 << 20)
    assert [(r["line_number"], r["reason"]) for r in out.rejects] == [
        (
            3,
            "1 fields; a line of Application Load Balancer access logs has at least 18 "
            "(an unbalanced quote or a truncated line?)",
        )
    ]


def test_unbalanced_quote_does_not_swallow_the_next_line(convert):
    broken = GOOD.replace('"curl/7.46.0"', '"curl/7.46.0')
    out = convert("alb", {key(): GOOD + broken + GOOD + GOOD})
    assert [r["line_number"] for r in out.rows] == [1, 2, 3, 4]
    assert [r["user_agent"] for r in out.rows] == ["curl/7.46.0", '"curl/7.46.0', "curl/7.46.0", "curl/7.46.0"]
    assert [r["conn_trace_id"] for r in out.rows] == ["TID_1234abcd5678ef90"] * 4


def test_the_18_field_launch_layout_before_sni(convert):
    """Issue 11: ALB lines from the 2016 launch until SNI (late 2017) have no domain_name / chosen_cert_arn; they
    were rejected as '18 fields'. A real 2017 line from another parser's tests."""
    line = formats.get("alb").examples[-1].line
    out = convert("alb", {key(): line + "\n" + GOOD})
    assert (out.summary.rows, out.summary.rejects) == (2, 0)
    assert out.summary.generations["18"] == 1
    row = out.rows[0]
    assert (row["client_ip"], row["client_port"], row["target_ip"], row["target_port"]) == (
        "111.222.10.240",
        57965,
        "192.168.131.118",
        80,
    )
    assert (row["elb_status_code"], row["received_bytes"], row["sent_bytes"]) == (200, 623, 111603)
    assert row["trace_id"] == "Root=1-11111be1-222d333a444a555f6666e777"
    assert row["domain_name"] is None and row["chosen_cert_arn"] is None and row["extra_fields"] is None
