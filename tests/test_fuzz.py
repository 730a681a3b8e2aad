"""Real fixture lines mutated at random, through the real engine and the CLI: nothing escapes, nothing is lost.

Each Hypothesis example is one object of 50–200 mutated lines (digits widened, tokens dropped, duplicated or
swapped, quotes and brackets inserted, bytes flipped, huge or non-finite numbers, separators doubled), converted
by `servicelogs convert` in this process. Whatever the lines, the exit code is 0, every line is exactly one row or
one reject (by line number), and the rows' typed values are sane. CI runs a few thousand lines;
SERVICELOGS_FUZZ_EXAMPLES=<n> runs n examples per format (a long local run).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from conftest import FIXTURES, read_rejects, read_table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicelogs import cli, formats
from servicelogs.spec import HeaderDelimited, JsonRecords

EXAMPLES = int(os.environ.get("SERVICELOGS_FUZZ_EXAMPLES", "8"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="SERVICELOGS_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# Values that have broken parsers: out of every type's range, not finite, dates no reader holds.
HUGE = (
    b"9" * 30,
    b"-" + b"9" * 25,
    b"99999999999",
    b"1512564058000",
    b"18446744073709551616",
    b"1e999",
    b"-1e999",
    b"nan",
    b"inf",
    b"-1",
    b"0000-01-01T00:00:00Z",
    b"9999-12-31T23:59:59.999999Z",
    b"10000-01-01T00:00:00.000000Z",
    b"2018-02-30T00:00:00Z",
    b'"2018-07-02T22:23:00Z"',
    b"",
    b"-",
    b'"',
    b"[]",
    b"{}",
    b"null",
)
INSERTS = (b'"', b"'", b"[", b"]", b"{", b"}", b"\\", b"\t", b"\r", b" ", b",", b":", b'\\"', b"\xff", b"#")
OPS = ("widen", "drop", "duplicate", "swap", "insert", "flip", "huge", "double")


@dataclass(frozen=True)
class Seed:
    """Real lines of one fixture file: its header lines (kept first, for header-defined formats) and data lines."""

    header: tuple[bytes, ...]
    lines: tuple[bytes, ...]


def _fixture_texts(name: str) -> list[tuple[str, bytes]]:
    out = []
    for path in sorted((FIXTURES / name).iterdir()):
        if path.name == "README.md" or path.name.endswith((".expected.json", ".tsv", ".cases.json")):
            continue
        data = path.read_bytes()
        out.append((path.name, gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data))
    return out


def _records(data: bytes) -> list[bytes]:
    """The CloudTrail records of a fixture, each as one line of JSON."""
    text = data.decode()
    try:
        values = [json.loads(text)]
    except json.JSONDecodeError:
        values = [json.loads(line) for line in text.splitlines() if line.strip()]
    records = []
    for value in values:
        items = value.get("Records", [value]) if isinstance(value, dict) else value
        records += [json.dumps(r).encode() for r in items if isinstance(r, dict)]
    return records


def seeds(name: str) -> list[Seed]:
    grammar = formats.get(name).grammar
    out = []
    for _, data in _fixture_texts(name):
        if isinstance(grammar, JsonRecords):
            records = _records(data)
            if records:
                out.append(Seed((), tuple(records)))
            continue
        lines = [line for line in data.split(b"\n") if line.strip()]
        if isinstance(grammar, HeaderDelimited):
            is_header = [
                grammar.header_regex.search(line.decode("utf-8", "replace")) is not None
                or line.startswith(b"#")
                or not any(c.isdigit() for c in line.decode("utf-8", "replace"))
                for line in lines
            ]
            header = tuple(line for line, h in zip(lines, is_header, strict=True) if h)
            data_lines = tuple(line for line, h in zip(lines, is_header, strict=True) if not h)
            if data_lines:
                out.append(Seed(header, data_lines))
        elif lines:
            out.append(Seed((), tuple(lines)))
    return out


def mutate(line: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    for op, a, b in ops:
        tokens = line.split(b" ")
        n = len(tokens)
        if op == "widen":
            runs = list(re.finditer(rb"\d+", line))
            if runs:
                m = runs[a % len(runs)]
                line = line[: m.start()] + m.group() * (2 + b % 9) + line[m.end() :]
        elif op == "drop" and n > 1:
            del tokens[a % n]
            line = b" ".join(tokens)
        elif op == "duplicate":
            tokens.insert(a % n, tokens[a % n])
            line = b" ".join(tokens)
        elif op == "swap":
            i, j = a % n, b % n
            tokens[i], tokens[j] = tokens[j], tokens[i]
            line = b" ".join(tokens)
        elif op == "insert":
            at = a % (len(line) + 1)
            line = line[:at] + INSERTS[b % len(INSERTS)] + line[at:]
        elif op == "flip" and line:
            at = a % len(line)
            flipped = line[at] ^ (1 << (b % 8))
            line = line[:at] + bytes([0xFF if flipped == 0x0A else flipped]) + line[at + 1 :]
        elif op == "huge":
            tokens[a % n] = HUGE[b % len(HUGE)]
            line = b" ".join(tokens)
        elif op == "double":
            separators = [m.start() for m in re.finditer(rb"[ ,:\t]", line)]
            if separators:
                at = separators[a % len(separators)]
                line = line[: at + 1] + line[at : at + 1] + line[at + 1 :]
    return line


_MUTATIONS = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 20), st.integers(0, 1 << 20)), min_size=1, max_size=3
)


@st.composite
def objects(draw: st.DrawFn, pool: list[Seed]) -> tuple[list[bytes], list[bytes]]:
    """(header lines, mutated data lines) of one object."""
    seed = draw(st.sampled_from(pool))
    picks = draw(st.lists(st.tuples(st.sampled_from(seed.lines), _MUTATIONS), min_size=50, max_size=200))
    mutated = [mutate(line, ops) for line, ops in picks]
    header = list(seed.header[:1])
    if header and draw(st.integers(0, 9)) == 0:  # now and then a mangled header too
        header = [mutate(header[0], draw(_MUTATIONS))]
    return header, mutated


def _object_key(name: str) -> str:
    return formats.get(name).key_layouts[0].example


def _sane(name: str, rows: list[dict]) -> None:
    fmt = formats.get(name)
    for row in rows:
        for f in fmt.fields:
            v = row[f.name]
            if isinstance(v, float):
                assert math.isfinite(v), (f.name, v, row["line_number"])
            if isinstance(v, datetime):
                assert 1 <= v.year <= 9999
        event = row[fmt.event_time]
        if event is not None:
            assert (row["year"], row["month"], row["day"]) == (
                f"{event.year:04d}",
                f"{event.month:02d}",
                f"{event.day:02d}",
            )


def check_object(name: str, header: list[bytes], lines: list[bytes], wrap: bool = False) -> None:
    fmt = formats.get(name)
    json_records = isinstance(fmt.grammar, JsonRecords)
    body = b"\n".join(header + lines) + b"\n"
    if wrap:
        body = b'{"Records": [' + b",\n".join(lines) + b"]}"
    key = _object_key(name)
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp, "source"), Path(tmp, "target")
        path = source / key
        path.parent.mkdir(parents=True)
        path.write_bytes(gzip.compress(body, 1) if key.endswith(".gz") else body)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(["convert", name, str(source), str(target), "--workers", "1", "--json"])
        summary = json.loads(out.getvalue())
        assert code == 0, summary
        assert summary["objects_failed"] == 0 and summary["objects_converted"] + summary["objects_skipped"] == 1
        rows, rejects = read_table(target, name, fmt.partitions), read_rejects(target, name)
        numbers = sorted([r["line_number"] for r in rows] + [r["line_number"] for r in rejects])
        assert len(numbers) == len(set(numbers)), "a line is both a row and a reject, or twice one"
        assert summary["lines"] == summary["rows"] + summary["rejects"] + summary["header_lines"]
        assert (len(rows), len(rejects)) == (summary["rows"], summary["rejects"])
        if json_records:
            # A mutated quote or bracket may merge or split records: the records are what the splitter found.
            assert numbers == list(range(1, len(numbers) + 1)) or summary["notes"]
        else:
            assert summary["lines"] == len(header) + len(lines)
            data_numbers = set(range(1, summary["lines"] + 1))
            assert set(numbers) <= data_numbers and len(numbers) == summary["lines"] - summary["header_lines"]
        assert all(r["reason"] for r in rejects)
        _sane(name, rows)


FORMAT_NAMES = formats.names()


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_fuzzed_lines_are_rows_or_rejects(name: str) -> None:
    pool = seeds(name)
    assert pool, f"no fixture lines for {name}"
    wrap_json = isinstance(formats.get(name).grammar, JsonRecords)

    checked = [0, 0]  # objects, lines

    @FUZZ
    @given(obj=objects(pool), wrap=st.booleans() if wrap_json else st.just(False))
    def run(obj: tuple[list[bytes], list[bytes]], wrap: bool) -> None:
        header, lines = obj
        check_object(name, header, lines, wrap)
        checked[0], checked[1] = checked[0] + 1, checked[1] + len(lines)

    run()
    print(f"fuzz {name}: {checked[0]} objects, {checked[1]} mutated lines")  # shown with -s
