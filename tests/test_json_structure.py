"""The compiled scan of a JSON text's shaping bytes and count of each record's valued members
(engines/_json_structure.c) against json_split's numpy ones.

Both must give the same structural positions, depths and string quotes, byte for byte, valid JSON or not: on the
real CloudTrail fixtures, on the odd objects of json_records_support, and on random texts of JSON's shaping
bytes, each alone and joined as split_whole joins objects (where each object's strings and depth start again).
The splits made of them (records, valued members) must be the same, streamed and window by window. Then whole
runs through servicelogs.convert give the same rows and rejects with either.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from json_records_support import KNOWN, PREFIX, alone, compact, converted, described, event, odd_objects, write

from servicelogs.engines import json_split, native

requires_native = pytest.mark.skipif(
    native.json_kernels is None and not os.environ.get("CI"), reason="the C JSON scan is not built here"
)


def test_the_json_scan_is_built_in_ci() -> None:
    """CI installs with a compiler: a build that silently fell back to numpy would test nothing here."""
    if os.environ.get("CI"):
        assert native.json_kernels is not None


def scanned(text: bytes, starts: np.ndarray | None, compiled: bool) -> tuple[list[int], list[int], list[int]]:
    kernels = native.json_kernels
    native.json_kernels = kernels if compiled else None
    try:
        positions, depth, quotes = json_split._structure(np.frombuffer(text, dtype=np.uint8), starts)
    finally:
        native.json_kernels = kernels
    return positions.tolist(), depth.tolist(), quotes.tolist()


def splits(texts: list[bytes], compiled: bool, known: frozenset[str]) -> tuple[list, list]:
    """Each text split alone (streamed), and all of them split together, as json_records_support describes them."""
    kernels = native.json_kernels
    native.json_kernels = kernels if compiled else None
    try:
        together = json_split.split_whole(texts, ["k"] * len(texts), "Records", known)
        return [described(alone(t)) for t in texts], [described(w) for w in together]
    finally:
        native.json_kernels = kernels


def assert_same_scan(texts: list[bytes]) -> None:
    for text in texts:
        assert scanned(text, None, True) == scanned(text, None, False), text[:200]
    joined = b"\n".join(texts)  # as split_whole joins a window of objects
    lengths = np.asarray([len(t) for t in texts], dtype=np.int64)
    starts = np.cumsum(lengths + 1) - lengths - 1
    assert scanned(joined, starts, True) == scanned(joined, starts, False)
    assert splits(texts, True, KNOWN) == splits(texts, False, KNOWN)
    # With the records key a known key, a null member whose quotes are its object's header's (a record `{null}`)
    # is told apart only by where the object's quotes begin.
    known = KNOWN | {"Records"}
    assert splits(texts, True, known) == splits(texts, False, known)


def fixture_texts() -> list[bytes]:
    texts = []
    for path in sorted((FIXTURES / "cloudtrail").iterdir()):
        data = path.read_bytes()
        if path.suffix != ".md":
            texts.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return texts


@requires_native
def test_real_and_odd_objects_scan_the_same() -> None:
    texts = fixture_texts()
    assert len(texts) > 20
    assert_same_scan(texts)
    assert_same_scan(odd_objects())
    header_quotes_only = [b'{"Records":[{"x":"eventID"}]}', b'{"Records":[{null},{"eventID":null}]}']
    assert_same_scan([*header_quotes_only, b'{"Records":[{null}]}'])
    positions, depth, quotes = scanned(b'{"a":[1,"x,]\\"",{}]}', None, True)
    assert positions == [0, 5, 7, 15, 16, 17, 18, 19]  # the comma and bracket inside the string are not there
    assert depth == [1, 2, 2, 2, 3, 2, 1, 0]
    assert quotes == [1, 3, 8, 14]  # the escaped quote is not a string's edge


@requires_native
@settings(max_examples=int(os.environ.get("SERVICELOGS_FUZZ_EXAMPLES", "300")), deadline=None)
@given(st.lists(st.lists(st.sampled_from(list(b'{}[],"\\ a\n')), max_size=40).map(bytes), min_size=1, max_size=6))
def test_random_shaping_bytes_scan_the_same(texts: list[bytes]) -> None:
    assert_same_scan(texts)


# Record files cut from pieces that make nulls, known and unknown keys, nesting and strings likely.
_PIECES = [b'{"Records":[', b"]}", b"{", b"}", b"[", b"]", b",", b":", b"null", b'"eventID"', b'"mystery"']
_PIECES += [b'"errorCode"', b'"a\\"', b'"x,y"', b"1", b" ", b"\n", b'"']


@requires_native
@settings(max_examples=int(os.environ.get("SERVICELOGS_FUZZ_EXAMPLES", "300")), deadline=None)
@given(st.lists(st.lists(st.sampled_from(_PIECES), max_size=30).map(b"".join), min_size=1, max_size=5))
def test_random_record_files_split_the_same(texts: list[bytes]) -> None:
    assert_same_scan([b'{"Records":[' + t + b"]}" for t in texts] + texts)


@requires_native
def test_runs_give_the_same_rows_with_either_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real files and odd objects, small ones split together and one large one streamed in blocks."""
    objects = {f"{PREFIX}f{k:03d}.json.gz": text for k, text in enumerate(fixture_texts() + odd_objects()) if text}
    objects[f"{PREFIX}large.json.gz"] = compact(*(event(n, eventName='a "quoted" \\ [name],') for n in range(3000)))
    write(tmp_path / "src", objects)
    monkeypatch.setattr(json_split, "BLOCK_BYTES", 16 << 10)
    compiled = converted(tmp_path / "src", tmp_path / "compiled", 10_000)
    monkeypatch.setattr(native, "json_kernels", None)
    plain = converted(tmp_path / "src", tmp_path / "numpy", 10_000)
    assert compiled[1] == plain[1] and compiled[2] == plain[2]
    assert len(compiled[1]) > 3000 and compiled[2]  # rows and rejects both, to compare
    assert compiled[0].reject_reasons == plain[0].reject_reasons and compiled[0].notes == plain[0].notes
