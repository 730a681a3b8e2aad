"""What servicelogs leaves out of the processes it owns: pandas, and BLAS threads.

pyarrow imports pandas, where it is installed, on the first `pa.array` call, only to ask whether the argument is
a pandas object: 0.3–0.7 CPU-seconds a process, a fifth of the work of converting 300 MB with two workers. No part
of servicelogs uses pandas, and pyarrow runs without it when its import fails.

numpy's OpenBLAS starts a thread per core as numpy loads, and they spin: ~0.1 CPU-seconds a process on 2 cores
(0.76 → 0.58 CPU-s for a run of one 50 KB object), for linear algebra servicelogs never does.

Only the processes servicelogs owns are made lean (its command line with the local engine, its worker processes,
and the fork server they come from, which inherits the command line's environment): a library does not hide
modules from its caller's process, nor change its threads.
"""

from __future__ import annotations

import importlib.abc
import os
import sys


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] == "pandas":
            raise ImportError("servicelogs processes do not load pandas")


def hide_pandas() -> None:
    """Make `import pandas` fail in this process from now on (unless it is already loaded)."""
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


def lean_process() -> None:
    """No pandas, and one BLAS thread for the numpy this process (and the processes it starts) will load, unless
    the environment says otherwise."""
    hide_pandas()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
