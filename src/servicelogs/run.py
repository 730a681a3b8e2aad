"""The run, for every engine and every catalog: plan → convert → commit → publish → register → summarise.

List the source, subtract the ledger (servicelogs.ledger), plan deterministic batches (sorted keys, bounded
bytes), record each batch's intent, and hand the batches to an engine, which only converts: it returns each
batch's staged files with their sizes and checksums, its counts, and the objects it could not read. The run
then checks the staged files, commits the batch (one conditional write, fenced), publishes its files into
the table, and once every batch is settled lets the catalog register what the commits made visible.

An object that cannot be read fails alone: the run drops it and plans the rest of its batch as a new batch
(a new intent, a new batch id, so no name is shared with the failed attempt), so none of its rows show. A
batch another run committed first is dropped; its sources not taken go in a new batch. Staged files that
vanish before their commit (someone cleaned the target) make the batch be staged again.

Extension points: an `Engine` (engines.local: worker processes; engines.spark: Spark tasks) and a
`Register` (servicelogs.catalogs). Neither touches the ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Protocol

from servicelogs import listing
from servicelogs.errors import ConflictError, FencedError, ServiceLogsError, StorageError, UsageError
from servicelogs.layout import Layout
from servicelogs.ledger import Ledger, State, attempt_staging
from servicelogs.locations import open_store
from servicelogs.sources import Source, SourceObject, delivery_date
from servicelogs.spec import LogFormat
from servicelogs.storage import LocalStore, StagedFile, Store, each
from servicelogs.summary import Counts, ObjectProblem, RunSummary

BATCH_BYTES = 32 << 20  # most source bytes per batch: bounds a batch's output files and its redo cost
MIN_BATCH_BYTES = 1 << 20  # fewest: a commit and its files cost about the same whatever the batch's size
BATCHES_PER_WORKER = 3  # several each, so the workers finish close together
BATCH_OBJECTS = 2000
# A run whose log text is estimated below this is planned for one worker whatever `workers` says: a second one
# saves less than it costs to start (engines.local: a pool ~0.6 s and ~1 CPU-s, about what a second core saves on
# ~120 MB of text), and one worker's batches are as few as BATCH_BYTES allows (each batch writes a file per
# partition and makes a commit: ~0.2 CPU-s of 1.4 on 1,200 objects of 50 KB, as 7 batches against 2).
# Incremental runs every few minutes are this small. SERVICELOGS_POOL_MIN_TEXT_BYTES sets it (0: never).
POOL_MIN_TEXT_BYTES = 128_000_000
GZIP_RATIO = 5  # log text per byte of gzip, at the least (ALB ~4.5, others 5-20): the estimate errs towards workers
REDO_VANISHED = 3  # attempts at a batch whose staged files keep vanishing before it is committed

Item = tuple[SourceObject, tuple[tuple[str, str], ...]]  # an object and its key groups


@dataclass(frozen=True)
class BatchTask:
    """One batch for an engine to convert: its objects, and where to stage its files."""

    format_name: str
    source: Source
    store: Store
    layout: Layout
    run_id: str
    batch_id: str
    objects: tuple[Item, ...]
    staging: str  # the batch's staging folder (from the ledger); a retried attempt stages at `staging.<n>`
    runs: str  # where the run's liveness marks are: a worker holds the run's lease while it converts

    @property
    def sources(self) -> tuple[SourceObject, ...]:
        return tuple(obj for obj, _ in self.objects)

    def staging_of(self, attempt: int) -> str:
        """Where an attempt stages: a retried one (Spark) apart, so that none deletes another's files."""
        return attempt_staging(self.staging, attempt)


@dataclass
class StagedBatch:
    """What an engine returns for a batch: its staged files (sizes, checksums) and counts, or the objects it
    could not read (then nothing of it is staged, and the run redoes the batch without them)."""

    batch_id: str
    files: list[StagedFile] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    failed: list[ObjectProblem] = field(default_factory=list)
    skipped: list[ObjectProblem] = field(default_factory=list)  # objects that held no records (a digest)
    staging: str = ""  # the attempt's staging folder
    headers: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    """Header-defined formats: each object's first header, as parsed (summary.RunSummary.headers)."""


