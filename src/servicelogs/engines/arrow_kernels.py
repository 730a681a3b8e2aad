"""Typing kernels: from token columns (strings) to typed columns, one Arrow kernel pass per field.

Shared by every grammar that yields string tokens (Delimited, HeaderDelimited): null tokens, splits of one
token into several fields, casts, allowed values. A value a kernel refuses makes that row a reject naming
the field and the value; nothing here loops over rows unless a kernel has refused a value.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servicelogs.engines import native
from servicelogs.render.arrow import arrow_type
from servicelogs.spec import EPOCH_SECONDS, Field, Split, Token
from servicelogs.types import BIGINT, BOOLEAN, DOUBLE, INT, STRING, TIMESTAMP

TYPE_WORDS = {
    INT: "an integer",
    BIGINT: "an integer",
    DOUBLE: "a number",
    BOOLEAN: "a boolean",
    TIMESTAMP: "a timestamp",
}


def token_null(token: Token) -> str | None:
    """The token AWS writes for 'no value' in this position (a split token: that of its first field)."""
    return token.fields[0].null if token.fields else None


def nulled(values: pa.Array, null: str | None) -> pa.Array:
    if null is None or not pc.any(pc.equal(values, null)).as_py():
        return values
    return pc.if_else(pc.equal(values, null), pa.scalar(None, pa.string()), values)


def split_token(token: Token, values: pa.Array) -> list[pa.Array]:
    # Each step that copies a column runs only when some value needs it: these kernels run on every row.
    if token.split is Split.HOST_PORT:
        host, port = _split_once(values, ":", reverse=True)
        if pc.any(pc.starts_with(host, "[")).as_py():  # a bracketed IPv6 address
            host = pc.utf8_trim(host, "[]")
        return [host, port]
    if token.split is Split.HTTP_REQUEST:
        # Non-HTTP listeners write "- - - " (with a trailing space): without it, each part is the null token.
        if pc.any(pc.ends_with(values, " ")).as_py():
            values = pc.utf8_rtrim(values, " ")
        method, rest = _split_once(values, " ", reverse=False)
        url, protocol = _split_once(rest, " ", reverse=True)
        # Without a protocol the last word belongs to the url (a url may hold spaces).
        is_protocol = pc.or_kleene(pc.starts_with(protocol, "HTTP/"), pc.equal(protocol, "-"))
        has_protocol = pc.fill_null(is_protocol, False)
        if not pc.all(has_protocol).as_py():
            url = pc.if_else(has_protocol, url, rest)
            protocol = pc.if_else(has_protocol, protocol, pa.scalar(None, pa.string()))
        return [method, url, protocol]
    raise NotImplementedError(token.split)


def _split_once(values: pa.Array | pa.ChunkedArray, sep: str, reverse: bool) -> tuple[pa.Array, pa.Array]:
    """(before, after) the first (or last) `sep`; `after` is null where there is no `sep`."""
    if isinstance(values, pa.ChunkedArray):
        pairs = [_split_once(chunk, sep, reverse) for chunk in values.chunks]
        return (
            pa.chunked_array([head for head, _ in pairs], pa.string()),
            pa.chunked_array([tail for _, tail in pairs], pa.string()),
        )
    if native.kernels is not None and len(sep) == 1 and pa.types.is_string(values.type):
        return _split_natively(values, sep, reverse)
    parts = pc.split_pattern(values, sep, max_splits=1, reverse=reverse)
    # Both parts taken from the lists' values in one go each: ~10 % cheaper than list_element, and a list
    # of one part (no `sep`) or none (a null value) needs no other path.
    offsets = parts.offsets.to_numpy()
    lengths, starts = np.diff(offsets), offsets[:-1]
    head = parts.values.take(pa.array(starts, mask=lengths < 1))
    tail = parts.values.take(pa.array(starts + 1, mask=lengths < 2))
    return head, tail


def _split_natively(values: pa.Array, sep: str, reverse: bool) -> tuple[pa.Array, pa.Array]:
    """_split_once in one pass of `_delimited.split_once` (split_pattern builds lists, then each part is taken)."""
    validity, offsets, data = values.buffers()
    assert native.kernels is not None
    head, tail = native.kernels.split_once(
        validity, offsets, data if data is not None else b"", len(values), values.offset, ord(sep), reverse
    )
    return tuple(
        pa.Array.from_buffers(pa.string(), len(values), [pa.py_buffer(v), pa.py_buffer(o), pa.py_buffer(d)], nulls)
        for v, nulls, o, d in (head, tail)
    )


def tokenizer_type(token: Token, csv_null: str | None) -> pa.DataType | None:
    """The type Arrow's CSV reader can give a token's column directly while it tokenizes (numbers, ISO
    timestamps, epoch seconds as integers), so no string column is built for it; None: read it as text.

    Only for one-piece tokens of one field whose null token is the one the reader nulls. A value the reader
    refuses makes the block be read again as text, where the field's kernels name the bad value."""
    if token.split is not None or token.pieces != 1 or len(token.fields) != 1:
        return None
    f = token.fields[0]
    if f.null not in (None, csv_null):
        return None
    if f.type in (INT, BIGINT, DOUBLE):
        return arrow_type(f.type)
    if f.type == TIMESTAMP and f.time_format is None:
        return arrow_type(f.type)
    if f.type == TIMESTAMP and f.time_format == EPOCH_SECONDS:
        return pa.int64()
    return None


