"""JSON value texts → typed Arrow arrays, with Arrow kernels, and the reason each misfit is rejected.

DuckDB hands over each declared value as its JSON text (`"2023-07-19T21:11:57Z"`, `true`, `"true"`) and
each struct member or list item the same way. A number must be a JSON number and a timestamp a JSON
string; their texts are then typed by the rule every grammar shares (arrow_kernels.cast_checked), which is
strict where DuckDB's own casts are lenient (a date alone would pass as a timestamp there; 1 as a
boolean). A value that does not fit its declared type makes its record a reject whose reason names the
field, the member and the value, instead of a silent null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servicelogs.engines.arrow_kernels import TYPE_WORDS, cast_checked
from servicelogs.spec import Field
from servicelogs.types import BOOLEAN, JSON, STRING, TIMESTAMP, ListOf, StructOf, Type

_NO_REASON = pa.scalar(None, pa.string())
_NO_TEXT = pa.scalar(None, pa.string())


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
    if t == BOOLEAN:
        return _boolean(values, field, member)
    # The JSON kind first (a timestamp is a string, a number is not), then the text by the shared rule.
    is_string = pc.fill_null(pc.starts_with(values, '"'), False)
    kind_fits = is_string if t == TIMESTAMP else pc.invert(is_string)
    texts = pc.utf8_slice_codeunits(values, 1, -1) if t == TIMESTAMP else values
    out, misfits = cast_checked(pc.if_else(kind_fits, texts, _NO_TEXT), Field(field, t))
    wrong_kind = pc.and_(pc.is_valid(values), pc.invert(kind_fits))
    if not misfits and not pc.any(wrong_kind).as_py():
        return out, None
    where = f"field {field!r}" + (f" member {member}" if member else "") + ": "
    texts_of_values = values.to_pylist()
    reasons: list[str | None] = [None] * len(values)
    for k in np.flatnonzero(wrong_kind.to_numpy(zero_copy_only=False)).tolist():
        reasons[k] = f"{where}{texts_of_values[k]} is not {TYPE_WORDS[t]}"
    for k, what in misfits.items():
        reasons[k] = f"{where}{texts_of_values[k]} is {what}"
    return out, pa.array(reasons, pa.string())


def _boolean(values: pa.Array, field: str, member: str) -> tuple[pa.Array, pa.Array | None]:
    """JSON's true and false, or their quoted texts (some records quote them)."""
    yes = pc.is_in(values, pa.array(["true", '"true"']))
    no = pc.is_in(values, pa.array(["false", '"false"']))
    out = pc.if_else(yes, True, pc.if_else(no, False, pa.scalar(None, pa.bool_())))
    bad = pc.and_(pc.is_valid(values), pc.invert(pc.or_(yes, no)))
    if not pc.any(bad).as_py():
        return out, None
    where = f"field {field!r}" + (f" member {member}" if member else "") + ": "
    message = pc.binary_join_element_wise(where, values, f" is not {TYPE_WORDS[BOOLEAN]}", "")
    return out, pc.if_else(bad, message, _NO_REASON)


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
