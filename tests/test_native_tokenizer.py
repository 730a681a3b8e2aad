"""The compiled bulk tokenizer (`engines/_delimited.c`) against Arrow's CSV reader, which it replaces where it is
built: on real fixture lines and on those lines mutated at random (test_fuzz's mutations), both give the same rows,
value for value, and the same rejects, line for line and reason for reason. Arrow's reader stays the tokenizer of
an install without a C compiler, so both must be right."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz import Seed, objects, seeds

from servicelogs import formats
from servicelogs.engines import arrow_kernels, arrow_parse, header_parse
from servicelogs.engines import native as compiled
from servicelogs.engines.batch import parser_for
from servicelogs.spec import Delimited, HeaderDelimited

LINE_FORMATS = [n for n in formats.names() if isinstance(formats.get(n).grammar, (Delimited, HeaderDelimited))]
EXAMPLES = int(os.environ.get("SERVICELOGS_FUZZ_EXAMPLES", "10"))


def parsed(name: str, texts: list[bytes], *, use_native: bool) -> tuple[pa.Table, list[tuple[int, int, str, str]]]:
    """Every object's rows (with the object's index) and rejects (object, line, raw, reason), in order."""
    saved = compiled.kernels
    if not use_native:
        compiled.kernels = None
    try:
        parser = parser_for(formats.get(name))
        items = [(i, f"object-{i}", _opener(text)) for i, text in enumerate(texts)]
        tables, rejects = [], []
        for members, block in parser.parse_objects(items):
            if block is None:
                continue
            objects = block.objects if block.objects is not None else [members[0]] * block.rows.num_rows
            tables.append(block.rows.append_column("object", pa.array(objects, pa.int64())))
            reject_objects = (
                block.reject_objects if block.reject_objects is not None else [members[0]] * len(block.reject_lines)
            )
            rejects += zip(reject_objects, block.reject_lines, block.reject_raw, block.reject_reasons, strict=True)
    finally:
        compiled.kernels = saved
    table = pa.concat_tables(tables).sort_by([("object", "ascending"), ("line_number", "ascending")])
    return table, sorted(rejects)


def _opener(text: bytes) -> arrow_parse.Opener:
    return lambda: contextlib.nullcontext(io.BytesIO(text))


def assert_same(name: str, texts: list[bytes]) -> None:
    native_rows, native_rejects = parsed(name, texts, use_native=True)
    arrow_rows, arrow_rejects = parsed(name, texts, use_native=False)
    only_native = [r for r in native_rejects if r not in arrow_rejects]
    only_arrow = [r for r in arrow_rejects if r not in native_rejects]
    assert (only_native, only_arrow) == ([], [])
    assert native_rows.schema == arrow_rows.schema
    for column in native_rows.column_names:
        native, arrow = native_rows.column(column).to_pylist(), arrow_rows.column(column).to_pylist()
        differ = [
            (line, a, b)
            for line, a, b in zip(native_rows.column("line_number").to_pylist(), native, arrow, strict=True)
            if a != b
        ]
        assert differ == [], column


def _bodies(pool: list[Seed]) -> Iterator[bytes]:
    for seed in pool:
        yield b"\n".join(seed.header + seed.lines) + b"\n"


requires_native = pytest.mark.skipif(
    compiled.kernels is None and not os.environ.get("CI"), reason="the C tokenizer is not built here"
)


def test_the_native_tokenizer_is_built_in_ci() -> None:
    """CI installs with a compiler: a build that silently fell back to Arrow's reader would test nothing here."""
    if os.environ.get("CI"):
        assert compiled.kernels is not None


@requires_native
@pytest.mark.parametrize("name", LINE_FORMATS)
def test_real_lines_parse_the_same(name: str) -> None:
    bodies = list(_bodies(seeds(name)))
    assert bodies
    assert_same(name, bodies)  # small objects, parsed together
    assert_same(name, [b"".join(bodies) * 200])  # one object of many blocks' worth


def line_parser(name: str) -> arrow_parse.DelimitedParser:
    """The format's parser of one token order (for a header-defined format: that of objects without a header)."""
    fmt = formats.get(name)
    if isinstance(fmt.grammar, HeaderDelimited):
        parser = header_parse._Layout(fmt, None).parser
        assert parser is not None
        return parser
    return arrow_parse.DelimitedParser(fmt)


