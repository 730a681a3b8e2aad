"""Small JSON record objects are split together (json_split.split_whole) and parsed together: exactly what each
object gives on its own.

Objects of up to SMALL_OBJECT_BYTES are read whole, scanned in one pass and their usual records parsed in
one DuckDB statement. Each keeps what is its own: its record numbers, its notes (an empty array, no records), its
rejects (key, record number, raw text, reason); a truncated or malformed object splits and rejects as it does
streamed, and a corrupt gzip fails alone. The splitter is checked against RecordSplitter object by object, and
the whole run against one object a batch, through the real parts (LocalSource, LocalStore, servicelogs.convert,
read back with DuckDB).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from json_records_support import KNOWN, PREFIX, alone, compact, converted, described, event, odd_objects, write

import servicelogs
from servicelogs.engines import json_parse, json_split
from servicelogs.engines.json_split import split_whole


def test_split_whole_gives_what_each_object_gives_alone() -> None:
    texts = odd_objects()
    got = split_whole(texts, [f"k{i}" for i in range(len(texts))], "Records", KNOWN)
    assert [described(w) for w in got] == [described(alone(t)) for t in texts]
    usual = got[0].pieces[0]
    assert usual.first == 1 and usual.count == 3 and usual.valued_members is not None
    assert usual.buffer is got[-1].pieces[0].buffer  # usual objects share one buffer: no copy per object
    assert got[2].empty_array and got[4].records == 0
    assert got[13].pieces[0].valued_members is None


@pytest.mark.parametrize("window", [1, 300, 4096, json_split.WINDOW_BYTES])
def test_split_whole_on_every_cut_and_shuffle_of_odd_objects(monkeypatch, window: int) -> None:
    """Every prefix of an object, among others in random order, scanned a window of objects at a time: one odd
    object never shifts another's split, wherever the windows end."""
    monkeypatch.setattr(json_split, "WINDOW_BYTES", window)
    rng = random.Random(7)
    base = compact(event(1, eventName='a "quoted" \\ name'), event(2))
    texts = odd_objects() + [base[:cut] for cut in range(0, len(base), 7)]
    for _ in range(10):
        rng.shuffle(texts)
        got = split_whole(texts, ["k"] * len(texts), "Records", KNOWN)
        assert [described(w) for w in got] == [described(alone(t)) for t in texts]


# -- through servicelogs.convert, read back ---------------------------------------------------------------------


def same_as_alone(tmp_path: Path, objects: dict[str, bytes]) -> tuple[servicelogs.RunSummary, list, list]:
    """The run over `objects` in one batch, checked against one object a batch: every column of every row and reject."""
    write(tmp_path / "src", objects)
    together = converted(tmp_path / "src", tmp_path / "together", 10_000)
    single = converted(tmp_path / "src", tmp_path / "alone", 1)
    assert together[1] == single[1] and together[2] == single[2]
    a, b = together[0], single[0]
    assert (a.lines, a.rows, a.rejects, a.objects_converted, a.objects_skipped) == (
        b.lines,
        b.rows,
        b.rejects,
        b.objects_converted,
        b.objects_skipped,
    )
    assert a.reject_reasons == b.reject_reasons and a.generations == b.generations and a.notes == b.notes
    assert sorted(p.key for p in a.failed) == sorted(p.key for p in b.failed)
    assert sorted(p.key for p in a.skipped) == sorted(p.key for p in b.skipped)
    assert together[0].batches_committed < single[0].batches_committed
    return together


def test_many_small_objects_give_the_rows_of_each_alone(tmp_path: Path) -> None:
    objects = {f"{PREFIX}o{k:03d}.json.gz": compact(*(event(k * 10 + n) for n in range(1, 4))) for k in range(40)}
    _, rows, rejects = same_as_alone(tmp_path, objects)
    assert not rejects and len(rows) == 120
    first = rows[0]
    assert first["source_key"].endswith("o000.json.gz") and first["line_number"] == 1
    assert first["eventID"] == "id-1" and first["eventName"] == "CreateUser" and first["readOnly"] is False
    assert first["sourceIPAddress"] == "10.0.0.1" and first["errorCode"] is None
    parameters = {"userName": "new-1", "tags": [{"key": "a", "value": 'x\\"y'}]}
    assert json.loads(first["json_requestParameters"]) == parameters
    assert [(r["source_key"][-12:], r["line_number"], r["eventID"]) for r in rows[-3:]] == [
        ("o039.json.gz", 1, "id-391"),
        ("o039.json.gz", 2, "id-392"),
        ("o039.json.gz", 3, "id-393"),
    ]


