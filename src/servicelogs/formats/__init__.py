"""The log formats servicelogs knows, one module each.

Adding a log type: write `formats/<name>.py` defining `FORMAT = LogFormat(...)` (see `alb.py`), add real
lines with provenance under `tests/fixtures/<name>/`, and it is found here by its module name. Nothing
else changes: engines and catalogs read the declaration.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from servicelogs.errors import UnknownFormatError
from servicelogs.spec import LogFormat


@cache
def names() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


@cache
def get(name: str) -> LogFormat:
    """The declaration of format `name`; raises UnknownFormatError (with a suggestion) otherwise."""
    if name not in names():
        raise UnknownFormatError(name, list(names()))
    fmt = importlib.import_module(f"{__name__}.{name}").FORMAT
    assert isinstance(fmt, LogFormat) and fmt.name == name, f"formats/{name}.py must define FORMAT named {name!r}"
    return fmt


def all_formats() -> tuple[LogFormat, ...]:
    return tuple(get(n) for n in names())
