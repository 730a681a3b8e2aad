"""Nothing of a CloudTrail record is dropped (issue 11): every key path and value of every record of every fixture
is recoverable from its row, from a typed column, a json_* column or extra_fields.

A real record with `"resources": [{"ARNPrefix": …, "type": "AWS::S3::Object"}]` used to lose its ARNPrefix: the
struct column has no such member. A struct or list value with members the declaration does not name, at any
depth, now also goes whole into extra_fields (and the row counts as a row with extra fields).
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from conftest import FIXTURES

from servicelogs import formats
from servicelogs.types import JSON

FMT = formats.get("cloudtrail")
HERE = FIXTURES / "cloudtrail"
KEY = "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/19/123456789012_CloudTrail_us-east-1_20230719T2120Z_f01.json"


def _input_records(data: bytes) -> list[Any]:
    """The object's values in order, as the engine numbers them (JSON Lines or a Records array)."""
    text = data.decode()
    try:
        whole = json.loads(text)
        values = whole["Records"] if isinstance(whole, dict) and "Records" in whole else [whole]
    except json.JSONDecodeError:
        decoder, values, at = json.JSONDecoder(), [], 0
        while at < len(text):
            while at < len(text) and text[at] in " \t\r\n,":
                at += 1
            if at < len(text):
                value, at = decoder.raw_decode(text, at)
                values.append(value)
    return values


def _leaves(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list) and value:
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    return [(path, value)]


def _at(value: Any, path: tuple) -> tuple[bool, Any]:
    for step in path:
        in_dict = isinstance(value, dict) and step in value
        in_list = isinstance(value, list) and isinstance(step, int) and step < len(value)
        if not (in_dict or in_list):
            return False, None
        value = value[step]
    return True, value


def _same(expected: Any, got: Any) -> bool:
    """The row's value stands for the input's: typed (a timestamp, a boolean) or kept as JSON text."""
    if expected == got:
        return True
    if expected in ({}, [], None):
        return got is None or got in ({}, []) or (isinstance(got, dict) and all(v is None for v in got.values()))
    if isinstance(got, datetime) and isinstance(expected, str):
        return got == datetime.fromisoformat(expected.replace("Z", "+00:00")).astimezone(timezone.utc)
    if isinstance(got, bool) and isinstance(expected, str):
        return expected == str(got).lower()
    if isinstance(got, str) and not isinstance(expected, str):
        return json.loads(got) == expected
    return False


def _recovered(row: dict) -> dict[str, list[Any]]:
    """Per top-level key, the values the row holds for it: typed columns, JSON columns, extra_fields."""
    out: dict[str, list[Any]] = {}
    for k in FMT.grammar.keys:
        v = row[k.field.name]
        if v is not None:
            out.setdefault(k.key, []).append(json.loads(v) if k.field.type == JSON else v)
    for text in row["extra_fields"] or ():
        (key, value), *_ = json.loads(text).items()
        out.setdefault(key, []).append(value)
    return out


FIXTURES_WITH_ROWS = sorted(
    p.name for p in HERE.iterdir() if p.suffix in (".json", ".jsonl", ".log", ".gz") and "digest" not in p.name
)


@pytest.mark.parametrize("name", FIXTURES_WITH_ROWS)
def test_every_key_path_and_value_is_recoverable_from_its_row(convert, name: str) -> None:
    data = (HERE / name).read_bytes()
    records = _input_records(gzip.decompress(data) if name.endswith(".gz") else data)
    out = convert("cloudtrail", {KEY + (".gz" if name.endswith(".gz") else ""): data})
    compared = 0
    for row in out.rows:
        record = records[row["line_number"] - 1]
        held = _recovered(row)
        for path, value in _leaves(record):
            candidates = held.get(path[0], [])
            found = [_at(c, path[1:]) for c in candidates]
            assert any(ok and _same(value, got) for ok, got in found) or (value is None and not candidates), (
                name,
                row["line_number"],
                path,
                value,
                found,
            )
            compared += 1
    assert compared or not out.rows


def test_the_arn_prefix_of_issue_11_is_kept_and_counted(convert) -> None:
    record = {
        "eventVersion": "1.08",
        "eventTime": "2023-07-19T21:20:00Z",
        "resources": [{"ARNPrefix": "arn:aws:s3:::some-bucket/env:/", "type": "AWS::S3::Object"}],
    }
    plain = {**record, "resources": [{"ARN": "arn:aws:s3:::b/k", "type": "AWS::S3::Object"}]}
    out = convert("cloudtrail", {KEY: json.dumps({"Records": [record, plain]})})
    first, second = out.rows
    assert first["resources"] == [{"ARN": None, "accountId": None, "type": "AWS::S3::Object"}]
    assert first["extra_fields"] == [
        '{"resources":[{"ARNPrefix":"arn:aws:s3:::some-bucket/env:/","type":"AWS::S3::Object"}]}'
    ]
    assert second["extra_fields"] is None and out.summary.extra_field_rows == 1


def test_a_record_without_event_version_is_a_row(convert) -> None:
    out = convert("cloudtrail", {KEY: json.dumps({"eventTime": "2023-07-19T21:20:00Z", "eventName": "GetObject"})})
    assert [(r["eventVersion"], r["eventName"]) for r in out.rows] == [(None, "GetObject")]
    assert out.summary.generations == {"no eventVersion": 1} and out.summary.rejects == 0
