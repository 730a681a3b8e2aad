"""A run's progress on stderr: a bar on a terminal (tqdm), a plain line every few seconds elsewhere (cron, CI).

The listing gives every object's size before any is read, so the totals, the percentage and (once an object is
done) the ETA are known from the first frame. Percentage and ETA count source bytes (as stored, gzipped or not),
the one total known in advance; the log text's total is estimated from the objects done (shown with `~`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm

LOG_EVERY = 5.0  # seconds between two lines when stderr is not a terminal


class RunProgress:
    """Implements `servicelogs.run.Progress`: `terminal` draws a bar, else a line every `every` seconds;
    `verbose` also writes a line per object read."""

    def __init__(self, stream: TextIO, *, terminal: bool, verbose: bool = False, every: float = LOG_EVERY) -> None:
        self.stream, self.terminal, self.verbose, self.every = stream, terminal, verbose, every
        self.objects = self.source_bytes = 0
        self.objects_done = self.source_done = self.text_done = self.rows = 0
        self.text_of_done = 0  # the log text of the objects done: with their source bytes, the text's ratio
        self._text_of: dict[str, int] = {}  # objects being read: their text so far
        self.started = self._logged = time.monotonic()
        self._done_keys: set[str] = set()
        self._bar: tqdm | None = None

    # -- servicelogs.run.Progress ----------------------------------------------------------------------------

    def planned(self, objects: int, source_bytes: int) -> None:
        self.objects, self.source_bytes = objects, source_bytes
        self.started = time.monotonic()
        if not objects:
            return  # nothing new: no bar, no line
        if self.terminal:
            from tqdm import tqdm  # loads only when a bar is drawn

            self._bar = tqdm(
                total=source_bytes,
                file=self.stream,
                bar_format="{percentage:3.0f}%|{bar}| {desc}",  # desc: our own counts, not tqdm's "it/s"
                desc=self.status(),
                mininterval=0.2,
                dynamic_ncols=True,
                leave=True,
            )
        else:
            self._log()

    def parsed(self, key: str, text_bytes: int, rows: int) -> None:
        self._text_of[key] = self._text_of.get(key, 0) + text_bytes
        self.text_done += text_bytes
        self.rows += rows
        self._advance(0)

    def object_done(self, key: str, source_bytes: int) -> None:
        if key in self._done_keys:
            return  # a batch redone without a failed object reads the others again
        self._done_keys.add(key)
        self.text_of_done += self._text_of.pop(key, 0)
        self.objects_done += 1
        self.source_done += source_bytes
        if self.verbose:
            self._write(f"read {key} ({_mb(source_bytes)} MB)")
        self._advance(source_bytes)

    # -- drawing -------------------------------------------------------------------------------------------

    def status(self) -> str:
        """ETA, objects and MB done of their totals, rows/s, MB/s of log text: the bar's text and the log line.
        The ETA comes first: a terminal too narrow for the whole line cuts its end."""
        from tqdm import tqdm

        elapsed = max(time.monotonic() - self.started, 1e-6)
        if self.source_done and self.text_of_done:
            # The objects being read count by their text so far, at the ratio of the objects done.
            done = self.source_done + (self.text_done - self.text_of_done) * self.source_done / self.text_of_done
            eta = tqdm.format_interval(max(self.source_bytes - done, 0) * elapsed / done)
            text_total = f"~{_mb(self.text_of_done * self.source_bytes / self.source_done)}"
        else:
            eta = text_total = "?"
        return (
            f"ETA {eta}, {self.objects_done}/{self.objects} objects, {_mb(self.source_done)}/{_mb(self.source_bytes)} "
            f"MB source, {_mb(self.text_done)}/{text_total} MB text, {self.rows / elapsed:,.0f} rows/s, "
            f"{self.text_done / 1e6 / elapsed:,.1f} MB/s"
        )

    def _advance(self, source_bytes: int) -> None:
        if self._bar is not None:
            self._bar.set_description_str(self.status(), refresh=False)
            self._bar.update(source_bytes)  # redraws at most every mininterval
        elif not self.terminal and self.objects and time.monotonic() - self._logged >= self.every:
            self._log()

    def _log(self) -> None:
        self._logged = time.monotonic()
        percent = 100 * self.source_done / self.source_bytes if self.source_bytes else 100.0
        self._write(f"{percent:3.0f}% {self.status()}")

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)  # above the bar, which is drawn again below
        else:
            self.stream.write(f"servicelogs: {line}\n")
            self.stream.flush()

    def close(self) -> None:
        """The last frame (or line), with the final counts."""
        if self._bar is not None:
            self._bar.set_description_str(self.status(), refresh=False)
            self._bar.close()
            self._bar = None
        elif not self.terminal and self.objects:
            self._log()


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"
