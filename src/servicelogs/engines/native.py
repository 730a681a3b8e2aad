"""The compiled kernels, or None: `kernels`, of `_delimited.c` (the line grammars' bulk tokenizer, a string split);
`json_kernels`, of `_json_structure.c` (the scan of a JSON text's shaping bytes, each record's valued members).

Compiled at install where a C compiler is found (setup.py; optional). Without them the same rows come from
Arrow's CSV reader and compute kernels, and from numpy, at about half the speed. Callers read `native.kernels`
and `native.json_kernels` when they run, so that a test can set them to None and check the fallback gives the
same rows.
"""

from __future__ import annotations

from types import ModuleType

kernels: ModuleType | None
try:
    from servicelogs.engines import _delimited as kernels  # type: ignore[attr-defined, no-redef]
except ImportError:
    kernels = None

json_kernels: ModuleType | None
try:
    from servicelogs.engines import _json_structure as json_kernels  # type: ignore[attr-defined, no-redef]
except ImportError:
    json_kernels = None
