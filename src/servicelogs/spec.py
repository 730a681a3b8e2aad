"""The declaration types: a log format is data, written once in `servicelogs.formats.<name>`.

A `LogFormat` says how a line is split into tokens (its grammar), which typed fields each token yields,
which field generations AWS has shipped, how region/account/date come out of an object key, which field
is the event time, and real example lines with their expected typed values. Engines (local, Spark) and
catalogs (embedded DuckDB, Glue) read these declarations; none of them names a format.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any, Literal

from servicelogs.types import BIGINT, STRING, STRING_LIST, Type

EPOCH_SECONDS = "%s"
"""`Field.time_format` of a timestamp written as seconds since 1970-01-01 UTC (VPC Flow Logs). A value of
10**11 or more is milliseconds (as seconds it would be past the year 5138): AWS writes some VPC records so.
Engines reject a value outside the years 1–9999, as for every timestamp."""


@dataclass(frozen=True)
class Field:
    """One typed output column.

    `null` is the token AWS writes for "no value" (None: the field always has a value, and a line
    without one is rejected). `choices` limits a field to documented values. `time_format` is a strptime
    pattern for timestamps that are not ISO 8601.

    `athena_name` and `athena_type` say how the Athena DDL AWS publishes for this log names and types the
    column, where that differs from this declaration (names compared case-insensitively, as Athena does;
    a type only where AWS gives a typed column that is typed otherwise here, such as epoch seconds as a bigint).
    """

    name: str
    type: Type = STRING
    doc: str = ""
    null: str | None = "-"
    choices: tuple[str, ...] = ()
    time_format: str | None = None
    athena_name: str | None = None
    athena_type: str | None = None


class Split(enum.Enum):
    """How one token becomes several fields. Engines implement each kind once, for every format."""

    HOST_PORT = "host_port"
    """`ip:port`, `[ipv6]:port` or `ipv6:port` → (ip, port); the null token → both null."""

    HTTP_REQUEST = "http_request"
    """`METHOD url PROTOCOL` → (method, url, protocol); the url may hold spaces, the protocol may be absent."""


@dataclass(frozen=True)
class Token:
    """One position in a line. `since` names the field generation that added it."""

    name: str
    fields: tuple[Field, ...]
    since: str
    split: Split | None = None
    quoted: bool = False
    pieces: int = 1
    """How many delimiter-separated pieces the token spans, such as S3's `[06/Feb/2019:00:00:38 +0000]`
    (two pieces): engines join them back with the delimiter before typing the token."""

    def __post_init__(self) -> None:
        if len(self.fields) > 1 and self.split is None:
            raise ValueError(f"token {self.name!r} yields several fields but declares no split")
        if self.pieces < 1 or (self.pieces > 1 and self.quoted):
            raise ValueError(f"token {self.name!r}: a quoted token is one piece; others span at least one")


@dataclass(frozen=True)
class Generation:
    """A field layout AWS has shipped: its name (by convention the token count) and when it appeared."""

    name: str
    appeared: str
    doc: str = ""


@dataclass(frozen=True)
class Delimited:
    """A line is tokens separated by one delimiter; a quoted token may hold the delimiter.

    Generations append tokens at the end, so a line's token count tells its generation. Tokens past the
    last declared one are fields AWS added after this declaration: they are kept in `extra_fields` and
    counted, never rejected. Counts are in pieces (a token may span several, see `Token.pieces`). `None` as
    `quote`: no token is ever quoted (as for HeaderDelimited).

    `line_regex` is an exact regex for one whole line, for formats whose writer does not escape the quote
    inside quoted tokens (S3 writes a raw `"` in a Request-URI or User-Agent): its groups, in order, are
    the line's pieces; a group that did not take part ends the line (an older generation); the group named
    `extra` holds what follows the last declared piece (split on the delimiter into extra fields). Only the
    slow path uses it, for the rare lines the bulk tokenizer cannot map; lines it does not match fall back
    to the plain tokenizer (and usually end as rejects with a reason).
    """

    tokens: tuple[Token, ...]
    generations: tuple[Generation, ...]
    delimiter: str = " "
    quote: str | None = '"'
    line_regex: str | None = None

    @cached_property
    def min_tokens(self) -> int:
        first = self.generations[0].name
        return sum(t.pieces for t in self.tokens if t.since == first)

    def fields_in(self, pieces: int) -> int:
        """How many tokens (the fields a user counts) `pieces` pieces make, for messages."""
        seen, tokens = 0, 0
        for t in self.tokens:
            if seen + t.pieces > pieces:
                return tokens
            seen, tokens = seen + t.pieces, tokens + 1
        return tokens + pieces - seen

    @cached_property
    def piece_count(self) -> int:
        """Pieces of a line of the newest declared generation."""
        return sum(t.pieces for t in self.tokens)

    def generation_of(self, token_count: int) -> str | None:
        """The generation whose layout has exactly `token_count` pieces, if any."""
        seen = 0
        for gen in self.generations:
            seen += sum(t.pieces for t in self.tokens if t.since == gen.name)
            if seen == token_count:
                return gen.name
        return None

    @cached_property
    def compiled_line_regex(self) -> re.Pattern[str] | None:
        return re.compile(self.line_regex) if self.line_regex else None


@dataclass(frozen=True)
class Join:
    """Several tokens that together give one field (CloudFront's `date` and `time` → one timestamp).

    The tokens' values are joined with `separator`, then typed as `field`. The tokens name no field of
    their own (declare them with `fields=()`)."""

    field: Field
    tokens: tuple[str, ...]
    separator: str = " "


@dataclass(frozen=True)
class HeaderDelimited:
    """Delimited lines whose token order is given by a header line in the object itself.

    A line matching `header` is a header: the words of its `names` group, split on whitespace, are token
    names (`Token.name`, as AWS writes them: `cs-uri-stem`, `pkt-srcaddr`), and they decide the order of the
    data lines that follow it, until the next header. A line matching `comment` is neither a row nor a
    reject (`#Version: 1.0`). Lines before any header use `default`, a token order whose tokens' `since`
    generations tell a line's layout by its token count, as in `Delimited`.

    A header word that names no declared token: with `unknown_names="extra"` its values go to
    `extra_fields` (AWS adds fields); with `"reject"` every data line under that header is a reject naming
    the word (a column never shifts silently). `foreign_headers` tell headers of another log type (each
    pattern is searched in the header's names joined by single spaces): their data lines are rejects with
    the declared reason. A header naming a token twice makes its data lines rejects too. `None` as `quote`:
    no token is ever quoted.
    """

    tokens: tuple[Token, ...]
    generations: tuple[Generation, ...]
    default: tuple[str, ...]
    header: str
    comment: str | None = None
    delimiter: str = " "
    quote: str | None = None
    joins: tuple[Join, ...] = ()
    unknown_names: Literal["extra", "reject"] = "extra"
    foreign_headers: tuple[ForeignLine, ...] = ()

    def __post_init__(self) -> None:
        if self.unknown_names not in ("extra", "reject"):
            raise ValueError(f"unknown_names must be 'extra' or 'reject', not {self.unknown_names!r}")
        names = {t.name for t in self.tokens}
        missing = [n for n in self.default if n not in names] + [
            n for j in self.joins for n in j.tokens if n not in names
        ]
        if missing:
            raise ValueError(f"undeclared token names: {missing}")

    @cached_property
    def header_regex(self) -> re.Pattern[str]:
        return re.compile(self.header)

    @cached_property
    def by_name(self) -> dict[str, Token]:
        return {t.name: t for t in self.tokens}

    @cached_property
    def fields(self) -> tuple[Field, ...]:
        """The union of every field any header may name, in declaration order; a join's field stands at
        the place of its first token."""
        first = {j.tokens[0]: j.field for j in self.joins}
        out: list[Field] = []
        for t in self.tokens:
            if t.name in first:
                out.append(first[t.name])
            out.extend(t.fields)
        return tuple(out)


@dataclass(frozen=True)
class JsonKey:
    """A top-level key of a JSON record and the column it fills.

    The column's type says how: JSON keeps the value's JSON text as written; STRING takes a JSON string
    (a number or a nested value keeps its JSON text); BOOLEAN takes true/false or "true"/"false";
    TIMESTAMP takes an ISO 8601 UTC string ("…Z"); StructOf/ListOf take an object/array, member by
    member (members not declared are dropped: declare the key once more as JSON to keep them). One key
    may fill several columns.
    """

    key: str
    field: Field


@dataclass(frozen=True)
class SkipObject:
    """A JSON value that is known to turn up among the records and is not one (a digest file): it is
    recognised by having all of `keys`, counted and skipped with `reason`, never rejected."""

    keys: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class HiveStorage:
    """How Hive and Athena read a format's objects in place (a raw table), when no generic SerDe can: the
    SerDe, input and output formats that the service's Athena documentation names."""

    serde: str
    input_format: str
    output_format: str = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
    serde_parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class JsonRecords:
    """An object holds JSON records: `{"<records_key>": [record, …]}`, or JSON values one after another
    (JSON Lines) when the object does not start with that key.

    A record's "line number" is its 1-based index in the object. Each record must be a JSON object;
    its top-level keys not declared here are kept in `extra_fields` as `{"key": value}` JSON texts, never
    rejected. `version_key` names the key whose value tells the record's generation.
    """

    keys: tuple[JsonKey, ...]
    generations: tuple[Generation, ...]
    records_key: str = "Records"
    version_key: str | None = None
    skip_objects: tuple[SkipObject, ...] = ()
    empty_reason: str = "an object whose records array is empty"
    hive_storage: HiveStorage | None = None
    """The raw table's SerDe and input format (servicelogs.render.hive), if Athena documents one."""

    @cached_property
    def fields(self) -> tuple[Field, ...]:
        return tuple(k.field for k in self.keys)


Grammar = Delimited | HeaderDelimited | JsonRecords


@dataclass(frozen=True)
class DayFolders:
    """Keys that hold their delivery day as folders below a parent folder (`.../<region>/2024/05/28/...`).

    `parent` is a regex the parent folder's path (ending in `/`) matches at its end, after `/` or the start;
    `levels` is how each folder below it is named, `{year}`, `{month}` and `{day}` standing for the digits. A
    listing (servicelogs.listing) then asks only for the day folders a run can find new objects in."""

    parent: str
    levels: tuple[str, ...] = ("{year}", "{month}", "{day}")

    def __post_init__(self) -> None:
        _check_day_position("parent", self.parent, "/".join(self.levels))


@dataclass(frozen=True)
class DayNames:
    """Keys whose object name holds the delivery day after a stem (`2019-02-06-00-00-38-...`: stem ""), so that
    the names of one stem in a folder sort by time: a listing starts after the stem and the first day it
    needs (S3 StartAfter) instead of reading every older name.

    `stem` is a regex for what a name holds before the day; `day` how the day is written, as in DayFolders."""

    stem: str = ""
    day: str = "{year}-{month}-{day}-"

    def __post_init__(self) -> None:
        _check_day_position("stem", self.stem, self.day)


def _check_day_position(name: str, regex: str, day: str) -> None:
    """The day's parts come in date order, each once (listings compare them as tuples), and the regex before
    them captures nothing (the day's parts are the only groups)."""
    if re.findall(r"\{(year|month|day)\}", day) != ["year", "month", "day"]:
        raise ValueError(f"a day position names {{year}}, {{month}} and {{day}} once each, in that order: {day!r}")
    if re.compile(regex).groups:
        raise ValueError(f"the {name} regex {regex!r} must not capture: use (?:...)")


@dataclass(frozen=True)
class KeyLayout:
    """How an object key names its log: a regex whose named groups give the format's key fields (such as
    account_id) and `region`, and a `template` that renders such a key (for the demo and the benchmarks).

    Optional groups `year`, `month` and `day` give the key's delivery date: the partition of a line whose
    event time is null (a custom format that leaves the event-time field out). `days` says where the delivery
    day sits in the key's path, for listings that ask only for days that can be new (None: nowhere a listing
    can use, so the layout's keys are listed in full)."""

    name: str
    pattern: str
    template: str
    example: str
    days: DayFolders | DayNames | None = None

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)


@dataclass(frozen=True)
class ForeignLine:
    """A line that is not a record of this format but is known to turn up in its objects."""

    pattern: str
    reason: str


@dataclass(frozen=True)
class IgnoredKey:
    """An object key that belongs to the format's delivery but holds no records (a digest): skipped with
    `reason`, so the run summary says what it was instead of 'matches no key layout'."""

    pattern: str
    reason: str


@dataclass(frozen=True)
class Example:
    """A real line and the typed values it must give. `source` says where the line was published."""

    line: str
    expected: Mapping[str, Any]
    source: str


# Columns every converted table has besides the format's own fields. Partition columns live in the
# directory names (Hive style), not inside the Parquet files.
EXTRA_FIELDS = Field(
    "extra_fields",
    STRING_LIST,
    "Values after the last declared token: fields AWS appended after this declaration (JSON record formats: the "
    'undeclared top-level keys, each as a {"key": value} JSON text). Null when the line has none.',
    null=None,
)
ACCOUNT_ID = Field("account_id", STRING, "AWS account id, from the object key.")
LINEAGE_FIELDS = (
    Field(
        "source_key",
        STRING,
        "Full location of the source object: s3://bucket/key, or a local file's absolute path.",
        null=None,
    ),
    Field(
        "line_number",
        BIGINT,
        "1-based line number in the (decompressed) source object; for JSON record formats, the record's 1-based "
        "index in the object.",
        null=None,
    ),
    Field("run_id", STRING, "Id of the run that converted the line.", null=None),
)
REJECT_FIELDS = (
    Field("source_key", STRING, null=None),
    Field("line_number", BIGINT, null=None),
    Field("raw_line", STRING, "The line as written; undecodable bytes as \\x escapes.", null=None),
    Field("reason", STRING, "Why the line is not a row: names the field and the value.", null=None),
    Field("run_id", STRING, null=None),
)
PARTITION_FIELDS = {
    "region": Field("region", STRING, "AWS region, from the object key ('unknown' when the key has none).", null=None),
    "year": Field("year", STRING, "Event year (UTC), four digits.", null=None),
    "month": Field("month", STRING, "Event month (UTC), two digits.", null=None),
    "day": Field("day", STRING, "Event day (UTC), two digits.", null=None),
}
DEFAULT_PARTITIONS = ("region", "year", "month", "day")
UNKNOWN_PARTITION = "unknown"  # a partition value the key or the event time does not give


def partition_values(groups: Mapping[str, str], day: date | None) -> dict[str, str]:
    """Each of PARTITION_FIELDS' values for a row: the region from its object's key, the date its event's."""
    if day is None:
        return {
            "region": groups.get("region", UNKNOWN_PARTITION),
            **dict.fromkeys(("year", "month", "day"), UNKNOWN_PARTITION),
        }
    return {
        "region": groups.get("region", UNKNOWN_PARTITION),
        "year": f"{day.year:04d}",
        "month": f"{day.month:02d}",
        "day": f"{day.day:02d}",
    }


@dataclass(frozen=True)
class LogFormat:
    """Everything servicelogs knows about one AWS log type."""

    name: str
    title: str
    doc: str
    grammar: Grammar
    event_time: str
    key_layouts: tuple[KeyLayout, ...]
    foreign_lines: tuple[ForeignLine, ...] = ()
    examples: tuple[Example, ...] = field(default=(), repr=False)
    key_fields: tuple[Field, ...] = (ACCOUNT_ID,)
    """Columns taken from the object key: each is the key layout's regex group of the same name."""
    partitions: tuple[str, ...] = DEFAULT_PARTITIONS
    """Hive partition columns, outermost first, among PARTITION_FIELDS."""
    ignored_keys: tuple[IgnoredKey, ...] = ()

    @cached_property
    def fields(self) -> tuple[Field, ...]:
        """The format's own fields, in line order: the union of every generation."""
        if isinstance(self.grammar, HeaderDelimited | JsonRecords):
            return self.grammar.fields
        return tuple(f for token in self.grammar.tokens for f in token.fields)

    @cached_property
    def columns(self) -> tuple[Field, ...]:
        """Every column of a converted Parquet file, in order (partition columns excluded)."""
        return (*self.fields, EXTRA_FIELDS, *self.key_fields, *LINEAGE_FIELDS)

    @cached_property
    def per_object_fields(self) -> tuple[Field, ...]:
        """Columns whose value is the same on every row of one source object (key fields, lineage)."""
        return (*self.key_fields, *(f for f in LINEAGE_FIELDS if f.name in ("source_key", "run_id")))

    @cached_property
    def partition_fields(self) -> tuple[Field, ...]:
        return tuple(PARTITION_FIELDS[name] for name in self.partitions)

    def partition_path(self, groups: Mapping[str, str], day: date | None) -> str:
        """The Hive partition folder of a row (`region=eu-west-1/year=2024/...`), in this format's order."""
        values = partition_values(groups, day)
        return "/".join(f"{name}={values[name]}" for name in self.partitions)

    def field(self, name: str) -> Field:
        for f in self.columns:
            if f.name == name:
                return f
        raise KeyError(name)

    def match_key(self, key: str) -> dict[str, str] | None:
        """The named groups of the first key layout that matches `key`, or None for a non-log key."""
        for layout in self.key_layouts:
            m = layout.regex.search(key)
            if m:
                return {k: v for k, v in m.groupdict().items() if v is not None}
        return None

    def explain_ignored_key(self, key: str) -> str | None:
        for ignored in self.ignored_keys:
            if re.search(ignored.pattern, key):
                return ignored.reason
        return None

    def explain_foreign(self, line: str) -> str | None:
        for foreign in self.foreign_lines:
            if re.search(foreign.pattern, line):
                return foreign.reason
        return None