def native_values(parser: arrow_parse.DelimitedParser, line: bytes) -> tuple[pa.Table, bool] | None:
    """The native tokenizer's values for one line and whether they are typed as the parser types them while
    reading (False: it refused a value, and the line comes as text); None if it leaves the line to the exact path."""
    native = parser.native
    assert native is not None
    width = int(native.token_counts([line], parser.declared)[0])
    if not width:
        return None
    table, _, others, slow = native._read(line, width)
    assert (table.num_rows, others, slow) == (1, [], [])
    typed = all(table.column(i).type == t for i, t in parser.tokenizer_types.items() if i < width)
    return table.combine_chunks(), typed


def arrow_values(parser: arrow_parse.DelimitedParser, line: bytes, width: int, typed: bool) -> pa.Table | None:
    """Arrow's CSV reader's values for one line, read as the parser reads it; None if it refuses the line."""
    read = parser._read_tokens_as(line, width, parser.tokenizer_types if typed else {})
    if read is None or read[1] or read[0].num_rows != 1:
        return None
    return read[0].combine_chunks()


@requires_native
@pytest.mark.parametrize("name", LINE_FORMATS)
def test_mutated_lines_tokenize_as_arrow_reads_them(name: str) -> None:
    """Each line the native tokenizer takes as plain has the tokens Arrow's reader gives it, and each value it types
    the value Arrow's reader gives. (Whole objects may differ between the two on odd lines: each sends other odd
    lines to the exact path, whose answer for a line is not always the bulk one.)"""
    pool = seeds(name)
    parser = line_parser(name)
    compared = [0]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(obj=objects(pool))
    def run(obj: tuple[list[bytes], list[bytes]]) -> None:
        for line in obj[1]:
            ours = native_values(parser, line)
            if ours is None:
                continue
            values, typed = ours
            theirs = arrow_values(parser, line, values.num_columns, typed)
            assert theirs is not None and theirs.equals(values), line
            compared[0] += 1

    run()
    assert compared[0] > 50 * EXAMPLES // 2  # most mutated lines stay plain: the test compares something


@requires_native
def test_only_plain_lines_are_rows() -> None:
    """Each rule that sends a line to the exact path, and what a plain line gives, on lines of three tokens."""
    block = b"\n".join(
        [
            b'a "b c" d',  # 0: plain, a quoted token holding the delimiter
            b'a "b \\" c" d',  # 1: an escaped quote: the exact path unescapes
            b'a "b"c d',  # 2: a closing quote glued to the next token
            b'a b"c d',  # 3: a stray quote
            b"a b d\r",  # 4: a carriage return
            b"a \xff d",  # 5: invalid UTF-8
            b"",  # 6: an empty line
            b" b d",  # 7: an empty first token
            b'a "b d',  # 8: an unbalanced quote
            b"a b",  # 9: another token count: not the exact path's, but not a row of this width
            "a é d".encode(),  # 10: plain, beyond ASCII
            b"- - ",  # 11: plain, a trailing delimiter: an empty last token; the null token twice
            b"x y z",  # 12: plain, the block's last line has no newline
        ]
    )
    (chunk,), others, slow = compiled.kernels.tokenize(block, ord(" "), ord('"'), 3, b"-", b"sss")
    rows, columns, row_lines = chunk
    assert (others, slow) == ([(9, 2)], [1, 2, 3, 4, 5, 6, 7, 8])
    assert np.frombuffer(row_lines, np.int64).tolist() == [0, 10, 11, 12]
    arrays = [
        pa.Array.from_buffers(
            pa.string(), rows, [None if v is None else pa.py_buffer(v), pa.py_buffer(o), pa.py_buffer(d)], nulls
        )
        for v, nulls, o, d in columns
    ]
    assert [a.to_pylist() for a in arrays] == [["a", "a", None, "x"], ["b c", "é", None, "y"], ["d", "d", "", "z"]]


