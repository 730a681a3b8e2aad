"""AWS CloudTrail log files.

Reference: "CloudTrail record contents" and "CloudTrail userIdentity element", AWS CloudTrail user guide
(docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html).

A delivery object is gzipped JSON, `{"Records": [event, …]}`; one row per event. The documented
top-level keys are typed (eventTime a UTC timestamp, readOnly a boolean, resources a list of structs,
userIdentity a struct of its documented members). The free-form keys keep their JSON text in json_*
columns (json_requestParameters, json_responseElements, json_additionalEventData,
json_serviceEventDetails, and userIdentity again as json_userIdentity, so no member is lost), which
Athena's and DuckDB's JSON functions read. Column names are the JSON keys (Athena lowercases them, as
in AWS's published CloudTrail DDL). Keys AWS adds after this declaration land in extra_fields.

Objects of JSON Lines events (EventBridge, Firehose) are read too: one row per event. Digest files
(log file integrity validation) and empty `Records` arrays are counted and skipped; a CloudWatch Logs
subscription payload is rejected with a reason (its events are JSON-encoded strings, not records).
"""

from servicelogs.spec import (
    ACCOUNT_ID,
    DayFolders,
    Example,
    Field,
    ForeignLine,
    Generation,
    HiveStorage,
    IgnoredKey,
    JsonKey,
    JsonRecords,
    KeyLayout,
    LogFormat,
    SkipObject,
)
from servicelogs.types import BOOLEAN, JSON, STRING, TIMESTAMP, ListOf, StructOf

# eventVersion values AWS has shipped. "Since" per key from the record contents page; a version this
# list does not know is converted all the same (its new keys go to extra_fields) and counted by name.
_LATER = "a minor version: new optional keys (eventCategory, tlsDetails, addendum, … see the record contents page)"
GENERATIONS = (
    Generation("1.0", "2013-11", "launch layout"),
    Generation("1.01", "unknown", "+ requestID, eventID, readOnly, resources"),
    Generation("1.02", "unknown", "+ eventType, apiVersion, recipientAccountId"),
    Generation("1.03", "unknown", "+ sharedEventID"),
    Generation("1.04", "unknown", "+ vpcEndpointId"),
    Generation("1.05", "unknown", "+ serviceEventDetails"),
    Generation("1.06", "unknown", "+ managementEvent"),
    Generation("1.07", "unknown", _LATER),
    Generation("1.08", "unknown", _LATER),
    Generation("1.09", "unknown", _LATER),
    Generation("1.10", "unknown", _LATER),
    Generation("1.11", "unknown", "the current version in the 2025 record contents page"),
)

_SESSION_ISSUER = StructOf(
    "struct",
    (("type", STRING), ("principalId", STRING), ("arn", STRING), ("accountId", STRING), ("userName", STRING)),
)
USER_IDENTITY = StructOf(
    "struct",
    (
        ("type", STRING),
        ("principalId", STRING),
        ("arn", STRING),
        ("accountId", STRING),
        ("accessKeyId", STRING),
        ("userName", STRING),
        ("invokedBy", STRING),
        ("credentialId", STRING),
        ("identityProvider", STRING),
        ("userId", STRING),
        ("identityStoreArn", STRING),
        ("onBehalfOf", StructOf("struct", (("userId", STRING), ("identityStoreArn", STRING)))),
        (
            "sessionContext",
            StructOf(
                "struct",
                (
                    ("sessionIssuer", _SESSION_ISSUER),
                    ("webIdFederationData", StructOf("struct", (("federatedProvider", STRING), ("attributes", JSON)))),
                    ("attributes", StructOf("struct", (("creationDate", TIMESTAMP), ("mfaAuthenticated", BOOLEAN)))),
                    ("sourceIdentity", STRING),
                    ("ec2RoleDelivery", STRING),
                    ("assumedRoot", STRING),
                ),
            ),
        ),
    ),
)
RESOURCES = ListOf("list", StructOf("struct", (("ARN", STRING), ("accountId", STRING), ("type", STRING))))
TLS_DETAILS = StructOf(
    "struct", (("tlsVersion", STRING), ("cipherSuite", STRING), ("clientProvidedHostHeader", STRING))
)
ADDENDUM = StructOf(
    "struct",
    (("reason", STRING), ("updatedFields", STRING), ("originalRequestID", STRING), ("originalEventID", STRING)),
)


