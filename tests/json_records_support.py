"""JSON record objects for the tests of the splitter and of small objects: events, record files, odd objects of
every shape the splitter must take apart (and the run must account for), and a run read back."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from conftest import read_rejects, read_table

import servicelogs
from servicelogs.engines import json_parse
from servicelogs.engines.json_split import RecordSplitter, Whole

PREFIX = "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/19/123456789012_CloudTrail_us-east-1_20230719T2120Z_"
KNOWN = json_parse._plan("cloudtrail").known_keys


def event(n: int, **over: object) -> dict:
    e: dict = {
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "accountId": "123456789012", "userName": f"u{n}"},
        "eventTime": f"2023-07-19T21:{n % 60:02d}:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateUser",
        "awsRegion": "us-east-1",
        "sourceIPAddress": f"10.0.0.{n % 250}",
        "readOnly": n % 2 == 0,
        "errorCode": None,
        "requestParameters": {"userName": f"new-{n}", "tags": [{"key": "a", "value": 'x\\"y'}]},
        "eventID": f"id-{n}",
    }
    e.update(over)
    return e


def compact(*items: object) -> bytes:
    return json.dumps({"Records": list(items)}, separators=(",", ":")).encode()


def alone(text: bytes) -> Whole:
    splitter = RecordSplitter("Records", KNOWN)
    pieces = list(splitter.split(io.BytesIO(text), "k"))
    return Whole(pieces, splitter.records, splitter.empty_array)


def described(whole: Whole) -> tuple:
    """What the pieces hold, whatever their buffer: per piece its first number, reason, record texts, members."""
    out = []
    for p in whole.pieces:
        texts = [bytes(p.buffer[p.offsets[i] : p.offsets[i + 1]]) for i in range(p.count)]
        members = None if p.valued_members is None else p.valued_members.tolist()
        out.append((p.first, p.reason, texts, members))
    return whole.records, whole.empty_array, out


def odd_objects() -> list[bytes]:
    good = compact(event(1), event(2), event(3))
    pretty = json.dumps({"Records": [event(4), event(5)]}, indent=2).encode()
    return [
        good,
        pretty,
        b'{"Records":[]}',
        b'  {"Records": [ \n ] }\n',
        b"",
        b"   \n",
        good[: len(good) // 2],  # truncated inside the array
        good[:-1],  # ends before its closing brace
        good + b'{"Records":[]}',  # text after the array
        b'{"Records":[{"a":"unclosed}]}',  # an unbalanced quote: the next objects must not see it
        good,
        b'{"Records":[{"a":1}}, {"b":2}]}',  # a brace where the bracket should be
        b'{"Records":[{"eventVersion":"1.08"},,{"eventID":null}]}',  # an empty record, a known null
        b'{"Records":[{"mystery":null,"eventID":"x"}]}',  # an unknown null: its count is lost
        b'{"Records":[null,{"a":[1,2,{"b":"]"}]},"str",7]}',
        b'{"Records":[{"k":"ends in a backslash\\\\"}]}\\',
        b'\\"{"Records":[{"a":1}]}',
        b"\n".join(json.dumps(event(n)).encode() for n in range(3)),  # JSON Lines
        b'{"NotRecords":[{"a":1}]}',
        '{"Records":[{"eventName":"caf\u00e9"}]}'.encode(),
        b'{"Records":[{"eventName":"\xff\xfe"}]}',  # invalid UTF-8 is the parser's to reject
        b'{"Records":[{null},{"eventID":null}]}',  # a null with no key before it
        b'{"Records":[{null}]}',  # and no quote at all
        good,
    ]


def write(source: Path, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        path = source / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data[:2] == b"\x1f\x8b" else gzip.compress(data))


def converted(source: Path, target: Path, batch_objects: int) -> tuple[servicelogs.RunSummary, list, list]:
    summary = servicelogs.convert("cloudtrail", source, target, workers=1, batch_objects=batch_objects)
    partitions = servicelogs.formats.get("cloudtrail").partitions
    rows = [{k: v for k, v in r.items() if k != "run_id"} for r in read_table(target, "cloudtrail", partitions)]
    rejects = [{k: v for k, v in r.items() if k != "run_id"} for r in read_rejects(target, "cloudtrail")]
    return summary, rows, rejects