@requires_native
@pytest.mark.parametrize("name", LINE_FORMATS)
def test_a_block_counts_its_lines_as_the_arrow_path_does(name: str) -> None:
    """The compiled tokenizer counts a block's lines as it scans (no separate pass): the count, the rows and the
    rejects are those of the Arrow path, with odd lines among the real ones and with or without a last newline."""
    parser = line_parser(name)
    real = next(_bodies(seeds(name))).split(b"\n")[-6:-1]  # the last real lines of the first seed (past a header)
    odd = [b"", b"\xff\xfe", b'"', b"a\r", real[0] + b" trailing", real[0].replace(b" ", b"  ", 1)]
    for block in (b"\n".join(real + odd + real) + b"\n", b"\n".join(real + odd + real), b"\n".join(real[:1])):
        counted = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        native = line_parser(name).parse_block(block, 1)
        saved, compiled.kernels = compiled.kernels, None
        try:
            arrow = line_parser(name).parse_block(block, 1)
        finally:
            compiled.kernels = saved
        assert parser.native is not None and native.lines == arrow.lines == counted
        assert native.rows.to_pylist() == arrow.rows.to_pylist()
        rejects = [sorted(zip(p.reject_lines, p.reject_raw, p.reject_reasons, strict=True)) for p in (native, arrow)]
        assert rejects[0] == rejects[1]


@requires_native
def test_typed_columns_and_a_refused_value() -> None:
    """Integers, doubles and ISO timestamps are typed as they are read; a value in another spelling (here a
    timestamp without its zone) has the call answer None, for the caller to read the block as text."""
    block = b"7 -2.5e3 2015-05-13T23:39:43.945958Z\n- 0.000086 1970-01-01T00:00:01Z\n"
    (chunk,), others, slow = compiled.kernels.tokenize(block, ord(" "), ord('"'), 3, b"-", b"ldt")
    assert (others, slow) == ([], [])
    rows, columns, _ = chunk
    types = [pa.int64(), pa.float64(), pa.timestamp("us", tz="UTC")]
    arrays = [
        pa.Array.from_buffers(t, rows, [None if v is None else pa.py_buffer(v), pa.py_buffer(b)], nulls)
        for t, (v, nulls, b, _) in zip(types, columns, strict=True)
    ]
    assert [a.cast(pa.int64()).to_pylist() if i == 2 else a.to_pylist() for i, a in enumerate(arrays)] == [
        [7, None],
        [-2500.0, 0.000086],
        [1431560383945958, 1000000],
    ]
    assert compiled.kernels.tokenize(b"1 2 2015-05-13T23:39:43\n", 32, 34, 3, b"-", b"ldt") is None


@requires_native
@pytest.mark.parametrize("reverse", [False, True])
def test_split_once_as_arrow_splits(reverse: bool) -> None:
    """The split the typing kernels use for host:port and request lines, against Arrow's split_pattern: no
    separator (all head, a null tail), nulls, empty values, a slice of a larger array."""
    values = pa.array(["10.0.0.1:80", "a:b:c", "nocolon", None, "", ":", "[2001:db8::1]:443", "é:ü"] * 3)[5:20]
    parts = pc.split_pattern(values, ":", max_splits=1, reverse=reverse).to_pylist()
    expected_head = [None if p is None else p[0] for p in parts]
    expected_tail = [None if p is None or len(p) < 2 else p[1] for p in parts]
    head, tail = arrow_kernels._split_natively(values, ":", reverse)
    head.validate(full=True)
    tail.validate(full=True)
    assert (head.to_pylist(), tail.to_pylist()) == (expected_head, expected_tail)


@requires_native
@settings(max_examples=max(EXAMPLES, 50), deadline=None)
@given(texts=st.lists(st.binary(max_size=80) | st.sampled_from([b"\n" * 17, b"a\n" * 20, b"\r\n\n"]), max_size=8))
def test_line_counts_count_as_bytes_count(texts: list[bytes]) -> None:
    """The line counts of grouped objects (16 bytes at a time) are bytes.count's, for texts of any length and any
    alignment (a slice of a larger buffer), with a newline anywhere in them."""
    assert compiled.kernels.line_counts(texts) == [t.count(b"\n") for t in texts]
    buffer = b"x\n" + b"".join(texts)
    views = [memoryview(buffer)[at:] for at in range(min(3, len(buffer)))]
    assert compiled.kernels.line_counts(views) == [bytes(v).count(b"\n") for v in views]


@requires_native
def test_grouped_objects_count_their_lines_without_the_compiled_kernels_too() -> None:
    """`arrow_parse.line_counts`, which maps grouped rows back to their objects, gives the same counts with the
    compiled kernels and without them."""
    texts = [b"", b"a", b"a\nb\n", b"\n" * 40 + b"tail"]
    saved, compiled.kernels = compiled.kernels, None
    try:
        fallback = arrow_parse.line_counts(texts)
    finally:
        compiled.kernels = saved
    assert arrow_parse.line_counts(texts) == fallback == [0, 0, 2, 40]
