"""CloudFront standard logs (access logs) of web distributions.

Reference: "Standard logging (access logs)" → "Log file fields", Amazon CloudFront developer guide
(docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/standard-logs-reference.html).

Each object starts with `#Version: 1.0` and `#Fields: <names>` (W3C extended log format); the names decide
the order of the tab-separated values below them, so a header with 18, 19, 24, 26 or 33 names, or a later
order, parses alike. Objects without a header use the documented order. Names AWS adds later keep their
values in `extra_fields`. Column names follow the Athena DDL AWS publishes for CloudFront logs, except that
its `date` and `time` columns are one UTC timestamp here (`time`).

Values are kept as AWS wrote them: `uri`, `user_agent`, `referrer`, `query_string`, `cookie` and
`sc_content_type` are URL-encoded by CloudFront (real logs often show the user agent encoded twice:
`%2520` for a space); they are not decoded.

RTMP distribution logs (x-event, x-sname…; RTMP ended 2020-12-31) are another log type: their lines are
rejects that say so.
"""

from servicelogs.spec import (
    DayNames,
    Example,
    Field,
    ForeignLine,
    Generation,
    HeaderDelimited,
    Join,
    KeyLayout,
    LogFormat,
    Token,
)
from servicelogs.types import BIGINT, DOUBLE, INT, STRING, TIMESTAMP

GENERATIONS = (
    Generation("18", "2012", "launch layout: date … cs-bytes"),
    Generation("19", "2013", "+ time-taken"),
    Generation("23", "2014", "+ x-forwarded-for, ssl-protocol, ssl-cipher, x-edge-response-result-type"),
    Generation("24", "2015", "+ cs-protocol-version"),
    Generation("26", "2017-12", "+ fle-status, fle-encrypted-fields (field-level encryption)"),
    Generation(
        "33",
        "2019-12",
        "+ c-port, time-to-first-byte, x-edge-detailed-result-type, sc-content-type, sc-content-len, "
        "sc-range-start, sc-range-end",
    ),
)

URL_ENCODED = " URL-encoded by CloudFront, kept as written."


def _one(name: str, column: str, since: str, type_=STRING, doc: str = "", **kw) -> Token:
    return Token(name, (Field(column, type_, doc, **kw),), since=since)


TOKENS = (
    Token("date", (), since="18"),
    Token("time", (), since="18"),
    _one("x-edge-location", "location", "18", doc="Edge location that served the request (IATA code + number)."),
    _one("sc-bytes", "bytes", "18", BIGINT, "Bytes the server sent to the viewer, headers included."),
    _one("c-ip", "request_ip", "18", doc="IP address of the viewer (IPv4 or IPv6), as written."),
    _one("cs-method", "method", "18", doc="HTTP request method."),
    _one("cs(Host)", "host", "18", doc="Domain name of the distribution (d111111abcdef8.cloudfront.net)."),
    _one("cs-uri-stem", "uri", "18", doc="Path of the request, without the query string." + URL_ENCODED),
    _one("sc-status", "status", "18", INT, "HTTP status code of the response; 0 when the viewer went away."),
    _one("cs(Referer)", "referrer", "18", doc="Referer header." + URL_ENCODED),
    _one("cs(User-Agent)", "user_agent", "18", doc="User-Agent header." + URL_ENCODED),
    _one("cs-uri-query", "query_string", "18", doc="Query string of the request." + URL_ENCODED),
    _one("cs(Cookie)", "cookie", "18", doc="Cookie header (when cookie logging is on)." + URL_ENCODED),
    _one("x-edge-result-type", "result_type", "18", doc="How the edge classified the response (Hit, Miss, Error…)."),
    _one("x-edge-request-id", "request_id", "18", doc="Opaque id of the request."),
    _one("x-host-header", "host_header", "18", doc="Host header the viewer sent."),
    _one("cs-protocol", "request_protocol", "18", doc="Protocol of the viewer request (http, https, ws, wss)."),
    _one("cs-bytes", "request_bytes", "18", BIGINT, "Bytes of the viewer request, headers included."),
    _one("time-taken", "time_taken", "19", DOUBLE, "Seconds from receiving the request to sending the response."),
    _one(
        "x-forwarded-for",
        "forwarded_for",
        "23",
        doc="X-Forwarded-For of the viewer, when it came via a proxy.",
        athena_name="xforwarded_for",
    ),
    _one("ssl-protocol", "ssl_protocol", "23", doc="TLS protocol of an HTTPS request."),
    _one("ssl-cipher", "ssl_cipher", "23", doc="TLS cipher of an HTTPS request."),
    _one("x-edge-response-result-type", "response_result_type", "23", doc="Result type as the response left."),
    _one("cs-protocol-version", "http_version", "24", doc="HTTP version of the viewer request (HTTP/2.0…)."),
    _one("fle-status", "fle_status", "26", doc="Field-level encryption status."),
    _one(
        "fle-encrypted-fields", "fle_encrypted_fields", "26", INT, "Number of fields field-level encryption encrypted."
    ),
    _one("c-port", "c_port", "33", INT, "Port of the viewer."),
    _one("time-to-first-byte", "time_to_first_byte", "33", DOUBLE, "Seconds until the first response byte left."),
    _one("x-edge-detailed-result-type", "x_edge_detailed_result_type", "33", doc="Detailed result type."),
    _one("sc-content-type", "sc_content_type", "33", doc="Content-Type of the response." + URL_ENCODED),
    _one("sc-content-len", "sc_content_len", "33", BIGINT, "Content-Length of the response."),
    _one("sc-range-start", "sc_range_start", "33", BIGINT, "First byte of a range response."),
    _one("sc-range-end", "sc_range_end", "33", BIGINT, "Last byte of a range response."),
)

