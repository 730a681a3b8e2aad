"""CloudTrail: bad input, odd shapes, key layouts, streaming across block edges, the CLI end to end."""

from __future__ import annotations

import gzip
import io
import json
import random
from datetime import datetime, timezone

import duckdb
import numpy as np
import pytest
from conftest import FIXTURES

from servicelogs.cli import main
from servicelogs.engines.json_split import RecordSplitter, _escaped

KEY = "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/19/123456789012_CloudTrail_us-east-1_20230719T2120Z_a1.json"
REAL = FIXTURES / "cloudtrail" / "coralogix-aws-shipper-cloudtrail.log.gz"


def event(n: int = 1, **over) -> dict:
    e = {
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "accountId": "123456789012", "userName": f"u{n}"},
        "eventTime": f"2023-07-19T21:{n:02d}:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateUser",
        "readOnly": False,
        "eventID": f"id-{n}",
    }
    e.update(over)
    return {k: v for k, v in e.items() if v is not ...}


def records(*items: object) -> str:
    return json.dumps({"Records": list(items)})


def test_truncated_object_keeps_the_complete_records(convert):
    text = gzip.decompress(REAL.read_bytes())
    cut = text[: len(text) * 2 // 3]
    out = convert("cloudtrail", {KEY: cut})
    whole = json.loads(text)["Records"]
    complete = cut.count(b'"eventVersion"') - 1
    assert len(out.rows) == complete and [r["eventID"] for r in out.rows] == [r["eventID"] for r in whole[:complete]]
    (reject,) = out.rejects
    assert reject["line_number"] == complete + 1
    assert reject["reason"] == "truncated JSON: the object ends inside its Records array"
    assert cut.decode().endswith(reject["raw_line"])  # the partial record, whole, not shortened
    assert reject["raw_line"].startswith('{"eventVersion"')
    assert out.summary.lines == complete + 1


def test_records_that_are_not_objects(convert):
    first, second = json.dumps(event(1)), json.dumps(event(2))
    body = '{"Records": [1, "text", [1, 2], null, ' + first + ', {"eventVersion": }, , ' + second + ", -2.5, true]}"
    out = convert("cloudtrail", {KEY: body})
    assert [r["eventID"] for r in out.rows] == ["id-1", "id-2"]
    assert [r["line_number"] for r in out.rows] == [5, 8]
    assert [(r["line_number"], r["raw_line"], r["reason"]) for r in out.rejects] == [
        (1, "1", "a JSON value that is a number, not an object: a record must be a JSON object"),
        (2, '"text"', "a JSON value that is a string, not an object: a record must be a JSON object"),
        (3, "[1, 2]", "a JSON value that is an array, not an object: a record must be a JSON object"),
        (4, "null", "a JSON value that is null, not an object: a record must be a JSON object"),
        (6, '{"eventVersion": }', "not valid JSON (a truncated or malformed record)"),
        (7, "", "an empty record (a separator with no value, or an empty line)"),
        (9, "-2.5", "a JSON value that is a number, not an object: a record must be a JSON object"),
        (10, "true", "a JSON value that is a boolean, not an object: a record must be a JSON object"),
    ]


def test_values_that_do_not_fit_their_field(convert):
    bad = [
        event(1, eventTime="2023-07-19"),
        event(2, eventTime="2023-07-19T21:00:00+02:00"),
        event(3, readOnly="maybe"),
        event(4, resources={"ARN": "x"}),
        event(5, userIdentity="root"),
        event(6, userIdentity={"sessionContext": {"attributes": {"creationDate": "yesterday"}}}),
        event(7, userIdentity={"sessionContext": {"attributes": {"mfaAuthenticated": "perhaps"}}}),
        event(8, eventTime=...),
        event(9, eventVersion=None),
        event(10, managementEvent=1),
    ]
    good = event(11, readOnly="true", sessionCredentialFromConsole="false")
    out = convert("cloudtrail", {KEY: records(*bad, good)})
    # A record without eventVersion is a row (issue 11: other parsers accept it), counted as such. A time with
    # a zone offset is an instant, typed as in every grammar (arrow_kernels.cast_checked): to UTC.
    assert [r["eventID"] for r in out.rows] == ["id-2", "id-9", "id-11"]
    assert out.rows[0]["eventTime"] == datetime(2023, 7, 19, 19, 0, tzinfo=timezone.utc)
    assert out.rows[1]["eventVersion"] is None
    assert out.summary.generations == {"no eventVersion": 1, "1.08": 2}
    assert out.rows[2]["readOnly"] is True and out.rows[2]["sessionCredentialFromConsole"] is False
    assert [r["reason"] for r in out.rejects] == [
        "field 'eventTime': \"2023-07-19\" is not a timestamp",
        "field 'readOnly': \"maybe\" is not a boolean",
        'field \'resources\': {"ARN":"x"} is not a JSON array',
        "field 'userIdentity': \"root\" is not a JSON object",
        "field 'userIdentity' member sessionContext.attributes.creationDate: \"yesterday\" is not a timestamp",
        "field 'userIdentity' member sessionContext.attributes.mfaAuthenticated: \"perhaps\" is not a boolean",
        "field 'eventTime' is missing or null",
        "field 'managementEvent': 1 is not a boolean",
    ]
    assert [json.loads(r["raw_line"])["eventID"] for r in out.rejects] == [
        f"id-{n}" for n in range(1, 11) if n not in (2, 9)
    ]


def test_new_keys_and_versions_are_kept(convert):
    newer = event(1, eventVersion="1.99", brandNewKey={"a": [1, "x"]}, eventContext="tagged")
    out = convert("cloudtrail", {KEY: records(newer)})
    (row,) = out.rows
    assert row["extra_fields"] == ['{"brandNewKey":{"a":[1,"x"]}}', '{"eventContext":"tagged"}']
    assert out.summary.generations == {"1.99": 1} and out.summary.extra_field_rows == 1


def test_strings_with_escapes_and_brackets(convert):
    tricky = 'quote " backslash \\ brackets [{ }], comma, \\" and \\\\" end \u00e9 \U0001f600'
    e = event(1, errorMessage=tricky, requestParameters={"policy": '{"Statement": [{"Effect": "Allow"}]}'})
    out = convert("cloudtrail", {KEY: records(e, event(2))})
    assert [r["errorMessage"] for r in out.rows] == [tricky, None]
    assert json.loads(json.loads(out.rows[0]["json_requestParameters"])["policy"])["Statement"] == [{"Effect": "Allow"}]


def test_invalid_utf8_rejects_only_its_record(convert):
    body = records(event(1), event(2), event(3)).encode().replace(b'"u2"', b'"u\xff2"')
    out = convert("cloudtrail", {KEY: body})
    assert [r["eventID"] for r in out.rows] == ["id-1", "id-3"]
    (reject,) = out.rejects
    assert reject["line_number"] == 2 and reject["reason"].startswith("invalid UTF-8 at byte ")
    assert "u\\xff2" in reject["raw_line"]


def test_text_after_the_records_array(convert):
    out = convert("cloudtrail", {KEY: records(event(1))[:-1] + ', "Other": 1}'})
    assert len(out.rows) == 1
    assert [(r["line_number"], r["raw_line"], r["reason"]) for r in out.rejects] == [
        (2, '"Other": 1}', "text after the Records array: the object is not one record file")
    ]


def test_empty_and_whitespace_objects_are_noted(convert):
    out = convert("cloudtrail", {KEY: '{"Records":[]}', KEY.replace("a1", "a2"): "  \n", KEY.replace("a1", "a3"): ""})
    assert out.summary.objects_skipped == 3 and out.summary.lines == 0
    assert out.summary.notes == {
        "a CloudTrail log file with an empty Records array (no events in its period)": 1,
        "an empty object: no records": 2,
    }


def test_digest_keys_are_skipped_by_name(convert):
    digest = (
        "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2023/07/19/"
        "123456789012_CloudTrail-Digest_us-east-1_t_us-east-1_20230719T2120Z.json.gz"
    )
    out = convert("cloudtrail", {digest: "{}", KEY: records(event(1))}, gzip_them=True)
    assert len(out.rows) == 1
    assert [(p.key, p.reason) for p in out.summary.skipped] == [
        (out.key(digest), "a CloudTrail digest file (log file integrity validation), not events")
    ]


@pytest.mark.parametrize(
    ("key", "account", "org", "region"),
    [
        (KEY, "123456789012", None, "us-east-1"),
        (
            "AWSLogs/o-aa111bb222/111122223333/CloudTrail/eu-west-3/2023/07/19/"
            "111122223333_CloudTrail_eu-west-3_20230719T2120Z_Mu0KsOhtH1ar15ZZ.json.gz",
            "111122223333",
            "o-aa111bb222",
            "eu-west-3",
        ),
        (
            "prefix/AWSLogs/111122223333/CloudTrail-Insight/us-gov-west-1/2023/07/19/"
            "111122223333_CloudTrail-Insight_us-gov-west-1_20230719T2120Z_abc.json.gz",
            "111122223333",
            None,
            "us-gov-west-1",
        ),
    ],
)
def test_key_layouts(convert, key, account, org, region):
    out = convert("cloudtrail", {key: records(event(1))}, gzip_them=key.endswith(".gz"))
    (row,) = out.rows
    assert (row["account_id"], row["org_id"], row["region"], row["day"]) == (account, org, region, "19")


def test_keys_outside_the_layout_are_skipped(convert):
    loose = "111122223333_CloudTrail_ap-southeast-2_20230719T2120Z_abc.json"
    out = convert("cloudtrail", {loose: records(event(1)), KEY: records(event(2))})
    assert [r["eventID"] for r in out.rows] == ["id-2"]
    assert [(p.key, p.reason) for p in out.summary.skipped] == [
        (out.key(loose), "not a cloudtrail log object (its key matches no cloudtrail key layout)")
    ]


def test_splitter_gives_the_same_records_whatever_the_block_size():
    text = gzip.decompress(REAL.read_bytes())
    pretty = json.dumps(json.loads(text), indent=3).encode()
    want = [json.dumps(r, sort_keys=True) for r in json.loads(text)["Records"]]
    for data in (text, pretty):
        for block in (1, 7, 100, 4096, 1 << 20):
            splitter = RecordSplitter("Records")
            got = []
            for pieces in splitter.split(io.BytesIO(data), "k", block_size=block):
                assert not pieces.reason
                for i in range(pieces.count):
                    piece = pieces.buffer[pieces.offsets[i] : pieces.offsets[i + 1]]
                    got.append(json.dumps(json.loads(piece.strip(b" \t\r\n,")), sort_keys=True))
            assert got == want, block


def test_a_large_object_streams_in_bounded_blocks(convert, monkeypatch):
    from servicelogs.engines import json_split

    monkeypatch.setattr(json_split, "BLOCK_BYTES", 64 << 10)
    blocks = []
    original = json_split.RecordSplitter._cut

    def counted(self, buffer, start=0):
        pieces, rest = original(self, buffer, start)
        blocks.append(len(pieces.buffer))
        return pieces, rest

    monkeypatch.setattr(json_split.RecordSplitter, "_cut", counted)
    many = [event(n % 60, eventID=f"e{n}") for n in range(3000)]
    body = records(*many).encode()
    assert len(body) > 10 * (64 << 10)
    out = convert("cloudtrail", {KEY: body}, gzip_them=True)
    assert len(out.rows) == 3000 and not out.rejects
    assert len(blocks) >= 10 and max(blocks) < 2 * (64 << 10)
    assert [r["eventID"] for r in out.rows] == [f"e{n}" for n in range(3000)]


def test_cli_convert_end_to_end(tmp_path, capsys):
    source = tmp_path / "logs"
    path = source / KEY
    path.parent.mkdir(parents=True)
    path.with_suffix(".json.gz").write_bytes(REAL.read_bytes())
    assert main(["convert", "cloudtrail", str(source), str(tmp_path / "lake"), "--workers", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["rejects"], summary["objects_converted"]) == (20, 0, 1)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    got = con.sql(
        f"SELECT count(*), min(eventTime), count(*) FILTER (WHERE json_extract_string(json_requestParameters, "
        f"'$.bucketName') LIKE 'aws-cloudtrail-logs-%'), list_distinct(flatten(list(resources)))[1].type "
        f"FROM read_parquet('{tmp_path}/lake/cloudtrail/**/*.parquet', hive_partitioning = true)"
    ).fetchall()[0]
    # Checked independently with json.load: the earliest eventTime, and 5 requests naming such a bucket.
    assert got[0] == 20 and got[1] == datetime(2023, 10, 17, 4, 53, 7, tzinfo=timezone.utc)
    assert got[2] == 5 and got[3].startswith("AWS::")


def compact(*items: object) -> str:
    """As AWS writes a record file: no whitespace between tokens."""
    return json.dumps({"Records": list(items)}, separators=(",", ":"))


def test_the_splitter_counts_each_records_valued_members():
    known = frozenset(["eventVersion", "eventTime", "errorCode", "requestParameters", "userIdentity"])
    text = compact(
        {"eventVersion": "1.08", "eventTime": "t", "requestParameters": None},
        {"eventVersion": "1.08", "userIdentity": {"a": None, "b": [1, {"c": None}]}, "errorCode": None},
        {"eventVersion": "1.08", "note": "null,", "x": "a,b"},
        {},
    )
    (pieces,) = RecordSplitter("Records", known).split(io.BytesIO(text.encode()), KEY)
    assert pieces.valued_members.tolist() == [2, 2, 3, 1]  # {} counts one: a mismatch, so the exact statement runs
    unknown_null = compact({"eventVersion": "1.08", "newKey": None})
    (pieces,) = RecordSplitter("Records", known).split(io.BytesIO(unknown_null.encode()), KEY)
    assert pieces.valued_members is None


def test_usual_and_unusual_records_give_the_same_columns(convert):
    """Blocks of records with only declared keys take one flat statement; a block with anything else (an
    undeclared key, even with a null value; a declared key twice; a missing required key) takes the exact one.
    Both must agree on every declared column."""
    usual = [event(n, errorCode=None, requestParameters=None, responseElements={"ok": True}) for n in (1, 2)]
    unusual = [*usual, event(3, newKey=None), event(4, otherKey={"a": [1, None]})]
    plain = convert("cloudtrail", {KEY: compact(*usual)})
    mixed = convert("cloudtrail", {KEY: compact(*unusual)})
    columns = ("eventID", "eventTime", "errorCode", "json_requestParameters", "json_responseElements", "userIdentity")
    for row_a, row_b in zip(plain.rows, mixed.rows[:2], strict=True):
        assert [row_a[c] for c in columns] == [row_b[c] for c in columns]
    first = plain.rows[0]
    assert first["errorCode"] is None and first["json_requestParameters"] is None
    assert first["json_responseElements"] == '{"ok":true}'
    assert first["eventTime"] == datetime(2023, 7, 19, 21, 1, tzinfo=timezone.utc)
    assert first["userIdentity"]["userName"] == "u1"
    assert [r["extra_fields"] for r in plain.rows] == [None, None]
    assert [r["extra_fields"] for r in mixed.rows] == [None, None, ['{"newKey":null}'], ['{"otherKey":{"a":[1,null]}}']]
    duplicated = '{"Records":[' + json.dumps(event(5), separators=(",", ":"))[:-1] + ',"eventName":"Again"}]}'
    (row,) = convert("cloudtrail", {KEY: duplicated}).rows
    assert row["eventID"] == "id-5"


def test_the_usual_statement_vouches_for_usual_records_only():
    """The flat statement's result stands only for records whose declared keys DuckDB found are exactly those
    the splitter counted, and whose structs fit: else None, and the exact statement runs (the same rows, slower,
    so a wrong count would go unseen by the tests of rows)."""
    import pyarrow.compute as pc

    from servicelogs.engines import json_parse

    plan = json_parse._plan("cloudtrail")

    def through_usual(*items: object):
        (pieces,) = RecordSplitter("Records", plan.known_keys).split(io.BytesIO(compact(*items).encode()), KEY)
        texts = pc.utf8_trim(json_parse._records(pieces), json_parse._TRIM)
        assert pieces.valued_members is not None
        return plan.run_usual(texts, np.arange(pieces.count), pieces.valued_members)

    usual = through_usual(event(1), event(2, errorCode=None, errorMessage="no", readOnly=...), event(3, userAgent=None))
    assert usual is not None and usual.column("line_number").to_pylist() == [0, 1, 2]
    assert usual.column("c15").to_pylist() == ["id-1", "id-2", "id-3"]  # eventID
    assert through_usual(event(1), event(2, newKey="x")) is None  # a key the declaration does not read
    twice = json.dumps(event(2), separators=(",", ":"))[:-1] + ',"eventName":"Again"}'
    (pieces,) = RecordSplitter("Records", plan.known_keys).split(io.BytesIO(f'{{"Records":[{twice}]}}'.encode()), KEY)
    texts = pc.utf8_trim(json_parse._records(pieces), json_parse._TRIM)
    assert plan.run_usual(texts, np.arange(1), pieces.valued_members) is None  # a declared key twice
    assert through_usual(event(1, tlsDetails={"tlsVersion": "TLSv1.3", "newMember": 1})) is None  # a member unread
    assert through_usual(event(1, tlsDetails="TLSv1.3")) is None  # not an object
    assert through_usual(event(1, eventTime=...)) is None  # a required key missing


def test_a_quote_is_escaped_by_an_odd_run_of_backslashes():
    def by_hand(text: bytes) -> list[bool]:
        out = []
        for i, byte in enumerate(text):
            if byte == ord('"'):
                run = len(text[:i]) - len(text[:i].rstrip(b"\\"))
                out.append(run % 2 == 1)
        return out

    rng = random.Random(5)
    cases = [rb'"a\"b"', rb"\\" + b'"x"', b'\\\\\\"', b'"', b"\\\\"]
    cases += [bytes(rng.choice(b'\\"ab') for _ in range(rng.randrange(1, 40))) for _ in range(500)]
    for text in cases:
        b = np.frombuffer(text, dtype=np.uint8)
        assert _escaped(b, np.flatnonzero(b == ord('"'))).tolist() == by_hand(text), text


def test_small_objects_share_statements_and_give_the_same_rows(tmp_path, monkeypatch):
    """The usual records of several objects go through one DuckDB statement; rows, line numbers, keys
    and rejects must be those of one object at a time (batch_objects=1)."""
    import servicelogs
    from servicelogs.engines import json_parse

    statements = []
    for name in ("run", "run_usual"):
        original = getattr(json_parse._Plan, name)

        def counted(self, texts, *args, _original=original, _name=name):
            statements.append((_name, len(texts)))
            return _original(self, texts, *args)

        monkeypatch.setattr(json_parse._Plan, name, counted)

    def write(source, bad_object):
        for k in range(6):
            items = [event(n, eventID=f"o{k}-{n}") for n in range(1, 4)]
            if k == bad_object:
                items.append(event(9, eventTime="yesterday"))  # a reject: that object's block is parsed alone
            path = source / KEY.replace("_a1.json", f"_o{k}.json.gz")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(compact(*items).encode()))

    def table(source, target, batch_objects):
        servicelogs.convert("cloudtrail", source, target, workers=1, batch_objects=batch_objects)
        query = "SELECT source_key, line_number, eventID, eventTime FROM read_parquet('{}/**/*.parquet') ORDER BY ALL"
        rows = duckdb.sql(query.format(target / "cloudtrail")).fetchall()
        rejects = (
            duckdb.sql(
                f"SELECT source_key, line_number, reason FROM read_parquet('{target}/cloudtrail_rejects/*.parquet')"
            ).fetchall()
            if (target / "cloudtrail_rejects").exists()
            else []
        )
        return rows, rejects

    write(tmp_path / "usual", bad_object=None)
    statements.clear()
    together = table(tmp_path / "usual", tmp_path / "t1", 100)
    assert statements == [("run_usual", 18)]  # six objects, one statement
    assert together == table(tmp_path / "usual", tmp_path / "a1", 1)
    rows, rejects = together
    assert len(rows) == 18 and not rejects and [r[1] for r in rows[:3]] == [1, 2, 3]
    assert {key.rsplit("_", 1)[1] for key, *_ in rows} == {f"o{k}.json.gz" for k in range(6)}

    write(tmp_path / "mixed", bad_object=3)
    together = table(tmp_path / "mixed", tmp_path / "t2", 100)
    assert together == table(tmp_path / "mixed", tmp_path / "a2", 1)
    rows, rejects = together
    assert len(rows) == 18 and [(key.rsplit("_", 1)[1], n) for key, n, _ in rejects] == [("o3.json.gz", 4)]