def typed_field(f: Field, values: pa.Array, bad: dict[int, str]) -> pa.Array:
    """Values (null tokens already nulls) → the field's type; rows whose value does not fit go to `bad`."""
    if f.choices:
        allowed = pc.fill_null(pc.is_in(values, pa.array(f.choices)), True)
        if not pc.all(allowed).as_py():
            for i in np.flatnonzero(~allowed.to_numpy(zero_copy_only=False)):
                bad.setdefault(
                    int(i), f"field {f.name!r}: {values[int(i)].as_py()!r} is not one of {', '.join(f.choices)}"
                )
    if f.null is None:
        missing = values.is_null()
        if pc.any(missing).as_py():
            for i in np.flatnonzero(missing.to_numpy(zero_copy_only=False)):
                bad.setdefault(int(i), f"field {f.name!r} is missing")
    if f.type == STRING:
        return values
    out, misfits = cast_checked(values, f)
    for row, what in misfits.items():
        bad.setdefault(row, f"field {f.name!r}: {str(values[row].as_py())!r} is {what}")
    return out


def cast_checked(values: pa.Array, f: Field) -> tuple[pa.Array, dict[int, str]]:
    """The one typing rule of each neutral type, for every grammar: texts (or values the CSV reader typed
    already) → `f`'s type by Arrow's cast (integers and numbers as C++ parses them, ISO 8601 timestamps with
    a zone, converted to UTC; `f.time_format` for other times), kept to what Parquet readers hold. Returns
    the typed values (null where a value misfits) and, per misfit, what it is ("not an integer").

    Python looks at single values only when the bulk cast refused one, and then only at those a pattern
    lets through."""
    misfits: dict[int, str] = {}
    target = arrow_type(f.type)
    if not pa.types.is_string(values.type):  # the tokenizer typed it already (see tokenizer_type)
        return _convert_in_range(values, f, target, misfits), misfits
    try:
        return _convert_in_range(values, f, target, misfits), misfits
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        misfits.clear()
    candidates = _looks_like(f, values)
    good: list[bool] = []
    for row, (v, plausible) in enumerate(zip(values.to_pylist(), candidates, strict=True)):
        ok = v is None
        if not ok and plausible:
            try:
                _convert(pa.array([v], pa.string()), f, target)
                ok = True
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        if not ok and v is not None:
            what = OUT_OF_RANGE.get(f.type) if plausible and f.type in _SHAPES else None
            misfits[row] = what or f"not {TYPE_WORDS.get(f.type, f.type.name)}"
        good.append(ok)
    cleaned = pc.if_else(pa.array(good), values, pa.scalar(None, pa.string()))
    return _convert_in_range(cleaned, f, target, misfits), misfits


# What Parquet readers and Python hold: Spark, Hive and Python's datetime stop at the years 1–9999 (Arrow and
# DuckDB go further, and a date past them made the partition path crash). NaN and infinities are no timing.
MIN_TIME = datetime(1, 1, 1, tzinfo=timezone.utc)
MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
EPOCH_MILLIS_FROM = 10**11
"""An epoch value from here on is milliseconds (10**11 seconds would be the year 5138; as milliseconds it is
1973): AWS writes milliseconds in some flow log records (see spec.EPOCH_SECONDS)."""
_EPOCH_RANGE = (int(MIN_TIME.timestamp()), int(MAX_TIME.timestamp() * 1000))
OUT_OF_RANGE = {
    INT: "outside the 32-bit integer range",
    BIGINT: "outside the 64-bit integer range",
    DOUBLE: "not a finite number",
    TIMESTAMP: "not a date and time of the years 1 to 9999",
}