def _key(key: str, type_=STRING, doc: str = "", *, column: str | None = None, required: bool = False, **kw) -> JsonKey:
    # In JSON "no value" is null or an absent key; null=None marks a key every record must have.
    return JsonKey(key, Field(column or key, type_, doc, null=None if required else "null", **kw))


def _json(key: str, doc: str, *, in_athena: bool = True) -> JsonKey:
    # AWS's Athena DDL names these columns by their key (lowercased) and types them STRING.
    text = doc + " JSON text, as written; null when absent or null."
    return _key(key, JSON, text, column=f"json_{key}", athena_name=key.lower() if in_athena else None)


KEYS = (
    # Not required: other parsers accept records without it (an event forwarded by another tool), and a row
    # without a generation is counted under "no eventVersion".
    _key("eventVersion", doc="Version of the record format (1.0 … 1.11): the record's generation."),
    _key("userIdentity", USER_IDENTITY, "Who made the request: the documented members of userIdentity."),
    _json(
        "userIdentity", "The whole userIdentity element (members not in the struct column included).", in_athena=False
    ),
    _key("eventTime", TIMESTAMP, "When the request completed (UTC). The event time.", required=True),
    _key("eventSource", doc="Service the request was made to (ec2.amazonaws.com)."),
    _key("eventName", doc="The requested action (an API operation name)."),
    _key("awsRegion", doc="Region the request was made to."),
    _key("sourceIPAddress", doc="IP address the request came from, or the calling service's name."),
    _key("userAgent", doc="Agent through which the request was made."),
    _key("errorCode", doc="AWS service error, when the request failed."),
    _key("errorMessage", doc="Description of the error, when the request failed."),
    _json("requestParameters", "Parameters sent with the request."),
    _json("responseElements", "Response of actions that make changes."),
    _json("additionalEventData", "Data about the event that is neither request nor response."),
    _key("requestID", doc="Request id, generated by the called service (since 1.01)."),
    _key("eventID", doc="GUID of the event, generated by CloudTrail (since 1.01)."),
    _key(
        "eventType",
        doc="AwsApiCall, AwsServiceEvent, AwsConsoleAction, AwsConsoleSignIn (also spelled AwsConsoleSignin), "
        "AwsCloudTrailInsight, AwsVpceEvent (since 1.02).",
    ),
    _key("apiVersion", doc="API version of an AwsApiCall (since 1.02)."),
    _key("managementEvent", BOOLEAN, "Whether the event is a management event (since 1.06)."),
    _key("readOnly", BOOLEAN, "Whether the operation is read-only (since 1.01)."),
    _key("resources", RESOURCES, "Resources accessed: ARN, owner account id, type (since 1.01)."),
    _key("recipientAccountId", doc="Account that received this event (since 1.02)."),
    _json("serviceEventDetails", "What triggered an AwsServiceEvent and its result (since 1.05)."),
    _key("sharedEventID", doc="GUID shared by the copies of one event delivered to several accounts (since 1.03)."),
    _key("vpcEndpointId", doc="VPC endpoint the request went through (since 1.04)."),
    _key("vpcEndpointAccountId", doc="Account that owns that VPC endpoint."),
    _key("eventCategory", doc="Management, Data, NetworkActivity or Insight."),
    _key("addendum", ADDENDUM, "Why and how a delayed or updated event was changed."),
    _key("sessionCredentialFromConsole", BOOLEAN, "Whether the session credentials came from the console."),
    _json("edgeDeviceDetails", "Edge device of the request (Snow family)."),
    _key("tlsDetails", TLS_DETAILS, "TLS version, cipher suite and host header of the request."),
    _json(
        "insightDetails", "Insights events: state, event source and name, insight type and statistics.", in_athena=False
    ),
)

