"""Many log sources from one TOML file: `servicelogs run --config FILE`.

    [defaults]                     # optional: any source key, for every source
    target = "lake"
    catalog = "duckdb"             # duckdb (the default for local targets), glue or none

    [[source]]
    name = "alb-prod"              # how the summary names it (default: the table name)
    format = "alb"
    source = "s3://my-logs/AWSLogs/123456789012/elasticloadbalancing/"
    table = "alb_prod"             # the table folder under the target and its catalog name
    database = "logs"
    raw_table = "alb_prod_raw"     # default: <table>_raw
    rejects_table = "alb_prod_rejects"
    partitions = "registered"      # or "projection" (Athena partition projection, Glue only)
    late_days = 3                  # days before the ledger's latest delivery day a run still lists
    full_listing = false           # true: list the whole source (a scheduled full listing's config)

Errors name the file, the line and the key. Sources run concurrently, as many at once as there are cores
(each with its share of the worker processes).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicelogs import formats
from servicelogs.errors import UnknownFormatError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PARTITION_STRATEGIES = ("registered", "projection")
CATALOGS = ("duckdb", "glue", "none")
REQUIRED = ("format", "source", "target")
OPTIONAL = (
    "name", "table", "database", "raw_table", "rejects_table", "catalog", "partitions", "workers", "late_days",
    "full_listing",
)  # fmt: skip


class ConfigError(UsageError):
    def __init__(self, path: Path, line: int, key: str, problem: str) -> None:
        super().__init__(f"{path}:{line}: {key}: {problem}")
        self.path, self.line, self.key = path, line, key


@dataclass(frozen=True)
class SourceConfig:
    name: str
    format: str
    source: str
    target: str
    table: str
    database: str | None = None
    raw_table: str = ""
    rejects_table: str = ""
    catalog: str | None = None
    partitions: str = "registered"
    workers: int | None = None
    late_days: int | None = None
    full_listing: bool = False


class _Lines:
    """Where keys stand in the file: tomllib gives no positions, so the text is scanned (a table header,
    then `key =` after it)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def header(self, name: str, index: int = 0) -> int:
        pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(name)}\s*\]\]?")
        found = [n for n, line in enumerate(self.lines, 1) if pattern.match(line)]
        return found[index] if index < len(found) else 1

    def key(self, key: str, after: int) -> int:
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for n in range(after, len(self.lines) + 1):
            if n > after and re.match(r"^\s*\[", self.lines[n - 1]):
                break
            if pattern.match(self.lines[n - 1]):
                return n
        return after


