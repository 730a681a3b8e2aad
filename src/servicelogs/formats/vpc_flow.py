"""VPC Flow Logs (and Transit Gateway flow logs) delivered to S3 as text.

References: "Flow log records" → "Available fields", Amazon VPC user guide
(docs.aws.amazon.com/vpc/latest/userguide/flow-log-records.html), and "Transit Gateway Flow Logs records"
(docs.aws.amazon.com/vpc/latest/tgw/tgw-flow-logs.html).

A flow log has the default format (the 14 version-2 fields) or a custom format: any of the documented
fields, in any order. Each object AWS delivers to S3 starts with a header line naming its fields
(`version account-id interface-id …`); that header decides the order of the space-separated values below
it. Objects without a header use the default format. One union schema holds every field of versions 2 to
11 and of Transit Gateway flow logs (a variant: its own fields, the same delivery), so a field a format
lacks is null. A header naming a field this declaration does not know makes every line under it a reject
naming that field: the columns are never shifted silently.

Column names follow the Athena DDL AWS publishes (hyphens → underscores), except the record's `region`
field, `record_region` here, because `region` is the partition column from the object key. `start` and
`end` (epoch seconds) are UTC timestamps; NODATA and SKIPDATA records are rows, their traffic fields null.
"""

from servicelogs.spec import (
    EPOCH_SECONDS,
    DayFolders,
    Example,
    Field,
    ForeignLine,
    Generation,
    HeaderDelimited,
    KeyLayout,
    LogFormat,
    Token,
)
from servicelogs.types import BIGINT, INT, STRING, TIMESTAMP

GENERATIONS = (
    Generation("2", "2015-06", "the default format"),
    Generation("3", "2019-09", "+ vpc-id, subnet-id, instance-id, tcp-flags, type, pkt-srcaddr, pkt-dstaddr"),
    Generation("4", "2020-05", "+ region, az-id, sublocation-type, sublocation-id"),
    Generation("5", "2021-03", "+ pkt-src-aws-service, pkt-dst-aws-service, flow-direction, traffic-path"),
    Generation("7", "2022-09", "+ ecs-* (Amazon ECS task metadata)"),
    Generation("8", "2024", "+ reject-reason"),
    Generation("11", "2025", "+ resource-id, encryption-status, interface-type (as in vectordotdev/vrl's v11 test)"),
    Generation("tgw", "2022-07", "Transit Gateway flow log fields (their own flow logs, same delivery)"),
)


def _one(name: str, since: str, type_=STRING, doc: str = "", column: str | None = None, **kw) -> Token:
    return Token(name, (Field(column or name.replace("-", "_"), type_, doc, **kw),), since=since)


