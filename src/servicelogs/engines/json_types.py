"""JSON value texts → typed Arrow arrays, with Arrow kernels, and the reason each misfit is rejected.

DuckDB hands over each declared value as its JSON text (`"2023-07-19T21:11:57Z"`, `true`, `"true"`) and
each struct member or list item the same way. Typing here is strict where DuckDB's own casts are
lenient (a date alone, or a "+02:00" offset, would pass as a timestamp there; 1 as a boolean): a value
that does not fit its declared type makes its record a reject whose reason names the field, the member
and the value, instead of a silent null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servicelogs.engines.arrow_kernels import MAX_TIME, MIN_TIME
from servicelogs.render.arrow import arrow_type
from servicelogs.types import BIGINT, BOOLEAN, DOUBLE, INT, JSON, STRING, TIMESTAMP, ListOf, StructOf, Type

_ISO_UTC = r'^"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z"$'
_NUMBER = {INT: r"^-?\d+$", BIGINT: r"^-?\d+$", DOUBLE: r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$"}
WORDS = {
    BOOLEAN: "a boolean",
    TIMESTAMP: "an ISO 8601 UTC timestamp",
    INT: "an integer",
    BIGINT: "an integer",
    DOUBLE: "a number",
}
_NO_REASON = pa.scalar(None, pa.string())


def needs_typing(t: Type) -> bool:
    """Whether values of `t` arrive as text that Arrow must type (else DuckDB's value is final)."""
    if isinstance(t, StructOf):
        return any(needs_typing(m) for _, m in t.members)
    if isinstance(t, ListOf):
        return needs_typing(t.item)
    return t not in (STRING, JSON)


def typed(values: pa.Array, t: Type, field: str, member: str = "") -> tuple[pa.Array, pa.Array | None]:
    """`values` typed as `t`, and per value the reason it does not fit (null where it does), or None
    when nothing can misfit."""
    if not needs_typing(t):
        return values, None
    if isinstance(t, StructOf):
        return _struct(values, t, field, member)
    if isinstance(t, ListOf):
        return _list(values, t, field, member)
    present = pc.is_valid(values)
    if t == BOOLEAN:
        yes = pc.is_in(values, pa.array(["true", '"true"']))
        no = pc.is_in(values, pa.array(["false", '"false"']))
        out = pc.if_else(yes, True, pc.if_else(no, False, pa.scalar(None, pa.bool_())))
        fits = pc.or_(yes, no)
    elif t == TIMESTAMP:
        fits = pc.fill_null(pc.match_substring_regex(values, _ISO_UTC), False)
        inner = pc.if_else(fits, pc.utf8_slice_codeunits(values, 1, -1), pa.scalar(None, pa.string()))
        out, fits = _in_range(*_cast(inner, fits, arrow_type(t)), t)
    elif t in _NUMBER:
        fits = pc.fill_null(pc.match_substring_regex(values, _NUMBER[t]), False)
        out, fits = _in_range(*_cast(pc.if_else(fits, values, pa.scalar(None, pa.string())), fits, arrow_type(t)), t)
    else:
        raise NotImplementedError(t)
    bad = pc.and_(present, pc.invert(fits))
    if not pc.any(bad).as_py():
        return out, None
    where = f"field {field!r}" + (f" member {member}" if member else "") + ": "
    message = pc.binary_join_element_wise(where, values, f" is not {WORDS[t]}", "")
    return out, pc.if_else(bad, message, _NO_REASON)


def _in_range(out: pa.Array, fits: pa.Array, t: Type) -> tuple[pa.Array, pa.Array]:
    """Values Parquet readers cannot hold (a year 0 or past 9999, a number that overflows to infinity) misfit."""
    if t == TIMESTAMP:
        low, high = pa.scalar(MIN_TIME, out.type), pa.scalar(MAX_TIME, out.type)
        ok = pc.and_(pc.greater_equal(out, low), pc.less_equal(out, high))
    elif t == DOUBLE:
        ok = pc.is_finite(out)
    else:
        return out, fits
    ok = pc.fill_null(ok, True)
    if pc.all(ok).as_py():
        return out, fits
    return pc.if_else(ok, out, pa.scalar(None, out.type)), pc.and_(fits, ok)


def _cast(texts: pa.Array, fits: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """Cast the texts that look right; one that still fails (February 30th) is found value by value."""
    try:
        return pc.cast(texts, target), fits
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ok = []
    for v in texts.to_pylist():
        try:
            pc.cast(pa.array([v], pa.string()), target)
            ok.append(True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ok.append(False)
    good = pa.array(ok)
    return pc.cast(pc.if_else(good, texts, pa.scalar(None, pa.string())), target), pc.and_(fits, good)


def _struct(values: pa.Array, t: StructOf, field: str, member: str) -> tuple[pa.Array, pa.Array | None]:
    children, reasons = [], []
    for (name, member_type), child in zip(t.members, values.flatten(), strict=True):
        out, why = typed(child, member_type, field, f"{member}.{name}" if member else name)
        children.append(out)
        if why is not None:
            reasons.append(why)
    fields = [pa.field(name, child.type) for (name, _), child in zip(t.members, children, strict=True)]
    out = pa.StructArray.from_arrays(children, fields=fields, mask=pc.is_null(values))
    if not reasons:
        return out, None
    return out, reasons[0] if len(reasons) == 1 else pc.coalesce(*reasons)


def _list(values: pa.Array, t: ListOf, field: str, member: str) -> tuple[pa.Array, pa.Array | None]:
    items, why = typed(values.values, t.item, field, f"{member}[]" if member else "[]")
    out = pa.ListArray.from_arrays(values.offsets, items, mask=pc.is_null(values))
    if why is None:
        return out, None
    # The first misfit item of each list is its row's reason; misfits are rare, so look at those only.
    offsets = values.offsets.to_numpy()
    reasons: list[str | None] = [None] * len(values)
    for k in np.flatnonzero(pc.is_valid(why).to_numpy(zero_copy_only=False)):
        row = int(np.searchsorted(offsets, k, side="right") - 1)
        if 0 <= row < len(values) and reasons[row] is None:
            reasons[row] = why[int(k)].as_py()
    return out, pa.array(reasons, pa.string())
