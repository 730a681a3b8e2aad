"""The shape of the code: engines and catalogs know no format by name; importing servicelogs stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from servicelogs import formats

SRC = Path(__file__).resolve().parents[1] / "src" / "servicelogs"


def test_engines_and_catalogs_name_no_format():
    names = "|".join(re.escape(n) for n in (*formats.names(), "vpc"))
    pattern = re.compile(rf"\b({names})\b", re.IGNORECASE)
    offenders = []
    for folder in ("engines", "catalogs", "render"):
        for path in sorted((SRC / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line.split("#", 1)[0]):
                    offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_import_is_light():
    code = (
        "import sys, servicelogs; servicelogs.formats.all_formats(); "
        "print(' '.join(m for m in ('pyarrow', 'duckdb', 'boto3', 'botocore', 'pyspark', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