_REGION = r"(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)"
_REGION_PATH = r"[a-z]{2}(?:-[a-z]+)+-\d+"
_NAME = r"\d{12}_CloudTrail(?:-Insight)?_[a-z0-9-]+_\d{8}T\d{4}Z_[A-Za-z0-9]+\.json(?:\.gz)?"
_NAME_EXAMPLE = "123456789012_CloudTrail_us-east-2_20150801T0210Z_Mu0KsOhtH1ar15ZZ.json.gz"
ORG_ID = Field("org_id", STRING, "AWS Organizations id (o-…) of an organization trail, from the object key.")

FORMAT = LogFormat(
    name="cloudtrail",
    title="AWS CloudTrail log files",
    doc=__doc__ or "",
    grammar=JsonRecords(
        keys=KEYS,
        generations=GENERATIONS,
        records_key="Records",
        version_key="eventVersion",
        skip_objects=(
            SkipObject(
                ("digestStartTime", "digestEndTime"),
                "a CloudTrail digest file (log file integrity validation), not events",
            ),
        ),
        empty_reason="a CloudTrail log file with an empty Records array (no events in its period)",
        # Athena's CloudTrail table ("Querying AWS CloudTrail logs", Athena user guide).
        hive_storage=HiveStorage(
            serde="com.amazon.emr.hive.serde.CloudTrailSerde",
            input_format="com.amazon.emr.cloudtrail.CloudTrailInputFormat",
        ),
    ),
    event_time="eventTime",
    key_layouts=(
        # One layout for both trail kinds: an organization trail adds the organization id before the
        # account (AWSLogs/o-…/<account>/CloudTrail/…); Insights events go to CloudTrail-Insight/.
        KeyLayout(
            "aws",
            rf"(?:^|/)AWSLogs/(?:(?P<org_id>o-[a-z0-9]{{10,32}})/)?(?P<account_id>\d{{12}})/CloudTrail(?:-Insight)?/"
            rf"{_REGION}/\d{{4}}/\d{{2}}/\d{{2}}/{_NAME}$",
            "AWSLogs/{account_id}/CloudTrail/{region}/{year}/{month}/{day}/"
            "{account_id}_CloudTrail_{region}_{year}{month}{day}T{hour}{minute}Z_{nonce}.json.gz",
            f"AWSLogs/o-exampleorgid/123456789012/CloudTrail/us-east-2/2015/08/01/{_NAME_EXAMPLE}",
            days=DayFolders(rf"AWSLogs/(?:o-[a-z0-9]{{10,32}}/)?\d{{12}}/CloudTrail(?:-Insight)?/{_REGION_PATH}/"),
        ),
    ),
    ignored_keys=(
        IgnoredKey(
            r"(?:^|/)CloudTrail-Digest/|_CloudTrail-Digest_",
            "a CloudTrail digest file (log file integrity validation), not events",
        ),
    ),
    foreign_lines=(
        ForeignLine(
            r'(?s)^\{(?=.*"messageType")(?=.*"logEvents")',
            "a CloudWatch Logs subscription payload (its logEvents hold JSON-encoded events), not a CloudTrail record",
        ),
    ),
    key_fields=(ACCOUNT_ID, ORG_ID),
    examples=(
        Example(
            '{"eventVersion": "1.0", "userIdentity": {"type": "IAMUser", "principalId": "EX_PRINCIPAL_ID", '
            '"arn": "arn:aws:iam::123456789012:user/Alice", "accessKeyId": "EXAMPLE_KEY_ID", '
            '"accountId": "123456789012", "userName": "Alice"}, "eventTime": "2014-03-06T21:22:54Z", '
            '"eventSource": "ec2.amazonaws.com", "eventName": "StartInstances", "awsRegion": "us-east-2", '
            '"sourceIPAddress": "205.251.233.176", "userAgent": "ec2-api-tools 1.6.12.2", '
            '"requestParameters": {"instancesSet": {"items": [{"instanceId": "i-ebeaf9e2"}]}}}',
            {
                "eventVersion": "1.0",
                "eventTime": "2014-03-06T21:22:54Z",
                "eventName": "StartInstances",
                "awsRegion": "us-east-2",
                "eventType": None,
                "readOnly": None,
                "json_responseElements": None,
            },
            "AWS CloudTrail user guide, CloudTrail log file examples (EC2 StartInstances, eventVersion 1.0)",
        ),
    ),
)