class Progress(Protocol):
    """What a run reports as it goes (`servicelogs.progress` draws it). Called in the run's process only: the
    workers' reports reach it as events through a queue (see `report`)."""

    def planned(self, objects: int, source_bytes: int) -> None:
        """Once, after listing: the objects this run will convert and their size in the source (compressed)."""

    def parsed(self, key: str, text_bytes: int, rows: int) -> None:
        """A block of the object's log text was parsed into rows and rejects."""

    def object_done(self, key: str, source_bytes: int) -> None:
        """An object was read to its end (a batch redone after another object failed reads it again)."""


ProgressEvent = tuple[str, str, int] | tuple[str, str, int, int]  # a Progress method's name and its arguments


def report(progress: Progress, event: ProgressEvent) -> None:
    match event:
        case ("parsed", key, text_bytes, rows):
            progress.parsed(key, text_bytes, rows)
        case ("object_done", key, source_bytes):
            progress.object_done(key, source_bytes)


# The engine: converts the batches into staged files and yields them, in any order (engines.local: worker
# processes; engines.spark: Spark tasks). A batch whose worker was lost is named in the summary's
# batches_failed instead of yielding a result; its intent steers the next run's redo.
Engine = Callable[[list[BatchTask], int, "Progress | None", RunSummary], Iterator[StagedBatch]]

# The catalog: registers what the run's commits made visible (servicelogs.catalogs.registrar).
Register = Callable[[Store, str, RunSummary], None]


REWRITE_POLICIES = ("report", "convert")
INTERRUPTED = "interrupted (Ctrl-C or SIGINT)"  # a run summary's error when the run was stopped by the user


def run(
    fmt: LogFormat,
    source: Source,
    target: Path | str | Store,
    *,
    workers: int | None = None,
    table_name: str | None = None,
    progress: Progress | None = None,
    since: date | None = None,
    until: date | None = None,
    on_rewrite: str = "report",
    batch_bytes: int | None = None,
    batch_objects: int = BATCH_OBJECTS,
    engine: Engine,
    register: Register | None = None,
    full_listing: bool = False,
    late_days: int = listing.LATE_DAYS,
) -> RunSummary:
    """List the source, subtract the ledger, convert and commit what is new (see servicelogs.ledger).

    `since`/`until` (inclusive) keep objects whose key names a delivery date in that window; a later run
    without a window takes the rest. The listing itself asks only for the delivery days from the ledger's
    latest less `late_days` (servicelogs.listing), or from `since`; `full_listing` lists everything, to find
    objects delivered later than that (the first run of a table lists everything anyway).

    `on_rewrite` says what to do with a key converted before that now holds other content: "report" (the
    default) lists it in the summary and converts nothing, so no line is counted twice; "convert" converts
    the new content too, leaving both versions' rows in the table. `engine` converts the batches
    (engines.local.execute, engines.spark.executor(...)); `register(store, table, summary)` runs after the
    run's commits (servicelogs.catalogs: the catalog).
    """
    if on_rewrite not in REWRITE_POLICIES:
        raise UsageError(f"on_rewrite must be one of {', '.join(REWRITE_POLICIES)}, not {on_rewrite!r}")
    if isinstance(late_days, bool) or not isinstance(late_days, int) or late_days < 0:
        raise UsageError(f"late_days must be a whole number of days, 0 or more, not {late_days!r}")
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    store = target if not isinstance(target, (str, Path)) else open_store(target)
    layout = Layout(check_table_name(table_name or fmt.name))
    check_locations(source, store)
    claim_table(store, layout, fmt.name)
    ledger = Ledger(store, layout.state)
    # Run ids sort by their start (status lists the newest first): to the microsecond, so two runs started in
    # one second keep their order; the random tail keeps concurrent runs apart.
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ-") + secrets.token_hex(3)
    summary = RunSummary(run_id, fmt.name, str(source), store.url, since=_iso(since), until=_iso(until))
    summary.rejects_table = f"{store.url.rstrip('/')}/{layout.rejects}"
    tuning = (batch_bytes, batch_objects)
    listing_options = (full_listing, late_days)

    try:
        with store.lease(run_id, ledger.runs):
            try:
                _run(
                    fmt, source, store, ledger, layout, summary, workers, progress, since, until, on_rewrite, tuning,
                    engine, listing_options,
                )  # fmt: skip
                if register:
                    register(store, layout.table, summary)
            except (ServiceLogsError, KeyboardInterrupt) as e:
                # Recorded for `servicelogs status`, best effort: the store may be what failed.
                summary.error = str(e) if isinstance(e, ServiceLogsError) else INTERRUPTED
                with contextlib.suppress(ServiceLogsError):
                    store.put(f"{ledger.runs}/{run_id}.json", summary.to_json().encode())
                raise
            summary.seconds = time.perf_counter() - started
            summary.cpu_seconds = _cpu_seconds() - cpu_started
            store.put(f"{ledger.runs}/{run_id}.json", summary.to_json().encode())
    finally:
        store.end_lease(run_id, ledger.runs)  # a failed run leaves no lock file either
    return summary


