"""Test corpora for the catalogs, built from each format's own declaration: its real example lines, under
its main key layout's example key, so every declared format is covered without naming one."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from servicelogs.spec import Delimited, HeaderDelimited, JsonRecords, LogFormat


def header_lines(fmt: LogFormat, names: tuple[str, ...] | None = None) -> list[str]:
    """The lines an object of a header-defined format starts with, naming `names` (default order)."""
    g = fmt.grammar
    assert isinstance(g, HeaderDelimited)
    words = " ".join(names or g.default)
    header = next(h for h in (words, f"#Fields: {words}") if g.header_regex.match(h))
    comment = ["#Version: 1.0"] if g.comment and re.match(g.comment, "#Version: 1.0") else []
    return [*comment, header]


def object_text(fmt: LogFormat) -> str:
    g = fmt.grammar
    lines = [e.line for e in fmt.examples]
    if isinstance(g, Delimited):
        return "\n".join(lines) + "\n"
    if isinstance(g, HeaderDelimited):
        return "\n".join([*header_lines(fmt), *lines]) + "\n"
    if isinstance(g, JsonRecords):
        return json.dumps({g.records_key: [json.loads(line) for line in lines]})
    raise TypeError(type(g))


def example_key(fmt: LogFormat) -> str:
    return fmt.key_layouts[0].example


def write_corpus(fmt: LogFormat, root: Path) -> dict[str, bytes]:
    """One object under the main layout's example key holding the format's example lines (gzipped when its key
    says so); returns {key: bytes}."""
    key = example_key(fmt)
    data = object_text(fmt).encode()
    if key.endswith(".gz"):
        data = gzip.compress(data)
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {key: data}
