"""Classic Load Balancer access logs through the real engine: exact typed values, every sample line accounted for."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import FIXTURES, SAMPLES

from servicelogs import formats

KEY = (
    "AWSLogs/123456789012/elasticloadbalancing/us-west-2/2015/05/13/"
    "123456789012_elasticloadbalancing_us-west-2_my-loadbalancer_20150513T2340Z_192.0.2.1_20sg8hgm.log"
)
DOCS = (FIXTURES / "elb" / "awsdocs-elb-classic-load-balancers-user-guide-examples.log").read_text()
T = datetime(2015, 5, 13, 23, 39, 43, 945958, tzinfo=timezone.utc)


def only(rows: list[dict], **match) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, found
    return found[0]


def test_doc_entries_http_https_tcp_ssl(convert):
    out = convert("elb", {KEY: DOCS})
    assert (out.summary.rows, out.summary.rejects) == (4, 0)
    http, https, tcp, ssl = out.rows
    assert {k: http[k] for k in list(http)[:19]} == {
        "timestamp": T,
        "elb_name": "my-loadbalancer",
        "request_ip": "192.168.131.39",
        "request_port": 2817,
        "backend_ip": "10.0.0.1",
        "backend_port": 80,
        "request_processing_time": 0.000073,
        "backend_processing_time": 0.001048,
        "client_response_time": 0.000057,
        "elb_response_code": 200,
        "backend_response_code": 200,
        "received_bytes": 0,
        "sent_bytes": 29,
        "request_verb": "GET",
        "url": "http://www.example.com:80/",
        "protocol": "HTTP/1.1",
        "user_agent": "curl/7.38.0",
        "ssl_cipher": None,
        "ssl_protocol": None,
    }
    assert (http["account_id"], http["region"], http["year"], http["month"], http["day"]) == (
        "123456789012",
        "us-west-2",
        "2015",
        "05",
        "13",
    )
    assert http["extra_fields"] is None and http["line_number"] == 1 and http["source_key"] == out.key(KEY)
    assert (https["url"], https["ssl_cipher"], https["ssl_protocol"]) == (
        "https://www.example.com:443/",
        "DHE-RSA-AES128-SHA",
        "TLSv1.2",
    )
    # TCP listener: no status codes, request "- - - ", user agent "-".
    assert {k: tcp[k] for k in ("elb_response_code", "backend_response_code", "request_verb", "url", "protocol")} == {
        "elb_response_code": None,
        "backend_response_code": None,
        "request_verb": None,
        "url": None,
        "protocol": None,
    }
    assert (tcp["user_agent"], tcp["received_bytes"], tcp["sent_bytes"], tcp["ssl_cipher"]) == (None, 82, 305, None)
    assert (ssl["ssl_cipher"], ssl["ssl_protocol"], ssl["sent_bytes"], ssl["url"]) == (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLSv1.2",
        502,
        None,
    )
    assert out.summary.generations == {"15": 4}


def test_oldest_12_field_layout_and_unreached_backend(convert):
    out = convert("elb", {KEY: (FIXTURES / "elb" / "logstash-patterns-core-aws_spec.log").read_text()})
    assert (out.summary.rows, out.summary.rejects) == (4, 0)
    old = out.rows[0]
    assert old["timestamp"] == datetime(2014, 2, 15, 23, 39, 43, 945958, tzinfo=timezone.utc)
    assert (old["elb_name"], old["url"], old["user_agent"], old["ssl_cipher"], old["ssl_protocol"]) == (
        "my-test-loadbalancer",
        "http://www.example.com:80/",
        None,
        None,
        None,
    )
    timeout = out.rows[1]
    assert {k: timeout[k] for k in list(timeout)[:16]} == {
        "timestamp": datetime(2015, 4, 10, 8, 11, 9, 865823, tzinfo=timezone.utc),
        "elb_name": "us-west-1-production-media",
        "request_ip": "49.150.87.133",
        "request_port": 55128,
        "backend_ip": None,
        "backend_port": None,
        "request_processing_time": -1.0,
        "backend_processing_time": -1.0,
        "client_response_time": -1.0,
        "elb_response_code": 408,
        "backend_response_code": None,
        "received_bytes": 1294336,
        "sent_bytes": 0,
        "request_verb": "PUT",
        "url": "https://media.xxxyyyzzz.com:443/videos/F4_M-T4X0MM6Hvy1PFHesw",
        "protocol": "HTTP/1.1",
    }
    assert (timeout["year"], timeout["month"], timeout["day"]) == ("2015", "04", "10")
    assert out.rows[2]["user_agent"] == "curl/7.38.0 (#56-0ef1d4a5)"
    assert (out.rows[3]["user_agent"], out.rows[3]["ssl_cipher"]) == (None, None)
    assert out.summary.generations == {"12": 2, "15": 2}


def test_user_agent_with_embedded_quotes_takes_the_exact_path(convert):
    # ELB does not escape a quote inside the user agent (derived from the doc's HTTPS entry).
    line = DOCS.splitlines()[1].replace('"curl/7.38.0"', '"Mozilla/5.0 "quoted" (X11)"')
    tail = DOCS.splitlines()[1].replace('"curl/7.38.0"', '"ends with a quote""')
    url = DOCS.splitlines()[1].replace("https://www.example.com:443/", 'https://www.example.com:443/a"b')
    out = convert("elb", {KEY: DOCS + line + "\n" + tail + "\n" + url + "\n"})
    assert (out.summary.rows, out.summary.rejects) == (7, 0)
    assert (out.rows[6]["url"], out.rows[6]["protocol"], out.rows[6]["user_agent"]) == (
        'https://www.example.com:443/a"b',
        "HTTP/1.1",
        "curl/7.38.0",
    )
    assert out.rows[4]["user_agent"] == 'Mozilla/5.0 "quoted" (X11)'
    assert out.rows[5]["user_agent"] == 'ends with a quote"'
    assert (out.rows[4]["ssl_cipher"], out.rows[4]["ssl_protocol"], out.rows[4]["extra_fields"]) == (
        "DHE-RSA-AES128-SHA",
        "TLSv1.2",
        None,
    )


def test_fields_appended_later_are_kept(convert):
    line = DOCS.splitlines()[0] + " new-field-1 new-field-2"
    out = convert("elb", {KEY: line + "\n"})
    assert out.summary.rejects == 0
    assert out.rows[0]["extra_fields"] == ["new-field-1", "new-field-2"]
    assert out.rows[0]["ssl_protocol"] is None


def test_key_layouts():
    fmt = formats.get("elb")
    assert fmt.match_key(KEY) == {"account_id": "123456789012", "region": "us-west-2"}
    for layout in fmt.key_layouts:
        assert fmt.match_key(layout.example) is not None
    alb = formats.get("alb")
    assert alb.match_key(KEY) is None
    for layout in alb.key_layouts:
        assert fmt.match_key(layout.example) is None, "an ALB key is not an ELB log"
    assert fmt.match_key("AWSLogs/123456789012/elasticloadbalancing/us-west-2/2015/05/13/README.txt") is None


# Every line of every sample file: (file, line number) → expected reject reason; all other lines are rows.
ELB_REJECTS = {
    (
        "otel-collector-contrib-awslogsencoding-clb_al_insufficient_fields.log",
        1,
    ): "3 fields; a line of Classic Load Balancer (ELB) access logs has at least 12",
    ("winebarrel-fluent-plugin-elb-access-log-clb_spec.unique.log", 3): (
        "a space before field 1 (timestamp): the line starts with one: field 'timestamp': '' is not a timestamp"
    ),
    ("matomo-log-analytics-elb.log", 2): "field 'timestamp': '#' is not a timestamp",
}


def _sample_files() -> list[Path]:
    files = sorted(p for p in (FIXTURES / "elb").iterdir() if p.name != "README.md")
    here = {p.name for p in files}
    if (SAMPLES / "elb").is_dir():
        files += sorted(p for p in (SAMPLES / "elb").iterdir() if p.name not in here)
    return files


@pytest.mark.parametrize("path", _sample_files(), ids=lambda p: p.name)
def test_every_sample_line_is_a_row_or_an_expected_reject(convert, path: Path):
    data = path.read_bytes()
    out = convert("elb", {KEY: data})
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    assert out.summary.lines == n_lines == out.summary.rows + out.summary.rejects
    expected = {n: reason for (name, n), reason in ELB_REJECTS.items() if name == path.name}
    got = {r["line_number"]: r["reason"] for r in out.rejects}
    assert set(got) == set(expected)
    for n, reason in expected.items():
        assert got[n].startswith(reason), got[n]
    assert sorted(r["line_number"] for r in out.rows) == sorted(set(range(1, n_lines + 1)) - set(expected))


def test_an_alb_line_in_an_elb_object_is_a_named_reject(convert):
    alb_line = formats.get("alb").examples[0].line
    out = convert("elb", {KEY: DOCS + alb_line + "\n"})
    assert out.summary.rows == 4
    assert [(r["line_number"], r["reason"]) for r in out.rejects] == [
        (5, "an Application Load Balancer (ALB) access log line, not a Classic Load Balancer line")
    ]