# -- locations, checked before anything is written ---------------------------------------------------

TABLE_NAME = re.compile(r"[a-z0-9_]{1,247}")  # Glue/Athena names; 247 leaves room for "_rejects" in 255


def check_table_name(name: str) -> str:
    if not TABLE_NAME.fullmatch(name):
        raise UsageError(
            f"table name {name!r}: use lower-case letters, digits and _ only (a Glue/Athena table name), "
            "at most 247 characters"
        )
    return name


def location(store: Store) -> str:
    """Where a target is, as one string: a resolved absolute path, or s3://bucket/prefix (as a Source's str)."""
    return store.root.resolve().as_posix() if isinstance(store, LocalStore) else store.url


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def check_locations(source: Source, store: Store) -> None:
    """Refuse a target that is a file, or a source and a target inside one another: every later run would
    list the lake as input, or convert into the folder it reads."""
    if isinstance(store, LocalStore) and store.root.exists() and not store.root.is_dir():
        raise UsageError(f"target {store.url!r} is a file, not a folder")
    src, dst = str(source), location(store)
    if _within(dst, src):
        raise UsageError(f"target {dst} is inside the source {src}: put the tables outside the logs")
    if _within(src, dst):
        raise UsageError(f"source {src} is inside the target {dst}: put the tables outside the logs")


def claim_table(store: Store, layout: Layout, format_name: str) -> None:
    """A table holds one format: the first run records it in `table.json` (created only if absent), later
    runs of another format are refused. A lake of servicelogs 0.1 has no such file: its runs say."""
    key = f"{layout.state}/table.json"
    data = store.get(key)
    if data is None:
        held = _format_of_runs(store, layout) or format_name
        if store.put_if_absent(key, json.dumps({"format": held}).encode()):
            data = json.dumps({"format": held}).encode()
        else:
            data = store.get(key) or b"{}"
    held = json.loads(data).get("format")
    if held != format_name:
        raise UsageError(
            f"table {layout.table!r} under {store.url} holds {held} logs, not {format_name}: "
            f"choose another --table (such as {format_name})"
        )


def _format_of_runs(store: Store, layout: Layout) -> str | None:
    for key, _ in store.list(f"{layout.state}/runs"):
        if key.endswith(".json") and (data := store.get(key)):
            return str(json.loads(data).get("format") or "") or None
    return None


