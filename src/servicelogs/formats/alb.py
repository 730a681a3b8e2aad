"""Application Load Balancer access logs.

Reference: "Access log entries", Elastic Load Balancing, Application Load Balancers user guide
(docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html).

Each line is space-separated; fields that may hold spaces are double-quoted. AWS has appended fields over
the years (the generations below); a line's token count tells which layout it uses. Column names follow
the Athena DDL AWS publishes for ALB logs (request_verb/request_url/request_proto, client_ip/client_port),
so existing queries keep working.
"""

from servicelogs.formats._common import one
from servicelogs.formats._load_balancer import (
    DATE_PATH,
    DAYS,
    ENABLE_ACCESS_LOG,
    byte_counts,
    host_port,
    http_request,
    seconds,
    user_agent_and_tls,
)
from servicelogs.spec import Delimited, Example, ForeignLine, Generation, KeyLayout, LogFormat
from servicelogs.types import INT, TIMESTAMP

# Field generations, oldest first. The name is the token count of a line of that layout.
GENERATIONS = (
    Generation("18", "2016-08", "launch layout: up to trace_id"),
    Generation("20", "2017-10", "+ domain_name, chosen_cert_arn (SNI, multiple certificates per listener)"),
    Generation("21", "2018-03", "+ matched_rule_priority"),
    Generation("23", "2018-07", "+ request_creation_time, actions_executed"),
    Generation("24", "2018-07", "+ redirect_url"),
    Generation("25", "2018-11", "+ error_reason"),
    Generation("27", "2019-10", "+ target:port_list, target_status_code_list"),
    Generation("29", "2020-08", "+ classification, classification_reason (desync mitigation)"),
    Generation("30", "2024-05", "+ conn_trace_id (TID_…), the connection log's trace id"),
    Generation("33", "2025-01", "+ transformed_host, transformed_uri, request_transform_status"),
)

_one = one  # the name the declarations below were written with (keeps this diff small)

TOKENS = (
    _one(
        "type",
        "18",
        doc="Request or connection type.",
        null=None,
        choices=("http", "https", "h2", "grpcs", "ws", "wss"),
    ),
    _one(
        "time",
        "18",
        TIMESTAMP,
        "When the load balancer generated the response (UTC); for WebSockets, when "
        "the connection closed. The event time.",
        null=None,
    ),
    _one("elb", "18", doc="Resource id of the load balancer (app/name/id).", null=None),
    host_port(
        "client:port",
        "18",
        ("client_ip", "IP address of the requesting client (or of a proxy in front)."),
        ("client_port", "Port of the requesting client."),
    ),
    host_port(
        "target:port",
        "18",
        (
            "target_ip",
            "IP of the target that processed the request; null if none (Lambda, fixed response, no dispatch).",
        ),
        ("target_port", "Port of the target."),
    ),
    seconds("request_processing_time", "18", "Time from receiving the request to sending it to a target."),
    seconds(
        "target_processing_time",
        "18",
        "Time from sending the request to the target to the start of the response headers.",
    ),
    seconds(
        "response_processing_time",
        "18",
        "Time from receiving the response headers from the target to sending the response to the client.",
    ),
    _one("elb_status_code", "18", INT, "Status code of the response from the load balancer."),
    _one("target_status_code", "18", INT, "Status code of the response from the target; null if none."),
    *byte_counts("18"),
    http_request("18", "request_verb", "request_url", "request_proto"),
    *user_agent_and_tls("18"),
    _one("target_group_arn", "18", doc="ARN of the target group."),
    _one("trace_id", "18", doc="Contents of the X-Amzn-Trace-Id header.", quoted=True),
    _one("domain_name", "20", doc="SNI domain the client sent in the TLS handshake.", quoted=True),
    _one(
        "chosen_cert_arn", "20", doc="ARN of the certificate presented to the client, or 'session-reused'.", quoted=True
    ),
    _one(
        "matched_rule_priority", "21", INT, "Priority of the rule that matched the request (0 for the default action)."
    ),
    _one(
        "request_creation_time", "23", TIMESTAMP, "When the load balancer received the request from the client (UTC)."
    ),
    _one(
        "actions_executed",
        "23",
        doc="Actions taken, comma-separated (waf, forward, redirect, authenticate, fixed-response, …).",
        quoted=True,
    ),
    _one("redirect_url", "24", doc="Location header of a redirect response.", quoted=True),
    _one("error_reason", "25", doc="Error reason code.", quoted=True, athena_name="lambda_error_reason"),
    _one(
        "target_port_list", "27", doc="Space-separated ip:port of the targets that processed the request.", quoted=True
    ),
    _one("target_status_code_list", "27", doc="Space-separated status codes from those targets.", quoted=True),
    _one("classification", "29", doc="Desync mitigation classification (Acceptable, Ambiguous, Severe).", quoted=True),
    _one("classification_reason", "29", doc="Classification reason code.", quoted=True),
    _one("conn_trace_id", "30", doc="Connection trace id (TID_…), joins with the connection log."),
    _one("transformed_host", "33", doc="Host header after a host-header rewrite transform.", quoted=True),
    _one("transformed_uri", "33", doc="URI after a URL rewrite transform.", quoted=True),
    _one("request_transform_status", "33", doc="Status of the rewrite transform.", quoted=True),
)