def load(path: str | os.PathLike[str]) -> list[SourceConfig]:
    """The sources of config file `path`; raises ConfigError naming the line and key of any mistake."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"config {path}: {e.strerror}") from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = int(m.group(1)) if (m := re.search(r"line (\d+)", str(e))) else 1
        raise ConfigError(path, line, "syntax", str(e)) from e
    lines = _Lines(text)
    for key in doc:
        if key not in ("defaults", "source"):
            raise ConfigError(path, lines.header(key), key, "unknown table (expected [defaults] and [[source]])")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(path, lines.key("defaults", 1), "defaults", "must be a table ([defaults])")
    _check_keys(path, lines, defaults, lines.header("defaults"), "defaults", required=False)
    sources = doc.get("source", [])
    if not isinstance(sources, list) or not sources:
        raise ConfigError(path, 1, "source", "no [[source]] table: name at least one log source")
    out = []
    for i, entry in enumerate(sources):
        at = lines.header("source", i)
        merged = {**defaults, **entry}
        _check_keys(path, lines, entry, at, f"source[{i}]", required=False)
        for key in REQUIRED:
            if key not in merged:
                raise ConfigError(path, at, f"source[{i}].{key}", "missing (required: format, source, target)")
        out.append(_source(path, lines, merged, entry, defaults, at, i))
    names = [s.name for s in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(path, lines.header("source", i), f"source[{i}].name", f"{name!r} is named twice")
    return out


def _check_keys(path: Path, lines: _Lines, table: dict, at: int, where: str, required: bool) -> None:
    import difflib

    for key in table:
        if key not in (*REQUIRED, *OPTIONAL):
            close = difflib.get_close_matches(key, (*REQUIRED, *OPTIONAL), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(path, lines.key(key, at), f"{where}.{key}", f"unknown key{hint}")


def _source(path: Path, lines: _Lines, merged: dict, entry: dict, defaults: dict, at: int, i: int) -> SourceConfig:
    def fail(key: str, problem: str) -> ConfigError:
        line = lines.key(key, at) if key in entry else lines.key(key, lines.header("defaults"))
        return ConfigError(path, line, f"source[{i}].{key}", problem)

    for key, value in merged.items():
        if key == "workers":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise fail(key, f"must be a positive integer, not {value!r}")
        elif key == "late_days":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise fail(key, f"must be a whole number of days (0 or more), not {value!r}")
        elif key == "full_listing":
            if not isinstance(value, bool):
                raise fail(key, f"must be true or false, not {value!r}")
        elif not isinstance(value, str) or not value:
            raise fail(key, f"must be a non-empty string, not {value!r}")
    try:
        formats.get(merged["format"])
    except UnknownFormatError as e:
        raise fail("format", str(e)) from e
    if merged.get("catalog", "duckdb") not in CATALOGS:
        raise fail("catalog", f"{merged['catalog']!r} is not one of {', '.join(CATALOGS)}")
    if merged.get("partitions", "registered") not in PARTITION_STRATEGIES:
        raise fail("partitions", f"{merged['partitions']!r} is not one of {', '.join(PARTITION_STRATEGIES)}")
    for key in ("table", "raw_table", "rejects_table", "database"):
        if key in merged and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", merged[key]):
            raise fail(key, f"{merged[key]!r} is not a table name (letters, digits, _)")
    table = merged.get("table", merged["format"])
    return SourceConfig(
        name=merged.get("name", table),
        format=merged["format"],
        source=merged["source"],
        target=merged["target"],
        table=table,
        database=merged.get("database"),
        raw_table=merged.get("raw_table", ""),
        rejects_table=merged.get("rejects_table", ""),
        catalog=merged.get("catalog"),
        partitions=merged.get("partitions", "registered"),
        workers=merged.get("workers"),
        late_days=merged.get("late_days"),
        full_listing=merged.get("full_listing", False),
    )


def run_all(
    sources: list[SourceConfig], *, workers: int | None = None, full_listing: bool = False
) -> list[tuple[SourceConfig, Any]]:
    """Convert every source, as many at once as there are cores; returns (source, RunSummary or the
    ServiceLogsError that stopped it) in the file's order. `full_listing` lists every source in full.
    Sources sharing an embedded catalog (one DuckDB file, which one writer holds at a time) run one after
    the other."""
    from concurrent.futures import ThreadPoolExecutor

    import servicelogs
    from servicelogs.errors import ServiceLogsError

    groups: dict[str, list[SourceConfig]] = {}
    for i, s in enumerate(sources):
        embedded = s.catalog == "duckdb" or (s.catalog is None and "://" not in s.target)
        groups.setdefault(os.path.abspath(s.target) if embedded else f"#{i}", []).append(s)
    cores = workers or os.cpu_count() or 1
    at_once = max(1, min(len(groups), cores))

    def one(s: SourceConfig) -> Any:
        try:
            return servicelogs.convert(
                s.format,
                s.source,
                s.target,
                workers=s.workers or max(1, cores // at_once),
                table=s.table,
                catalog=s.catalog,
                database=s.database,
                raw_table=s.raw_table,
                rejects_table=s.rejects_table,
                projection=s.partitions == "projection",
                full_listing=full_listing or s.full_listing,
                late_days=s.late_days,
            )
        except ServiceLogsError as e:
            return e

    with ThreadPoolExecutor(at_once) as pool:
        ran = pool.map(lambda group: [(id(s), one(s)) for s in group], groups.values())
        done = {sid: result for group in ran for sid, result in group}
    return [(s, done[id(s)]) for s in sources]