def _run(
    fmt: LogFormat,
    source: Source,
    store: Store,
    ledger: Ledger,
    layout: Layout,
    summary: RunSummary,
    workers: int | None,
    progress: Progress | None,
    since: date | None,
    until: date | None,
    on_rewrite: str,
    tuning: tuple[int | None, int],
    engine: Engine,
    listing_options: tuple[bool, int],
) -> None:
    run_id = summary.run_id
    state = ledger.load()
    summary.commits_repaired = ledger.publish_pending(state)
    summary.staging_cleaned, summary.uploads_aborted = clean_abandoned(store, ledger, run_id, state)
    summary.identities_migrated = migrate_identities(ledger, state, run_id)
    full, late_days = listing_options
    unsettled = None if full or since else _unsettled(ledger, source, run_id)
    plan = listing.plan(
        fmt,
        listing.parse_day(state.latest_day),
        since=since,
        until=until,
        late_days=late_days,
        full=full,
        unsettled=unsettled,
    )
    summary.listing, summary.listing_from, summary.listing_why = plan.kind, plan.first, plan.why
    new = _new_objects(fmt, source, state, summary, since, until, on_rewrite, plan.window)
    workers = workers_for(new, workers or os.cpu_count() or 1)
    batches = _resume_intents(ledger, state, new, summary) + list(plan_batches(new, *tuning, workers=workers))
    _report_plan(progress, batches)
    committer = Committer(fmt.name, source, store, layout, ledger, state, summary, fmt=fmt)
    committer.convert([committer.task(b) for b in batches], engine, workers, progress)
    summary.objects_failed = len(summary.failed)
    ledger.catch_up(state)
    ledger.checkpoint(state, run_id)
    store.delete_prefix(ledger.staging(run_id))
    store.abort_uploads(ledger.staging(run_id))
    summary.ledger_head = state.head


def _unsettled(ledger: Ledger, source: Source, own_run: str) -> str | None:
    """Why the ledger's high-water mark may not cover every older day of `source`, if it may not: the mark is
    the latest day committed, and a window from it would never list again an older object that a run left
    unconverted. So only a table whose last run of this source settled everything it listed (no pending
    intents, nothing failed, no --since/--until) is listed by the window; else the run lists everything."""
    if next(ledger.intents(), None) is not None:
        return "batches of an earlier run are pending"
    summaries = sorted(
        key for key, _ in ledger.store.list(ledger.runs) if key.endswith(".json") and f"/{own_run}." not in key
    )
    if not summaries:
        return "no earlier run summary"
    data = ledger.store.get(summaries[-1])
    try:
        last = json.loads(data) if data else {}
    except ValueError:
        last = {}
    run = last.get("run_id", "?")
    if last.get("source") != str(source):
        return f"the last run ({run}) read another source, {last.get('source') or 'unknown'}"
    if not last.get("ok") or last.get("objects_failed"):
        return f"the last run ({run}) left objects unconverted or failed"
    if last.get("since") or last.get("until"):
        return f"the last run ({run}) listed only --since/--until"
    return None


def _new_objects(
    fmt: LogFormat,
    source: Source,
    state: State,
    summary: RunSummary,
    since: date | None,
    until: date | None,
    on_rewrite: str,
    window: listing.Window | None = None,
) -> list[Item]:
    """The listing (of the listing window's days, or all) minus the ledger: objects of this format, in the
    since/until window, not converted yet."""
    new: list[Item] = []
    for obj in source.list(window):
        summary.objects_listed += 1
        groups = fmt.match_key(obj.key)
        ignored = fmt.explain_ignored_key(obj.key)
        if ignored or groups is None:
            reason = ignored or f"not a {fmt.name} log object (its key matches no {fmt.name} key layout)"
            summary.skipped.append(ObjectProblem(obj.key, reason))
            continue
        if since or until:
            day = delivery_date(obj.key, groups)
            if day is None or (since and day < since) or (until and day > until):
                summary.objects_outside_window += 1
                continue
        if state.is_done(obj):
            summary.objects_done_before += 1
            continue
        if obj.key in state.done:
            size, etag = state.done[obj.key]
            problem = ObjectProblem(
                obj.key, f"rewritten since it was converted (size {size} -> {obj.size}, version {etag} -> {obj.etag})"
            )
            summary.rewritten.append(problem)
            if on_rewrite == "report":
                continue
        new.append((obj, tuple(sorted(groups.items()))))
    summary.unlisted = list(source.unlisted)
    summary.prefixes_listed, summary.list_requests = source.prefixes_listed, source.list_requests
    summary.objects_skipped = len(summary.skipped)
    summary.objects_new = len(new)
    return new


