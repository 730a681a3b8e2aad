"""What the local engine's worker processes run: their set-up, then one batch at a time.

The workers are forked from a fork server (engines.local), which outlives a run for the next one in the same
process, so a worker starts with the environment the fork server started with. The set-up installs the run's
environment before anything of servicelogs that reads it is imported (the limits of servicelogs.sources and
servicelogs.prefetch are read as they load; where a fork server of someone else's loaded them, they are read
again): this module is unpickled into the worker first, and imports nothing but the standard library until
then. Pickling a function takes its module, so the pool is handed these two.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import multiprocessing

    from servicelogs.run import BatchTask, StagedBatch


# Modules that read the environment as they load: a fork server someone else started (a test harness, an
# application) may have loaded them with its own.
_READ_AT_LOAD = ("servicelogs.sources", "servicelogs.prefetch")


def set_up(q: multiprocessing.Queue[Any], environ: dict[str, str], run_pid: int) -> None:
    _die_with_run(run_pid)
    os.environ.clear()
    os.environ.update(environ)
    for name in _READ_AT_LOAD:
        if name in sys.modules:
            sys.modules[name].read_limits()
    from servicelogs.engines import batch

    batch.init_worker(q)


def _die_with_run(run_pid: int) -> None:
    """A worker must not outlive its run: a killed run's batches are redone by the next run, which must not race a
    straggler of the dead one staging the same files. The worker's parent is the fork server, which lives as long
    as any of its workers, so the worker watches the run itself: a thread waits on the run's pidfd (readable when
    the run exits, whatever its pid becomes later) and ends the worker at once. Without pidfds (not Linux 5.3+)
    it looks for the run's pid once a second. A killed fork server takes its workers with it (PDEATHSIG)."""
    import ctypes
    import select
    import signal
    import threading
    import time

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    try:
        pidfd: int | None = os.pidfd_open(run_pid)
    except ProcessLookupError:  # the run is gone already
        os._exit(1)
    except (AttributeError, OSError):
        pidfd = None

    def wait_for_run() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while _exists(run_pid):
                time.sleep(1)
        os._exit(1)

    threading.Thread(target=wait_for_run, daemon=True, name="die-with-run").start()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def stage_batch(task: BatchTask) -> StagedBatch:
    """Convert one batch into staged files (servicelogs.engines.batch.stage_batch)."""
    from servicelogs.engines import batch

    return batch.stage_batch(task)
