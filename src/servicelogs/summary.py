"""The run summary: what a conversion read, wrote, rejected and skipped."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

TOP_REASONS = 5  # reject reasons the text summary lists


def reason_kind(reason: str) -> str:
    """A reject reason without its value and counts of bytes or fields, so rejects of one kind are counted
    together: "field 'httpstatus': 'GET /x HTTP/1.1' is not an integer" → "field 'httpstatus': … is not an
    integer". Field numbers ("two spaces after field 4 (remote_ip)") say where, and stay."""
    kind = _VALUE.sub(r"\1…\2", reason)
    return _NUMBER.sub("N", kind)


_VALUE = re.compile(r"(field '[^']*'(?: member \S+)?: ).*?( is (?:not|outside) )", re.DOTALL)
_NUMBER = re.compile(r"\b\d+(?= (?:bytes|fields)\b)|(?<=at byte )\d+")


@dataclass(kw_only=True)
class Counts:
    """What converting adds up, declared once: an object's, a batch's, a run's (a RunSummary is a Counts).

    Keyword-only, so that RunSummary, which adds its identity and its own counters, still takes run_id,
    format, source and target first."""

    objects_converted: int = 0
    lines: int = 0
    rows: int = 0
    rejects: int = 0
    header_lines: int = 0
    """Lines that declare an object's layout (CloudFront `#Fields`, a VPC header): neither rows nor rejects."""
    extra_field_rows: int = 0
    bytes_read: int = 0
    bytes_text: int = 0
    generations: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    """Values recognised as not records and skipped (a digest, an empty records array): reason → count."""
    reject_reasons: Counter[str] = field(default_factory=Counter)
    """Rejects per kind of reason (`reason_kind`: the reason without its value); the JSON summary lists
    these tallies most frequent first."""

    def add(self, other: Counts) -> None:
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in TALLY_FIELDS:
            getattr(self, name).update(getattr(other, name))


COUNT_FIELDS = tuple(f.name for f in fields(Counts) if f.type == "int")
TALLY_FIELDS = tuple(f.name for f in fields(Counts) if f.type != "int")


@dataclass
class ObjectProblem:
    key: str
    reason: str