_DATE = DATE_PATH
_NAME = r"(?P<account_id>\d{12})_elasticloadbalancing_(?P<region>[a-z0-9-]+)_app\.[^/]+\.log(?:\.gz)?"

FORMAT = LogFormat(
    name="alb",
    title="Application Load Balancer access logs",
    doc=__doc__ or "",
    grammar=Delimited(tokens=TOKENS, generations=GENERATIONS),
    event_time="time",
    key_layouts=(
        KeyLayout(
            "aws",
            rf"(?:^|/)AWSLogs/\d{{12}}/elasticloadbalancing/[a-z0-9-]+/{_DATE}/{_NAME}$",
            "AWSLogs/{account_id}/elasticloadbalancing/{region}/{year}/{month}/{day}/"
            "{account_id}_elasticloadbalancing_{region}_app.{name}.{id}_{year}{month}{day}T{hour}{minute}Z_{ip}_{nonce}.log.gz",
            "AWSLogs/123456789012/elasticloadbalancing/us-east-2/2024/05/28/"
            "123456789012_elasticloadbalancing_us-east-2_app.my-lb.1234567890abcdef_20240528T0815Z_198.51.100.7_2hr0hy7n.log.gz",
            days=DAYS,
        ),
        KeyLayout(
            "file name only",
            rf"(?:^|/){_NAME}$",
            "{account_id}_elasticloadbalancing_{region}_app.{name}.{id}_{year}{month}{day}T{hour}{minute}Z_{ip}_{nonce}.log.gz",
            "123456789012_elasticloadbalancing_us-east-2_app.my-lb.1234567890abcdef_20240528T0815Z_198.51.100.7_2hr0hy7n.log",
        ),
    ),
    foreign_lines=(
        ENABLE_ACCESS_LOG,
        ForeignLine(
            r"^\d{4}-\d\d-\d\dT[\d:.]+Z \S+ \d+ \d+ (?:TLS|SSL|-)",
            "an ALB connection log line (a separate log type), not an access log line",
        ),
        ForeignLine(r"^tls \d+\.\d+ ", "a Network Load Balancer TLS access log line, not an ALB access log line"),
        ForeignLine(
            r"^\d{4}-\d\d-\d\dT[\d:.]+Z \S+ \S+:\d+ ",
            "a Classic Load Balancer (ELB) access log line, not an ALB access log line",
        ),
    ),
    examples=(
        Example(
            "http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 "
            '0.000 0.001 0.000 200 200 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - '
            "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "
            '"Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" 0 2018-07-02T22:22:48.364000Z "forward" "-" "-" '
            '"10.0.0.1:80" "200" "-" "-"',
            {
                "type": "http",
                "time": "2018-07-02T22:23:00.186641Z",
                "client_ip": "192.168.131.39",
                "client_port": 2817,
                "target_ip": "10.0.0.1",
                "target_port": 80,
                "request_processing_time": 0.0,
                "target_processing_time": 0.001,
                "elb_status_code": 200,
                "target_status_code": 200,
                "received_bytes": 34,
                "sent_bytes": 366,
                "request_verb": "GET",
                "request_url": "http://www.example.com:80/",
                "request_proto": "HTTP/1.1",
                "user_agent": "curl/7.46.0",
                "ssl_cipher": None,
                "domain_name": None,
                "matched_rule_priority": 0,
                "request_creation_time": "2018-07-02T22:22:48.364Z",
                "actions_executed": "forward",
                "target_port_list": "10.0.0.1:80",
                "target_status_code_list": "200",
                "classification": None,
                "conn_trace_id": None,
            },
            "AWS ALB user guide, access log entry examples (HTTP entry), 29-field layout",
        ),
        Example(
            "http 2018-11-30T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 - 0.000 "
            '0.001 0.000 502 - 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - '
            "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "
            '"Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 0 2018-11-30T22:22:48.364000Z "forward" "-" '
            '"LambdaInvalidResponse" "-" "-" "-" "-"',
            {
                "target_ip": None,
                "target_port": None,
                "elb_status_code": 502,
                "target_status_code": None,
                "error_reason": "LambdaInvalidResponse",
                "target_port_list": None,
            },
            "AWS ALB user guide, access log entry examples (Lambda failed entry)",
        ),
        Example(
            "h2 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 10.0.1.252:48160 10.0.0.66:9000 "
            '0.000 0.002 0.000 200 200 5 257 "GET https://10.0.2.105:773/ HTTP/2.0" "curl/7.46.0" '
            "ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 "
            "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "
            '"Root=1-58337327-72bd00b0343d75b906739c42" "-" "-" 1 2018-07-02T22:22:48.364000Z "redirect" '
            '"https://example.com:80/" "-" 10.0.0.66:9000 200 "-" "-"',
            {
                "type": "h2",
                "request_proto": "HTTP/2.0",
                "ssl_protocol": "TLSv1.2",
                "matched_rule_priority": 1,
                "actions_executed": "redirect",
                "redirect_url": "https://example.com:80/",
                "target_port_list": "10.0.0.66:9000",
                "target_status_code_list": "200",
            },
            "AWS ALB user guide, access log entry examples (HTTP/2 entry, unquoted target lists)",
        ),
        Example(
            "wss 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 10.0.0.140:44244 "
            '10.0.0.171:8010 0.000 0.001 0.000 101 101 218 786 "GET https://10.0.0.30:443/ HTTP/1.1" "-" '
            "ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 "
            "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "
            '"Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 1 2018-07-02T22:22:48.364000Z "forward" "-" "-" '
            '10.0.0.171:8010 101 "-" "-"',
            {"type": "wss", "elb_status_code": 101, "user_agent": None, "received_bytes": 218, "sent_bytes": 786},
            "AWS ALB user guide, access log entry examples (secured WebSockets entry)",
        ),
        Example(
            "https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 "
            '10.0.0.1:80 0.086 0.048 0.037 200 200 0 57 "GET https://www.example.com:443/ HTTP/1.1" '
            '"curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
            "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "
            '"Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" '
            '"arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012" 1 '
            '2018-07-02T22:22:48.364000Z "authenticate,forward" "-" "-" "10.0.0.1:80" "200" "-" "-" '
            'TID_1234abcd5678ef90 "m.example.com" "-" "TransformSuccess"',
            {
                "conn_trace_id": "TID_1234abcd5678ef90",
                "transformed_host": "m.example.com",
                "transformed_uri": None,
                "request_transform_status": "TransformSuccess",
                "domain_name": "www.example.com",
                "response_processing_time": 0.037,
            },
            "crowdsecurity/hub .tests/aws-alb-logs (MIT), 33-field layout with request transforms",
        ),
        Example(
            "http 2017-09-09T00:55:00.228196Z app/albname/12a34bc6d78e9f0 111.222.10.240:57965 192.168.131.118:80 "
            '0.020 0.019 0.001 200 200 623 111603 "GET http://wwww.host.com:80/path/?a=1&b=2&c=3 HTTP/1.1" '
            '"Mozilla/5.0 (iPhone)" - - '
            "arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:targetgroup/albname/abcdefgh12345678 "
            '"Root=1-11111be1-222d333a444a555f6666e777"',
            {
                "type": "http",
                "time": "2017-09-09T00:55:00.228196Z",
                "client_ip": "111.222.10.240",
                "client_port": 57965,
                "target_port": 80,
                "request_processing_time": 0.02,
                "sent_bytes": 111603,
                "request_url": "http://wwww.host.com:80/path/?a=1&b=2&c=3",
                "user_agent": "Mozilla/5.0 (iPhone)",
                "trace_id": "Root=1-11111be1-222d333a444a555f6666e777",
                "domain_name": None,
                "chosen_cert_arn": None,
                "matched_rule_priority": None,
            },
            "a 2017 line (launch layout, 18 fields, before SNI) from another parser's tests (issue 11)",
        ),
    ),
)
