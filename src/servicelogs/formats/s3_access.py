"""Amazon S3 server access logs.

Reference: "Amazon S3 server access log format", Amazon S3 user guide
(docs.aws.amazon.com/AmazonS3/latest/userguide/LogFormat.html).

Each line is space-separated; the Request-URI, Referer and User-Agent are double-quoted and the time is
bracketed, `[06/Feb/2019:00:00:38 +0000]` (two pieces; any UTC offset is normalised to UTC). Any field
may be "-". AWS has appended fields over the years (the generations below, named by field count).
S3 does not escape a `"` inside the quoted fields, and real logs have them (a Request-URI `"GET /" HTTP/1.1"`,
a User-Agent ending in `""`): the bulk tokenizer sees such a line's shape change and hands it to the
slow path, whose exact regex anchors each quoted field on the typed fields that follow it. Several rows
may share a request id (a batch delete logs one row per key): every row is kept. Column names follow
the Athena DDL AWS publishes for these logs (bucketowner, requestdatetime, httpstatus, ...).
"""

from servicelogs.formats._common import one
from servicelogs.spec import (
    DayFolders,
    DayNames,
    Delimited,
    Example,
    Field,
    Generation,
    KeyLayout,
    LogFormat,
    Token,
)
from servicelogs.types import BIGINT, INT, TIMESTAMP

# Field generations, oldest first, named by field count. `appeared` is approximate (first seen in the AWS
# docs' history or announcements), for orientation only: a line's generation is told by its field count.
GENERATIONS = (
    Generation("17", "2008-03", "launch layout: up to the User-Agent"),
    Generation("18", "2010-02", "+ versionid"),
    Generation("24", "2019-03", "+ hostid, sigv, ciphersuite, authtype, endpoint, tlsversion"),
    Generation("25", "2019-12", "+ accesspointarn"),
    Generation("26", "2022-11", "+ aclrequired"),
    Generation("27", "2025-01", "+ sourceregion"),
)

TOKENS = (
    one("bucketowner", "17", doc="Canonical user id of the owner of the source bucket."),
    one("bucket_name", "17", doc="Name of the bucket the request was processed against.", null=None),
    Token(
        "time",
        (
            Field(
                "requestdatetime",
                TIMESTAMP,
                "When the request was received (UTC; the log's offset applied). The event time.",
                null=None,
                time_format="[%d/%b/%Y:%H:%M:%S %z]",
            ),
        ),
        since="17",
        pieces=2,
    ),
    one("remoteip", "17", doc="Apparent IP address of the requester."),
    one("requester", "17", doc="Canonical user id or IAM ARN of the requester; null when unauthenticated."),
    one("requestid", "17", doc="Id S3 gave the request; rows of one batch delete share it."),
    one("operation", "17", doc="SOAP.operation, REST.HTTP_method.resource_type, WEBSITE.…, BATCH.DELETE.OBJECT, S3.…"),
    one("key", "17", doc="Key of the object, URL-encoded; null if the operation takes none."),
    one("request_uri", "17", doc="Request-URI part of the HTTP request line (method, URI, protocol).", quoted=True),
    one("httpstatus", "17", INT, "HTTP status code of the response."),
    one("errorcode", "17", doc="Amazon S3 error code; null if no error occurred."),
    one("bytessent", "17", BIGINT, "Response bytes sent, HTTP overhead excluded; null if zero."),
    one("objectsize", "17", BIGINT, "Total size of the object."),
    one("totaltime", "17", INT, "Milliseconds the request was in flight, from the server's perspective."),
    one("turnaroundtime", "17", INT, "Milliseconds S3 spent processing the request."),
    one("referrer", "17", doc="Referer header.", quoted=True),
    one("useragent", "17", doc="User-Agent header.", quoted=True),
    one("versionid", "18", doc="Version id in the request; null if the operation takes none."),
    one("hostid", "24", doc="x-amz-id-2, the request id of the host."),
    one("sigv", "24", doc="Signature version used to authenticate the request (SigV2, SigV4)."),
    one("ciphersuite", "24", doc="TLS cipher negotiated for HTTPS requests."),
    one("authtype", "24", doc="Authentication type (AuthHeader, QueryString)."),
    one("endpoint", "24", doc="Host header (endpoint) used to connect to S3."),
    one("tlsversion", "24", doc="TLS version negotiated by the client (TLSv1.2, TLSv1.3)."),
    one("accesspointarn", "25", doc="ARN of the access point of the request."),
    one("aclrequired", "26", doc="'Yes' when an ACL was required to authorize the request."),
    one("sourceregion", "27", doc="AWS Region the request came from, when S3 can tell."),
)

