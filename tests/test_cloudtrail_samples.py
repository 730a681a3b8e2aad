"""CloudTrail: every record of every sample file accounted for, and exact typed values from real files."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import duckdb
import pytest
from conftest import FIXTURES, SAMPLES

from servicelogs import formats

HERE = FIXTURES / "cloudtrail"
DAY = "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/19"


def key(n: int, suffix: str = "json") -> str:
    return f"{DAY}/123456789012_CloudTrail_us-east-1_20230719T2120Z_f{n:02d}.{suffix}"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


DIGEST = "a CloudTrail digest file (log file integrity validation), not events"
EMPTY = "a CloudTrail log file with an empty Records array (no events in its period)"
CW = "a CloudWatch Logs subscription payload (its logEvents hold JSON-encoded events), not a CloudTrail record"

# file → (rows, reject reasons, skip note). Every record of every file is a row or a reject with a reason,
# and the files that hold no records at all are skipped with the note that says what they are.
ACCOUNTED = {
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-aws-console-sign-in-events-events.jsonl": (
        16,
        [],
        None,
    ),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-aws-console-sign-in-events-records-1.json": (
        1,
        [],
        None,
    ),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-aws-console-sign-in-events-records-2.json": (
        1,
        [],
        None,
    ),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-aws-console-sign-in-events-records-3.json": (
        1,
        [],
        None,
    ),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-aws-console-sign-in-events-records-4.json": (
        1,
        [],
        None,
    ),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-aws-console-sign-in-events-records-5.json": (
        1,
        [],
        None,
    ),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-aws-console-sign-in-events-records-6.json": (
        1,
        [],
        None,
    ),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-events.jsonl": (1, [], None),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-records-1.json": (2, [], None),
    # A userIdentity fragment from the docs, not an event.
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-user-identity-events.jsonl": (
        0,
        ["field 'eventTime' is missing or null"],
        None,
    ),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-examples-records-1.json": (1, [], None),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-examples-records-2.json": (1, [], None),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-examples-records-3.json": (1, [], None),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-examples-records-4.json": (1, [], None),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-examples-records-5.json": (1, [], None),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-examples-records-6.json": (1, [], None),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-examples-records-7.json": (2, [], None),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-validation-digest-file-structure-digest-1.json": (
        0,
        [],
        DIGEST,
    ),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-validation-digest-file-structure-digest-2.json": (
        0,
        [],
        DIGEST,
    ),
    "awsdocs-aws-cloudtrail-user-guide-cloudtrail-tutorial-events.jsonl": (1, [], None),
    "awsdocs-aws-cloudtrail-user-guide-non-api-aws-service-events-events.jsonl": (3, [], None),
    "awsdocs-aws-cloudtrail-user-guide-viewing-service-linked-channels-events.jsonl": (1, [], None),
    "coralogix-aws-shipper-cloudtrail.log.gz": (20, [], None),
    "crowdsecurity-hub-aws-cloudtrail-postexploit.log": (4, [], None),
    "crowdsecurity-hub-aws-cloudtrail.log": (2, [], None),
    "otel-collector-contrib-awslogsencoding-cloudtrail_digest_empty.json": (0, [], DIGEST),
    "otel-collector-contrib-awslogsencoding-cloudtrail_log.json": (7, [], None),
    "otel-collector-contrib-awslogsencoding-cloudtrail_log_cw.json": (0, [CW], None),
    "otel-collector-contrib-awslogsencoding-cloudtrail_log_empty.json": (0, [], EMPTY),
}


def one(convert, name: str):
    suffix = "json.gz" if name.endswith(".gz") else "json"
    return convert("cloudtrail", {key(1, suffix): (HERE / name).read_bytes()})


def test_every_fixture_is_listed():
    on_disk = {p.name for p in HERE.iterdir() if p.name != "README.md"}
    assert on_disk == set(ACCOUNTED)


@pytest.mark.parametrize("name", sorted(ACCOUNTED))
def test_every_record_is_accounted_for(convert, name):
    rows, reasons, note = ACCOUNTED[name]
    out = one(convert, name)
    assert len(out.rows) == rows
    assert [r["reason"] for r in out.rejects] == reasons
    assert out.summary.lines == out.summary.rows + out.summary.rejects == rows + len(reasons)
    assert [r["line_number"] for r in out.rows] == list(range(1, rows + 1))
    if note:
        assert out.summary.objects_skipped == 1 and out.summary.objects_converted == 0
        assert out.summary.skipped[0].reason == note
        assert out.summary.notes == {note: 1}
    else:
        assert out.summary.objects_converted == 1 and out.summary.notes == {}
    for reject in out.rejects:  # a reject keeps its record whole
        assert reject["raw_line"].startswith("{") and reject["raw_line"].endswith("}")
        json.loads(reject["raw_line"])


def test_all_fixtures_in_one_run(convert):
    objects = {}
    for i, name in enumerate(sorted(ACCOUNTED)):
        objects[key(i, "json.gz" if name.endswith(".gz") else "json")] = (HERE / name).read_bytes()
    out = convert("cloudtrail", objects, workers=2)
    assert out.summary.rows == len(out.rows) == sum(r for r, _, _ in ACCOUNTED.values()) == 71
    assert out.summary.rejects == 2 and out.summary.objects_skipped == 4 and out.summary.objects_converted == 25
    assert out.summary.notes == {DIGEST: 3, EMPTY: 1}
    versions = {"1.0", "1.02", "1.04", "1.05", "1.07", "1.08", "1.09"}
    assert set(out.summary.generations) == versions
    assert {r["eventType"] for r in out.rows} == {
        None,  # eventVersion 1.0 has no eventType
        "AwsApiCall",
        "AwsServiceEvent",
        "AwsConsoleSignIn",
        "AwsConsoleSignin",
        "AwsCloudTrailInsight",
    }


def test_version_1_0_record(convert):
    (row,) = one(convert, "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-examples-records-1.json").rows
    assert row["eventVersion"] == "1.0"
    assert row["eventTime"] == utc(2014, 3, 6, 21, 22, 54)
    assert row["userIdentity"]["type"] == "IAMUser"
    assert row["userIdentity"]["arn"] == "arn:aws:iam::123456789012:user/Alice"
    assert row["userIdentity"]["userName"] == "Alice"
    assert row["userIdentity"]["sessionContext"] is None
    assert json.loads(row["json_userIdentity"])["accessKeyId"] == "EXAMPLE_KEY_ID"
    assert row["eventSource"] == "ec2.amazonaws.com" and row["eventName"] == "StartInstances"
    assert row["sourceIPAddress"] == "205.251.233.176" and row["userAgent"] == "ec2-api-tools 1.6.12.2"
    assert json.loads(row["json_requestParameters"]) == {"instancesSet": {"items": [{"instanceId": "i-ebeaf9e2"}]}}
    assert json.loads(row["json_responseElements"])["instancesSet"]["items"][0]["currentState"] == {
        "code": 0,
        "name": "pending",
    }
    assert row["eventType"] is None and row["eventID"] is None and row["readOnly"] is None
    assert row["resources"] is None and row["extra_fields"] is None
    assert (row["account_id"], row["org_id"], row["region"]) == ("123456789012", None, "us-east-1")
    assert (row["year"], row["month"], row["day"]) == ("2014", "03", "06")


def test_otel_records_of_every_shape(convert):
    rows = one(convert, "otel-collector-contrib-awslogsencoding-cloudtrail_log.json").rows
    start, create, publish, insight, error, signin, service = rows

    assert start["readOnly"] is False and start["managementEvent"] is True
    assert start["sessionCredentialFromConsole"] is True
    assert start["tlsDetails"] == {
        "tlsVersion": "TLSv1.2",
        "cipherSuite": "ECDHE-RSA-AES128-GCM-SHA256",
        "clientProvidedHostHeader": "ec2.us-east-1.amazonaws.com",
    }
    attributes = start["userIdentity"]["sessionContext"]["attributes"]
    assert attributes == {"creationDate": utc(2023, 7, 19, 21, 11, 57), "mfaAuthenticated": False}
    assert start["apiVersion"] == "v1" and start["eventCategory"] == "Management"

    # A date AWS writes in its own style inside responseElements stays text in the JSON column.
    assert json.loads(create["json_responseElements"])["user"]["createDate"] == "Jul 19, 2023 9:25:09 PM"

    assert publish["eventCategory"] == "Data" and publish["managementEvent"] is False
    assert publish["resources"] == [
        {
            "ARN": "arn:aws:sns:us-east-1:123456789012:ExampleSNSTopic",
            "accountId": "123456789012",
            "type": "AWS::SNS::Topic",
        }
    ]
    issuer = publish["userIdentity"]["sessionContext"]["sessionIssuer"]
    assert issuer["type"] == "Role" and issuer["arn"] == "arn:aws:iam::123456789012:role/Admin"
    assert publish["userIdentity"]["sessionContext"]["attributes"]["mfaAuthenticated"] is True

    assert insight["eventType"] == "AwsCloudTrailInsight" and insight["eventCategory"] == "Insight"
    assert insight["userIdentity"] is None and insight["eventSource"] is None
    assert insight["eventTime"] == utc(2023, 1, 2, 2, 51)
    assert json.loads(insight["json_insightDetails"])["insightContext"]["statistics"]["insight"] == {"average": 669}

    assert error["eventVersion"] == "1.09" and error["errorCode"] == "TrailNotFoundException"
    assert error["errorMessage"].startswith("Unknown trail: arn:aws:cloudtrail:us-east-1:111122223333:trail/myTrail2")
    assert error["json_responseElements"] is None
    assert json.loads(error["json_requestParameters"]) == {"name": "myTrail2", "isMultiRegionTrail": True}

    identity = signin["userIdentity"]
    assert identity["type"] == "IdentityCenterUser" and identity["userId"] == "d-12345abcde"
    assert identity["identityStoreArn"] == "arn:aws:identitystore::123456789012:identitystore/d-12345abcde"
    assert identity["accessKeyId"] == ""
    assert signin["eventType"] == "AwsConsoleSignIn" and signin["readOnly"] is True
    assert signin["json_requestParameters"] is None
    assert json.loads(signin["json_additionalEventData"])["MFAUsed"] is True

    assert service["eventType"] == "AwsServiceEvent" and service["eventTime"] == utc(2021, 1, 14, 1, 41, 59)
    assert service["userIdentity"]["type"] is None and service["userIdentity"]["invokedBy"] == "AWS Internal"
    assert json.loads(service["json_serviceEventDetails"]) == {
        "rotationType": "AUTOMATIC",
        "keyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
    }
    assert [r["line_number"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert all(r["extra_fields"] is None for r in rows)


def test_real_gzip_delivery_file(convert):
    name = "coralogix-aws-shipper-cloudtrail.log.gz"
    name_in_s3 = "597078901540_CloudTrail_eu-central-1_20231017T0455Z_KREKSWgLUgTraBu8.json.gz"
    delivered = f"AWSLogs/597078901540/CloudTrail/eu-central-1/2023/10/17/{name_in_s3}"
    out = convert("cloudtrail", {delivered: (HERE / name).read_bytes()})
    rows = out.rows
    # Counted independently with `json.load`: 15 records of eventVersion 1.08, 5 of 1.09.
    assert len(rows) == 20 and out.summary.generations == {"1.08": 15, "1.09": 5}
    first, second = rows[0], rows[1]
    assert first["eventName"] == "GetBucketAcl" and first["eventTime"] == utc(2023, 10, 17, 4, 53, 21)
    assert first["userIdentity"]["type"] == "AWSService"
    assert first["userIdentity"]["invokedBy"] == "cloudtrail.amazonaws.com"
    assert first["resources"] == [
        {
            "ARN": "arn:aws:s3:::aws-cloudtrail-logs-597078901540-082ac93e",
            "accountId": "597078901540",
            "type": "AWS::S3::Bucket",
        }
    ]
    assert json.loads(first["json_additionalEventData"])["bytesTransferredOut"] == 480
    assert first["sharedEventID"] == "d0264078-8cb0-45eb-8b53-32a8469888af"
    assert second["eventName"] == "GenerateDataKey" and second["eventVersion"] == "1.08"
    assert (first["region"], first["account_id"]) == ("eu-central-1", "597078901540")


def test_console_sign_in_old_spelling(convert):
    (old,) = one(
        convert,
        "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-aws-console-sign-in-events-records-1.json",
    ).rows
    assert (old["eventVersion"], old["eventType"], old["eventName"]) == ("1.02", "AwsConsoleSignin", "ConsoleLogin")
    assert old["eventTime"] == utc(2014, 7, 8, 17, 35, 32) and old["json_requestParameters"] is None
    assert json.loads(old["json_additionalEventData"]) == {
        "MobileVersion": "No",
        "LoginTo": "https://console.aws.amazon.com/sns",
        "MFAUsed": "No",
    }


def test_json_lines_of_events(convert):
    lines = one(
        convert, "awsdocs-aws-cloudtrail-user-guide-cloudtrail-event-reference-aws-console-sign-in-events-events.jsonl"
    ).rows
    assert len(lines) == 16
    assert {r["eventName"] for r in lines} >= {"ConsoleLogin", "CheckMfa", "PasswordUpdated", "EnableMFADevice"}


def test_service_events_keep_unknown_keys(convert):
    rows = one(convert, "awsdocs-aws-cloudtrail-user-guide-non-api-aws-service-events-events.jsonl").rows
    spot = rows[0]
    assert spot["eventName"] == "BidFulfilledEvent" and spot["eventType"] == "AwsServiceEvent"
    # The doc example capitalises these two keys: not the documented ones, so kept, not lost.
    assert spot["extra_fields"] == ['{"RequestParameters":null}', '{"ResponseElements":null}']
    assert json.loads(spot["json_serviceEventDetails"]) == {"instanceIdSet": ["i-04cf7ed6b11ccfac5"]}


def test_insights_records_file(convert):
    rows = one(convert, "awsdocs-aws-cloudtrail-user-guide-cloudtrail-log-file-examples-records-7.json").rows
    assert [r["eventTime"] for r in rows] == [utc(2019, 11, 14, 0, 51), utc(2019, 11, 14, 0, 52)]
    assert [json.loads(r["json_insightDetails"])["state"] for r in rows] == ["Start", "End"]
    assert {r["sharedEventID"] for r in rows} == {"EXAMPLE2-1729-42f1-b735-5d8c0EXAMPLE"}


def test_json_functions_read_the_json_columns(convert):
    out = one(convert, "otel-collector-contrib-awslogsencoding-cloudtrail_log.json")
    con = duckdb.connect()
    got = con.sql(
        f"SELECT json_extract_string(json_requestParameters, '$.instancesSet.items[0].instanceId') AS first, "
        f"json_extract(json_userIdentity, '$.sessionContext.attributes.mfaAuthenticated')::VARCHAR AS mfa, "
        f"resources[1].ARN AS arn, userIdentity.sessionContext.attributes.creationDate AS created "
        f"FROM read_parquet('{out.target}/cloudtrail/**/*.parquet') ORDER BY line_number"
    ).fetchall()
    assert got[0][:2] == ("i-EXAMPLE56126103cb", '"false"')
    assert got[2][2] == "arn:aws:sns:us-east-1:123456789012:ExampleSNSTopic"
    described = con.sql(f"DESCRIBE SELECT * FROM read_parquet('{out.target}/cloudtrail/**/*.parquet')").fetchall()
    types = {name: type_ for name, type_, *_ in described}
    assert types["eventTime"] == "TIMESTAMP WITH TIME ZONE" and types["readOnly"] == "BOOLEAN"
    assert types["resources"] == 'STRUCT(ARN VARCHAR, accountId VARCHAR, "type" VARCHAR)[]'
    assert types["tlsDetails"].startswith("STRUCT(tlsVersion VARCHAR")
    assert types["json_requestParameters"] == "VARCHAR"


def test_panther_cases_read_in_place(convert):
    """Panther's CloudTrail test inputs (AGPL-3.0: read in place, never copied)."""
    yaml = pytest.importorskip("yaml")
    path = SAMPLES / "cloudtrail" / "panther-labs-panther-cloudtrail_tests.yml"
    if not path.exists():
        pytest.skip("shared samples not present")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    objects = {key(i): d["input"] for i, d in enumerate(docs)}
    out = convert("cloudtrail", objects)
    digests = sum(1 for d in docs if "digestStartTime" in d["input"])
    assert digests == 2 and out.summary.notes == {DIGEST: digests}
    events = []
    for d in docs:
        parsed = json.loads(d["input"])
        events += parsed.get("Records", [] if "digestStartTime" in parsed else [parsed])
    assert len(out.rows) == len(events) == 4 and not out.rejects
    by_id = {r["eventID"]: r for r in out.rows}
    for event in events:
        row = by_id[event["eventID"]]
        assert (row["eventName"], row["eventType"]) == (event.get("eventName"), event.get("eventType"))
        assert row["eventTime"] == datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
        assert row["readOnly"] == event.get("readOnly")


def test_version_1_11_event_unwrapped_from_cloudwatch(convert):
    """The CloudWatch payload is rejected as a whole; its message, delivered as a JSON line, is a 1.11 event."""
    payload = json.loads((HERE / "otel-collector-contrib-awslogsencoding-cloudtrail_log_cw.json").read_text())
    (message,) = [e["message"] for e in payload["logEvents"]]
    (row,) = convert("cloudtrail", {key(1): message}).rows
    event = json.loads(message)
    assert row["eventVersion"] == "1.11" and event["eventVersion"] == "1.11"
    assert row["eventTime"] == utc(2026, 1, 28, 9, 26, 59)
    assert (row["eventSource"], row["eventName"]) == ("s3.amazonaws.com", "PutObject")
    assert row["vpcEndpointId"] == event["vpcEndpointId"] == "AWS Internal"
    assert json.loads(row["json_additionalEventData"]) == event["additionalEventData"]
    assert row["readOnly"] is event["readOnly"] and row["managementEvent"] is event["managementEvent"]
    declared = {k.key for k in formats.get("cloudtrail").grammar.keys}
    extra = [json.dumps({k: v}, separators=(",", ":")) for k, v in event.items() if k not in declared]
    assert row["extra_fields"] == (extra or None)
