"""Hide pandas from the processes servicelogs owns.

pyarrow imports pandas, where it is installed, on the first `pa.array` call, only to ask whether the argument is
a pandas object: 0.3–0.7 CPU-seconds a process, a fifth of the work of converting 300 MB with two workers. No part
of servicelogs uses pandas, and pyarrow runs without it when its import fails. Only the processes servicelogs
owns hide it (its worker processes, its command line with the local engine): a library does not hide modules
from its caller's process.
"""

from __future__ import annotations

import importlib.abc
import sys


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] == "pandas":
            raise ImportError("servicelogs processes do not load pandas")


def hide_pandas() -> None:
    """Make `import pandas` fail in this process from now on (unless it is already loaded)."""
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
