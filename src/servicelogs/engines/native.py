"""The compiled kernels of `_delimited.c` (the line grammars' bulk tokenizer, a string split), or None.

Compiled at install where a C compiler is found (setup.py; optional). Without them the same rows come from
Arrow's CSV reader and compute kernels, at about half the speed. Callers read `native.kernels` when they run,
so that a test can set it to None and check the fallback gives the same rows.
"""

from __future__ import annotations

from types import ModuleType

kernels: ModuleType | None
try:
    from servicelogs.engines import _delimited as kernels  # type: ignore[attr-defined, no-redef]
except ImportError:
    kernels = None
