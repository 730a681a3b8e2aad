"""A run's progress on stderr: a bar on a terminal (tqdm), a plain line every few seconds elsewhere (cron, CI).

The listing gives every object's size before any is read, so the totals, the percentage and (once an object is
done) the ETA are known from the first frame. Percentage and ETA count compressed source bytes, the one total
known in advance; the log text's total is estimated from the ratio seen so far (shown with `~`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm

LOG_EVERY = 5.0  # seconds between two lines when stderr is not a terminal


class RunProgress:
    """Implements `servicelogs.engines.local.Progress`: `terminal` draws a bar, else a line every `every` seconds;
    `verbose` also writes a line per object read."""

    def __init__(self, stream: TextIO, *, terminal: bool, verbose: bool = False, every: float = LOG_EVERY) -> None:
        self.stream, self.terminal, self.verbose, self.every = stream, terminal, verbose, every
        self.objects = self.source_bytes = 0
        self.objects_done = self.source_done = self.text_done = self.rows = 0
        self.started = self._logged = time.monotonic()
        self._done_keys: set[str] = set()
        self._bar: tqdm | None = None

    # -- engines.local.Progress ----------------------------------------------------------------------------

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

    def parsed(self, text_bytes: int, rows: int) -> None:
        self.text_done += text_bytes
        self.rows += rows
        self._advance(0)

    def object_done(self, key: str, source_bytes: int) -> None:
        if key in self._done_keys:
            return  # a batch redone without a failed object reads the others again
        self._done_keys.add(key)
        self.objects_done += 1
        self.source_done += source_bytes
        if self.verbose:
            self._write(f"read {key} ({_mb(source_bytes)} MB)")
        self._advance(source_bytes)

    # -- drawing -------------------------------------------------------------------------------------------

    def status(self) -> str:
        """Objects and MB done of their totals, rows/s, MB/s of log text, ETA: the bar's text and the log line."""
        from tqdm import tqdm

        elapsed = max(time.monotonic() - self.started, 1e-6)
        text_total = f"~{_mb(self.text_done * self.source_bytes / self.source_done)}" if self.source_done else "?"
        if self.source_done:
            eta = tqdm.format_interval((self.source_bytes - self.source_done) * elapsed / self.source_done)
        else:
            eta = "?"
        return (
            f"{self.objects_done}/{self.objects} objects, {_mb(self.source_done)}/{_mb(self.source_bytes)} MB "
            f"compressed, {_mb(self.text_done)}/{text_total} MB text, {self.rows / elapsed:,.0f} rows/s, "
            f"{self.text_done / 1e6 / elapsed:,.1f} MB/s, ETA {eta}"
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
