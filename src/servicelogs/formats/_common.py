"""Small declaration helpers any format may use. Not a format (its name starts with `_`)."""

from __future__ import annotations

from typing import Any

from servicelogs.spec import Field, Token
from servicelogs.types import STRING, Type


def one(name: str, since: str, type_: Type = STRING, doc: str = "", quoted: bool = False, **kw: Any) -> Token:
    """A token that is one field of the same name; `kw` goes to the Field (null, choices, time_format)."""
    return Token(name, (Field(name, type_, doc, **kw),), since=since, quoted=quoted)
