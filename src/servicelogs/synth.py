"""Realistic synthetic corpora, made from real log lines: for the demo and the benchmarks.

Real lines are the templates. Each generated object gets a key from the format's key layout template, and
each line is a template line with its timestamps (ISO 8601, and epoch seconds where the format's event time
is written so) moved to the object's day and its IPv4 addresses and long hex ids drawn at random.

Template lines alone repeat a few thousand values per column, which flatters dictionary encoding: real logs
hold a new trace id, request id, client port and often a new URL on every line. So the fields a `variations`
table names get fresh values on every generated line, of the field's kind (an address and port, an id, a URL,
a user agent, a number, a time; the kinds below). The table maps a field's name as the format's lines name it
(a Delimited grammar's token names, a header's names, a JSON record's keys) to a kind: nothing here knows a
format. Values are drawn in Arrow and numpy kernels over whole columns, never line by line.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from servicelogs.spec import EPOCH_SECONDS, Delimited, HeaderDelimited, JsonRecords, LogFormat

if TYPE_CHECKING:  # numpy and pyarrow load when a corpus is written, not with servicelogs
    import numpy as np
    import pyarrow as pa

_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_EPOCH_SECONDS = re.compile(r"(?<![\d.])1[0-9]{9}(?![\d.])")  # 2001-09-09 to 2033-05-18
_HEX_ID = re.compile(r"(?<![0-9a-f])(?=[0-9]*[a-f])[0-9a-f]{12,}(?![0-9a-f])")

_JSON = "\0json"  # the name of a JSON record's one "field": the record, its keys varied by regex
POOL_LINES = 4000  # template lines with their times moved, per day and template group
OBJECT_WINDOW_SECONDS = 300  # an object's lines fall in a five-minute window, as ALB writes them


@dataclass
class Corpus:
    objects: int = 0
    text_bytes: int = 0
    stored_bytes: int = 0
    lines: int = 0


# -- kinds of variation -------------------------------------------------------------------------------------


@dataclass
class Draw:
    """What a kind draws from for one object: the random generator, and the object's time window."""

    rng: np.random.Generator
    window_start_us: int


class Variation:
    """A kind of field value. `__call__` gets a column of template values (without quotes; never "-" or "")
    and returns as many new values."""

    def __call__(self, values: pa.Array, draw: Draw) -> pa.Array:
        raise NotImplementedError


def _strings(numbers: np.ndarray) -> pa.Array:
    import pyarrow as pa

    return pa.array(numbers).cast(pa.string())


def _ipv4(rng: np.random.Generator, n: int, first: int | None) -> pa.Array:
    import pyarrow.compute as pc

    octets = rng.integers([1, 0, 0, 1], [224, 256, 256, 255], size=(n, 4))
    if first is not None:
        octets[:, 0] = first
    return pc.binary_join_element_wise(*(_strings(octets[:, i]) for i in range(4)), ".")