@dataclass
class RunSummary(Counts):
    """A run: the sum of its committed batches' Counts, and what the run itself listed, planned and cleaned."""

    run_id: str
    format: str
    source: str
    target: str
    since: str = ""  # the window of delivery dates (YYYY-MM-DD, inclusive); empty: unbounded
    until: str = ""
    objects_listed: int = 0
    objects_skipped: int = 0
    objects_failed: int = 0
    files_written: int = 0
    objects_new: int = 0
    objects_done_before: int = 0
    objects_outside_window: int = 0
    batches_committed: int = 0
    batches_lost: int = 0
    batches_resumed: int = 0
    commits_repaired: int = 0
    staging_cleaned: int = 0
    uploads_aborted: int = 0
    ledger_head: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    skipped: list[ObjectProblem] = field(default_factory=list)
    failed: list[ObjectProblem] = field(default_factory=list)
    rewritten: list[ObjectProblem] = field(default_factory=list)
    catalog: dict[str, Any] = field(default_factory=dict)
    """What the catalog registered after the commits (servicelogs.catalogs.SyncResult), or its error: the
    data is committed either way and the next run catches the catalog up."""
    error: str = ""  # why the run stopped early (a store operation that kept failing), else empty
    unlisted: list[ObjectProblem] = field(default_factory=list)
    """Source entries the listing could not take (an unreadable folder, a dangling or outside link, an entry
    removed while listed, a name that is not UTF-8): not converted, named here; the run is not ok."""
    batches_failed: list[ObjectProblem] = field(default_factory=list)
    """Batches whose worker process died (key: the batch id): the next run redoes them."""
    identities_migrated: int = 0
    """Objects a lake of servicelogs 0.1 named relative to its source, renamed to their full location."""
    rejects_table: str = ""
    """Where the rejects are: a table of source key, line number, raw line and reason per reject."""
    listing: str = ""
    """How the run listed the source: "full", or "window" (only the delivery days from `listing_from` on, see
    servicelogs.listing); `listing_why` says why."""
    listing_from: str = ""
    listing_why: str = ""
    prefixes_listed: int = 0
    """Folders (S3 prefixes) the listing read, and the requests it took (ListObjectsV2 pages; a folder locally)."""
    list_requests: int = 0
    headers: dict[str, tuple[str, ...] | None] = field(default_factory=dict, repr=False)
    """Header-defined formats: the names of each converted object's first header line (None: none), as the
    parser read them, so the catalog checks them against its raw table's without reading every object again
    (on S3, a GET each). Not in `to_dict`: one entry an object."""

    @property
    def ok(self) -> bool:
        return self.objects_failed == 0 and not self.error and not self.unlisted and not self.batches_failed

    @property
    def mb_per_second(self) -> float:
        return self.bytes_text / 1e6 / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON keys, the run's identity first (readers find `{"run_id": ...` at a line's start)."""
        fields = asdict(replace(self, headers={}))  # asdict would copy every object's header
        del fields["headers"]
        identity = ("run_id", "format", "source", "target", "since", "until")
        d = {name: fields.pop(name) for name in identity} | fields
        for name in TALLY_FIELDS:  # asdict would rebuild each Counter from its (key, count) pairs as elements
            d[name] = dict(getattr(self, name).most_common())
        d["mb_per_second"] = round(self.mb_per_second, 2)
        d["ok"] = self.ok
        return d

    def listing_text(self) -> str:
        how = f"window from {self.listing_from}" if self.listing == "window" else self.listing or "full"
        return f"{how} ({self.listing_why}): {self.prefixes_listed} prefixes, {self.list_requests} requests"

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def text(self) -> str:
        lines = [
            f"run {self.run_id}: {self.format} {self.source} -> {self.target}"
            + (f" (delivered {self.since or '…'} to {self.until or '…'})" if self.since or self.until else ""),
            f"  objects: {self.objects_listed} listed, {self.objects_converted} converted, "
            f"{self.objects_skipped} skipped, {self.objects_failed} failed",
            f"  ledger:  {self.objects_done_before} done before, {self.objects_new} new, "
            f"{self.objects_outside_window} outside the window, {len(self.rewritten)} rewritten; "
            f"{self.batches_committed} batches committed, {self.batches_lost} taken by a concurrent run, "
            f"head at commit {self.ledger_head}",
            f"  lines:   {self.lines} = {self.rows} rows + {self.rejects} rejects"
            + (f" + {self.header_lines} header lines" if self.header_lines else "")
            + f" ({self.extra_field_rows} rows with extra fields)",
            f"  bytes:   {self.bytes_read / 1e6:.1f} MB read, {self.bytes_text / 1e6:.1f} MB of log text, "
            f"{self.files_written} files written",
            f"  time:    {self.seconds:.2f} s, {self.mb_per_second:.1f} MB/s of log text",
            f"  listing: {self.listing_text()}",
        ]
        if self.rejects:
            top = Counter(self.reject_reasons).most_common(TOP_REASONS)
            lines.append(f"  rejects: {self.rejects} in {self.rejects_table or 'the rejects table'}; top reasons:")
            lines += [f"    {n} × {kind}" for kind, n in top]
        lines += [f"  noted:   {n} × {note}" for note, n in sorted(self.notes.items())]
        lines += [f"  skipped: {p.key}: {p.reason}" for p in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  skipped: … and {len(self.skipped) - 20} more (see the JSON summary)")
        lines += [f"  FAILED:  {p.key}: {p.reason}" for p in self.failed]
        lines += [f"  UNLISTED: {p.key}: {p.reason}" for p in self.unlisted]
        lines += [f"  FAILED batch {p.key}: {p.reason}" for p in self.batches_failed]
        lines += [f"  REWRITTEN (not converted again): {p.key}: {p.reason}" for p in self.rewritten]
        if self.catalog.get("error"):
            lines.append(f"  CATALOG not updated (the next run catches up): {self.catalog['error']}")
        elif self.catalog:
            lines.append(
                f"  catalog: {self.catalog.get('kind')} {self.catalog.get('database')}: "
                f"{self.catalog.get('partitions_added', 0)} partitions added, "
                f"mark at commit {self.catalog.get('mark', 0)}"
            )
        problems = self.catalog.get("problems", [])
        lines += [f"  catalog: {problem}" for problem in problems[:20]]
        if len(problems) > 20:
            lines.append(f"  catalog: … and {len(problems) - 20} more (see the JSON summary)")
        if self.batches_lost:
            lines.append(f"  CONCURRENT: {self.batches_lost} batches were committed by another run first")
        return "\n".join(lines)
