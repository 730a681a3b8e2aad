"""What `servicelogs status` shows of a table: its ledger (done objects, commits, pending batches) and its last
runs, each with its source, window and outcome, a run that was stopped before it wrote its summary included."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from typing import Any

from servicelogs.errors import UsageError
from servicelogs.ledger import Ledger
from servicelogs.storage import Store
from servicelogs.summary import RunSummary

# A run's scalar fields, as its summary declares them (summary.RunSummary), and whether it was ok.
_RUN_FIELDS = (*(f.name for f in fields(RunSummary) if f.type in ("str", "int", "float")), "ok")
_LIVENESS = (".lock", ".lease")  # a running run's mark in runs/: a lock file (local target) or a lease (S3)


def tables(store: Store) -> list[str]:
    """The tables that have a ledger under this target."""
    return sorted({key.split("/", 2)[1] for key, _ in store.list("_servicelogs")})


def status(store: Store, table: str, last_runs: int = 5) -> dict[str, Any]:
    """Done objects, commits, pending batches, staging left by runs, and the last runs (newest first).

    Raises UsageError when the target has no table of that name (naming the tables it has)."""
    known = tables(store)
    if table not in known:
        have = f"its tables: {', '.join(known)}" if known else "it holds no servicelogs table"
        raise UsageError(f"no table {table!r} under {store.url} ({have})")
    ledger = Ledger(store, f"_servicelogs/{table}")
    state = ledger.load()
    intents = [bid for bid, _ in ledger.intents() if bid not in state.batches]
    staging_runs = sorted({ledger.staged_run(key) for key, _ in store.list(ledger.staging_root)})
    return {
        "target": store.url,
        "table": table,
        "done_objects": len(state.done),
        "commits": state.head,
        "checkpoint": state.checkpoint,
        "unpublished_commits": [c.seq for c in state.recent],
        "pending_batches": intents,
        "staging_runs": [{"run_id": r, "alive": not store.is_dead(r, ledger.runs)} for r in staging_runs],
        "last_runs": _last_runs(store, ledger, last_runs),
        "latest_delivery_day": state.latest_day,
        "last_full_listing": last_full_listing(store, ledger),
    }


def last_full_listing(store: Store, ledger: Ledger) -> dict[str, Any] | None:
    """The newest run that listed its whole source and was not stopped (its run id and why it listed in full),
    or None: objects delivered later than the listing window are found by such a run (servicelogs.listing)."""
    summaries = sorted((k for k, _ in store.list(ledger.runs) if k.endswith(".json")), reverse=True)
    for key in summaries:
        data = store.get(key)
        run = json.loads(data) if data else {}
        if run.get("listing") == "full" and not run.get("error"):
            started = _started(run["run_id"])
            return {
                "run_id": run["run_id"],
                "started": started,
                "why": run.get("listing_why", ""),
                "source": run.get("source", ""),
            }
    return None


def _started(run_id: str) -> str:
    """When a run started, from its id (which starts with its UTC start time)."""
    try:
        return datetime.strptime(run_id[:15], "%Y%m%dT%H%M%S").strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return "at an unknown time"


def _last_runs(store: Store, ledger: Ledger, n: int) -> list[dict[str, Any]]:
    """The newest `n` runs (run ids start with their UTC start time): a run's summary, or, for a run that left
    only its liveness mark, whether it is still running or was killed before it could write one."""
    found: dict[str, str] = {}
    for key, _ in store.list(ledger.runs):
        run_id, dot, ext = key.rsplit("/", 1)[-1].rpartition(".")
        if dot and (ext == "json" or (f".{ext}" in _LIVENESS and run_id not in found)):
            found[run_id] = key
    runs = []
    for run_id in sorted(found, reverse=True)[:n]:
        data = store.get(found[run_id]) if found[run_id].endswith(".json") else None
        if data is None:
            alive = not store.is_dead(run_id, ledger.runs)
            runs.append({**dict.fromkeys(_RUN_FIELDS), "run_id": run_id, "ok": False, "summary": False})
            runs[-1]["outcome"] = "running" if alive else "killed before it wrote its summary"
            continue
        d = json.loads(data)
        run = {k: d.get(k) for k in _RUN_FIELDS}
        runs.append({**run, "summary": True, "outcome": outcome(run)})
    return runs


def outcome(run: dict[str, Any]) -> str:
    """One phrase for how a run ended, from its summary."""
    if run.get("error"):
        return run["error"] if run["error"].startswith("interrupted") else f"stopped: {run['error']}"
    if run.get("objects_listed") == run.get("objects_skipped") and not run.get("objects_new"):
        return "nothing to convert: no object of the format in the source"
    if run.get("objects_failed"):
        return f"done, {run['objects_failed']} objects could not be read (the next run retries them)"
    if run.get("batches_lost"):
        return f"done, {run['batches_lost']} batches taken by a concurrent run"
    return "ok"


def status_text(s: dict[str, Any]) -> str:
    lines = [
        f"table {s['table']} at {s['target']}",
        f"  done objects:        {s['done_objects']}",
        f"  commits:             {s['commits']} (checkpoint at {s['checkpoint']})",
        f"  unpublished commits: {len(s['unpublished_commits'])} (the next run publishes them)",
        f"  pending batches:     {len(s['pending_batches'])} (intents without a commit: redone by the next run)",
        f"  latest delivery day: {s['latest_delivery_day'] or 'none recorded'} (normal runs list from it less "
        "the late days)",
        "  last full listing:   "
        + (
            f"{full['started']}, run {full['run_id']} ({full['why']})"
            if (full := s["last_full_listing"])
            else "none recorded (run `convert --full-listing` to find objects delivered after the window)"
        ),
    ]
    for r in s["staging_runs"]:
        lines.append(
            f"  staging of run {r['run_id']}: {'running' if r['alive'] else 'abandoned (the next run cleans it)'}"
        )
    lines.append("  last runs:" if s["last_runs"] else "  last runs: none")
    for r in s["last_runs"]:
        lines.append(f"    {r['run_id']}  {r['outcome']}")
        if not r["summary"]:
            continue
        window = f"{r['since'] or '…'} to {r['until'] or '…'}" if r["since"] or r["until"] else "all dates"
        lines.append(f"      {r['format']} from {r['source']}, {window}")
        if r.get("listing"):
            how = f"window from {r['listing_from']}" if r["listing"] == "window" else r["listing"]
            lines.append(f"      listing: {how} ({r['listing_why']}), {r['prefixes_listed']} prefixes")
        lines.append(
            f"      {r['objects_listed']} listed, {r['objects_new']} new, {r['objects_converted']} converted, "
            f"{r['objects_failed']} failed; {r['batches_committed']} batches, {r['rows']} rows + "
            f"{r['rejects']} rejects, {r['seconds']:.2f} s"
        )
    return "\n".join(lines)