def _resume_intents(ledger: Ledger, state: State, new: list[Item], summary: RunSummary) -> list[tuple[Item, ...]]:
    """Batches a crashed run had started, redone with the same source set when it is still all new;
    intents of committed batches are dropped. The chosen items leave `new`."""
    by_key = {obj.key: i for i, (obj, _) in enumerate(new)}
    resumed: list[tuple[Item, ...]] = []
    taken: set[int] = set()
    for bid, sources in ledger.intents():
        if bid in state.batches or any(state.is_done(o) or not _is_full(o.key) for o in sources):
            # Stale: committed, overtaken, or of servicelogs 0.1 (relative keys). Intents only steer the
            # redo; dropping one is always safe.
            ledger.drop_intent(bid)
            continue
        idx = [by_key.get(o.key, -1) for o in sources]
        if all(i >= 0 and i not in taken and new[i][0] == o for i, o in zip(idx, sources, strict=True)):
            resumed.append(tuple(new[i] for i in idx))
            taken.update(idx)
    new[:] = [item for i, item in enumerate(new) if i not in taken]
    summary.batches_resumed = len(resumed)
    return resumed


def clean_abandoned(store: Store, ledger: Ledger, own_run: str, state: State | None = None) -> tuple[int, int]:
    """Remove the staging folders and multipart uploads of runs taken for dead (lock free, lease lapsed).

    Taking a run for dead is a guess (it may be paused, or its host's clock behind), so each is first fenced
    in the ledger: from then on it can commit nothing, and all it did commit lies below the fence, in
    `state`; those commits are published, and only then is its staging deleted. `state` is advanced."""
    state = state if state is not None else ledger.load()
    dead = sorted(r for r in store.staged_runs(ledger.staging_root) if r != own_run and store.is_dead(r, ledger.runs))
    aborted = 0
    for r in dead:
        ledger.fence(state, r, by=own_run)
        for commit in state.recent:
            if commit.run_id == r:
                ledger.publish(commit)
        store.delete_prefix(ledger.staging(r))
        aborted += store.abort_uploads(ledger.staging(r))
    store.clean_temp(ledger.prefix)
    return len(dead), aborted


# -- identities of servicelogs 0.1 ----------------------------------------------------------------------

MIGRATION_BATCH = "identities-full-locations"
"""The commit that renames a 0.1 lake's objects, named relative to each run's source, to full locations."""


def _is_full(key: str) -> bool:
    return key.startswith(("/", "s3://"))


def migrate_identities(ledger: Ledger, state: State, run_id: str) -> int:
    """Servicelogs 0.1 named an object relative to the source a run was given: the same object converted
    through a sub-prefix and its parent had two names. Rename those of this table to their full location,
    taking each commit's root from its run's summary, in one commit (a conditional write: of concurrent runs
    one does it). The relative names stay in the ledger, inert: no listing yields them any more."""
    if MIGRATION_BATCH in state.batches or all(_is_full(k) for k in state.done):
        return 0
    sources: dict[str, str] = {}
    for key, _ in ledger.store.list(ledger.runs):
        if key.endswith(".json") and (data := ledger.store.get(key)):
            run = json.loads(data)
            if run.get("run_id") != run_id and run.get("source"):
                sources[run["run_id"]] = run["source"]
    known = set(sources.values())
    full: dict[str, SourceObject] = {}
    for commit in ledger.commits():
        relative = [o for o in commit.sources if not _is_full(o.key)]
        if not relative:
            continue
        given = sources.get(commit.run_id) or (next(iter(known)) if len(known) == 1 else "")
        if not given:
            raise UsageError(
                f"the ledger of {ledger.prefix} names objects relative to a source that no run summary records "
                f"(commit {commit.seq}, run {commit.run_id}): convert into a new --table or target"
            )
        root = _old_root(given, ledger.prefix)
        for obj in relative:  # a later commit wins, as in State.apply
            full[f"{root}/{obj.key}"] = SourceObject(f"{root}/{obj.key}", obj.size, obj.etag)
    try:
        ledger.commit(state, MIGRATION_BATCH, run_id, tuple(sorted(full.values())), [])
    except ConflictError:  # a concurrent run did it first
        return 0
    return len(full)


