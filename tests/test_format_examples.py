"""Every example line a format declares gives its declared typed values through the real engine."""

from __future__ import annotations

from datetime import datetime

import pytest

from servicelogs import formats
from servicelogs.engines.arrow_parse import utc

CASES = [(fmt.name, i) for fmt in formats.all_formats() for i in range(len(fmt.examples))]


@pytest.mark.parametrize(("name", "index"), CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_declared_example(convert, name: str, index: int):
    fmt = formats.get(name)
    example = fmt.examples[index]
    key = next(layout.example for layout in fmt.key_layouts)
    out = convert(name, {key: example.line + "\n"})
    assert out.summary.rejects == 0, out.rejects
    (row,) = out.rows
    for field, value in example.expected.items():
        if isinstance(value, str) and isinstance(row[field], datetime):
            value = utc(value)
        assert row[field] == value, field