def _convert_in_range(values: pa.Array, f: Field, target: pa.DataType, misfits: dict[int, str]) -> pa.Array:
    """`_convert`, and the values outside what the readers hold made misfits (not an error: one bulk check)."""
    if f.type == TIMESTAMP and f.time_format == EPOCH_SECONDS:
        numbers = pc.cast(values, pa.int64())
        low, high = _EPOCH_RANGE
        ok = pc.and_(pc.greater_equal(numbers, low), pc.less_equal(numbers, high))
        return _epoch(_outside_range(numbers, ok, f, misfits))
    out = values if values.type == target else _convert(values, f, target)
    if f.type == TIMESTAMP:
        ok = pc.and_(
            pc.greater_equal(out, pa.scalar(MIN_TIME, target)), pc.less_equal(out, pa.scalar(MAX_TIME, target))
        )
    elif f.type == DOUBLE:
        ok = pc.is_finite(out)
    else:
        return out
    return _outside_range(out, ok, f, misfits)


def _outside_range(out: pa.Array, ok: pa.Array, f: Field, misfits: dict[int, str]) -> pa.Array:
    ok = pc.fill_null(ok, True)
    if pc.all(ok).as_py():
        return out
    for i in np.flatnonzero(~ok.to_numpy(zero_copy_only=False)):
        misfits.setdefault(int(i), OUT_OF_RANGE[f.type])
    return pc.if_else(ok, out, pa.scalar(None, out.type))


def _epoch(numbers: pa.Array) -> pa.Array:
    """Epoch seconds, or milliseconds from EPOCH_MILLIS_FROM on, in range → UTC timestamps."""
    millis = pc.greater_equal(numbers, EPOCH_MILLIS_FROM)
    micros = pc.if_else(millis, pc.multiply(numbers, 1000), pc.multiply(numbers, 1_000_000))
    return micros.cast(pa.timestamp("us", tz="UTC"))


# What Arrow's casts accept (an integer takes no "+"; a number may), so a value of the shape that still fails
# its cast is out of range.
_SHAPES = {
    INT: r"^-?[0-9]+$",
    BIGINT: r"^-?[0-9]+$",
    DOUBLE: r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$",
    TIMESTAMP: r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$",
}


def _looks_like(f: Field, values: pa.Array) -> list[bool]:
    """Per value: could it be of the field's type? A bulk pre-filter, so that a block full of bad values does
    not cost a kernel call per value. True where no pattern is known (the value is then tried alone)."""
    if f.type == TIMESTAMP and f.time_format:
        parsed = pc.strptime(values, format=f.time_format, unit="us", error_is_null=True)
        return pc.fill_null(pc.is_valid(parsed), False).to_pylist()
    shape = _SHAPES.get(f.type)
    if shape is None:
        return [True] * len(values)
    return pc.fill_null(pc.match_substring_regex(values, shape), False).to_pylist()


def _convert(values: pa.Array, f: Field, target: pa.DataType) -> pa.Array:
    if f.type == TIMESTAMP and f.time_format == EPOCH_SECONDS:  # integer arithmetic, not text parsing
        numbers = pc.cast(values, pa.int64())
        low, high = _EPOCH_RANGE
        if not pc.all(pc.and_(pc.greater_equal(numbers, low), pc.less_equal(numbers, high))).as_py():
            raise pa.ArrowInvalid("an epoch value outside the years 1 to 9999")
        return _epoch(numbers)
    if f.type == TIMESTAMP and f.time_format:
        parsed = _strptime_distinct(values, f.time_format)
        return parsed.cast(target) if parsed.type.tz else pc.assume_timezone(parsed, "UTC")
    return pc.cast(values, target)


def _strptime_distinct(values: pa.Array | pa.ChunkedArray, time_format: str) -> pa.Array | pa.ChunkedArray:
    """strptime of each distinct text once: times written to the second repeat over many lines, and Arrow's
    strptime costs ~1 µs a value with a month name or an offset (S3's `[06/Feb/2019:00:00:38 +0000]`), ten
    times the hashing that finds the distinct ones."""
    if isinstance(values, pa.ChunkedArray):
        if not values.num_chunks:
            return pc.strptime(values, format=time_format, unit="us", error_is_null=False)
        return pa.chunked_array([_strptime_distinct(chunk, time_format) for chunk in values.chunks])
    encoded = pc.dictionary_encode(values)
    parsed = pc.strptime(encoded.dictionary, format=time_format, unit="us", error_is_null=False)
    return parsed.take(encoded.indices)


def utc(text: str) -> datetime:
    """An ISO 8601 'Z' timestamp as an aware datetime (for examples and tests)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
