"""Memory stays bounded as the input grows, through the real engine.

Each conversion runs in a fresh process, one worker, and reports the peak of Arrow's memory pool: three times
as much input must not raise it. A cache that grows with the input (null columns kept per block
once made VPC take 2.2 GB on 1 GB of logs) fails this. The full-size figures are in bench/README.md.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES

from servicelogs import formats
from servicelogs.synth import write_corpus

# The writer's buffers (up to 64 MB a batch, by design) are made small, so what is left to grow is the rest.
PEAK = (
    "import sys, pyarrow as pa, servicelogs, servicelogs.engines.writer as w; "
    "w.ROW_GROUP_ROWS, w.BUFFERED_ROWS_LIMIT = 4096, 8192; "
    "w.ROW_GROUP_BYTES, w.BUFFERED_BYTES_LIMIT = 1 << 20, 2 << 20; "
    "servicelogs.convert(sys.argv[1], sys.argv[2], sys.argv[3], workers=1); "
    "print(pa.default_memory_pool().max_memory())"
)


def _lines(name: str) -> list[str]:
    path = FIXTURES / name
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [line for line in data.decode().splitlines() if line]


def _corpus(fmt_name: str, out: Path, megabytes: int) -> None:
    fmt = formats.get(fmt_name)
    if fmt_name == "vpc_flow":
        header, *lines = _lines("vpc_flow/coralogix-aws-shipper-vpcflow.log.gz")  # real, default v2 format
        write_corpus(fmt, out, megabytes, [lines], preambles=[[header]], object_megabytes=4)
    elif fmt_name == "cloudtrail":
        text = gzip.decompress((FIXTURES / "cloudtrail/coralogix-aws-shipper-cloudtrail.log.gz").read_bytes())
        records = [json.dumps(r, separators=(",", ":")) for r in json.loads(text)["Records"]]
        write_corpus(
            fmt, out, megabytes, [records], preambles=[['{"Records":[']], object_megabytes=4, separator=",\n", end="]}"
        )
    else:
        write_corpus(fmt, out, megabytes, [_lines("alb/coralogix-aws-shipper-elb.log.gz")], object_megabytes=4)


def _peak(tmp_path: Path, fmt_name: str, megabytes: int) -> int:
    source, target = tmp_path / f"source-{megabytes}", tmp_path / f"target-{megabytes}"
    _corpus(fmt_name, source, megabytes)
    out = subprocess.run(
        [sys.executable, "-c", PEAK, fmt_name, str(source), str(target)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("fmt_name", ["alb", "vpc_flow", "cloudtrail"])
def test_memory_does_not_grow_with_the_input(tmp_path: Path, fmt_name: str) -> None:
    small, large = _peak(tmp_path, fmt_name, 32), _peak(tmp_path, fmt_name, 96)
    assert large < small * 1.2, f"Arrow's peak: {small >> 20} MB for 32 MB of logs, {large >> 20} MB for 96"
