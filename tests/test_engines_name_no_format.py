"""Engines read format declarations; none of them names a format (the project's first rule)."""

from __future__ import annotations

import re
from pathlib import Path

from servicelogs import formats

ENGINES = Path(__file__).resolve().parents[1] / "src" / "servicelogs" / "engines"
NAMES = {*formats.names(), "alb", "elb", "cloudfront", "cloudtrail", "s3_access", "vpc_flow", "vpc"}


def test_no_engine_module_names_a_format():
    pattern = re.compile(rf"\b({'|'.join(sorted(NAMES))})\b", re.IGNORECASE)
    hits = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(ENGINES.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []
