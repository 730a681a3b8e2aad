"""Classic Load Balancer (ELB) access logs.

Reference: "Access log entries", Elastic Load Balancing, Classic Load Balancers user guide
(docs.aws.amazon.com/elasticloadbalancing/latest/classic/access-log-collection.html).

Each line is space-separated; the request line and the user agent are double-quoted. TCP and SSL
listeners write "-" for the status codes, `"- - - "` for the request and "-" for the user agent. A
backend that was never reached is "-" and its timings are -1. The oldest layout (12 fields) ends after
the request; the user agent and the TLS cipher and protocol came later. ELB does not escape a `"` inside
the user agent: such lines take the slow path, whose exact regex anchors the user agent on the two
unquoted fields that close the line. Column names follow the Athena DDL AWS publishes for ELB logs
(request_ip, backend_ip, elb_response_code, url, ...), so existing queries keep working.
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

# Field generations, oldest first, named by field count. `appeared` is approximate (first seen in the AWS
# docs' history or announcements), for orientation only: a line's generation is told by its field count.
GENERATIONS = (
    Generation("12", "2014-03", "launch layout: up to the request line"),
    Generation("15", "2015-05", "+ user_agent, ssl_cipher, ssl_protocol"),
)

TOKENS = (
    one(
        "timestamp",
        "12",
        TIMESTAMP,
        "When the load balancer received the request from the client (UTC). The event time.",
        null=None,
    ),
    one("elb_name", "12", doc="Name of the load balancer.", null=None),
    host_port(
        "client:port",
        "12",
        ("request_ip", "IP address of the requesting client."),
        ("request_port", "Port of the requesting client."),
    ),
    host_port(
        "backend:port",
        "12",
        ("backend_ip", "IP of the registered instance that processed the request; null if none was reached."),
        ("backend_port", "Port of the registered instance."),
    ),
    seconds(
        "request_processing_time",
        "12",
        "HTTP: time from receiving the request to sending it to an instance; TCP: time to establish the connection.",
    ),
    seconds(
        "backend_processing_time",
        "12",
        "HTTP: time from sending the request to the instance to the start of the response headers; TCP: time to "
        "establish the connection to the instance.",
    ),
    seconds(
        "client_response_time",
        "12",
        "HTTP: time from receiving the response headers to sending them to the client; TCP: time from receiving "
        "the first byte from the instance to sending it to the client.",
    ),
    one("elb_response_code", "12", INT, "Status code of the response from the load balancer; null for TCP/SSL."),
    one("backend_response_code", "12", INT, "Status code of the response from the instance; null for TCP/SSL."),
    *byte_counts("12"),
    http_request("12", "request_verb", "url", "protocol"),
    *user_agent_and_tls("15"),
)

# Exact line shape for the slow path: the request ends at the first quote that lets the rest match, the
# user agent at the last quote before the two closing fields, so quotes inside either are kept.
_S = r"(\S+)"
LINE_REGEX = " ".join([_S] * 11) + r' "(.*?)"(?: "(.*)" ([^ "]\S*) ([^ "]\S*))?(?P<extra>(?: [^"]*)?)'

_NAME = (
    r"(?P<account_id>\d{12})_elasticloadbalancing_(?P<region>[a-z0-9-]+)_[A-Za-z0-9-]+_\d{8}T\d{4}Z_[^_/]+_[^_/]+"
    r"\.log(?:\.gz)?"
)

FORMAT = LogFormat(
    name="elb",
    title="Classic Load Balancer (ELB) access logs",
    doc=__doc__ or "",
    grammar=Delimited(tokens=TOKENS, generations=GENERATIONS, line_regex=LINE_REGEX),
    event_time="timestamp",
    key_layouts=(
        KeyLayout(
            "aws",
            rf"(?:^|/)AWSLogs/\d{{12}}/elasticloadbalancing/[a-z0-9-]+/{DATE_PATH}/{_NAME}$",
            "AWSLogs/{account_id}/elasticloadbalancing/{region}/{year}/{month}/{day}/"
            "{account_id}_elasticloadbalancing_{region}_{name}_{year}{month}{day}T{hour}{minute}Z_{ip}_{nonce}.log",
            "AWSLogs/123456789012/elasticloadbalancing/us-west-2/2014/02/15/"
            "123456789012_elasticloadbalancing_us-west-2_my-loadbalancer_20140215T2340Z_172.160.001.192_20sg8hgm.log",
            days=DAYS,
        ),
        KeyLayout(
            "file name only",
            rf"(?:^|/){_NAME}$",
            "{account_id}_elasticloadbalancing_{region}_{name}_{year}{month}{day}T{hour}{minute}Z_{ip}_{nonce}.log",
            "123456789012_elasticloadbalancing_us-west-2_my-loadbalancer_20140215T2340Z_172.160.001.192_20sg8hgm.log",
        ),
    ),
    foreign_lines=(
        ENABLE_ACCESS_LOG,
        ForeignLine(
            r"^(?:http|https|h2|grpcs|ws|wss) \d{4}-\d\d-\d\dT",
            "an Application Load Balancer (ALB) access log line, not a Classic Load Balancer line",
        ),
    ),
    examples=(
        Example(
            "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.000073 0.001048 0.000057 "
            '200 200 0 29 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.38.0" - -',
            {
                "timestamp": "2015-05-13T23:39:43.945958Z",
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
            },
            "AWS Classic Load Balancer user guide, access log entry examples (HTTP entry)",
        ),
        Example(
            "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.001065 0.000015 0.000023 "
            '- - 57 502 "- - - " "-" ECDHE-ECDSA-AES128-GCM-SHA256 TLSv1.2',
            {
                "elb_response_code": None,
                "backend_response_code": None,
                "received_bytes": 57,
                "sent_bytes": 502,
                "request_verb": None,
                "url": None,
                "protocol": None,
                "user_agent": None,
                "ssl_cipher": "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ssl_protocol": "TLSv1.2",
            },
            "AWS Classic Load Balancer user guide, access log entry examples (SSL listener entry)",
        ),
    ),
)
