"""Helpers of the Spark tests: every format's fixtures as a corpus in the AWS key layout, tables compared."""

from __future__ import annotations

import gzip
from pathlib import Path

from conftest import FIXTURES

import servicelogs

FILL = {"prefix": "logs/", "account_id": "123456789012", "region": "us-east-1", "second": "00"}


class _Fill(dict):
    """Key template values: the given ones, and for the others a token that every layout accepts, with the
    object's number in it."""

    def __missing__(self, name: str) -> str:
        n = self["n"]
        return f"10.0.0.{n + 1}" if name == "ip" else f"a{n:07d}"


def fixture_corpus(fmt_name: str) -> dict[str, bytes]:
    """Every fixture file of the format (the bad-input ones too), each an object under a key of the
    format's first key layout: the layout's example's values, with the hour and minute counted up."""
    fmt = servicelogs.formats.get(fmt_name)
    layout = fmt.key_layouts[0]
    groups = {k: v for k, v in layout.regex.search(layout.example).groupdict().items() if v is not None}
    files = sorted(
        p
        for p in (FIXTURES / fmt_name).iterdir()
        if p.name != "README.md" and not p.name.endswith((".expected.json", ".cases.json"))  # expected values
    )
    corpus = {}
    for n, path in enumerate(files):
        when = {"year": "2024", "month": "01", "day": "15", "hour": f"{n // 12:02d}", "minute": f"{n % 12 * 5:02d}"}
        key = layout.template.format_map(_Fill({**FILL, "n": n, **groups, **when}))
        data = path.read_bytes()
        if key.endswith(".gz") and not data.startswith(b"\x1f\x8b"):
            data = gzip.compress(data)
        corpus[key] = data
    assert len(corpus) == len(files), "keys must differ"
    assert all(fmt.match_key(key) is not None for key in corpus)
    return corpus


def without_run_id(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "run_id"} for row in rows]


def table_files(target: Path) -> list[str]:
    return sorted(p.relative_to(target).as_posix() for p in target.rglob("*.parquet") if "_servicelogs" not in p.parts)
