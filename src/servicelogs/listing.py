"""Listing only what can be new: the listing window.

With years of logs under a prefix, listing all of it on every run costs a request per 1,000 keys for
nothing: new objects are delivered into the days around now. So a run lists only the delivery days from
the ledger's high-water mark (the latest delivery day among the objects it holds as done, `State.latest_day`:
committed state, never a clock) less a late-arrival window (`late_days`, default LATE_DAYS), where the
format's key layouts say where the day sits (`KeyLayout.days`):

- `DayFolders`: below a parent folder the day is folders (`<region>/2024/05/28/`): the listing walks the
  folders above with delimiter listings (S3 CommonPrefixes) and lists only the day folders in the window.
- `DayNames`: the object name starts, after a stem, with the day (`2019-02-06-00-00-38-...`), so names of one
  stem sort by time: the listing starts after `<folder><stem><first day>` (S3 StartAfter).

Everything else (folders that are not days, objects beside the day folders, layouts without a day) is listed
as before. A first run (no high-water mark), `--full-listing` and formats whose layouts hold no day list
everything; `since`/`until` replace the window's ends. An object delivered later than the window into a day
before it is found by the next full listing only: the run summary says how it listed, and
`servicelogs status` when the last full listing ran, so a schedule of full listings can be kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from servicelogs.spec import DayFolders, DayNames, LogFormat

LATE_DAYS = 3
"""Days before the high-water mark a normal run still lists: AWS delivers most logs within minutes, some
within hours; an object later than this is found by a full listing (`--full-listing`)."""

FULL = "full"
WINDOW = "window"

_DIGITS = {"year": r"(\d{4})", "month": r"(\d{2})", "day": r"(\d{2})"}


def _day_regex(template: str) -> str:
    """A regex of a day template (`{year}-{month}-{day}-`): one group per date part, in order."""
    out, at = [], 0
    for m in re.finditer(r"\{(year|month|day)\}", template):
        out += [re.escape(template[at : m.start()]), _DIGITS[m.group(1)]]
        at = m.end()
    return "".join(out) + re.escape(template[at:])


def _render(template: str, day: date) -> str:
    return template.format(year=f"{day.year:04d}", month=f"{day.month:02d}", day=f"{day.day:02d}")


def _as_date(values: Iterable[str]) -> date | None:
    try:
        y, m, d = map(int, values)
        return date(y, m, d)
    except ValueError:
        return None


@dataclass(frozen=True)
class Folder:
    """A folder the listing walks: its path (a key prefix ending in `/`, or a local path and `/`) and, inside
    a tree of day folders, the layout and the date parts its path has named so far. `whole`: list all of it."""

    path: str
    days: _CompiledFolders | None = None
    values: tuple[int, ...] = ()
    whole: bool = False


class _CompiledFolders:
    def __init__(self, days: DayFolders) -> None:
        self.parent = re.compile(rf"(?:^|/){days.parent}$")
        self.levels = tuple(re.compile(_day_regex(level)) for level in days.levels)
        self.at_depth = tuple(
            re.compile(rf"(?:^|/){days.parent}" + "".join(_day_regex(lv) + "/" for lv in days.levels[:k]) + "$")
            for k in range(len(days.levels) + 1)
        )
        self.key = re.compile(rf"(?:^|/){days.parent}" + "".join(_day_regex(lv) + "/" for lv in days.levels))


class _CompiledNames:
    def __init__(self, days: DayNames) -> None:
        self.template = days.day
        self.name = re.compile(rf"({days.stem}){_day_regex(days.day)}")


@dataclass(frozen=True)
class Window:
    """The delivery days a listing asks for: `first` to `last`, inclusive (None: unbounded), for the day
    positions a format's key layouts declare."""

    first: date | None
    last: date | None
    folders: tuple[_CompiledFolders, ...]
    names: tuple[_CompiledNames, ...]

    @classmethod
    def of(cls, fmt: LogFormat, first: date | None, last: date | None) -> Window:
        days = [k.days for k in fmt.key_layouts]
        return cls(
            first,
            last,
            tuple(c for d in days if d and isinstance(c := _compiled(d), _CompiledFolders)),
            tuple(c for d in days if d and isinstance(c := _compiled(d), _CompiledNames)),
        )

    def _within(self, values: tuple[int, ...]) -> bool:
        n = len(values)
        low = self.first and (self.first.year, self.first.month, self.first.day)[:n]
        high = self.last and (self.last.year, self.last.month, self.last.day)[:n]
        return (not low or values >= low) and (not high or values <= high)

    def root(self, path: str) -> Folder:
        """The listing's first folder. One inside a tree of day folders is listed as its depth says (a day
        folder in full, whatever the window: it was asked for by name)."""
        for days in self.folders:
            for depth in range(len(days.levels), -1, -1):
                m = days.at_depth[depth].search(path)
                if m:
                    values = tuple(int(g) for g in m.groups())
                    return Folder(path, days, values, whole=depth == len(days.levels))
        return Folder(path)

    def child(self, parent: Folder, path: str) -> Folder | None:
        """A subfolder to walk, or None when it is a day folder (or a year, a month) outside the window."""
        if parent.whole:
            return Folder(path, whole=True)
        days = parent.days
        if days is not None and len(parent.values) < len(days.levels):
            m = days.levels[len(parent.values)].fullmatch(path[len(parent.path) : -1])
            if m:
                values = parent.values + tuple(int(g) for g in m.groups())
                if not self._within(values):
                    return None
                return Folder(path, days, values, whole=len(values) == len(days.levels))
        for days in self.folders:
            if days.parent.search(path):
                return Folder(path, days)
        return Folder(path)

    def skip_to(self, name: str) -> str | None:
        """For an object name of a time-sorted stem dated before the window: the name to list on after
        (`<stem><first day>`), so that the listing skips the stem's older names; else None."""
        if self.first is None:
            return None
        for names in self.names:
            m = names.name.match(name)
            if m:
                day = _as_date(m.groups()[1:])
                if day is not None and day < self.first:
                    return m.group(1) + _render(names.template, self.first)
        return None


