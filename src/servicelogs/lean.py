"""What servicelogs leaves out of the processes it owns: pandas, BLAS threads, and page faults for memory it
had already.

pyarrow imports pandas, where it is installed, on the first `pa.array` call, only to ask whether the argument is
a pandas object: 0.3–0.7 CPU-seconds a process, a fifth of the work of converting 300 MB with two workers. No part
of servicelogs uses pandas, and pyarrow runs without it when its import fails.

numpy's OpenBLAS starts a thread per core as numpy loads, and they spin: ~0.1 CPU-seconds a process on 2 cores
(0.76 → 0.58 CPU-s for a run of one 50 KB object), for linear algebra servicelogs never does.

Both allocators under a run hand freed memory back to the system at once, so each block of a few MB that a
run allocates, frees and allocates again (a decompressed block, a column) is page-faulted and zeroed anew. So glibc
keeps blocks up to 32 MB in its heap, and up to 128 MB of it free (`keep_freed_memory`); Arrow's mimalloc
keeps what it freed (MIMALLOC_PURGE_DELAY=-1, read as pyarrow loads). 300 MB of ALB text in one process: 157k
page faults → 22k, 3.8 → 3.1 CPU-s, peak RSS 258 → 293 MB (JSON records: 152k faults per 100 MB → 70k by glibc's
alone, a quarter of the CPU).

Only the processes servicelogs owns are made lean (its command line with the local engine, its worker processes,
and the fork server they come from, which inherits the command line's environment): a library does not hide
modules from its caller's process, nor change its threads or its allocators.
"""

from __future__ import annotations

import contextlib
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


def keep_freed_memory() -> None:
    """glibc's heap keeps freed blocks up to 32 MB, and up to 128 MB of them, for the next allocations."""
    import ctypes

    m_trim_threshold, m_mmap_threshold = -1, -3
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator's defaults stand
        libc = ctypes.CDLL(None)
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 128 << 20)


def lean_process() -> None:
    """No pandas, freed memory kept, and one BLAS thread for the numpy this process (and the processes it starts)
    will load, unless the environment says otherwise."""
    hide_pandas()
    keep_freed_memory()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