@dataclass(frozen=True)
class Address(Variation):
    """An IPv4 address or `ip:port` from a pool of `pool` addresses (`first`: their first octet, 10 for a
    private network); the port from `ports`, or an ephemeral port (1024-65535) when `ports` is empty. Other
    values (IPv6, lists of addresses) are kept."""

    pool: int
    first: int | None = None
    ports: tuple[int, ...] = ()

    @cached_property
    def _pool(self) -> pa.Array:
        import numpy as np

        return _ipv4(np.random.default_rng(self.pool), self.pool, self.first)

    def __call__(self, values: pa.Array, draw: Draw) -> pa.Array:
        import numpy as np
        import pyarrow.compute as pc

        n = len(values)
        ip = self._pool.take(draw.rng.integers(0, self.pool, n))
        port = draw.rng.choice(np.array(self.ports), n) if self.ports else draw.rng.integers(1024, 65536, n)
        with_port = pc.binary_join_element_wise(ip, _strings(port), ":")
        has_port = pc.match_substring_regex(values, r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+:[0-9]+$")
        is_ip = pc.match_substring_regex(values, r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$")
        return pc.if_else(has_port, with_port, pc.if_else(is_ip, ip, values))


# Byte ranges whose characters an id's character is redrawn within: a hex id stays hex, case stays.
_CHAR_CLASSES = ((48, 58), (97, 103), (103, 123), (65, 71), (71, 91))


def _redrawn(values: pa.Array, draw: Draw, chosen: np.ndarray) -> pa.Array:
    """`values` (compact: see `_compact`) with their data bytes where `chosen` redrawn within their class."""
    import numpy as np
    import pyarrow as pa

    data, _ = _data(values)
    out = data.copy()
    for low, high in _CHAR_CLASSES:
        hit = chosen & (data >= low) & (data < high)
        out[hit] = draw.rng.integers(low, high, int(hit.sum()), dtype=np.uint8)
    validity, offsets, _ = values.buffers()
    return pa.StringArray.from_buffers(len(values), offsets, pa.py_buffer(out), validity, values.null_count)


def _data(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(the values' bytes from their first, the offsets of the values into them)."""
    import numpy as np

    offsets = np.frombuffer(values.buffers()[1], np.int32, len(values) + 1, values.offset * 4)
    buffer = values.buffers()[2]
    data = np.frombuffer(buffer, np.uint8)[offsets[0] : offsets[-1]] if buffer is not None else np.zeros(0, np.uint8)
    return data, offsets - offsets[0]


@dataclass(frozen=True)
class Id(Variation):
    """Every run of at least `min_run` letters and digits redrawn character by character (a digit for a digit,
    hex for hex, case kept): `Root=1-58337262-36d228ad5d99923122bbe354` keeps its shape, a UUID its dashes."""

    min_run: int = 8

    def __call__(self, values: pa.Array, draw: Draw) -> pa.Array:
        import numpy as np

        values = _compact(values)
        data, offsets = _data(values)
        alnum = ((data >= 48) & (data < 58)) | ((data | 32) >= 97) & ((data | 32) <= 122)
        value_start = np.zeros(len(data), bool)
        value_start[offsets[:-1][offsets[:-1] < len(data)]] = True
        previous = np.concatenate(([False], alnum[:-1]))
        run = np.cumsum(alnum & (~previous | value_start))
        run_length = np.bincount(run[alnum], minlength=int(run[-1]) + 1 if len(run) else 1)
        return _redrawn(values, draw, alnum & (run_length[run] >= self.min_run))


@dataclass(frozen=True)
class Digits(Variation):
    """A number's digits redrawn, all but the first (`366` → `3xx`, `0.001` → `0.xxx`): byte counts and
    timings with a real spread and the template's magnitude. Other values (`-1`, words) are kept."""

    def __call__(self, values: pa.Array, draw: Draw) -> pa.Array:
        import numpy as np
        import pyarrow.compute as pc

        values = _compact(values)
        data, offsets = _data(values)
        number = pc.match_substring_regex(values, r"^[0-9]+(\.[0-9]+)?$").to_numpy(zero_copy_only=False)
        chosen = np.repeat(number, np.diff(offsets)) & (data >= 48) & (data < 58)
        chosen[offsets[:-1][offsets[:-1] < len(data)]] = False
        return _redrawn(values, draw, chosen)


_WORDS = [
    "api",
    "v1",
    "v2",
    "v3",
    "users",
    "user",
    "orders",
    "order",
    "items",
    "cart",
    "checkout",
    "login",
    "logout",
    "session",
    "account",
    "accounts",
    "profile",
    "search",
    "products",
    "product",
    "catalog",
    "category",
    "images",
    "img",
    "static",
    "assets",
    "js",
    "css",
    "fonts",
    "media",
    "video",
    "videos",
    "health",
    "status",
    "metrics",
    "events",
    "event",
    "track",
    "analytics",
    "auth",
    "oauth",
    "token",
    "callback",
    "docs",
    "help",
    "support",
    "blog",
    "news",
    "articles",
    "article",
    "feed",
    "rss",
    "download",
    "uploads",
    "files",
    "file",
    "reports",
    "report",
    "admin",
    "dashboard",
    "settings",
    "config",
    "billing",
    "invoices",
    "payments",
    "payment",
    "shipping",
    "inventory",
    "reviews",
    "comments",
    "likes",
    "share",
    "notifications",
    "messages",
    "inbox",
    "graphql",
    "rest",
]
_EXTENSIONS = ("", "", "", ".html", ".json", ".js", ".css", ".png", ".jpg", ".php", ".xml", ".gz")
_PARAMS = [
    "id",
    "q",
    "page",
    "limit",
    "offset",
    "sort",
    "ref",
    "utm_source",
    "utm_medium",
    "lang",
    "session_id",
    "token",
    "v",
    "ts",
    "cb",
    "filter",
]


def _words(rng: np.random.Generator, n: int, words: Sequence[str]) -> pa.Array:
    import pyarrow as pa

    return pa.array(words).take(rng.integers(0, len(words), n))


def _maybe(rng: np.random.Generator, values: pa.Array, share: float) -> pa.Array:
    """`values`, each kept with probability `share`, else null."""
    import pyarrow.compute as pc

    return pc.if_else(_bool(rng.random(len(values)) < share), values, None)


def _bool(mask: np.ndarray) -> pa.Array:
    import pyarrow as pa

    return pa.array(mask, pa.bool_())


def _query(rng: np.random.Generator, n: int) -> pa.Array:
    """`key=value`, one to three pairs; values are numbers and hex tokens, mostly new on every line."""
    import pyarrow.compute as pc

    pairs = []
    for i in range(3):
        value = pc.binary_join_element_wise(
            _words(rng, n, _PARAMS), _strings(rng.integers(0, 10 ** (3 + 2 * i), n)), "="
        )
        pairs.append(value if i == 0 else _maybe(rng, value, 0.5))
    return pc.binary_join_element_wise(*pairs, "&", null_handling="skip")


@dataclass(frozen=True)
class Url(Variation):
    """The path and query of a URL, a request line (`GET http://host:80/path?q HTTP/1.1`), a URI or an object
    key (`photos/2019/puppy.jpg`): one to three words and often a numeric id, an extension, and a query
    (always where the template has one, else on `query_share` of the lines). The rest is kept."""

    query_share: float = 0.3

    def __call__(self, values: pa.Array, draw: Draw) -> pa.Array:
        import pyarrow.compute as pc

        rng, n = draw.rng, len(values)
        parts = pc.extract_regex(
            values,
            r"^(?P<pre>(?:[A-Z]+ )?(?:[a-z][a-z0-9+.-]*://[^/\s]+)?)(?P<path>[^?\s]*/[^?\s]*)"
            r"(?P<query>\?[^\s]*)?(?P<post>.*)$",
        )
        field = parts.field  # a StructArray's
        pre, path, query, post = (pc.fill_null(field(name), "") for name in ("pre", "path", "query", "post"))
        leaf = pc.binary_join_element_wise(_strings(rng.integers(1, 10**6, n)), _words(rng, n, _EXTENSIONS), "")
        new_path = pc.binary_join_element_wise(
            _words(rng, n, _WORDS),
            _maybe(rng, _words(rng, n, _WORDS), 0.6),
            _maybe(rng, leaf, 0.6),
            "/",
            null_handling="skip",
        )
        slash = pc.if_else(pc.starts_with(path, "/"), "/", "")
        has_query = pc.or_(pc.not_equal(query, ""), _bool(rng.random(n) < self.query_share))
        new_query = pc.if_else(has_query, pc.binary_join_element_wise("?", _query(rng, n), ""), "")
        varied = pc.binary_join_element_wise(pre, slash, new_path, new_query, post, "")
        return pc.if_else(parts.is_valid(), varied, values)


@dataclass(frozen=True)
class Query(Variation):
    """A query string without its `?` (CloudFront's cs-uri-query)."""

    def __call__(self, values: pa.Array, draw: Draw) -> pa.Array:
        return _query(draw.rng, len(values))


_BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{a}.0.{b}.{c} "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{d}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{e}.{d} "
    "Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS {e}_{d} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/{e}.{d} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{a}.0) Gecko/20100101 Firefox/{a}.0",
    "Mozilla/5.0 (Linux; Android {d}; SM-G{c}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{a}.0.{b}.{c} "
    "Mobile Safari/537.36",
    "curl/7.{a}.{d}",
    "python-requests/2.{d}.{e}",
    "aws-sdk-java/1.12.{c} Linux/5.10.{b} OpenJDK_64-Bit_Server_VM/17.0.{d} java/17.0.{d}",
    "Boto3/1.34.{c} md/Botocore#1.34.{c} ua/2.0 os/linux#5.10.{b} md/arch#x86_64 lang/python#3.11.{d}",
    "Go-http-client/1.1",
    "okhttp/4.{d}.{e}",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
)


@dataclass(frozen=True)
class UserAgent(Variation):
    """A user agent from a pool of `pool` (browsers, SDKs, tools with their versions drawn); `encoded` writes
    spaces as %20, as CloudFront does."""

    pool: int = 5000
    encoded: bool = False

    @cached_property
    def _pool(self) -> pa.Array:
        import pyarrow as pa

        rng = random.Random(self.pool)
        agents = []
        for _ in range(self.pool):
            a, b, c, d, e = (
                rng.randint(60, 130),
                rng.randint(1000, 7000),
                rng.randint(10, 250),
                *rng.sample(range(1, 18), 2),
            )
            text = rng.choice(_BROWSERS).format(a=a, b=b, c=c, d=d, e=e)
            agents.append(text.replace(" ", "%20") if self.encoded else text)
        return pa.array(agents)

    def __call__(self, values: pa.Array, draw: Draw) -> pa.Array:
        return self._pool.take(draw.rng.integers(0, self.pool, len(values)))


@dataclass(frozen=True)
class Time(Variation):
    """A time in the object's window, ascending through the object, written with `format` (strftime; `%S`
    with the template's precision: seconds, or microseconds where the template has a fraction)."""

    format: str = "%Y-%m-%dT%H:%M:%SZ"

    def __call__(self, values: pa.Array, draw: Draw) -> pa.Array:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        # Arrow's strftime costs ~5 µs a value: the window's seconds are written once each, and taken.
        us = np.sort(draw.rng.integers(0, OBJECT_WINDOW_SECONDS * 10**6, len(values)))
        head, seconds_field, tail = self.format.partition("%S")
        start = datetime.fromtimestamp(draw.window_start_us // 10**6, timezone.utc)
        written = [(start + timedelta(seconds=i)).strftime(head + seconds_field) for i in range(OBJECT_WINDOW_SECONDS)]
        seconds = pa.array(written).take(pa.array(us // 10**6))
        if not seconds_field:
            return seconds
        fraction = pc.utf8_slice_codeunits(_strings(us % 10**6 + 10**6), 1)  # six digits, zeros kept
        fine = pc.binary_join_element_wise(seconds, ".", fraction, tail, "")
        return pc.if_else(pc.match_substring(values, "."), fine, pc.binary_join_element_wise(seconds, tail, ""))


Variations = Mapping[str, Variation]


# -- template pools --------------------------------------------------------------------------------------


def _mutate(line: str, day: date, rng: random.Random, epoch_times: bool) -> str:
    def time_of_day(m: re.Match[str]) -> str:
        s = rng.randrange(86400)
        fraction = f".{rng.randrange(10**6):06d}" if "." in m.group(0) else ""  # keep the writer's precision
        return f"{day.isoformat()}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}{fraction}Z"

    line = _ISO_TIME.sub(time_of_day, line)
    if epoch_times and (first := _EPOCH_SECONDS.search(line)):
        # Every time of the line moves by the same amount, so a flow's start and end keep their distance.
        midnight = int(datetime.combine(day, time(), timezone.utc).timestamp())
        shift = midnight + rng.randrange(86400) - int(first.group(0))
        line = _EPOCH_SECONDS.sub(lambda m: str(int(m.group(0)) + shift), line)
    line = _IPV4.sub(
        lambda _: f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", line
    )
    return _HEX_ID.sub(lambda m: "".join(rng.choices("0123456789abcdef", k=len(m.group(0)))), line)


@dataclass
class _Layout:
    """Pool lines of one shape: their field names (None: a field not varied) and one column per field."""

    names: list[str | None]
    columns: list[pa.Array]
    separator: str


class _Pool:
    """One day's and group's template lines, split into fields by the format's grammar when some are varied."""

    def __init__(self, fmt: LogFormat, lines: list[str], preamble: Sequence[str], variations: Variations) -> None:
        import numpy as np
        import pyarrow as pa

        self.lines = lines
        self.mean_length = sum(map(len, lines)) / len(lines) + 1
        grammar = fmt.grammar
        shapes: dict[tuple[str | None, ...], list[int]] = {}
        split: list[list[str]] = []
        for i, line in enumerate(lines):
            pieces, names = _fields(grammar, line, preamble) if variations else ([line], [None])
            if names != [_JSON] and not any(n in variations for n in names if n):
                pieces, names = [line], [None]
            split.append(pieces)
            shapes.setdefault(tuple(names), []).append(i)
        self.layout_of = np.zeros(len(lines), np.int32)
        self.index_in_layout = np.zeros(len(lines), np.int64)
        self.layouts: list[_Layout] = []
        separator = grammar.delimiter if isinstance(grammar, Delimited | HeaderDelimited) else ""
        for k, (shape, members) in enumerate(shapes.items()):
            self.layout_of[members] = k
            self.index_in_layout[members] = np.arange(len(members))
            columns = [pa.array([split[i][j] for i in members], pa.string()) for j in range(len(shape))]
            self.layouts.append(_Layout(list(shape), columns, separator))


def _fields(grammar: object, line: str, preamble: Sequence[str]) -> tuple[list[str], list[str | None]]:
    """A line's pieces as written (quotes kept), so that joining them gives the line back, and their names;
    a JSON record: the record whole (its keys are varied by regex)."""
    if isinstance(grammar, JsonRecords):
        return [line], [_JSON]
    if isinstance(grammar, HeaderDelimited):
        names: list[str | None] = list(grammar.default)
        for text in preamble:
            if m := grammar.header_regex.match(text):
                names = list(m.group("names").split())
        pieces = line.split(grammar.delimiter)
    else:
        assert isinstance(grammar, Delimited)
        names = [t.name if i == 0 else None for t in grammar.tokens for i in range(t.pieces)]
        pieces = _pieces(line, grammar.delimiter, grammar.quote)
        if grammar.delimiter.join(pieces) != line:
            return [line], [None]
    return pieces, (names + [None] * len(pieces))[: len(pieces)]


def _pieces(line: str, delimiter: str, quote: str | None) -> list[str]:
    """A line's pieces, a quoted one with its quotes (the tokenizer's rule: it ends at a quote before the
    delimiter or the end)."""
    if not quote:
        return line.split(delimiter)
    d, q = re.escape(delimiter), re.escape(quote)
    quoted = re.compile(rf"{q}(?:[^{q}\\]|\\.)*{q}(?={d}|$)")
    out, pos = [], 0
    while True:
        m = quoted.match(line, pos)
        end = m.end() if m else line.find(delimiter, pos)
        end = len(line) if end < 0 else end
        out.append(line[pos:end])
        if end >= len(line):
            return out
        pos = end + len(delimiter)


def _varied(values: pa.Array, kind: Variation, draw: Draw, quote: str | None) -> pa.Array:
    """`kind` over a column: a quoted value is varied inside its quotes; "-" and "" are kept."""
    import pyarrow as pa
    import pyarrow.compute as pc

    inner = values
    quoted = None
    if quote:
        quoted = pc.and_(pc.starts_with(values, quote), pc.ends_with(values, quote))
        if pc.any(quoted).as_py():
            inner = pc.if_else(quoted, pc.utf8_slice_codeunits(values, 1, -1), values)
        else:
            quoted = None
    kept = pc.is_in(inner, pa.array(["-", ""]))
    new = pc.if_else(kept, inner, kind(_compact(inner), draw))
    return new if quoted is None else pc.if_else(quoted, pc.binary_join_element_wise(quote, new, quote, ""), new)


def _compact(values: pa.Array) -> pa.Array:
    """A copy whose offsets start at 0 (what `_data` and `_redrawn` read)."""
    import pyarrow as pa

    return pa.concat_arrays([values]) if isinstance(values, pa.Array) else values.combine_chunks()


def _json_varied(records: pa.Array, variations: Variations, draw: Draw) -> pa.Array:
    """Each named key's string value varied, where a record has the key (its first occurrence, any depth)."""
    import pyarrow.compute as pc

    for key, kind in variations.items():
        parts = pc.extract_regex(records, rf'^(?P<pre>.*?"{re.escape(key)}":")(?P<value>[^"\\]*)(?P<post>".*)$')
        field = parts.field
        value = pc.fill_null(field("value"), "")
        new = pc.binary_join_element_wise(field("pre"), _varied(value, kind, draw, None), field("post"), "")
        records = pc.if_else(parts.is_valid(), new, records)
    return records


def _object_lines(pool: _Pool, n: int, variations: Variations, draw: Draw, quote: str | None) -> pa.Array:
    """`n` lines drawn from the pool, their named fields varied."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    picked = draw.rng.integers(0, len(pool.lines), n)
    layouts = pool.layout_of[picked]
    parts, order = [], []
    for k, layout in enumerate(pool.layouts):
        rows = np.flatnonzero(layouts == k)
        if not len(rows):
            continue
        take = pa.array(pool.index_in_layout[picked[rows]])
        columns = []
        for name, column in zip(layout.names, layout.columns, strict=True):
            values = column.take(take)
            if name == _JSON:
                values = _json_varied(values, variations, draw)
            elif name is not None and name in variations:
                values = _varied(values, variations[name], draw, quote)
            columns.append(values)
        parts.append(columns[0] if len(columns) == 1 else pc.binary_join_element_wise(*columns, layout.separator))
        order.append(rows)
    lines = pa.concat_arrays(parts)
    assert not lines.null_count, "a variation gave no value"
    return lines.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))


def _text(lines: pa.Array, separator: str) -> bytes:
    """The lines joined by `separator` (and one after the last: the caller cuts it if it must)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    joined = _compact(pc.binary_join_element_wise(lines, pa.scalar(""), separator))
    data, offsets = _data(joined)
    return data[: offsets[-1]].tobytes()


# -- corpora ---------------------------------------------------------------------------------------------


def write_corpus(
    fmt: LogFormat,
    out: Path,
    megabytes: float,
    templates: Sequence[Sequence[str]],
    *,
    preambles: Sequence[Sequence[str]] = (),
    variations: Variations | None = None,
    object_megabytes: float = 8.0,
    regions: Sequence[str] = ("us-east-1", "eu-west-1", "ap-southeast-2"),
    first_day: date = date(2024, 3, 1),
    days: int = 3,
    seed: int = 7,
    compress: bool | None = None,
    separator: str = "\n",
    end: str = "\n",
) -> Corpus:
    """Write about `megabytes` MB of log text under `out`, in objects of about `object_megabytes` each.

    `templates` are groups of real lines; each object draws from one group, as a real object holds one
    layout; `preambles[i]` (a header, say), if given, starts every object of group i. `variations` names the
    fields that get a fresh value on every line, and the kind (see the module's doc); without it, lines are
    the templates with their times moved. Objects are gzipped when `compress` says so; by default when the
    key layout's template ends in .gz, as AWS does. Lines are joined by `separator` and the object closes
    with `end` (",\n" and "]}" frame JSON records).
    """
    import numpy as np
    from isal import igzip

    variations = variations or {}
    rng = random.Random(seed)
    draws = np.random.default_rng(seed)
    layout = fmt.key_layouts[0]
    # Placeholders the generator has no value for take the layout's own example's (a CloudFront distribution
    # id, an S3 bucket), so generated keys match the layout.
    match = layout.regex.search(layout.example)
    example_groups = {k: v for k, v in (match.groupdict() if match else {}).items() if v is not None}
    corpus = Corpus()
    target = int(megabytes * 1e6)
    per_object = max(1, int(object_megabytes * 1e6))
    pools: dict[tuple[date, int], _Pool] = {}
    epoch_times = fmt.field(fmt.event_time).time_format == EPOCH_SECONDS
    quote = fmt.grammar.quote if isinstance(fmt.grammar, Delimited) else None
    while corpus.text_bytes < target:
        day = first_day + timedelta(days=corpus.objects % days)
        region = regions[(corpus.objects // days) % len(regions)]
        group = corpus.objects % len(templates)
        preamble = preambles[group] if preambles else ()
        pool = pools.get((day, group))
        if pool is None:
            lines = [_mutate(rng.choice(templates[group]), day, rng, epoch_times) for _ in range(POOL_LINES)]
            pool = pools[day, group] = _Pool(fmt, lines, preamble, variations)
        hour, minute = rng.randrange(24), rng.randrange(0, 60, 5)
        fill = _Fill(
            rng,
            prefix="logs/",
            account_id="123456789012",
            region=region,
            year=f"{day.year:04d}",
            month=f"{day.month:02d}",
            day=f"{day.day:02d}",
            hour=f"{hour:02d}",
            minute=f"{minute:02d}",
            second=f"{rng.randrange(60):02d}",
        )
        for name, value in example_groups.items():
            fill.setdefault(name, value)
        key = layout.template.format_map(fill)
        gzipped = key.endswith(".gz") if compress is None else compress
        size = min(per_object, target - corpus.text_bytes)
        window = datetime.combine(day, time(hour, minute), timezone.utc)
        draw = Draw(draws, int(window.timestamp()) * 10**6)
        n_lines = max(1, round(size / (pool.mean_length + len(separator) - 1)))
        body = _text(_object_lines(pool, n_lines, variations, draw, quote), separator)[: -len(separator)]
        text = "".join(line + "\n" for line in preamble).encode() + body + end.encode()
        data = igzip.compress(text, compresslevel=3) if gzipped else text  # ISA-L: ~5x zlib's speed
        path = out / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        corpus.objects += 1
        corpus.text_bytes += len(text)
        corpus.stored_bytes += len(data)
        corpus.lines += text.count(b"\n")
    return corpus


class _Fill(dict):
    """Key template values: the known ones, and a random token for any other placeholder."""

    def __init__(self, rng: random.Random, **known: str) -> None:
        super().__init__(known)
        self.rng = rng

    def __missing__(self, name: str) -> str:
        if name == "ip":
            return ".".join(str(self.rng.randint(1, 254)) for _ in range(4))
        return "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=8))
