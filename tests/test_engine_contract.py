"""The engine contract: every engine, given the same corpus, gives the same tables as the reference run (the
local engine converting in its own process): rows with their values and types, rejects with their reasons,
the same deterministic files and partitions, the same lineage, the same counts. An engine joins by adding
itself to ENGINES; the Spark engine's own guarantees (retries, kills) are in test_spark_engine.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import read_rejects, read_table
from exactly_once_support import write_local
from spark_support import fixture_corpus, table_files, without_run_id

import servicelogs

BATCH_OBJECTS = 3  # several batches per format

ENGINES: dict[str, dict[str, Any]] = {
    "local-pool": {"engine": "local", "workers": 2},  # worker processes, results in any order
    "spark": {"engine": "spark", "master": "local[2]"},
}
COUNTS = ("objects_converted", "lines", "rows", "rejects", "header_lines", "extra_field_rows", "batches_committed")


def converted(source: Path, target: Path, fmt_name: str, **engine: Any) -> tuple[Any, ...]:
    fmt = servicelogs.formats.get(fmt_name)
    summary = servicelogs.convert(fmt_name, source, target, batch_objects=BATCH_OBJECTS, **engine)
    return summary, read_table(target, fmt_name, fmt.partitions), read_rejects(target, fmt_name), table_files(target)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fmt_name", servicelogs.formats.names())
def test_an_engine_gives_the_reference_tables(tmp_path: Path, fmt_name: str, engine: str) -> None:
    if ENGINES[engine]["engine"] == "spark":
        pytest.importorskip("pyspark")
    write_local(tmp_path / "src", fixture_corpus(fmt_name))
    reference, rows, rejects, files = converted(tmp_path / "src", tmp_path / "ref", fmt_name, workers=1)
    summary, its_rows, its_rejects, its_files = converted(
        tmp_path / "src", tmp_path / engine, fmt_name, **ENGINES[engine]
    )
    assert rows and reference.batches_committed > 1
    assert without_run_id(its_rows) == without_run_id(rows)  # values and their Python types, row for row
    assert without_run_id(its_rejects) == without_run_id(rejects)  # the same lines, with the same reasons
    assert its_files == files  # same batches, same deterministic file names, same partitions
    assert {name: getattr(summary, name) for name in COUNTS} == {name: getattr(reference, name) for name in COUNTS}
    assert [(p.key, p.reason) for p in summary.failed] == [(p.key, p.reason) for p in reference.failed]
    assert {r["run_id"] for r in its_rows} == {summary.run_id}  # lineage: this run's id on every row
    assert {r["source_key"] for r in its_rows} == {r["source_key"] for r in rows}