# Exact line shape for the slow path. A quoted field is `"…"` or a bare "-"; it ends at the first quote
# after which the typed fields that follow still match, so raw quotes inside it are kept.
_S, _Q, _N, _T = r"(\S+)", r'("(?:.*?)"|-)', r"(-|\d+)", r'([^ "]\S*)'
LINE_REGEX = (
    rf"{_S} {_S} (\[\S+) (\S+\]) {_S} {_S} {_S} {_S} {_S} {_Q} (-|\d{{3}}) {_S} {_N} {_N} {_N} {_N} {_Q} {_Q}"
    rf"(?: {_T}(?: {_T} {_T} {_T} {_T} {_T} {_T}(?: {_T}(?: {_T}(?: {_T})?)?)?)?)?"
    r'(?P<extra>(?: [^"]*)?)'
)

_STAMP = r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9A-Za-z]+"

FORMAT = LogFormat(
    name="s3_access",
    title="Amazon S3 server access logs",
    doc=__doc__ or "",
    grammar=Delimited(tokens=TOKENS, generations=GENERATIONS, line_regex=LINE_REGEX),
    event_time="requestdatetime",
    key_layouts=(
        KeyLayout(
            "date-partitioned",
            rf"(?:^|/)(?P<account_id>\d{{12}})/(?P<region>[a-z0-9-]+)/[^/]+/\d{{4}}/\d{{2}}/\d{{2}}/{_STAMP}$",
            "{prefix}{account_id}/{region}/{bucket}/{year}/{month}/{day}/"
            "{year}-{month}-{day}-{hour}-{minute}-{second}-{unique}",
            "s3-logs/123456789012/us-west-1/amzn-s3-demo-bucket1/2019/02/06/2019-02-06-00-00-38-0A1B2C3D4E5F6A7B",
            days=DayFolders(r"\d{12}/[a-z0-9-]+/[^/]+/"),
        ),
        KeyLayout(
            "simple prefix",
            rf"(?:^|/)[^/]*{_STAMP}$",
            "{prefix}{year}-{month}-{day}-{hour}-{minute}-{second}-{unique}",
            "s3-logs/2019-02-06-00-00-38-0A1B2C3D4E5F6A7B",
            days=DayNames(r"[^/]*?"),
        ),
    ),
    examples=(
        Example(
            "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be amzn-s3-demo-bucket1 "
            "[06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be "
            '3E57427F3EXAMPLE REST.GET.VERSIONING - "GET /amzn-s3-demo-bucket1?versioning HTTP/1.1" 200 - 113 - 7 - '
            '"-" "S3Console/0.4" - s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= '
            "SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader amzn-s3-demo-bucket1.s3.us-west-1.amazonaws.com TLSV1.2 "
            "arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP Yes us-east-1",
            {
                "bucketowner": "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be",
                "bucket_name": "amzn-s3-demo-bucket1",
                "requestdatetime": "2019-02-06T00:00:38Z",
                "remoteip": "192.0.2.3",
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
                "sigv": "SigV4",
                "authtype": "AuthHeader",
                "tlsversion": "TLSV1.2",
                "accesspointarn": "arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP",
                "aclrequired": "Yes",
                "sourceregion": "us-east-1",
            },
            "AWS S3 user guide, 'Amazon S3 server access log format', example log (27-field layout)",
        ),
    ),
)
