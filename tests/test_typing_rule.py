"""One typing rule per neutral type, whatever the grammar: the same text is the same value, or a misfit, in a
line format (arrow_kernels.typed_field over tokens) and in a JSON record format (json_types.typed over JSON
texts: numbers bare, timestamps as strings)."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from servicelogs.engines.arrow_kernels import typed_field
from servicelogs.engines.json_types import typed
from servicelogs.spec import Field
from servicelogs.types import BIGINT, DOUBLE, INT, TIMESTAMP

UTC = timezone.utc
CASES = [
    (INT, ["7", "-3", "+1", "2147483648", "1.5", "x", ""], [7, -3, None, None, None, None, None]),
    (BIGINT, ["9007199254740993", "-1", "1e3"], [9007199254740993, -1, None]),
    (
        DOUBLE,
        ["0.25", "-2", ".5", "1e3", "1.", "nan", "1e999", "0x10"],
        [0.25, -2.0, 0.5, 1000.0, 1.0, None, None, None],
    ),
    (
        TIMESTAMP,
        [
            "2023-07-19T21:11:57Z",
            "2023-07-19T21:00:00+02:00",
            "2023-07-19T21:11:57.123456Z",
            "2023-07-19",
            "0000-01-01T00:00:00Z",
        ],
        [
            datetime(2023, 7, 19, 21, 11, 57, tzinfo=UTC),
            datetime(2023, 7, 19, 19, 0, tzinfo=UTC),
            datetime(2023, 7, 19, 21, 11, 57, 123456, tzinfo=UTC),
            None,
            None,
        ],
    ),
]


@pytest.mark.parametrize(("t", "texts", "values"), CASES, ids=[str(c[0]) for c in CASES])
def test_a_text_types_alike_in_line_and_json_grammars(t, texts, values):
    bad: dict[int, str] = {}
    line = typed_field(Field("f", t), pa.array(texts, pa.string()), bad).to_pylist()
    as_json = [f'"{text}"' if t == TIMESTAMP else text for text in texts]
    json_values, reasons = typed(pa.array(as_json, pa.string()), t, "f")
    json_bad = {i for i, r in enumerate(reasons.to_pylist()) if r is not None} if reasons is not None else set()
    assert [None if i in bad else v for i, v in enumerate(line)] == values
    assert [None if i in json_bad else v for i, v in enumerate(json_values.to_pylist())] == values
    assert set(bad) == json_bad == {i for i, v in enumerate(values) if v is None}
    # The same words for the same misfit, the value as each grammar wrote it.
    for i in bad:
        assert bad[i].split(" is ", 1)[1] == reasons[i].as_py().split(" is ", 1)[1]


def test_misfits_are_worded_alike():
    bad: dict[int, str] = {}
    typed_field(Field("port", INT), pa.array(["+1", "2147483648", "x"]), bad)
    _, reasons = typed(pa.array(["+1", "2147483648", '"x"']), INT, "port")
    assert bad == {
        0: "field 'port': '+1' is not an integer",
        1: "field 'port': '2147483648' is outside the 32-bit integer range",
        2: "field 'port': 'x' is not an integer",
    }
    assert reasons.to_pylist() == [
        "field 'port': +1 is not an integer",
        "field 'port': 2147483648 is outside the 32-bit integer range",
        "field 'port': \"x\" is not an integer",
    ]