def test_record_numbers_and_rejects_stay_each_objects_across_groups(tmp_path: Path, monkeypatch) -> None:
    """Groups of ~3 objects: an object's rows and rejects keep its key and its own record numbers, whichever
    group it falls in, and a bad record costs its object only."""
    size = len(compact(*(event(n) for n in range(1, 5))))
    monkeypatch.setattr(json_parse, "GROUP_BYTES", 3 * size + 10)
    objects = {}
    for k in range(10):
        items = [event(k * 10 + n) for n in range(1, 5)]
        if k in (2, 3, 7):
            items[k % 4] = event(k * 10 + 9, eventTime="yesterday")
        objects[f"{PREFIX}o{k:03d}.json.gz"] = compact(*items)
    _, rows, rejects = same_as_alone(tmp_path, objects)
    assert len(rows) == 37
    assert [(r["source_key"][-12:], r["line_number"]) for r in rejects] == [
        ("o002.json.gz", 3),
        ("o003.json.gz", 4),
        ("o007.json.gz", 4),
    ]
    assert all("eventTime" in r["reason"] and "yesterday" in r["raw_line"] for r in rejects)
    assert json.loads(rejects[0]["raw_line"])["eventID"] == "id-29"
    numbers = {}
    for r in rows:
        numbers.setdefault(r["source_key"][-12:], []).append(r["line_number"])
    assert numbers["o002.json.gz"] == [1, 2, 4] and numbers["o009.json.gz"] == [1, 2, 3, 4]


def test_bad_empty_and_truncated_objects_among_good_ones(tmp_path: Path) -> None:
    good = {f"{PREFIX}g{k:03d}.json.gz": compact(event(k), event(k + 100)) for k in range(6)}
    truncated = gzip.compress(compact(event(50), event(51)))
    objects = {
        **good,
        f"{PREFIX}bad.json.gz": compact(event(7), event(8, eventTime="yesterday"), event(9)),
        f"{PREFIX}empty.json.gz": b'{"Records":[]}',
        f"{PREFIX}nothing.json.gz": b"",
        f"{PREFIX}corrupt.json.gz": truncated[: len(truncated) // 2],
        f"{PREFIX}cut.json.gz": compact(event(60), event(61))[:-30],
    }
    summary, rows, rejects = same_as_alone(tmp_path, objects)
    assert [p.key.rsplit("_", 1)[1] for p in summary.failed] == ["corrupt.json.gz"]
    assert "cannot decompress" in summary.failed[0].reason
    keys = {r["source_key"].rsplit("_", 1)[1] for r in rows}
    assert keys == {f"g{k:03d}.json.gz" for k in range(6)} | {"bad.json.gz", "cut.json.gz"}
    assert [(r["source_key"].rsplit("_", 1)[1], r["line_number"]) for r in rejects] == [
        ("bad.json.gz", 2),
        ("cut.json.gz", 2),
    ]
    assert rejects[1]["reason"].startswith("truncated JSON")
    assert [r["eventID"] for r in rows if r["source_key"].endswith("cut.json.gz")] == ["id-60"]
    assert sorted(p.key.rsplit("_", 1)[1] for p in summary.skipped) == ["empty.json.gz", "nothing.json.gz"]


@pytest.mark.parametrize("over", [-1, 0, 1])
def test_objects_at_the_whole_read_limit(tmp_path: Path, monkeypatch, over: int) -> None:
    """Just below, at and just above the limit: read whole (split together) or streamed, the same rows."""
    text = compact(*(event(n) for n in range(1, 30)))
    monkeypatch.setattr(json_parse, "SMALL_OBJECT_BYTES", len(text) - over)
    whole: list[int] = []
    original = json_split.split_whole

    def counted(texts, *args):
        whole.extend(map(len, texts))
        return original(texts, *args)

    monkeypatch.setattr(json_split, "split_whole", counted)
    objects = {f"{PREFIX}o{k}.json.gz": text for k in range(3)}
    objects[f"{PREFIX}small.json.gz"] = compact(event(99))
    _, rows, rejects = same_as_alone(tmp_path, objects)
    assert not rejects and len(rows) == 3 * 29 + 1
    assert sorted(set(whole)) == ([len(objects[f"{PREFIX}small.json.gz"])] + ([len(text)] if over <= 0 else []))
    assert [r["line_number"] for r in rows if r["source_key"].endswith("o1.json.gz")] == list(range(1, 30))
