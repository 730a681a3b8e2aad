"""DuckDB SQL that takes the records of a JsonRecords format apart (engines.json_parse runs it).

DuckDB parses each record once (json_transform into the declared keys) and hands over strings as they are,
free-form values as JSON text, and every value Arrow must type as JSON text too (engines.json_types). Checks
that need the JSON itself (a key every record must have, a struct that is not an object) are SQL; the
record's other keys become extra_fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from servicelogs.spec import Field, JsonRecords, LogFormat
from servicelogs.types import JSON, STRING, ListOf, StructOf, Type


@dataclass(frozen=True)
class JsonRecordsSql:
    known_keys: frozenset[str]  # every key the declaration reads (the record splitter counts the others)
    version_column: str  # the column that tells a record's generation
    sql: str  # the statement, records not validated first (DuckDB refuses a block with a malformed one)
    sql_checked: str  # the same, validating each record
    sql_usual: str  # the flat projection of a usual block (declared keys only, nothing to reject or skip)
    valued_columns: tuple[str, ...]  # of sql_usual: per declared key, a column null exactly where the key is


def json_records_sql(fmt: LogFormat) -> JsonRecordsSql:
    """The statements of a JsonRecords format (engines.json_parse runs them on a table `records(n, rec)`)."""
    grammar = fmt.grammar
    assert isinstance(grammar, JsonRecords)
    version_column = next(
        (k.field.name for k in grammar.keys if k.key == grammar.version_key), grammar.version_key or ""
    )
    by_key: dict[str, list[Field]] = {}
    for k in grammar.keys:
        by_key.setdefault(k.key, []).append(k.field)
    skip_keys = [key for s in grammar.skip_objects for key in s.keys if key not in by_key]
    structure = {key: "VARCHAR" if all(f.type == STRING for f in fs) else "JSON" for key, fs in by_key.items()}
    structure |= dict.fromkeys(skip_keys, "JSON")

    known_keys = frozenset(structure)
    columns, required, checks = [], [], []
    fast_columns, fits = [], []
    valued_columns: dict[str, str] = {}
    for i, k in enumerate(grammar.keys):
        x, t = f"j[{_lit(k.key)}]", k.field.type
        if not isinstance(t, StructOf | ListOf) or k.key not in valued_columns:
            valued_columns[k.key] = f"c{i}"  # a struct's column is null where its key is only once `_fits` holds
        if k.field.null is None:
            required.append(f"CASE WHEN {x} IS NULL THEN {_lit(f'field {k.key!r} is missing or null')} END")
            fits.append(f"{x} IS NOT NULL")
        if t == STRING:
            text = x if structure[k.key] == "VARCHAR" else f"({x} ->> '$')"
            columns.append(f"{text} AS c{i}")
            fast_columns.append(columns[-1])
        elif isinstance(t, StructOf | ListOf):
            opener = "{" if isinstance(t, StructOf) else "["
            shape = f"a JSON {'object' if opener == '{' else 'array'}"
            fit = f"left(CAST({x} AS VARCHAR), 1) = {_lit(opener)}"
            sub = _lit(json.dumps(duckdb_structure(t)))
            columns.append(f"CASE WHEN {fit} THEN json_transform({x}, {sub}) END AS c{i}")
            fast_columns.append(f"json_transform({x}, {sub}) AS c{i}")
            fits.append(f"coalesce({fit}, true)")
            checks.append(
                f"CASE WHEN {x} IS NOT NULL AND NOT {fit} THEN "
                f"{_lit(f'field {k.field.name!r}: ')} || CAST({x} AS VARCHAR) || {_lit(' is not ' + shape)} END"
            )
        else:  # JSON text as written; Arrow types the scalars (json_types)
            columns.append(f"CAST({x} AS VARCHAR) AS c{i}")
            fast_columns.append(columns[-1])
    skips = [
        f"CASE WHEN {' AND '.join(f'j[{_lit(key)}] IS NOT NULL' for key in s.keys)} THEN {_lit(s.reason)} END"
        for s in grammar.skip_objects
    ]
    declared = "[" + ", ".join(_lit(key) for key in by_key) + "]"
    extras = (
        f"list_transform(list_filter(json_keys(rec), lambda k: NOT list_contains({declared}, k)), "
        "lambda k: CAST(json_object(k, json_extract(rec, '/' || replace(replace(k, '~', '~0'), '/', '~1'))) "
        "AS VARCHAR))"
    )
    # A struct or list key whose value has members the declaration does not name, at any depth: the
    # typed column drops them, so the whole value is kept in extra_fields too (unless a JSON column of
    # the same key keeps it already).
    nested = []
    kept_whole = {k.key for k in grammar.keys if k.field.type == JSON}
    for key, fs in by_key.items():
        undeclared = [_undeclared(f"j[{_lit(key)}]", f.type) for f in fs]
        conditions = [c for c in undeclared if c is not None]
        if conditions and key not in kept_whole:
            nested.append((key, " OR ".join(conditions)))
    if nested:
        whole = ", ".join(
            f"CASE WHEN coalesce({cond}, false) THEN CAST(json_object({_lit(key)}, j[{_lit(key)}]) AS VARCHAR) END"
            for key, cond in nested
        )
        extras = f"list_filter(list_concat({extras}, [{whole}]), lambda v: v IS NOT NULL)"
    # A record is parsed only if it is a JSON object; CASE evaluates its branch for those rows only.
    sql_checked = (
        f"SELECT * EXCLUDE (j, x), CASE WHEN len(x) > 0 THEN x END AS extra_fields, "
        f"{_coalesce(required + checks)} AS _reason, {_coalesce(skips)} AS _skip FROM ("
        f"SELECT n AS line_number, _kind, j, x, {', '.join(columns)} FROM ("
        f"SELECT n, rec, CASE WHEN ok THEN json_transform(rec, {_lit(json.dumps(structure))}) END AS j, "
        f"CASE WHEN ok THEN {extras} END AS x, "
        f"CASE WHEN NOT ok THEN CASE WHEN json_valid(rec) THEN json_type(rec) ELSE '' END END AS _kind FROM ("
        f"SELECT n, rec, starts_with(rec, '{{') AND json_valid(rec) AS ok FROM records)))"
    )
    # Validating every record first costs a quarter of the time: try without, and on a malformed
    # record (DuckDB then refuses the whole block) redo the block with validation.
    sql = sql_checked.replace("starts_with(rec, '{') AND json_valid(rec) AS ok", "starts_with(rec, '{') AS ok")
    assert sql != sql_checked
    # The usual block: objects with only declared keys, each once, and nothing to reject or skip. Then
    # there is nothing to check or gather record by record, and one flat projection of one parse does:
    # a third of the time of the statement above. Whether the block is usual is told by the record
    # splitter's count of valued members, compared with the declared keys DuckDB found (counted in Arrow, from
    # `valued_columns`: a sum of 30-odd IS NOT NULL in the statement cost a seventh of it), and by `_fits`,
    # under which the skip keys are all null.
    fits += [f"j[{_lit(key)}] IS NULL" for key in skip_keys]
    fits += [f"NOT coalesce({cond}, false)" for _, cond in nested]
    sql_usual = (
        f"SELECT n AS line_number, NULL::VARCHAR AS _kind, {', '.join(fast_columns)}, "
        "NULL::VARCHAR[] AS extra_fields, NULL::VARCHAR AS _reason, NULL::VARCHAR AS _skip, "
        f"{' AND '.join(fits) or 'true'} AS _fits FROM ("
        f"SELECT n, json_transform(rec, {_lit(json.dumps(structure))}) AS j FROM records)"
    )
    return JsonRecordsSql(
        frozenset(known_keys), version_column, sql, sql_checked, sql_usual, tuple(valued_columns.values())
    )


def _undeclared(x: str, t: Type, depth: int = 0) -> str | None:
    """SQL: whether the JSON value `x` has an object member `t` does not declare, at any depth; None when `t`
    cannot drop anything (a scalar, JSON text)."""
    if isinstance(t, StructOf):
        names = "[" + ", ".join(_lit(name) for name, _ in t.members) + "]"
        own = f"len(list_filter(json_keys({x}), lambda k: NOT list_contains({names}, k))) > 0"
        inner = [
            _undeclared(f"json_extract({x}, {_lit(_json_path(name))})", member, depth + 1) for name, member in t.members
        ]
        return " OR ".join([own, *(f"coalesce({c}, false)" for c in inner if c is not None)])
    if isinstance(t, ListOf):
        item = f"e{depth}"
        in_items = _undeclared(item, t.item, depth + 1)
        if in_items is None:
            return None
        return f"coalesce(list_bool_or(list_transform(json_extract({x}, '$[*]'), lambda {item}: {in_items})), false)"
    return None


def _json_path(name: str) -> str:
    return "/" + name.replace("~", "~0").replace("/", "~1")


def duckdb_structure(t: Type) -> object:
    """The json_transform structure that hands `t` over: strings as VARCHAR, anything Arrow types as JSON."""
    if isinstance(t, StructOf):
        return {name: duckdb_structure(member) for name, member in t.members}
    if isinstance(t, ListOf):
        return [duckdb_structure(t.item)]
    return "VARCHAR" if t == STRING else "JSON"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _coalesce(exprs: list[str]) -> str:
    if not exprs:
        return "CAST(NULL AS VARCHAR)"
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"
