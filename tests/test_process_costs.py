"""What a run's processes cost to start: worker processes only for a run big enough to pay for them, and no
pandas (which pyarrow would import on its first array) in the processes servicelogs owns."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_rejects, read_table

import servicelogs
from servicelogs import formats
from servicelogs.engines import local
from servicelogs.run import plan_batches, workers_for
from servicelogs.sources import SourceObject
from servicelogs.synth import write_corpus


class _NoPool:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the run started a pool of worker processes")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """About 2 MB of ALB log text in several gzipped objects: a few batches, far below POOL_MIN_TEXT_BYTES."""
    fmt = formats.get("alb")
    write_corpus(fmt, tmp_path / "src", 2, [[e.line for e in fmt.examples]], object_megabytes=0.2)
    return tmp_path / "src"


def test_a_small_run_converts_in_its_own_process_whatever_the_workers(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SERVICELOGS_POOL_MIN_TEXT_BYTES")  # the default, which conftest turns off for the other tests
    monkeypatch.setattr(local, "ProcessPoolExecutor", _NoPool)
    summary = servicelogs.convert("alb", str(corpus), str(tmp_path / "lake"), workers=2, batch_bytes=64 << 10)
    assert summary.ok and summary.batches_committed > 1, summary.text()
    assert summary.rows == summary.lines > 0 and summary.rejects == 0


def test_a_small_run_is_planned_for_one_worker_in_few_large_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVICELOGS_POOL_MIN_TEXT_BYTES")
    mb = 1 << 20
    gzipped = [(SourceObject(f"k{i:04}.log.gz", mb // 2, f"e{i}"), ()) for i in range(40)]  # ~100 MB of text
    assert workers_for(gzipped, 2) == 1
    assert [len(b) for b in plan_batches(gzipped, workers=1)] == [40]  # 20 MB: one batch, not six
    assert workers_for(gzipped * 2, 2) == 2  # ~200 MB of text: a pool pays
    plain = [(SourceObject(f"k{i:04}.log", 4 * mb, f"e{i}"), ()) for i in range(12)]  # 48 MB of text
    assert workers_for(plain, 8) == 1
    assert [len(b) for b in plan_batches(plain, workers=1)] == [8, 4]  # at most BATCH_BYTES (32 MiB) each


def test_the_same_run_with_a_pool_gives_the_same_table(corpus: Path, tmp_path: Path) -> None:
    in_process = servicelogs.convert("alb", str(corpus), str(tmp_path / "one"), workers=1, batch_bytes=64 << 10)
    pooled = servicelogs.convert("alb", str(corpus), str(tmp_path / "pool"), workers=2, batch_bytes=64 << 10)
    assert pooled.batches_committed == in_process.batches_committed > 1
    partitions = formats.get("alb").partitions
    columns = lambda rows: [{k: v for k, v in r.items() if k != "run_id"} for r in rows]  # noqa: E731
    assert columns(read_table(tmp_path / "pool", "alb", partitions)) == columns(
        read_table(tmp_path / "one", "alb", partitions)
    )


def test_the_command_line_and_its_workers_load_no_pandas(corpus: Path, tmp_path: Path) -> None:
    """pyarrow imports pandas, where installed, on its first `pa.array` (0.3–0.7 CPU-s a process); numpy's
    OpenBLAS spins a thread per core as it loads (~0.1 CPU-s); mimalloc page-faults what it freed anew."""
    probe = (
        "import sys\n"
        "from servicelogs import cli\n"
        "from servicelogs.engines import batch\n"
        f"code = cli.main(['convert', 'alb', {str(corpus)!r}, {str(tmp_path / 'lake')!r}, '--workers', '1', '-q'])\n"
        "assert code == 0, code\n"
        "assert batch.__name__ and 'pandas' not in sys.modules, 'the run loaded pandas'\n"
        "import os\n"
        "assert os.environ['OPENBLAS_NUM_THREADS'] == '1', 'BLAS threads left on'\n"
        "assert os.environ['MIMALLOC_PURGE_DELAY'] == '-1', 'mimalloc hands freed memory back'\n"
        "print('no pandas')\n"
    )
    environ = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MIMALLOC_PURGE_DELAY")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=environ)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "no pandas", out.stderr


def test_workers_see_the_environment_of_the_run_not_of_the_fork_server(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork server outlives a run for the next one in the process; each run's workers get its environment
    (here a limit read as servicelogs.sources loads) as spawned workers did."""
    first = servicelogs.convert("alb", str(corpus), str(tmp_path / "first"), workers=2, batch_bytes=64 << 10)
    assert first.ok and first.rejects == 0  # the fork server runs now, started with the default limit
    long_line = next(corpus.rglob("*.gz")).parent / "long.log"
    fmt = formats.get("alb")
    long_line.write_text(
        fmt.examples[0].line + "\n" + fmt.examples[0].line.replace('"GET ', '"GET /' + "a" * 3000) + "\n"
    )
    long_line.rename(long_line.with_name(next(corpus.rglob("*.gz")).name.replace(".log.gz", "_x.log")))
    monkeypatch.setenv("SERVICELOGS_MAX_LINE_BYTES", "2048")
    second = servicelogs.convert("alb", str(corpus), str(tmp_path / "second"), workers=2, batch_bytes=64 << 10)
    reasons = [r["reason"] for r in read_rejects(tmp_path / "second", "alb")]
    assert second.rejects == 1 and reasons[0].startswith("a line of "), reasons
    assert "longer than the limit of 2048 (SERVICELOGS_MAX_LINE_BYTES)" in reasons[0]


def test_a_pooled_run_loads_duckdb_and_numpy_ma_once_not_in_every_worker(corpus: Path, tmp_path: Path) -> None:
    """JSON records' parser needs DuckDB (~0.04 CPU-s to import): the fork server loads it, once, for the workers
    it forks. Counted with `-X importtime` against a run of the line grammar, whose parser does not need it (the
    run's own process may load it for the catalog in both). numpy.ma, which pyarrow asks about the arrays it is
    given, is loaded once too, by the fork server."""
    records = tmp_path / "records"
    day = "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/19"
    for k in range(4):
        event = {"eventVersion": "1.08", "eventTime": f"2023-07-19T21:0{k}:00Z", "eventID": f"id-{k}"}
        path = records / day / f"123456789012_CloudTrail_us-east-1_20230719T2120Z_o{k}.json.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(json.dumps({"Records": [event] * 50}).encode()))

    def imports(fmt: str, source: Path) -> list[str]:
        lake = tmp_path / f"lake-{fmt}"
        command = [sys.executable, "-X", "importtime", "-m", "servicelogs", "convert", fmt, str(source), str(lake)]
        options = ["--workers", "2", "--batch-objects", "2", "-q"]
        out = subprocess.run([*command, *options], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        batches = len(list((lake / "_servicelogs" / fmt / "ledger" / "commits").iterdir()))
        assert batches > 1, "one batch: no pool to test"
        return [line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]

    json_run, line_run = imports("cloudtrail", records), imports("alb", corpus)
    assert json_run.count("duckdb") == line_run.count("duckdb") + 1
    assert json_run.count("numpy.ma") == line_run.count("numpy.ma") == 1
