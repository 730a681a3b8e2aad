"""The formats' reference, from their declarations: `servicelogs formats NAME [--json]` and docs/formats.md.

`python -m servicelogs.render.docs > docs/formats.md` writes the checked-in reference; a test keeps it current.
"""

from __future__ import annotations

import json
from typing import Any

from servicelogs import formats
from servicelogs.spec import (
    EXTRA_FIELDS,
    LINEAGE_FIELDS,
    Delimited,
    Field,
    HeaderDelimited,
    LogFormat,
)

ATHENA_NOTE = (
    "Column names follow the Athena DDL AWS publishes for each log (compared case-insensitively, as Athena does), "
    "except where a column says otherwise. Where that DDL keeps a value as a string (times, status codes, flags), "
    "the column here is typed; integer and floating-point widths may differ (int for bigint, double for float)."
)


def reference(fmt: LogFormat) -> dict[str, Any]:
    """Everything a user looks up about one format, as plain data (the JSON of `servicelogs formats NAME`)."""
    since = _since(fmt)
    origins = {f.name: "log" for f in fmt.fields}
    origins |= {EXTRA_FIELDS.name: "later fields", **{f.name: "object key" for f in fmt.key_fields}}
    origins |= {f.name: "lineage" for f in LINEAGE_FIELDS}

    def column(f: Field) -> dict[str, Any]:
        return {
            "name": f.name,
            "type": str(f.type),
            "doc": f.doc,
            "since": since.get(f.name),
            "from": origins[f.name],
            "athena_name": f.athena_name,
            "athena_type": f.athena_type,
        }

    return {
        "name": fmt.name,
        "title": fmt.title,
        "doc": fmt.doc.strip(),
        "event_time": fmt.event_time,
        "columns": [column(f) for f in fmt.columns],
        "partitions": [{"name": f.name, "type": str(f.type), "doc": f.doc} for f in fmt.partition_fields],
        "generations": [{"name": g.name, "appeared": g.appeared, "doc": g.doc} for g in fmt.grammar.generations],
        "key_layouts": [{"name": k.name, "template": k.template, "example": k.example} for k in fmt.key_layouts],
    }


def _since(fmt: LogFormat) -> dict[str, str]:
    """The generation that added each field, where the grammar tells (line grammars, by token)."""
    grammar = fmt.grammar
    if not isinstance(grammar, Delimited | HeaderDelimited):
        return {}
    out = {f.name: t.since for t in grammar.tokens for f in t.fields}
    if isinstance(grammar, HeaderDelimited):
        out.update({j.field.name: grammar.by_name[j.tokens[0]].since for j in grammar.joins})
    return out


def athena_difference(column: dict[str, Any]) -> str:
    """How AWS's Athena DDL differs for this column, as a phrase; empty when it does not."""
    parts = []
    if column["athena_name"]:
        parts.append(f"named `{column['athena_name']}`")
    if column["athena_type"]:
        parts.append(f"typed {column['athena_type']}")
    return f"AWS's Athena DDL: {', '.join(parts)}" if parts else ""


def as_json(fmt: LogFormat) -> str:
    return json.dumps(reference(fmt), indent=2)


def as_text(fmt: LogFormat) -> str:
    """The terminal form of `servicelogs formats NAME`."""
    ref = reference(fmt)
    width = max(len(c["name"]) for c in ref["columns"])
    type_width = min(max(len(c["type"]) for c in ref["columns"]), 24)
    lines = [f"{ref['name']}: {ref['title']}", "", f"columns ({len(ref['columns'])}; event time: {ref['event_time']}):"]
    for c in ref["columns"]:
        note = athena_difference(c)
        doc = c["doc"] + (f" [{note}]" if note else "")
        since = f"since {c['since']}" if c["since"] else c["from"]
        lines.append(f"  {c['name']:{width}}  {_short(c['type'], type_width):{type_width}}  {since:14}  {doc}")
    lines += ["", "partition columns: " + ", ".join(f"{p['name']} ({p['type']})" for p in ref["partitions"]), ""]
    lines.append("field generations: " + ", ".join(f"{g['name']} ({g['appeared']})" for g in ref["generations"]))
    lines += ["", "key layouts (any prefix before them):"]
    for k in ref["key_layouts"]:
        lines += [f"  {k['name']}: {k['template']}", f"    e.g. {k['example']}"]
    return "\n".join(lines)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown() -> str:
    """docs/formats.md: every format's columns, partitions, generations and key layouts."""
    out = [
        "# Log formats",
        "",
        "<!-- Generated from the declarations in src/servicelogs/formats/ by "
        "`python -m servicelogs.render.docs > docs/formats.md`; a test checks it is current. Do not edit. -->",
        "",
        "Every table has the format's own columns, then `extra_fields` (fields AWS added after this version), "
        "the columns taken from the object key, and the lineage columns (`source_key`, `line_number`, `run_id`). "
        "Partition columns are directory names (Hive style). `servicelogs formats NAME` prints the same, "
        "`--json` for scripts.",
        "",
        ATHENA_NOTE,
        "",
    ]
    out += [f"- [`{fmt.name}`](#{fmt.name}): {fmt.title}" for fmt in formats.all_formats()]
    for fmt in formats.all_formats():
        out += ["", *_format_markdown(reference(fmt))]
    return "\n".join(out) + "\n"


def _format_markdown(ref: dict[str, Any]) -> list[str]:
    out = [f'<a id="{ref["name"]}"></a>', f"## `{ref['name']}`: {ref['title']}", "", ref["doc"], ""]
    out += [f"Event time (partitions): `{ref['event_time']}`.", ""]
    out += ["| column | type | since | description |", "|---|---|---|---|"]
    for c in ref["columns"]:
        note = athena_difference(c)
        doc = c["doc"] + (f" **{note}.**" if note else "")
        since = c["since"] or c["from"]
        out.append(f"| `{c['name']}` | `{_cell(c['type'])}` | {since} | {_cell(doc)} |")
    out += ["", "Partition columns: " + ", ".join(f"`{p['name']}` ({p['doc']})" for p in ref["partitions"]), ""]
    out += ["| generation | appeared | what it added |", "|---|---|---|"]
    out += [f"| {g['name']} | {g['appeared']} | {_cell(g['doc'])} |" for g in ref["generations"]]
    out += ["", "Key layouts (any prefix may come before them):", ""]
    for k in ref["key_layouts"]:
        out += [f"- {k['name']}: `{k['template']}`", f"  - example: `{k['example']}`"]
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    print(markdown(), end="")