TOKENS = (
    _one("version", "2", INT, "Flow log version: the highest version among the fields of the format."),
    _one("account-id", "2", doc="Account that owns the network interface; 'unknown' for some AWS-managed ENIs."),
    _one("interface-id", "2", doc="Network interface id."),
    _one("srcaddr", "2", doc="Source address of incoming or destination of outgoing traffic at the interface."),
    _one("dstaddr", "2", doc="Destination address of incoming or source of outgoing traffic at the interface."),
    _one("srcport", "2", INT, "Source port."),
    _one("dstport", "2", INT, "Destination port."),
    _one("protocol", "2", INT, "IANA protocol number (6 TCP, 17 UDP, 1 ICMP)."),
    _one("packets", "2", BIGINT, "Packets transferred in the capture window."),
    _one("bytes", "2", BIGINT, "Bytes transferred in the capture window."),
    _one(
        "start",
        "2",
        TIMESTAMP,
        "When the first packet of the window was received (UTC; epoch seconds in the log). The event time; "
        "a custom format without it is partitioned by the delivery date in the object key.",
        time_format=EPOCH_SECONDS,
        athena_type="bigint (epoch seconds)",
    ),
    _one(
        "end",
        "2",
        TIMESTAMP,
        "When the last packet of the window was received (UTC).",
        time_format=EPOCH_SECONDS,
        athena_type="bigint (epoch seconds)",
    ),
    _one("action", "2", doc="ACCEPT or REJECT; null for NODATA/SKIPDATA records."),
    _one("log-status", "2", doc="OK, NODATA (no traffic in the window) or SKIPDATA (records skipped)."),
    _one("vpc-id", "3", doc="VPC of the interface."),
    _one("subnet-id", "3", doc="Subnet of the interface."),
    _one("instance-id", "3", doc="Instance of the interface; null for requester-managed interfaces."),
    _one("tcp-flags", "3", INT, "Bitmask of the TCP flags seen in the window (FIN 1, SYN 2, RST 4, SYN-ACK 18)."),
    _one("type", "3", doc="Traffic type: IPv4, IPv6 or EFA."),
    _one("pkt-srcaddr", "3", doc="Packet-level source address (differs from srcaddr behind a NAT gateway)."),
    _one("pkt-dstaddr", "3", doc="Packet-level destination address."),
    _one(
        "region",
        "4",
        doc="Region of the interface (the record's `region` field).",
        column="record_region",
        athena_name="region",
    ),
    _one("az-id", "4", doc="Availability Zone id of the interface."),
    _one("sublocation-type", "4", doc="wavelength, outpost or localzone."),
    _one("sublocation-id", "4", doc="Id of the sublocation."),
    _one("pkt-src-aws-service", "5", doc="AWS service of pkt-srcaddr's IP range (S3, EC2…)."),
    _one("pkt-dst-aws-service", "5", doc="AWS service of pkt-dstaddr's IP range."),
    _one("flow-direction", "5", doc="ingress or egress, relative to the interface."),
    _one("traffic-path", "5", INT, "Path egress traffic takes (1 to 8, see the user guide)."),
    _one("ecs-cluster-arn", "7", doc="ECS cluster ARN."),
    _one("ecs-cluster-name", "7", doc="ECS cluster name."),
    _one("ecs-container-instance-arn", "7", doc="ECS container instance ARN (EC2 launch type)."),
    _one("ecs-container-instance-id", "7", doc="ECS container instance id (EC2 launch type)."),
    _one("ecs-container-id", "7", doc="Docker id of the task's first container."),
    _one("ecs-second-container-id", "7", doc="Docker id of the task's second container."),
    _one("ecs-service-name", "7", doc="ECS service name."),
    _one("ecs-task-definition-arn", "7", doc="ECS task definition ARN."),
    _one("ecs-task-arn", "7", doc="ECS task ARN."),
    _one("ecs-task-id", "7", doc="ECS task id."),
    _one("reject-reason", "8", doc="Why traffic was rejected (BPA: VPC Block Public Access)."),
    _one("resource-id", "11", doc="Id of the resource behind the interface (a NAT gateway…)."),
    _one("encryption-status", "11", INT, "Whether the traffic was encrypted in transit (0, 1, 2, 3)."),
    _one("interface-type", "11", doc="Kind of interface (nat_gateway…)."),
    _one("resource-type", "tgw", doc="Transit Gateway flow logs: TransitGateway or TransitGatewayAttachment."),
    _one("tgw-id", "tgw", doc="Transit gateway id."),
    _one("tgw-attachment-id", "tgw", doc="Transit gateway attachment id."),
    _one("tgw-src-vpc-account-id", "tgw", doc="Account of the source VPC."),
    _one("tgw-dst-vpc-account-id", "tgw", doc="Account of the destination VPC."),
    _one("tgw-src-vpc-id", "tgw", doc="Source VPC id."),
    _one("tgw-dst-vpc-id", "tgw", doc="Destination VPC id."),
    _one("tgw-src-subnet-id", "tgw", doc="Source subnet id."),
    _one("tgw-dst-subnet-id", "tgw", doc="Destination subnet id."),
    _one("tgw-src-eni", "tgw", doc="Source ENI of the attachment."),
    _one("tgw-dst-eni", "tgw", doc="Destination ENI of the attachment."),
    _one("tgw-src-az-id", "tgw", doc="Source Availability Zone id."),
    _one("tgw-dst-az-id", "tgw", doc="Destination Availability Zone id."),
    _one("tgw-pair-attachment-id", "tgw", doc="Attachment of the other direction of the flow."),
    _one("packets-lost-no-route", "tgw", BIGINT, "Packets lost: no route."),
    _one("packets-lost-blackhole", "tgw", BIGINT, "Packets lost: blackhole route."),
    _one("packets-lost-mtu-exceeded", "tgw", BIGINT, "Packets lost: MTU exceeded."),
    _one("packets-lost-ttl-expired", "tgw", BIGINT, "Packets lost: TTL expired."),
)