def _old_root(given: str, table: str) -> str:
    """The full location of a source as a 0.1 run recorded it (a relative folder is taken from here)."""
    if given.startswith("s3://"):
        return given.rstrip("/")
    path = Path(given)
    if not path.is_absolute() and not path.is_dir():
        raise UsageError(
            f"the ledger of {table} names objects relative to the folder {given!r}, which is not under "
            f"{Path.cwd()}: run once from the folder it was converted from, so that they can be renamed"
        )
    return path.resolve().as_posix()


def plan_batches(
    objects: list[Item], batch_bytes: int | None = None, batch_objects: int = BATCH_OBJECTS, *, workers: int = 1
) -> Iterator[tuple[Item, ...]]:
    """Sorted by key, cut at batch_bytes (default: `batch_size` for these objects) or batch_objects: the same
    listing and workers always give the same batches."""
    if batch_bytes is None:
        batch_bytes = batch_size(sum(obj.size for obj, _ in objects), workers)
    batch: list[Item] = []
    size = 0
    for item in sorted(objects, key=lambda item: item[0].key):
        if batch and (size + item[0].size > batch_bytes or len(batch) >= batch_objects):
            yield tuple(batch)
            batch, size = [], 0
        batch.append(item)
        size += item[0].size
    if batch:
        yield tuple(batch)


def workers_for(objects: list[Item], workers: int) -> int:
    """The workers to plan for: one for a run too small to pay for more (POOL_MIN_TEXT_BYTES)."""
    floor = int(os.environ.get("SERVICELOGS_POOL_MIN_TEXT_BYTES", POOL_MIN_TEXT_BYTES))
    text = sum(obj.size * (GZIP_RATIO if obj.key.endswith(".gz") else 1) for obj, _ in objects)
    return 1 if text < floor else workers


