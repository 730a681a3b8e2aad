"""Engines and renderers read declarations; none of them names a log format."""

from __future__ import annotations

import re
from pathlib import Path

import servicelogs
from servicelogs import formats

SRC = Path(servicelogs.__file__).parent


def test_engines_and_renderers_name_no_format():
    names = "|".join(re.escape(n) for n in (*formats.names(), "elb", "cloudfront", "s3_access", "vpc_flow"))
    pattern = re.compile(rf"\b({names})\b", re.IGNORECASE)
    for folder in ("engines", "render"):
        for path in sorted((SRC / folder).glob("*.py")):
            hits = [line for line in path.read_text().splitlines() if pattern.search(line)]
            assert not hits, f"{path.name} names a format: {hits}"
