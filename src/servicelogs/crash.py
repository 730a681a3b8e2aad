"""Crash points for the exactly-once proofs: every side effect on a store calls `point(name)`.

With SERVICELOGS_CRASH_AT=N the process SIGKILLs itself at the N-th side effect (1-based), as a power
cut would, so tests can enumerate every point. With SERVICELOGS_PAUSE_AT=N it SIGSTOPs itself there
instead (all its threads, its lease heartbeat too), as a GC pause or a suspended laptop would: the test
lets other runs go on, then SIGCONTs it. SERVICELOGS_CRASH_LOG=path appends each point's name, to show
which side effect a number stands for. Without these variables a point costs a few dict lookups.
"""

from __future__ import annotations

import os
import signal
import threading

_count = 0
_counting = threading.Lock()  # a batch's files are uploaded and published from several threads at once


def point(name: str) -> None:
    global _count
    at = os.environ.get("SERVICELOGS_CRASH_AT")
    pause = os.environ.get("SERVICELOGS_PAUSE_AT")
    log = os.environ.get("SERVICELOGS_CRASH_LOG")
    if at is None and log is None and pause is None:
        return
    with _counting:
        _count += 1
        number = _count
        if log:
            with open(log, "a") as f:
                f.write(f"{number}\t{os.getpid()}\t{name}\n")
    if at is not None and number == int(at):
        os.kill(os.getpid(), signal.SIGKILL)
    if pause is not None and number == int(pause):
        os.kill(os.getpid(), signal.SIGSTOP)


def enumerating() -> bool:
    """Whether side effects are being numbered: the proofs replay a number of one run in another, which needs
    a run's side effects in the same order each time (engines.local.one_ahead then stages in the run's thread)."""
    return any(
        os.environ.get(v) is not None for v in ("SERVICELOGS_CRASH_AT", "SERVICELOGS_PAUSE_AT", "SERVICELOGS_CRASH_LOG")
    )


def reset() -> None:
    global _count
    _count = 0
