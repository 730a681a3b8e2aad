"""Many small objects, parsed together, give exactly what each object gives on its own.

Small objects (an S3 access log object holds a few lines) are read whole and parsed together: one tokenizer and
typing pass, one write. Each object keeps what is its own: its line numbers, its usual token count, its header.
Through the real parts (LocalSource, LocalStore, `servicelogs.convert`, read back with DuckDB): every format's
fixture lines, cut into objects of one to four lines (each with the header in force where it was cut, so objects
of different headers, field generations and token counts share a batch), an empty object, and a truncated gzip
object, convert to the same rows and rejects (values, source keys, line numbers) as with one object per batch;
and to the values the uncut fixture files give, line for line; the corrupt object fails alone.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FIXTURES, read_rejects, read_table
from exactly_once_support import write_local
from spark_support import FILL, _Fill, fixture_corpus, without_run_id

import servicelogs
from servicelogs.engines import header_parse
from servicelogs.spec import HeaderDelimited, JsonRecords

LINEAGE = ("source_key", "line_number", "run_id")


def _fixture_texts(fmt_name: str) -> dict[str, bytes]:
    """The format's fixture files (name → decompressed text), as test_engine_contract's corpus takes them."""
    out = {}
    for path in sorted((FIXTURES / fmt_name).iterdir()):
        if path.name == "README.md" or path.name.endswith((".expected.json", ".cases.json")):
            continue
        data = path.read_bytes()
        out[path.name] = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return out


def _is_mark(fmt: servicelogs.spec.LogFormat, line: bytes) -> bool:
    """A header or comment line of a header-defined format (it applies to the lines after it)."""
    grammar = fmt.grammar
    if not isinstance(grammar, HeaderDelimited):
        return False
    text = line.decode("utf-8", "replace").rstrip("\r")
    m = grammar.header_regex.match(text)
    if m and any(n in grammar.by_name for n in m.group("names").split()):
        return True
    return bool(grammar.comment and re.search(grammar.comment, text))


def _cut(fmt: servicelogs.spec.LogFormat, text: bytes) -> list[tuple[bytes, dict[int, int]]]:
    """The text as small objects: (the object's text, its line number → the line's number in `text`)."""
    if isinstance(fmt.grammar, JsonRecords):
        try:
            records = json.loads(text)["Records"]
        except (ValueError, KeyError, TypeError):
            records = None
        if not records:  # JSON Lines, a digest, an empty array: cut as lines, or kept whole
            return _cut_lines(fmt, text) if text.count(b"\n") > 2 and text.lstrip()[:1] == b"{" else [(text, {})]
        objects = []
        for at in range(0, len(records), 3):
            chunk = records[at : at + 1 + at % 3]
            body = json.dumps({"Records": chunk}).encode()
            objects.append((body, {i + 1: at + i + 1 for i in range(len(chunk))}))
        return objects
    return _cut_lines(fmt, text)


def _cut_lines(fmt: servicelogs.spec.LogFormat, text: bytes) -> list[tuple[bytes, dict[int, int]]]:
    lines = text.split(b"\n")
    if text.endswith(b"\n"):
        lines.pop()
    objects: list[tuple[list[bytes], list[bytes], list[int]]] = []
    header: list[bytes] = []
    chunk: list[bytes] = []
    numbers: list[int] = []
    size, after_mark = 1, False
    for number, line in enumerate(lines, 1):
        if _is_mark(fmt, line):
            if chunk:
                objects.append((header, chunk, numbers))
                chunk, numbers = [], []
            header = [*header, line] if after_mark else [line]  # "#Version" then "#Fields": both in force
            after_mark = True
            continue
        after_mark = False
        chunk.append(line)
        numbers.append(number)
        if len(chunk) >= size:
            objects.append((header, chunk, numbers))
            chunk, numbers, size = [], [], size % 4 + 1
    if chunk:
        objects.append((header, chunk, numbers))
    out = []
    for head, body, where in objects:
        # The last object keeps the file's ending (with or without its final newline).
        ending = b"\n" if text.endswith(b"\n") or where[-1] != len(lines) else b""
        out.append((b"\n".join([*head, *body]) + ending, {len(head) + i + 1: n for i, n in enumerate(where)}))
    return out


def _key(fmt: servicelogs.spec.LogFormat, n: int) -> str:
    layout = fmt.key_layouts[0]
    groups = {k: v for k, v in layout.regex.search(layout.example).groupdict().items() if v is not None}
    when = {
        "year": "2024",
        "month": "01",
        "day": f"{15 + n % 3}",
        "hour": f"{n // 60 % 24:02d}",
        "minute": f"{n % 60:02d}",
    }
    key = layout.template.format_map(_Fill({**FILL, "n": n, **groups, **when}))
    assert fmt.match_key(key) is not None
    return key


def _small_corpus(fmt_name: str) -> tuple[dict[str, bytes], dict[tuple[str, int], tuple[str, int]], str]:
    """(objects, (key, line) → (fixture, line), the corrupt object's key)."""
    fmt = servicelogs.formats.get(fmt_name)
    objects: dict[str, bytes] = {}
    origin: dict[tuple[str, int], tuple[str, int]] = {}
    for name, text in _fixture_texts(fmt_name).items():
        for body, numbers in _cut(fmt, text):
            key = _key(fmt, len(objects))
            objects[key] = gzip.compress(body, mtime=0) if key.endswith(".gz") else body
            origin.update({(key, line): (name, at) for line, at in numbers.items()})
    objects[_key(fmt, len(objects))] = (
        gzip.compress(b"", mtime=0) if fmt.key_layouts[0].template.endswith("gz") else b""
    )
    corrupt = _key(fmt, len(objects))
    # A truncated gzip stream; for a layout without .gz, the gzip magic and no gzip data.
    whole = gzip.compress(b"\n".join(b"x" * 40 for _ in range(500)))
    objects[corrupt] = whole[: len(whole) // 2] if corrupt.endswith(".gz") else b"\x1f\x8bnot gzip data\n"
    return objects, origin, corrupt


def _converted(source: Path, target: Path, fmt_name: str, **tuning: Any) -> tuple[Any, list[dict], list[dict]]:
    fmt = servicelogs.formats.get(fmt_name)
    summary = servicelogs.convert(fmt_name, source, target, workers=1, catalog="none", **tuning)
    return (
        summary,
        without_run_id(read_table(target, fmt_name, fmt.partitions)),
        without_run_id(read_rejects(target, fmt_name)),
    )


def _values(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in LINEAGE}


@pytest.mark.parametrize("fmt_name", servicelogs.formats.names())
def test_small_objects_together_give_what_each_gives_alone(tmp_path: Path, fmt_name: str) -> None:
    objects, origin, corrupt = _small_corpus(fmt_name)
    write_local(tmp_path / "src", objects)
    together, rows, rejects = _converted(tmp_path / "src", tmp_path / "together", fmt_name)
    alone, rows_alone, rejects_alone = _converted(tmp_path / "src", tmp_path / "alone", fmt_name, batch_objects=1)

    assert together.batches_committed < len(objects) // 4 < alone.batches_committed  # many objects a batch
    assert len(rows) >= 10 and rows == rows_alone  # values, source keys, line numbers: row for row
    assert rejects == rejects_alone
    for summary in (together, alone):
        assert [p.key for p in summary.failed] == [str(tmp_path / "src" / corrupt)]
        assert summary.objects_converted + summary.objects_skipped == len(objects) - 1
        assert (summary.lines, summary.rows, summary.rejects) == (together.lines, len(rows), len(rejects))
        assert summary.generations == together.generations and summary.reject_reasons == together.reject_reasons
    assert not any(r["source_key"].endswith(corrupt) for r in rows + rejects)

    # Each line where the uncut file has it: the same values (or the same reject) as the whole file gives.
    files = fixture_corpus(fmt_name)  # the fixture files in the order _fixture_texts takes them
    write_local(tmp_path / "whole", files)
    _, whole_rows, whole_rejects = _converted(tmp_path / "whole", tmp_path / "whole-target", fmt_name)
    key_of = {str(tmp_path / "whole" / k): name for k, name in zip(files, _fixture_texts(fmt_name), strict=True)}
    whole = {(key_of[r["source_key"]], r["line_number"]): r for r in whole_rows}
    whole_reject = {(key_of[r["source_key"]], r["line_number"]): r for r in whole_rejects}
    src = str(tmp_path / "src") + "/"
    compared = 0
    for row in rows:
        at = origin.get((row["source_key"].removeprefix(src), row["line_number"]))
        if at is None:  # a JSON object kept whole, or a line whose record the cut re-wrote
            continue
        assert at in whole, (row["source_key"], row["line_number"], at)
        assert _values(row) | _key_free(fmt_name) == _values(whole[at]) | _key_free(fmt_name)
        compared += 1
    for reject in rejects:
        at = origin.get((reject["source_key"].removeprefix(src), reject["line_number"]))
        if at is not None and not isinstance(servicelogs.formats.get(fmt_name).grammar, JsonRecords):
            assert (reject["raw_line"], reject["reason"]) == (whole_reject[at]["raw_line"], whole_reject[at]["reason"])
    assert compared >= len(rows) // 2


@pytest.mark.parametrize(
    "fmt_name",
    [n for n in servicelogs.formats.names() if isinstance(servicelogs.formats.get(n).grammar, HeaderDelimited)],
)
def test_header_lines_searched_for_give_what_matching_every_line_gives(
    tmp_path: Path, fmt_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects of many lines have their few header lines searched for, small ones matched line by line."""
    objects, _, _ = _small_corpus(fmt_name)
    write_local(tmp_path / "src", objects)
    matched = _converted(tmp_path / "src", tmp_path / "matched", fmt_name)
    monkeypatch.setattr(header_parse, "SPARSE_HEADERS", 0)  # every group searched, as one of large objects is
    searched = _converted(tmp_path / "src", tmp_path / "searched", fmt_name)
    assert searched[1] == matched[1] and len(matched[1]) >= 10
    assert searched[2] == matched[2]
    assert searched[0].header_lines == matched[0].header_lines > 0
    assert searched[0].headers == matched[0].headers and set(matched[0].headers.values()) != {None}
    kept = list(matched[0].headers.values())
    assert len({id(names) for names in kept}) == len(set(kept))  # one tuple per distinct header, for the run


@pytest.mark.parametrize(
    "fmt_name",
    [n for n in servicelogs.formats.names() if isinstance(servicelogs.formats.get(n).grammar, HeaderDelimited)],
)
def test_both_header_searches_mark_the_same_lines(fmt_name: str) -> None:
    """The line-by-line search (anchored at each line's start) and the search across a block mark the lines
    the grammar's judgement marks, no fewer, among lines that hold a header's text elsewhere than at their start."""
    parser = header_parse.HeaderDelimitedParser(servicelogs.formats.get(fmt_name))
    lines = [line for text in _fixture_texts(fmt_name).values() for line in text.splitlines() if line][:400]
    header = next(line for line in lines if parser._judge(line))
    tricky = [b" " + header, b"x" + header, b"1 2 " + header, b"", b"#", header + b"\r", b"a  b"]
    text = b"\n".join([*lines, *tricky, *lines[:5], header]).replace(b"\r\n", b"\n")
    n_lines = text.count(b"\n") + 1
    judged = [(i, mark) for i, line in enumerate(text.split(b"\n")) if (mark := parser._judge(line)) is not False]
    each_line = parser._marked_lines_of(text, header_parse._line_starts(text, n_lines))
    across = parser._marked_lines(text)
    newlines = np.flatnonzero(np.frombuffer(text, np.uint8) == 10)  # a group's caller has found them already
    assert parser._marked_lines(text, newlines) == each_line == across == judged and len(judged) >= 3
    with_cr = text.replace(b"\n", b"\r\n")  # its newlines' offsets are not those of its text without CRs
    crs = np.flatnonzero(np.frombuffer(with_cr, np.uint8) == 10)
    assert parser._marked_lines(with_cr, crs) == parser._marked_lines(with_cr)


@pytest.mark.parametrize(
    "fmt_name",
    [n for n in servicelogs.formats.names() if isinstance(servicelogs.formats.get(n).grammar, HeaderDelimited)],
)
def test_a_parser_judges_each_distinct_line_once_within_a_bound(fmt_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every object repeats its header lines: a parser keeps what it judged (the same answers as judging anew,
    the same tuple for the same header), for at most JUDGED_LINES lines of at most JUDGED_LINE_BYTES each."""
    monkeypatch.setattr(header_parse, "JUDGED_LINES", 50)
    grammar = servicelogs.formats.get(fmt_name).grammar
    assert isinstance(grammar, HeaderDelimited)
    parser = header_parse.HeaderDelimitedParser(servicelogs.formats.get(fmt_name))
    lines = [line for text in _fixture_texts(fmt_name).values() for line in text.splitlines() if line]
    header = next(line for line in lines if header_parse.judge_line(grammar, line))
    long_header = header + b" " + b"x" * header_parse.JUDGED_LINE_BYTES  # judged as ever, not kept
    many = [header, long_header, *lines[:40], *(b"%d %s" % (i, header) for i in range(80)), header, long_header]
    first = [parser._judge(line) for line in many]
    again = [parser._judge(line) for line in many]
    assert first == again == [header_parse.judge_line(grammar, line) for line in many]
    assert parser._judge(header) is first[0] and first[0]  # the header's one tuple, from the memo
    assert len(parser._judged) == 50 and long_header not in parser._judged


def _key_free(fmt_name: str) -> dict:
    """The columns that come from the object's key (the cut objects have keys of their own): left out."""
    fmt = servicelogs.formats.get(fmt_name)
    return {name: None for name in (*(f.name for f in fmt.key_fields), *fmt.partitions)}


def test_small_s3_access_objects_exact_values(tmp_path: Path) -> None:
    """Three objects of one line each, parsed together: each line's values, key and line number exactly."""
    fmt = servicelogs.formats.get("s3_access")
    lines = (FIXTURES / "s3_access" / "aws-docs-s3-userguide-LogFormat-current.log").read_bytes().splitlines()
    objects = {_key(fmt, n): lines[n % 2] + b"\n" for n in range(3)}
    objects[_key(fmt, 3)] = b"not a log line\n" + lines[0]  # a reject, then a row: line 2, no final newline
    write_local(tmp_path / "src", objects)
    summary, rows, rejects = _converted(tmp_path / "src", tmp_path / "t", "s3_access")
    assert summary.batches_committed == 1 and summary.objects_converted == 4
    keys = sorted(str(tmp_path / "src" / k) for k in objects)
    assert [(r["source_key"], r["line_number"]) for r in rows] == [(k, 1) for k in keys[:3]] + [(keys[3], 2)]
    assert [(r["source_key"], r["line_number"]) for r in rejects] == [(keys[3], 1)]
    assert rejects[0]["raw_line"] == "not a log line"
    assert _values(rows[3]) == _values(rows[2]) == _values(rows[0]) != _values(rows[1])
    first = rows[0]
    assert first["bucketowner"] == "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
    assert first["bucket_name"] == "amzn-s3-demo-bucket1"
    assert first["operation"] == "REST.GET.VERSIONING"
    assert first["requestdatetime"] == datetime(2019, 2, 6, 0, 0, 38, tzinfo=timezone.utc)
    assert (first["remoteip"], first["requestid"], first["httpstatus"], first["bytessent"]) == (
        "192.0.2.3",
        "3E57427F3EXAMPLE",
        200,
        113,
    )