def batch_size(total_bytes: int, workers: int) -> int:
    """Source bytes per batch: with several workers BATCHES_PER_WORKER batches each, so every core has work
    whatever the input's size; with one, as few as can be. Within MIN_BATCH_BYTES (a small run stays a few
    batches, so a few commits) and BATCH_BYTES."""
    share = -(-total_bytes // (workers * BATCHES_PER_WORKER if workers > 1 else 1))
    return max(MIN_BATCH_BYTES, min(BATCH_BYTES, share))


def _report_plan(progress: Progress | None, batches: list[tuple[Item, ...]]) -> None:
    if progress:
        progress.planned(sum(map(len, batches)), sum(obj.size for batch in batches for obj, _ in batch))


def batch_id(objects: tuple[Item, ...]) -> str:
    """Derived from the batch's source set, so a replay writes the same file names."""
    h = hashlib.sha256()
    for obj, _ in objects:
        h.update(f"{obj.key}\t{obj.size}\t{obj.etag}\n".encode())
    return h.hexdigest()[:20]


def _iso(day: date | None) -> str:
    return day.isoformat() if day else ""


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# -- commit: what the run does with each staged batch ------------------------------------------------


class Committer:
    """Records the batches' intents, has the engine stage them, and commits, publishes and counts each staged
    batch, in the run's ledger state; batches to redo (an object failed, sources taken, files vanished) go to
    the engine again, each as a new batch with its own intent, until none is left."""

    def __init__(
        self,
        format_name: str,
        source: Source,
        store: Store,
        layout: Layout,
        ledger: Ledger,
        state: State,
        summary: RunSummary,
        fmt: LogFormat | None = None,
    ) -> None:
        """`fmt`, when given, names each commit's latest delivery day (the listing window's high-water mark)."""
        self.format_name, self.source, self.store, self.layout = format_name, source, store, layout
        self.fmt = fmt
        self.ledger, self.state, self.summary = ledger, state, summary
        self.run_id = summary.run_id
        self.vanished: Counter[str] = Counter()
        self._headers: dict[tuple[str, ...], tuple[str, ...]] = {}

    def task(self, objects: tuple[Item, ...]) -> BatchTask:
        bid = batch_id(objects)
        staging = self.ledger.staging(self.run_id, bid)
        return BatchTask(
            self.format_name, self.source, self.store, self.layout, self.run_id, bid, objects, staging,
            self.ledger.runs,
        )  # fmt: skip

    def convert(self, tasks: list[BatchTask], engine: Engine, workers: int, progress: Progress | None) -> None:
        while tasks:
            for task in tasks:
                self.ledger.record_intent(task.batch_id, task.sources)
            by_id = {task.batch_id: task for task in tasks}
            redo: list[BatchTask] = []
            try:
                for staged in engine(tasks, workers, progress, self.summary):
                    again = self.settle(by_id[staged.batch_id], staged)
                    if again is not None:
                        redo.append(again)
            except StorageError:
                self.stop_if_fenced()  # our uploads may have been aborted by a run that fenced this one
                raise
            tasks = redo

    def settle(self, task: BatchTask, staged: StagedBatch) -> BatchTask | None:
        """Commit and publish a staged batch; the batch to convert instead, if any."""
        ledger, store = self.ledger, self.store
        if staged.failed:
            store.delete_prefix(staged.staging)
            ledger.drop_intent(task.batch_id)
            self.summary.failed += staged.failed
            failed = {p.key for p in staged.failed}
            return self._rest(tuple(item for item in task.objects if item[0].key not in failed))
        there = each(store, store.is_staged, staged.files)
        gone = [f.staged for f, staged_there in zip(staged.files, there, strict=True) if not staged_there]
        if gone:
            self.stop_if_fenced()
            store.delete_prefix(staged.staging)
            self.vanished[task.batch_id] += 1
            if self.vanished[task.batch_id] >= REDO_VANISHED:
                raise StorageError("stage", gone[0], f"staged files vanished before their commit, {REDO_VANISHED}x")
            return task  # the same batch again: its sources are not done, and must not be marked done
        try:
            latest_day = self.latest_day(task.sources)
            commit = ledger.commit(self.state, task.batch_id, self.run_id, task.sources, staged.files, latest_day)
        except ConflictError:
            store.delete_prefix(staged.staging)
            ledger.drop_intent(task.batch_id)
            self.summary.batches_lost += 1
            return self._rest(tuple(item for item in task.objects if not self.state.is_done(item[0])))
        except FencedError:
            store.delete_prefix(staged.staging)  # never to be committed; the intent stays for the next run
            raise
        ledger.publish(commit)
        if staged.staging != task.staging:
            store.delete_prefix(staged.staging)  # a retried attempt's folder (finish drops the batch's)
        ledger.finish(commit)
        self.summary.add(staged.counts)
        for key, names in staged.headers.items():  # one tuple per distinct header, as in the batch that parsed them
            self.summary.headers[key] = self._headers.setdefault(names, names) if names else None
        self.summary.skipped += staged.skipped
        self.summary.objects_skipped += len(staged.skipped)
        self.summary.files_written += len(staged.files)
        self.summary.batches_committed += 1
        return None

    def latest_day(self, sources: tuple[SourceObject, ...]) -> str:
        if self.fmt is None:
            return ""
        fmt = self.fmt
        return listing.latest(listing.delivery_day(fmt, obj.key) for obj in sources)

    def _rest(self, objects: tuple[Item, ...]) -> BatchTask | None:
        return self.task(objects) if objects else None

    def stop_if_fenced(self) -> None:
        """When a staged file is gone or an upload aborted, a fencing run may be why: then say so, and stop."""
        self.ledger.catch_up(self.state)
        if self.run_id in self.state.fenced:
            self.store.delete_prefix(self.ledger.staging(self.run_id))
            self.state.refuse_if_fenced(self.run_id)
