"""What the load balancer access log formats share (Classic `elb`, Application `alb`), declared once.

ELB (2014) came first; ALB (2016) kept its line shape: the client and backend `ip:port`, the three
timings, the status codes and byte counts, the quoted request line and user agent, the TLS cipher and
protocol. The builders below give those tokens their shared documentation; each format names the
columns as AWS's Athena DDL for that log does. Not a format (its name starts with `_`).
"""

from __future__ import annotations

from servicelogs.formats._common import one
from servicelogs.spec import DayFolders, Field, ForeignLine, Split, Token
from servicelogs.types import BIGINT, DOUBLE, INT, STRING

SECONDS = (
    "Seconds, with millisecond precision; -1 when the load balancer could not dispatch the request or the target "
    "closed the connection."
)
DATE_PATH = r"\d{4}/\d{2}/\d{2}"
"""The YYYY/MM/DD folders of the AWSLogs/<account>/elasticloadbalancing/<region>/ key layout."""
DAYS = DayFolders(r"AWSLogs/\d{12}/elasticloadbalancing/[a-z0-9-]+/")
"""Where those folders are: below each account's region folder."""

ENABLE_ACCESS_LOG = ForeignLine(
    r"^Enable AccessLog for ELB: ", "the test line ELB writes when access logging is enabled, not a request"
)


def host_port(token: str, since: str, ip: tuple[str, str], port: tuple[str, str]) -> Token:
    """`ip:port` (IPv4, IPv6 with or without brackets), or "-" for none; `ip` and `port` are (name, doc)."""
    return Token(token, (Field(ip[0], STRING, ip[1]), Field(port[0], INT, port[1])), since=since, split=Split.HOST_PORT)


def seconds(name: str, since: str, what: str) -> Token:
    return one(name, since, DOUBLE, f"{what} {SECONDS}")


def byte_counts(since: str) -> tuple[Token, Token]:
    return (
        one("received_bytes", since, BIGINT, "Size of the request received from the client, headers included."),
        one("sent_bytes", since, BIGINT, "Size of the response sent to the client, headers included."),
    )


def http_request(since: str, verb: str, url: str, proto: str) -> Token:
    """The quoted request line; TCP/SSL listeners write "- - - ", which gives three nulls."""
    return Token(
        "request",
        (
            Field(verb, STRING, "HTTP method of the request line."),
            Field(url, STRING, "URL of the request line, as the client sent it (may hold spaces)."),
            Field(proto, STRING, "Protocol of the request line (HTTP/1.1, HTTP/2.0); null if absent."),
        ),
        since=since,
        split=Split.HTTP_REQUEST,
        quoted=True,
    )


def user_agent_and_tls(since: str) -> tuple[Token, Token, Token]:
    return (
        one("user_agent", since, doc="User-Agent header, up to 8 KB.", quoted=True),
        one("ssl_cipher", since, doc="TLS cipher (https listeners)."),
        one("ssl_protocol", since, doc="TLS protocol (https listeners)."),
    )