def delivery_day(fmt: LogFormat, key: str) -> date | None:
    """The delivery day a key holds where its layout declares one (`KeyLayout.days`), else None."""
    for layout in fmt.key_layouts:
        if layout.days is not None and layout.regex.search(key):
            compiled = _compiled(layout.days)
            if isinstance(compiled, _CompiledFolders):
                m = compiled.key.search(key)
                return _as_date(m.groups()) if m else None
            m = compiled.name.match(key.rsplit("/", 1)[-1])
            return _as_date(m.groups()[1:]) if m else None
    return None


_COMPILED: dict[DayFolders | DayNames, _CompiledFolders | _CompiledNames] = {}


def _compiled(days: DayFolders | DayNames) -> _CompiledFolders | _CompiledNames:
    if days not in _COMPILED:
        _COMPILED[days] = _CompiledFolders(days) if isinstance(days, DayFolders) else _CompiledNames(days)
    return _COMPILED[days]


@dataclass(frozen=True)
class Plan:
    """How a run lists: a window (None: everything) and why, for the run summary."""

    window: Window | None
    why: str

    @property
    def kind(self) -> str:
        return FULL if self.window is None else WINDOW

    @property
    def first(self) -> str:
        return self.window.first.isoformat() if self.window and self.window.first else ""


def plan(
    fmt: LogFormat,
    latest_day: date | None,
    *,
    since: date | None = None,
    until: date | None = None,
    late_days: int = LATE_DAYS,
    full: bool = False,
    today: date | None = None,
    unsettled: str | None = None,
) -> Plan:
    """The listing a run makes: see the module's doc. A high-water mark after `today` (UTC; a key dated in
    the future by mistake) counts as today: the clock can only move the window's start earlier, so a clock
    that is off makes a run list more, never less. `unsettled` says why the mark may not cover every older
    day (run._unsettled): then the run lists everything."""
    if full:
        return Plan(None, "asked for with --full-listing")
    if not any(layout.days for layout in fmt.key_layouts):
        return Plan(None, f"no {fmt.name} key layout holds a delivery day")
    if since:
        return Plan(Window.of(fmt, since, until), "from --since")
    if latest_day is None:
        return Plan(None, "the first run of the table: the ledger holds no delivery day yet")
    if unsettled:
        return Plan(None, f"{unsettled}: the days before the ledger's latest may hold objects not converted")
    today = today or datetime.now(timezone.utc).date()
    if latest_day > today:
        mark = f"today, {today}, before the ledger's latest delivery day {latest_day},"
        latest_day = today
    else:
        mark = f"the ledger's latest delivery day {latest_day}"
    first = latest_day - timedelta(days=late_days)
    return Plan(Window.of(fmt, first, until), f"{mark} less {late_days} days")


def latest(days: Iterable[date | None], than: str = "") -> str:
    """The latest of `days` and the ISO day `than`, as an ISO day ("" when there is none)."""
    found = [d.isoformat() for d in days if d is not None]
    return max([than, *found]) if found or than else ""


def parse_day(value: str) -> date | None:
    return date.fromisoformat(value) if value else None