TIME = Field(
    "time",
    TIMESTAMP,
    "When the edge finished the response (UTC): the log's `date` and `time` fields as one timestamp. The event time.",
    null=None,
    time_format="%Y-%m-%d %H:%M:%S",
    athena_type="string, the time of day alone (the day is its own column, `date` DATE)",
)

# The prefix a user sets is free text (`logs/`, `cf-`): the name is told by its end, the distribution id by its E.
_NAME = r"(?P<distribution_id>E[A-Z0-9]+)\.\d{4}-\d{2}-\d{2}-\d{2}\.[A-Za-z0-9]+(?:\.gz)?"

FORMAT = LogFormat(
    name="cloudfront",
    title="CloudFront standard logs (web distributions)",
    doc=__doc__ or "",
    grammar=HeaderDelimited(
        tokens=TOKENS,
        generations=GENERATIONS,
        default=tuple(t.name for t in TOKENS),
        header=r"^#Fields:(?P<names>.*)$",
        comment=r"^#",
        delimiter="\t",
        joins=(Join(TIME, ("date", "time"), " "),),
        unknown_names="extra",
        foreign_headers=(
            ForeignLine(
                r"\bx-event\b|\bx-sname\b",
                "a CloudFront RTMP distribution log line (x-event/x-sname fields), not a web distribution log line",
            ),
        ),
    ),
    event_time="time",
    key_layouts=(
        KeyLayout(
            "aws",
            rf"{_NAME}$",
            "{prefix}{distribution_id}.{year}-{month}-{day}-{hour}.{id}.gz",
            "cloudfront/EMLARXS9EXAMPLE.2019-11-14-20.RT4KCN4SGK9.gz",
            days=DayNames(r"[^/]*?E[A-Z0-9]+\."),
        ),
    ),
    key_fields=(Field("distribution_id", STRING, "CloudFront distribution id, from the object name."),),
    partitions=("year", "month", "day"),
    examples=(
        Example(
            "2019-12-13\t22:37:02\tSEA19-C2\t900\t192.0.2.200\tGET\td111111abcdef8.cloudfront.net\t/\t502\t-\t"
            "curl/7.55.1\t-\t-\tError\tkBkDzGnceVtWHqSCqBUqtA_cEs2T3tFUBbnBNkB9El_uVRhHgcZfcw==\twww.example.com\t"
            "http\t387\t0.103\t-\t-\t-\tError\tHTTP/1.1\t-\t-\t12644\t0.103\tOriginDnsError\ttext/html\t507\t-\t-",
            {
                "time": "2019-12-13T22:37:02Z",
                "location": "SEA19-C2",
                "bytes": 900,
                "request_ip": "192.0.2.200",
                "status": 502,
                "referrer": None,
                "user_agent": "curl/7.55.1",
                "request_bytes": 387,
                "time_taken": 0.103,
                "http_version": "HTTP/1.1",
                "c_port": 12644,
                "x_edge_detailed_result_type": "OriginDnsError",
                "sc_content_len": 507,
                "sc_range_start": None,
            },
            "AWS CloudFront developer guide, standard log file example (33 fields)",
        ),
    ),
)