DEFAULT = tuple(t.name for t in TOKENS if t.since == "2")
_WORD = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
_DAY = r"(?P<year>\d{4})/(?P<month>\d{2})/(?P<day>\d{2})/(?:\d{2}/)?"
_FILE = r"\d{12}_vpcflowlogs_[a-z0-9-]+_fl-[0-9a-z]+_\d{8}T\d{4}Z_[0-9a-zA-Z]+\.log(?:\.gz)?"

FORMAT = LogFormat(
    name="vpc_flow",
    title="VPC Flow Logs (and Transit Gateway flow logs)",
    doc=__doc__ or "",
    grammar=HeaderDelimited(
        tokens=TOKENS,
        generations=GENERATIONS,
        default=DEFAULT,
        header=rf"^(?P<names>{_WORD}(?: +{_WORD})*) *$",
        delimiter=" ",
        unknown_names="reject",
    ),
    event_time="start",
    key_layouts=(
        KeyLayout(
            "aws",
            rf"(?:^|/)AWSLogs/(?P<log_account_id>\d{{12}})/vpcflowlogs/(?P<region>[a-z0-9-]+)/{_DAY}{_FILE}$",
            "AWSLogs/{account_id}/vpcflowlogs/{region}/{year}/{month}/{day}/"
            "{account_id}_vpcflowlogs_{region}_fl-{flow_log_id}_{year}{month}{day}T{hour}{minute}Z_{hash}.log.gz",
            "AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/05/28/"
            "123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20240528T0815Z_fe123456.log.gz",
            days=DayFolders(r"AWSLogs/\d{12}/vpcflowlogs/[a-z0-9-]+/"),
        ),
        KeyLayout(
            "hive-compatible",
            r"(?:^|/)AWSLogs/aws-account-id=(?P<log_account_id>\d{12})/aws-service=vpcflowlogs/"
            r"aws-region=(?P<region>[a-z0-9-]+)/year=(?P<year>\d{4})/month=(?P<month>\d{2})/day=(?P<day>\d{2})/"
            r"(?:hour=\d{2}/)?" + _FILE + "$",
            "AWSLogs/aws-account-id={account_id}/aws-service=vpcflowlogs/aws-region={region}/"
            "year={year}/month={month}/day={day}/"
            "{account_id}_vpcflowlogs_{region}_fl-{flow_log_id}_{year}{month}{day}T{hour}{minute}Z_{hash}.log.gz",
            "AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=us-east-1/"
            "year=2024/month=05/day=28/123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20240528T0815Z_fe123456.log.gz",
            days=DayFolders(
                r"AWSLogs/aws-account-id=\d{12}/aws-service=vpcflowlogs/aws-region=[a-z0-9-]+/",
                ("year={year}", "month={month}", "day={day}"),
            ),
        ),
        KeyLayout(
            "file name only",
            r"(?:^|/)(?P<log_account_id>\d{12})_vpcflowlogs_(?P<region>[a-z0-9-]+)_fl-[0-9a-z]+_"
            r"(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})T\d{4}Z_"
            r"[0-9a-zA-Z]+\.log(?:\.gz)?$",
            "{account_id}_vpcflowlogs_{region}_fl-{flow_log_id}_{year}{month}{day}T{hour}{minute}Z_{hash}.log.gz",
            "123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20240528T0815Z_fe123456.log.gz",
        ),
    ),
    key_fields=(
        Field("log_account_id", STRING, "Account id from the object key: the account the flow log delivers for."),
    ),
    foreign_lines=(
        ForeignLine(r"^\s*\{", "a JSON document (a CloudWatch Logs subscription payload?), not a flow log record"),
    ),
    examples=(
        Example(
            "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 "
            "1418530070 ACCEPT OK",
            {
                "version": 2,
                "account_id": "123456789010",
                "interface_id": "eni-1235b8ca123456789",
                "srcaddr": "172.31.16.139",
                "dstport": 22,
                "protocol": 6,
                "packets": 20,
                "bytes": 4249,
                "start": "2014-12-14T04:06:50Z",
                "end": "2014-12-14T04:07:50Z",
                "action": "ACCEPT",
                "log_status": "OK",
                "vpc_id": None,
            },
            "AWS VPC user guide, flow log record examples (default format, accepted SSH traffic)",
        ),
    ),
)
