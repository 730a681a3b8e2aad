"""Contract every format declaration keeps, checked for all of them at once."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone

import pytest

from servicelogs import formats
from servicelogs.render.arrow import schema
from servicelogs.spec import LogFormat
from servicelogs.types import TIMESTAMP

ALL = formats.all_formats()


def _expected(fmt: LogFormat, name: str, value: object) -> object:
    if fmt.field(name).type == TIMESTAMP and isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    return value


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_declaration_is_consistent(fmt: LogFormat):
    names = [f.name for f in fmt.columns]
    assert len(names) == len(set(names)), "column names must be unique"
    assert fmt.field(fmt.event_time).type == TIMESTAMP
    assert len(schema(fmt)) == len(fmt.columns)
    assert fmt.examples, "a format ships real example lines"
    for layout in fmt.key_layouts:
        groups = fmt.match_key(layout.example)
        assert groups is not None, f"layout {layout.name!r} must match its own example"
        assert {f.name for f in fmt.key_fields} <= set(groups) | {"account_id"}
    for partition in fmt.partitions:
        assert partition in ("region", "year", "month", "day")


@pytest.mark.parametrize(
    ("fmt", "index"), [(f, i) for f in ALL for i in range(len(f.examples))], ids=lambda v: str(getattr(v, "name", v))
)
def test_examples_parse_to_their_expected_values(convert, fmt: LogFormat, index: int):
    example = fmt.examples[index]
    key = fmt.key_layouts[0].example
    data = (example.line + "\n").encode()
    out = convert(fmt.name, {key: gzip.compress(data) if key.endswith(".gz") else data})
    assert out.summary.rejects == 0, out.rejects
    (row,) = out.rows
    for name, value in example.expected.items():
        assert row[name] == _expected(fmt, name, value), (example.source, name)


def test_unknown_format_suggests_the_closest():
    with pytest.raises(formats.UnknownFormatError, match="did you mean 'alb'"):
        formats.get("abl")
