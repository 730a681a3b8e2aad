"""The writer's Parquet encodings (render/arrow.py: dictionary_columns, column_encodings, empty_columns): each
column chunk is encoded and compressed as the rule says, the values read back exactly with pyarrow, DuckDB and
Spark, and a column whose first rows are null is judged by its values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import read_table
from exactly_once_support import write_local
from spark_support import fixture_corpus

import servicelogs
from servicelogs import formats
from servicelogs.engines.writer import PartitionedWriter
from servicelogs.render.arrow import CARDINALITY_SAMPLE_ROWS, column_encodings, dictionary_columns, empty_columns

ROWS = 3 * CARDINALITY_SAMPLE_ROWS
NULL_HEAD = CARDINALITY_SAMPLE_ROWS + 100  # longer than the sample: the old rule saw nulls only
START = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)

SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),  # ascending, all distinct: delta
        ("second", pa.timestamp("us", tz="UTC")),  # whole seconds, ~10 rows each: dictionary
        ("status", pa.int32()),  # 3 values: dictionary
        ("port", pa.int32()),  # ~60 % distinct: delta (a dictionary pays only for repeats)
        ("bytes", pa.int64()),  # all distinct: delta
        ("request_id", pa.string()),  # all distinct: plain
        ("method", pa.string()),  # 2 values: dictionary
        ("late_id", pa.string()),  # null for NULL_HEAD rows, then all distinct: plain
        ("late_count", pa.int64()),  # null for NULL_HEAD rows, then all distinct: delta
        ("late_code", pa.string()),  # null for NULL_HEAD rows, then 2 values: dictionary
        ("never", pa.string()),  # all null: plain and uncompressed (null markers only)
        ("line_number", pa.int64()),  # always delta
    ]
)


def rows_table() -> pa.Table:
    late = [None] * NULL_HEAD
    return pa.table(
        {
            "time": [START + timedelta(microseconds=37 * i) for i in range(ROWS)],
            "second": [START + timedelta(seconds=i // 10) for i in range(ROWS)],
            "status": [(200, 404, 503)[i % 3] for i in range(ROWS)],
            "port": [1024 + (i * 7919) % (ROWS * 6 // 10) for i in range(ROWS)],
            "bytes": [1000 + 13 * i for i in range(ROWS)],
            "request_id": [f"req-{i:08x}" for i in range(ROWS)],
            "method": [("GET", "PUT")[i % 2] for i in range(ROWS)],
            "late_id": late + [f"late-{i}" for i in range(ROWS - NULL_HEAD)],
            "late_count": late + list(range(ROWS - NULL_HEAD)),
            "late_code": late + [("a", "b")[i % 2] for i in range(ROWS - NULL_HEAD)],
            "never": [None] * ROWS,
            "line_number": list(range(1, ROWS + 1)),
        },
        schema=SCHEMA,
    )


DICTIONARY = {"second", "status", "method", "late_code"}
DELTA = {"time", "port", "bytes", "late_count", "line_number"}
PLAIN = {"request_id", "late_id", "never"}


def chunk_encodings(path: Path) -> dict[str, tuple[set[str], bool]]:
    """Each column's encodings and whether it has a dictionary page, over the file's row groups."""
    metadata = pq.read_metadata(path)
    found: dict[str, tuple[set[str], bool]] = {}
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            encodings, dictionary = found.get(chunk.path_in_schema, (set(), False))
            found[chunk.path_in_schema] = (encodings | set(chunk.encodings), dictionary or chunk.has_dictionary_page)
    return found


def written(tmp_path: Path, table: pa.Table) -> Path:
    writer = PartitionedWriter(tmp_path / "staging", "part-x.parquet", table.schema)
    writer.write("day=2024-01-15", table)
    [file] = writer.close()
    return file.path


def test_the_rule_chooses_each_columns_encoding() -> None:
    table = rows_table()
    dictionary = dictionary_columns(table)
    assert set(dictionary) == DICTIONARY | {"never"}  # the writer leaves the empty column out (empty_columns)
    assert empty_columns(table) == ["never"]
    assert column_encodings(table.schema, dictionary) == dict.fromkeys(sorted(DELTA), "DELTA_BINARY_PACKED")


def test_each_column_chunk_is_encoded_as_the_rule_says(tmp_path: Path) -> None:
    encodings = chunk_encodings(written(tmp_path, rows_table()))
    for name in DICTIONARY:
        assert encodings[name] == ({"PLAIN", "RLE", "RLE_DICTIONARY"}, True), name
    for name in DELTA:
        assert encodings[name] == ({"RLE", "DELTA_BINARY_PACKED"}, False), name
    for name in PLAIN:
        assert encodings[name] == ({"RLE", "PLAIN"}, False), name


@pytest.mark.parametrize("fmt_name", ["cloudtrail", "vpc_flow"])  # nested columns; many columns never filled
def test_every_column_with_values_is_compressed_and_only_empty_ones_are_not(tmp_path: Path, fmt_name: str) -> None:
    """Through a conversion of the format's fixtures: each column chunk with a value is zstd-compressed, nested
    leaves included (a leaf a per-column compression leaves out would be written uncompressed), and each chunk
    without one is written uncompressed and without a dictionary; DuckDB reads every row of them."""
    write_local(tmp_path / "source", fixture_corpus(fmt_name))
    servicelogs.convert(fmt_name, tmp_path / "source", tmp_path / "target", workers=1)
    files = sorted((tmp_path / "target" / fmt_name).rglob("*.parquet"))
    codecs: dict[str, set[tuple[str, bool]]] = {}
    for path in files:
        parquet = pq.ParquetFile(path)
        for g in range(parquet.metadata.num_row_groups):
            rows = parquet.read_row_group(g)
            for c in range(parquet.metadata.num_columns):
                chunk = parquet.metadata.row_group(g).column(c)
                column = rows.column(chunk.path_in_schema.split(".")[0])
                empty = column.null_count == len(column)
                assert chunk.compression == ("UNCOMPRESSED" if empty else "ZSTD"), (path, chunk.path_in_schema)
                if empty:
                    assert not chunk.has_dictionary_page, (path, chunk.path_in_schema)
                codecs.setdefault(chunk.path_in_schema, set()).add((chunk.compression, empty))
    compressed = {p for p, seen in codecs.items() if ("ZSTD", False) in seen}
    assert {p for p in compressed if "." in p} or fmt_name != "cloudtrail"  # nested leaves among them
    assert {p for p, seen in codecs.items() if ("UNCOMPRESSED", True) in seen}  # and some left empty
    duck = read_table(tmp_path / "target", fmt_name, formats.get(fmt_name).partitions)  # DuckDB reads them too
    assert len(duck) == sum(pq.read_metadata(f).num_rows for f in files) > 10


def test_a_column_null_in_its_first_rows_is_judged_by_its_values() -> None:
    """The sample starts at the column's first value: 'late_id' is all distinct once it has values (the sample
    of the first rows, all null, called it a dictionary column), 'late_code' repeats two values."""
    table = rows_table()
    assert table.column("late_id").slice(0, CARDINALITY_SAMPLE_ROWS).null_count == CARDINALITY_SAMPLE_ROWS
    chosen = dictionary_columns(table)
    assert "late_id" not in chosen
    assert "late_count" not in chosen
    assert "late_code" in chosen


def test_values_read_back_exactly_with_pyarrow_and_duckdb(tmp_path: Path) -> None:
    table = rows_table()
    path = written(tmp_path, table)
    assert pq.read_table(path).to_pylist() == table.to_pylist()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rel = con.sql(f"SELECT * FROM read_parquet('{path}', hive_partitioning = false) ORDER BY line_number")
    assert [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()] == table.to_pylist()
    assert [str(t) for t in rel.types] == [
        "TIMESTAMP WITH TIME ZONE",
        "TIMESTAMP WITH TIME ZONE",
        "INTEGER",
        "INTEGER",
        "BIGINT",
        "VARCHAR",
        "VARCHAR",
        "VARCHAR",
        "BIGINT",
        "VARCHAR",
        "VARCHAR",
        "BIGINT",
    ]


def test_spark_reads_delta_encoded_integers_and_times_as_duckdb_does(tmp_path: Path) -> None:
    """The VPC flow fixtures converted (int32 ports, int64 byte counts, start and end times: delta-encoded, as
    each file's first rows are few) read by Spark's vectorised reader and by DuckDB: the same values, row for
    row."""
    pytest.importorskip("pyspark")
    from servicelogs.engines import spark as spark_engine
    from servicelogs.render.spark import schema as spark_schema

    fmt = formats.get("vpc_flow")
    write_local(tmp_path / "source", fixture_corpus("vpc_flow"))
    servicelogs.convert("vpc_flow", tmp_path / "source", tmp_path / "target", workers=1)
    files = sorted((tmp_path / "target" / "vpc_flow").rglob("*.parquet"))
    delta = {name for f in files for name, (found, _) in chunk_encodings(f).items() if "DELTA_BINARY_PACKED" in found}
    columns = ["srcport", "bytes", "start", "end", "line_number"]
    assert set(columns) <= delta
    duck = read_table(tmp_path / "target", "vpc_flow", fmt.partitions)

    session = spark_engine.session("local[1]")
    session.conf.set("spark.sql.session.timeZone", "UTC")
    table = session.read.schema(spark_schema(fmt)).parquet(str(tmp_path / "target" / "vpc_flow"))
    times = ("start", "end")
    got = table.orderBy("source_key", "line_number").selectExpr(
        *(f"unix_micros(`{c}`) AS `{c}`" if c in times else f"`{c}`" for c in columns)
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    expected = [
        tuple((row[c] - epoch) // timedelta(microseconds=1) if c in times and row[c] else row[c] for c in columns)
        for row in duck
    ]
    assert [tuple(r) for r in got.collect()] == expected
    assert len(expected) > 10
