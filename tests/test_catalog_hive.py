"""The rendered DDL really works: the raw and converted tables, created in Spark SQL with Hive support (the
Hive 2.3 SerDes of PySpark's wheel, an embedded Derby metastore), read the fixtures as the engine does.

Hive in Spark ignores `skip.header.line.count` (Athena honours it), so header lines are filtered here. The
JSON records SerDe Athena documents is not obtainable here: its DDL text is tested only."""

from __future__ import annotations

import datetime
import re
import shutil
from pathlib import Path

import pytest
from catalog_support import object_text, write_corpus
from conftest import read_table

import servicelogs
from servicelogs import formats
from servicelogs.catalogs import Names, sync
from servicelogs.catalogs.embedded import EmbeddedCatalog
from servicelogs.render import hive
from servicelogs.sources import LocalSource
from servicelogs.spec import EPOCH_SECONDS, JsonRecords
from servicelogs.storage import LocalStore
from servicelogs.types import TIMESTAMP

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("Spark needs a Java runtime (.ci/run installs openjdk-17-jre-headless)", allow_module_level=True)

HIVE_READABLE = [n for n in formats.names() if not isinstance(formats.get(n).grammar, JsonRecords)]
JSON_RECORDS = [n for n in formats.names() if isinstance(formats.get(n).grammar, JsonRecords)]


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    base = tmp_path_factory.mktemp("spark")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("servicelogs-hive-ddl")
        .config("spark.sql.warehouse.dir", str(base / "warehouse"))
        .config("spark.hadoop.javax.jdo.option.ConnectionURL", f"jdbc:derby:;databaseName={base}/metastore;create=true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={base}")
        .enableHiveSupport()
        .getOrCreate()
    )
    yield session
    session.stop()


def _convert(name: str, tmp_path: Path):
    fmt = formats.get(name)
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_corpus(fmt, src)
    summary = servicelogs.convert(name, src, lake, workers=1, catalog="none")
    assert summary.ok and summary.rows == len(fmt.examples)
    return fmt, src, lake


def _partitions(spark, table: hive.TableDef, parts) -> None:
    for p in parts:
        spark.sql(hive.add_partition_sql(table, p.values, p.location))


@pytest.mark.parametrize("name", HIVE_READABLE)
def test_the_rendered_tables_read_the_engines_rows_in_spark(spark, tmp_path, name):
    fmt, src, lake = _convert(name, tmp_path)
    # The partitions sync registers, taken from an embedded catalog: the same code as for Glue.
    cat = EmbeddedCatalog(tmp_path / "c.duckdb")
    sync(cat, fmt, Names("main", name), LocalStore(lake), LocalSource(src))
    converted = hive.converted_table(fmt, f"{name}_converted", str(lake.resolve() / name))
    raw_def = hive.raw_table(fmt, f"{name}_raw", str(src.resolve()))
    parts, raw_parts = cat.list_partitions("main", name), cat.list_partitions("main", f"{name}_raw")
    cat.close()
    if not raw_def.partition_keys:  # the objects share one folder: the table lies there
        folder = next(p.parent for p in src.rglob("*") if p.is_file())
        raw_def = hive.raw_table(fmt, f"{name}_raw", str(folder))

    for table, found in ((converted, parts), (raw_def, raw_parts)):
        spark.sql(f"DROP TABLE IF EXISTS `{table.name}`")
        spark.sql(hive.create_table_sql(table).rstrip(";"))
        _partitions(spark, table, found)

    engine = read_table(lake, name, fmt.partitions)
    got = [
        r.asDict() for r in spark.sql(f"SELECT * FROM `{converted.name}` ORDER BY source_key, line_number").collect()
    ]
    assert len(got) == len(engine)
    for mine, theirs in zip(got, engine, strict=True):
        for column, value in theirs.items():
            if isinstance(value, datetime.datetime):
                assert mine[column].replace(tzinfo=datetime.timezone.utc) == value, column
            else:
                assert mine[column] == value, column

    rows = [r.asDict() for r in spark.sql(f"SELECT * FROM `{raw_def.name}`").collect()]
    first = raw_def.columns[0].name
    rows = [r for r in rows if r[first] is not None and not str(r[first]).startswith("#")]  # header lines
    assert len(rows) == len(engine), "one raw row per data line"
    # Like AWS's own regexes, a field declared quoted must be quoted: two AWS example lines write the target
    # lists bare, and the raw table reads those lines only up to the field before (the tail AWS may append
    # to is tolerated). They are found with the regex without that tolerance and left out of the values.
    lines = object_text(fmt).splitlines()
    regex = raw_def.serde_parameters.get("input.regex", "").removesuffix(hive.APPENDED_FIELDS)
    strict = [not regex or bool(re.fullmatch(regex, lines[r["line_number"] - 1])) for r in engine]
    assert sum(strict) >= len(engine) - 2
    by_field = {f.name: f for f in fmt.fields}
    names = [c.name for c in raw_def.columns if c.name in by_field and _comparable(by_field[c.name])]
    assert len(names) >= len(raw_def.columns) // 2
    # One small object: Hive reads its lines in order.
    got = [tuple(_value(by_field[n], r[n]) for n in names) for r, ok in zip(rows, strict, strict=True) if ok]
    expected = [
        tuple(_engine_value(by_field[n], r[n]) for n in names) for r, ok in zip(engine, strict, strict=True) if ok
    ]
    assert got == expected


def _comparable(f) -> bool:
    """Timestamps the raw table keeps as text are compared by the engine's tests, not here."""
    return f.type != TIMESTAMP or f.time_format == EPOCH_SECONDS


def _value(f, raw):
    return None if f.null is not None and raw == f.null else raw


def _engine_value(f, value):
    return int(value.timestamp()) if f.type == TIMESTAMP and value is not None else value


@pytest.mark.parametrize("name", JSON_RECORDS)
def test_the_json_records_raw_table_names_the_documented_serde(name):
    fmt = formats.get(name)
    ddl = hive.create_table_sql(hive.raw_table(fmt, "t_raw", "s3://b/logs/"))
    storage = fmt.grammar.hive_storage
    assert f"ROW FORMAT SERDE '{storage.serde}'" in ddl
    assert f"STORED AS INPUTFORMAT '{storage.input_format}'" in ddl
    assert "PARTITIONED BY (`region` string, `year` string, `month` string, `day` string)" in ddl
    assert [c.name for c in hive.raw_columns(fmt)] == list(dict.fromkeys(k.key.lower() for k in fmt.grammar.keys))


def test_one_capturing_group_per_column():
    import re

    for name in formats.names():
        fmt = formats.get(name)
        table = hive.raw_table(fmt, "t", "/x")
        if table.serde == hive.REGEX_SERDE:
            assert re.compile(table.serde_parameters["input.regex"]).groups == len(table.columns), name
