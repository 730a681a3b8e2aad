"""One catalog contract, run unchanged against the embedded DuckDB catalog and Glue (moto server over HTTP),
then through real conversions of every declared format."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import posixpath
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from catalog_support import example_key, object_text, write_corpus
from conftest import read_table
from glue_support import StrictGlue, fresh_database, glue_server

import servicelogs
from servicelogs import formats
from servicelogs.catalogs.base import (
    CONVERTED,
    CatalogConflictError,
    CatalogError,
    NoSuchDatabaseError,
    NoSuchTableError,
    Partition,
    Table,
)
from servicelogs.catalogs.embedded import EmbeddedCatalog
from servicelogs.catalogs.glue import GlueCatalog
from servicelogs.catalogs.script import ScriptCatalog
from servicelogs.ledger import Ledger
from servicelogs.render import duckdb as render_duckdb
from servicelogs.render import hive
from servicelogs.render.hive import raw_partition_keys
from servicelogs.storage import LocalStore

DUCKDB_CLI = Path(sys.executable).with_name("duckdb")
ALB = formats.get("alb")


@pytest.fixture(scope="module")
def moto_glue():
    yield from glue_server()


@pytest.fixture(params=["embedded", "script", "glue"])
def catalog(request, tmp_path):
    if request.param == "embedded":
        cat = EmbeddedCatalog(tmp_path / "lake" / "catalog.duckdb")
        yield cat, "main"
        cat.close()
    elif request.param == "script":  # the embedded catalog of an s3:// lake, here over a local one
        yield ScriptCatalog(LocalStore(tmp_path / "lake")), "main"
    else:
        glue = request.getfixturevalue("moto_glue")
        yield GlueCatalog(glue), fresh_database()


def converted(name: str = "t", location: str = "/lake/t") -> Table:
    return Table(CONVERTED, ALB, name, location)


# -- the contract ------------------------------------------------------------------------------------------


def test_create_database_twice_is_fine_and_a_table_needs_its_database(catalog):
    cat, db = catalog
    cat.create_database(db)
    cat.create_database(db)
    with pytest.raises(NoSuchDatabaseError):
        cat.create_table("no_such_db", converted())
    assert not cat.table_exists("no_such_db", "t")


def test_create_exists_update_drop(catalog):
    cat, db = catalog
    cat.create_database(db)
    assert not cat.table_exists(db, "t")
    assert cat.create_table(db, converted()) is True
    assert cat.table_exists(db, "t")
    assert cat.create_table(db, converted()) is False, "the same declaration changes nothing"
    cat.drop_table(db, "t")
    assert not cat.table_exists(db, "t")
    with pytest.raises(NoSuchTableError):
        cat.drop_table(db, "t")


def test_partitions_are_added_once_and_listed_sorted(catalog):
    cat, db = catalog
    cat.create_database(db)
    cat.create_table(db, converted())
    parts = [
        Partition(("us-east-1", "2024", "05", "02"), "/lake/t/region=us-east-1/year=2024/month=05/day=02/"),
        Partition(("eu-west-1", "2024", "05", "01"), "/lake/t/region=eu-west-1/year=2024/month=05/day=01/"),
    ]
    assert cat.add_partitions(db, "t", parts) == 2
    assert cat.add_partitions(db, "t", parts) == 0
    assert cat.list_partitions(db, "t") == sorted(parts)
    assert cat.list_partitions(db, "t")[0].values == ("eu-west-1", "2024", "05", "01"), "day stays '01'"


def test_a_missing_table_is_named_in_the_error(catalog):
    cat, db = catalog
    cat.create_database(db)
    with pytest.raises(NoSuchTableError, match="missing"):
        cat.add_partitions(db, "missing", [])
    with pytest.raises(NoSuchTableError):
        cat.list_partitions(db, "missing")
    with pytest.raises(NoSuchTableError):
        cat.set_mark(db, "missing", 1)
    assert isinstance(NoSuchTableError("x", "y", "z"), CatalogError)


def test_the_mark_starts_at_zero_and_never_moves_back(catalog):
    cat, db = catalog
    cat.create_database(db)
    assert cat.mark(db, "t") == 0
    cat.create_table(db, converted())
    cat.set_mark(db, "t", 5)
    cat.set_mark(db, "t", 3)
    assert cat.mark(db, "t") == 5


# -- through a real conversion, every format ---------------------------------------------------------------


def _ledger_partitions(lake: Path, fmt_name: str) -> set[tuple[str, ...]]:
    out = set()
    for commit in Ledger(LocalStore(lake), f"_servicelogs/{fmt_name}").commits():
        for visible in (f.visible for f in commit.files):
            folders = visible.split("/")[1:-1]
            if visible.startswith(f"{fmt_name}/"):
                out.add(tuple(f.split("=", 1)[1] for f in folders))
    return out


@pytest.mark.parametrize("name", formats.names())
def test_a_convert_registers_all_three_tables_and_their_partitions(catalog, tmp_path, name):
    cat, db = catalog
    fmt = formats.get(name)
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_corpus(fmt, src)
    summary = servicelogs.convert(name, src, lake, workers=1, catalog=cat, database=db)
    assert summary.ok and summary.rows == len(fmt.examples), summary.text()
    assert "error" not in summary.catalog, summary.catalog
    assert summary.catalog["problems"] == []
    for table in (name, f"{name}_raw", f"{name}_rejects"):
        assert cat.table_exists(db, table), table
    expected = _ledger_partitions(lake, name)
    assert expected and {p.values for p in cat.list_partitions(db, name)} == expected
    assert all(p.location.startswith(str(lake.resolve())) for p in cat.list_partitions(db, name))
    raw_parts = cat.list_partitions(db, f"{name}_raw")
    if raw_partition_keys(fmt):  # the example key lies in the layout's folders: one raw partition
        assert [p.location for p in raw_parts] == [f"{src.resolve()}/{posixpath.dirname(example_key(fmt))}/"]
    else:
        assert raw_parts == []
    assert cat.mark(db, name) == summary.ledger_head == 1
    if isinstance(cat, GlueCatalog):  # the raw table reads the objects with the SerDe rendered for them
        sd = cat.glue.get_table(DatabaseName=db, Name=f"{name}_raw")["Table"]["StorageDescriptor"]
        rendered = hive.raw_table(fmt, f"{name}_raw", str(src.resolve()), header=_header(fmt))
        assert sd["SerdeInfo"]["SerializationLibrary"] == rendered.serde
        assert sd["SerdeInfo"]["Parameters"] == rendered.serde_parameters
        assert [c["Name"] for c in sd["Columns"]] == [c.name for c in rendered.columns]

    again = servicelogs.convert(name, src, lake, workers=1, catalog=cat, database=db)
    assert again.objects_new == 0 and again.catalog["partitions_added"] == 0


def _header(fmt):
    from servicelogs.spec import HeaderDelimited

    return fmt.grammar.default if isinstance(fmt.grammar, HeaderDelimited) else None


def test_objects_whose_header_differs_from_the_raw_tables_are_reported(catalog, tmp_path):
    from catalog_support import header_lines

    cat, db = catalog
    fmt = formats.get("vpc_flow")
    src, lake = tmp_path / "src", tmp_path / "lake"
    (key,) = write_corpus(fmt, src)
    other = key.replace("fe123456", "fe999999")
    custom = ("version", "srcaddr", "dstaddr", "start", "end", "action", "log-status", "account-id", "interface-id")
    lines = [*header_lines(fmt, custom), "2 10.0.0.1 10.0.0.2 1418530010 1418530070 ACCEPT OK 123456789010 eni-1"]
    (src / other).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    summary = servicelogs.convert("vpc_flow", src, lake, workers=1, catalog=cat, database=db)
    assert summary.rows == 2
    assert [p.split(":")[0] for p in summary.catalog["problems"]] == [str((src / other).resolve())]
    assert "header differs" in summary.catalog["problems"][0]


def _odd_heads(fmt):
    """(key, text, first header, lines before the first data line) of a plain object, two whose first lines
    look like a header but are none to the run's parser (or are a header with no data line after it), and one
    longer than the head `read_header` reads."""
    from catalog_support import header_lines

    g, key, line = fmt.grammar, example_key(fmt), fmt.examples[0].line.encode() + b"\n"
    comment = b"#Version: 1.0\n" if g.comment else b""
    header = header_lines(fmt)[-1].encode() + b"\n"
    if fmt.name == "vpc_flow":
        keys = [key.replace("fe123456", f"fe00000{i}") for i in range(1, 5)]
        return [
            (keys[0], header + line, g.default, 1),
            (keys[1], b"hello world\n" + line, None, 0),  # header-like, names no declared field: a data line
            (keys[2], header, g.default, 1),  # the header alone, no data line after it
            (keys[3], header + line * 2000, g.default, 1),
        ]
    keys = [key.replace("RT4KCN4SGK9", f"RT4KCN4SGK{i}") for i in range(1, 5)]
    return [
        (keys[0], comment + header + line, g.default, 2),
        (keys[1], comment + b"#Fields: foo bar\n" + header + line, g.default, 3),  # names no field: a comment
        (keys[2], b"#Fields: date time \xff\n" + line, None, 0),  # invalid UTF-8: a data line
        (keys[3], comment + header + line * 1000, g.default, 2),
    ]


@pytest.mark.parametrize("name", ["vpc_flow", "cloudfront"])
def test_read_header_tells_an_objects_header_as_the_runs_parser_does(tmp_path, name):
    """The sync reads the header of an object the run did not convert (an earlier run converted it and died
    before its sync): it must tell that header, and the lines before the first data line, as the parser did."""
    from servicelogs.catalogs import HEADER_BYTES, Names, read_header, sync
    from servicelogs.sources import LocalSource

    fmt = formats.get(name)
    src, lake = tmp_path / "src", tmp_path / "lake"
    odd = _odd_heads(fmt)
    for key, text, _, _ in odd:
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        (src / key).write_bytes(gzip.compress(text) if key.endswith(".gz") else text)
    summary = servicelogs.convert(name, src, lake, workers=1, catalog="none")
    assert summary.ok and summary.objects_converted == 4, summary.text()
    assert len(odd[3][1]) > 2 * HEADER_BYTES
    source = LocalSource(src)
    objects = sorted(source.list(), key=lambda o: o.key)
    assert [o.key for o in objects] == [(src / key).resolve().as_posix() for key, _, _, _ in odd]
    read = [read_header(fmt, source, obj) for obj in objects]
    assert read == [(names, skipped) for _, _, names, skipped in odd]
    assert {obj.key: names for obj, (names, _) in zip(objects, read, strict=True)} == summary.headers
    assert sum(skipped for _, skipped in read) == summary.header_lines  # no header or comment after a data line

    problems = {}
    for told in (summary.headers, None):  # the headers the run parsed, or every one read from the source
        cat = EmbeddedCatalog(lake / f"catalog-{'read' if told is None else 'told'}.duckdb")
        try:
            problems[told is None] = sync(
                cat, fmt, Names("main", name), LocalStore(lake), source, headers=told
            ).problems
        finally:
            cat.close()
    (differs,) = [obj.key for obj, (names, _) in zip(objects, read, strict=True) if names is None]
    expected = [
        f"{differs}: its header differs from the raw table's (that of {objects[0].key}); the raw table misreads it"
    ]
    assert problems == {False: expected, True: expected}


def test_the_summary_names_the_first_twenty_catalog_problems_and_counts_the_rest():
    from servicelogs.summary import RunSummary

    summary = RunSummary("r", "vpc_flow", "src", "lake")
    problems = [f"k{i}: its header differs" for i in range(23)]
    summary.catalog = {"kind": "duckdb", "database": "main", "problems": problems}
    lines = [line for line in summary.text().splitlines() if line.startswith("  catalog: k") or "more" in line]
    assert lines[:2] == ["  catalog: k0: its header differs", "  catalog: k1: its header differs"]
    assert len(lines) == 21 and lines[-1] == "  catalog: … and 3 more (see the JSON summary)"


def test_the_catalog_checks_the_headers_the_run_parsed_without_reading_the_objects_again(moto, aws_env, tmp_path):
    """On S3 a header read again would be a GET an object (10,000 small objects: 10,000 GETs one after another)."""
    from catalog_support import header_lines

    fmt = formats.get("vpc_flow")
    bucket = moto.new_bucket("src")
    (key,) = write_corpus(fmt, tmp_path / "src")
    other = key.replace("fe123456", "fe999999")
    custom = ("version", "srcaddr", "dstaddr", "start", "end", "action", "log-status", "account-id", "interface-id")
    lines = [*header_lines(fmt, custom), "2 10.0.0.1 10.0.0.2 1418530010 1418530070 ACCEPT OK 123456789010 eni-1"]
    moto.client.put_object(Bucket=bucket, Key=key, Body=(tmp_path / "src" / key).read_bytes())
    moto.client.put_object(Bucket=bucket, Key=other, Body=gzip.compress(("\n".join(lines) + "\n").encode()))
    moto.proxy.clear()
    lake = tmp_path / "lake"
    scripts = ScriptCatalog(LocalStore(lake))  # DuckDB's views over s3:// would need its httpfs extension
    summary = servicelogs.convert("vpc_flow", f"s3://{bucket}", lake, workers=1, endpoint_url=moto.url, catalog=scripts)
    assert summary.ok and summary.rows == 2, summary.text()
    gets = sorted(path for op, path in moto.proxy.log if op == "GetObject")
    assert gets == [f"/{bucket}/{key}", f"/{bucket}/{other}"]  # the run's reads, and no other
    assert summary.catalog.get("problems") == [
        f"s3://{bucket}/{other}: its header differs from the raw table's (that of s3://{bucket}/{key}); "
        "the raw table misreads it"
    ], summary.catalog
    assert "headers" not in summary.to_dict()


def test_an_s3_source_into_a_local_lake_registers_all_but_the_raw_table_without_httpfs(moto, aws_env, tmp_path):
    """DuckDB binds a view over s3:// only with its httpfs extension, which nothing here downloads: the raw
    table is left out and said so; the converted data's tables, partitions and mark are registered."""
    import duckdb

    if duckdb.sql("SELECT installed FROM duckdb_extensions() WHERE extension_name = 'httpfs'").fetchall() == [(True,)]:
        pytest.skip("this DuckDB has httpfs installed: it binds views over s3://")
    bucket = moto.new_bucket("src")
    for key, data in write_corpus(ALB, tmp_path / "src").items():
        moto.client.put_object(Bucket=bucket, Key=key, Body=data)
    lake = tmp_path / "lake"
    summary = servicelogs.convert("alb", f"s3://{bucket}", lake, workers=1, endpoint_url=moto.url)
    assert summary.ok and summary.rows == len(ALB.examples), summary.text()
    assert "error" not in summary.catalog and summary.catalog["tables_changed"] == ["main.alb", "main.alb_rejects"]
    (problem,) = summary.catalog["problems"]
    assert problem.startswith('catalog: create table "main"."alb_raw": DuckDB reads s3://') and "httpfs" in problem
    cat = EmbeddedCatalog(lake / "catalog.duckdb")
    try:
        assert not cat.table_exists("main", "alb_raw")
        assert {p.values for p in cat.list_partitions("main", "alb")} == _ledger_partitions(lake, "alb")
        assert cat.mark("main", "alb") == summary.ledger_head == 1
        assert cat.con.sql("SELECT count(*) FROM alb").fetchall() == [(len(ALB.examples),)]
    finally:
        cat.close()


# -- the embedded catalog with the real duckdb command line -------------------------------------------------


def duckdb_cli(db_file: Path, query: str, cwd: Path) -> list[dict]:
    out = subprocess.run(
        [str(DUCKDB_CLI), "-readonly", "-json", str(db_file), "-c", query],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout or "[]")


@pytest.mark.parametrize("name", formats.names())
def test_the_duckdb_cli_queries_the_three_views_from_any_directory(tmp_path, name):
    fmt = formats.get(name)
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_corpus(fmt, src)
    os.chdir(tmp_path)  # relative paths: the views must still hold absolute ones
    summary = servicelogs.convert(name, "src", "lake", workers=1)
    assert summary.catalog["kind"] == "duckdb" and "error" not in summary.catalog
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    db_file = lake / "catalog.duckdb"
    event = fmt.event_time
    rows = duckdb_cli(
        db_file,
        f'SELECT source_key, line_number, CAST("{event}" AS VARCHAR) AS t, {", ".join(fmt.partitions)} '
        f"FROM {name} ORDER BY source_key, line_number",
        elsewhere,
    )
    engine = read_table(lake, name, fmt.partitions)
    assert [(r["source_key"], r["line_number"]) for r in rows] == [(r["source_key"], r["line_number"]) for r in engine]
    assert [r[fmt.partitions[-1]] for r in rows] == [r[fmt.partitions[-1]] for r in engine]
    assert all(len(r["day"]) == 2 for r in rows), "day stays two digits"
    raw = duckdb_cli(db_file, f'SELECT CAST("{event}" AS VARCHAR) AS t FROM {name}_raw ORDER BY 1', elsewhere)
    if (event, "TIMESTAMP WITH TIME ZONE") in render_duckdb.raw_columns(fmt):
        assert sorted(r["t"] for r in raw) == sorted(r["t"] for r in rows), "the raw view parses the same times"
    else:
        assert len(raw) == len(rows)
    assert duckdb_cli(db_file, f"SELECT count(*) AS n FROM {name}_rejects", elsewhere) == [{"n": summary.rejects}]


def test_a_shell_holding_the_catalog_fails_no_convert_and_the_next_run_catches_up(tmp_path):
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_corpus(ALB, src)
    first = servicelogs.convert("alb", src, lake, workers=1, batch_objects=1)
    assert "error" not in first.catalog
    more = src / "more"
    shutil.copytree(src / "AWSLogs", more / "AWSLogs")
    shell = subprocess.Popen(
        [str(DUCKDB_CLI), str(lake / "catalog.duckdb")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        shell.stdin.write("SELECT count(*) FROM alb;\n")  # type: ignore[union-attr]
        shell.stdin.flush()  # type: ignore[union-attr]
        time.sleep(1.0)  # the shell has opened the file (and holds its lock) once it answered
        locked = servicelogs.convert("alb", src, lake, workers=1)
    finally:
        shell.stdin.close()  # type: ignore[union-attr]
        shell.wait(30)
    assert locked.ok and locked.objects_converted == 1 and locked.rows == len(ALB.examples)
    assert "lock" in locked.catalog["error"], locked.catalog
    assert "CATALOG not updated" in locked.text()
    caught_up = servicelogs.convert("alb", src, lake, workers=1)
    assert caught_up.objects_new == 0 and caught_up.catalog["commits_registered"] == 1
    cat = EmbeddedCatalog(lake / "catalog.duckdb")
    try:
        assert cat.mark("main", "alb") == caught_up.ledger_head == 2
        assert cat.con.sql("SELECT count(*) FROM alb").fetchall() == [(2 * len(ALB.examples),)]
        assert len(cat.list_partitions("main", "alb_raw")) == 1
    finally:
        cat.close()


@pytest.mark.parametrize("point", ["register in the catalog", "advance the catalog mark"])
def test_a_run_killed_between_its_commit_and_the_catalog_is_repaired_by_the_next(tmp_path, point):
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_corpus(ALB, src)
    log = tmp_path / "points.log"
    cli = [sys.executable, "-m", "servicelogs", "convert", "alb", str(src), str(lake), "--workers", "1"]
    subprocess.run(cli, env={**os.environ, "SERVICELOGS_CRASH_LOG": str(log)}, check=True, capture_output=True)
    points = [line.split("\t") for line in log.read_text().splitlines()]
    at = next(n for n, _, name in points if name == point)
    shutil.rmtree(lake)
    killed = subprocess.run(cli, env={**os.environ, "SERVICELOGS_CRASH_AT": at}, capture_output=True)
    assert killed.returncode == -9
    assert Ledger(LocalStore(lake), "_servicelogs/alb").load().head == 1, "the data commit came first"
    if point == "register in the catalog":
        assert not (lake / "catalog.duckdb").exists()
    repaired = servicelogs.convert("alb", src, lake, workers=1)
    assert repaired.objects_new == 0 and repaired.catalog["commits_registered"] == 1
    # Killed before the mark: its partitions were in, and adding them again adds nothing.
    fresh = len(_ledger_partitions(lake, "alb")) + 1  # the converted table's and the raw table's one
    assert repaired.catalog["partitions_added"] == (0 if point == "advance the catalog mark" else fresh)
    cat = EmbeddedCatalog(lake / "catalog.duckdb")
    try:
        assert {p.values for p in cat.list_partitions("main", "alb")} == _ledger_partitions(lake, "alb")
        assert cat.con.sql("SELECT count(*) FROM alb").fetchall() == [(len(ALB.examples),)]
    finally:
        cat.close()


# -- Glue paths moto skips: a stub enforces them ------------------------------------------------------------


def test_embedded_adds_thousands_of_partitions_in_statements_of_1000(tmp_path):
    cat, db = EmbeddedCatalog(tmp_path / "catalog.duckdb"), "main"
    try:
        cat.create_table(db, converted())
        parts = [Partition((f"r{i % 7}", "2024", "01", f"{i:04d}"), f"/lake/t/p{i}/") for i in range(2500)]
        assert cat.add_partitions(db, "t", parts[:1200]) == 1200
        assert cat.add_partitions(db, "t", parts) == 1300
        assert cat.list_partitions(db, "t") == sorted(parts)
    finally:
        cat.close()


def test_glue_batches_of_100_paginated_reads_and_no_look_back_cap(moto_glue):
    strict = StrictGlue(moto_glue, page=7)
    cat, db = GlueCatalog(strict), fresh_database()
    cat.create_database(db)
    cat.create_table(db, converted())
    parts = [Partition((f"region-{i:03d}", "2024", "01", "01"), f"/lake/t/p{i}/") for i in range(250)]
    assert cat.add_partitions(db, "t", parts) == len(parts)
    assert strict.batch_sizes[:3] == [100, 100, len(parts) - 200]
    assert len(cat.list_partitions(db, "t")) == len(parts)
    assert strict.calls.count("get_partitions") > len(parts) // 7
    assert cat.add_partitions(db, "t", parts) == 0


def test_glue_update_passes_the_version_so_a_concurrent_update_is_not_lost(moto_glue):
    strict = StrictGlue(moto_glue)
    cat, db = GlueCatalog(strict), fresh_database()
    cat.create_database(db)
    cat.create_table(db, converted())
    cat.set_mark(db, "t", 1)
    real_get = strict.get_table

    def stale_get(**kw):  # another writer updates the table right after we read it
        answer = real_get(**kw)
        strict.versions[(kw["DatabaseName"], kw["Name"])] += 1
        return answer

    strict.get_table = stale_get  # type: ignore[method-assign]
    with pytest.raises(CatalogConflictError):
        cat.set_mark(db, "t", 2)
    strict.get_table = real_get  # type: ignore[method-assign]
    assert cat.mark(db, "t") == 1
    cat.set_mark(db, "t", 2)
    assert cat.mark(db, "t") == 2


def test_glue_schema_upgrade_appends_columns_and_updates_partitions(moto_glue):
    strict = StrictGlue(moto_glue)
    cat, db = GlueCatalog(strict), fresh_database()
    grammar = ALB.grammar
    older = dataclasses.replace(ALB, grammar=dataclasses.replace(grammar, tokens=grammar.tokens[:-3]))
    cat.create_database(db)
    cat.create_table(db, Table(CONVERTED, older, "t", "/lake/t"))
    cat.add_partitions(db, "t", [Partition(("r", "2024", "01", "01"), "/lake/t/r/")])
    before = [
        c["Name"] for c in moto_glue.get_table(DatabaseName=db, Name="t")["Table"]["StorageDescriptor"]["Columns"]
    ]
    assert cat.create_table(db, Table(CONVERTED, ALB, "t", "/lake/t")) is True
    table = moto_glue.get_table(DatabaseName=db, Name="t")["Table"]
    after = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert [n for n, _ in after[: len(before)]] == before, "existing columns keep their place"
    assert after[len(before) :] == [
        ("transformed_host", "string"),
        ("transformed_uri", "string"),
        ("request_transform_status", "string"),
    ]
    part = moto_glue.get_partitions(DatabaseName=db, TableName="t")["Partitions"][0]
    assert [(c["Name"], c["Type"]) for c in part["StorageDescriptor"]["Columns"]] == after
    assert part["StorageDescriptor"]["Location"] == "/lake/t/r/"
    assert "update_table" in strict.calls


def test_glue_rejects_table_and_projection(moto_glue, tmp_path):
    cat, db = GlueCatalog(moto_glue), fresh_database()
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_corpus(ALB, src)
    summary = servicelogs.convert("alb", src, lake, workers=1, catalog=cat, database=db, projection=True)
    table = moto_glue.get_table(DatabaseName=db, Name="alb")["Table"]
    params = table["Parameters"]
    assert params["projection.enabled"] == "true" and params["projection.day.digits"] == "2"
    assert (
        params["storage.location.template"]
        == f"{lake.resolve()}/alb/region=${{region}}/year=${{year}}/month=${{month}}/day=${{day}}/"
    )
    assert moto_glue.get_partitions(DatabaseName=db, TableName="alb")["Partitions"] == []
    rejects = moto_glue.get_table(DatabaseName=db, Name="alb_rejects")["Table"]
    assert [c["Name"] for c in rejects["StorageDescriptor"]["Columns"]] == [
        "source_key",
        "line_number",
        "raw_line",
        "reason",
        "run_id",
    ]
    assert summary.catalog["mark"] == 1


def test_embedded_schema_upgrade_keeps_old_files_readable(tmp_path):
    """Files written before a declaration gained fields read their new columns as NULL (union_by_name)."""
    src, lake = tmp_path / "src", tmp_path / "lake"
    write_corpus(ALB, src)
    servicelogs.convert("alb", src, lake, workers=1, catalog="none")
    grammar = ALB.grammar
    older = dataclasses.replace(ALB, grammar=dataclasses.replace(grammar, tokens=grammar.tokens[:-3]))
    import pyarrow.parquet as pq

    for path in (lake / "alb").rglob("*.parquet"):  # as an older declaration wrote them
        table = pq.read_table(path, partitioning=None)
        pq.write_table(table.select([c.name for c in older.columns]), path)
    cat = EmbeddedCatalog(lake / "catalog.duckdb")
    try:
        cat.create_database("main")
        cat.create_table("main", Table(CONVERTED, older, "alb", str(lake / "alb")))
        assert "transformed_uri" not in [d[0] for d in cat.con.sql("SELECT * FROM alb").description]
        assert cat.create_table("main", Table(CONVERTED, ALB, "alb", str(lake / "alb"))) is True
        rows = cat.con.sql("SELECT line_number, transformed_uri, day FROM alb ORDER BY line_number").fetchall()
        engine = read_table(lake, "alb", ALB.partitions)
        assert rows == [(r["line_number"], None, r["day"]) for r in engine] and len(rows) == len(ALB.examples)
    finally:
        cat.close()


def test_embedded_an_unchanged_view_is_not_created_again_and_sees_new_files(tmp_path):
    """Binding a view over `union_by_name` reads every file's footer (1.3 CPU-s for 3,000 files): a run whose
    tables are as declared leaves the views alone, and the glob finds its new files by itself."""
    src, lake = tmp_path / "src", tmp_path / "lake"
    key = next(iter(write_corpus(ALB, src)))
    (src / key).write_bytes(gzip.compress(object_text(ALB).encode() + b"not a log line\n"))  # files in all three
    cat = EmbeddedCatalog(lake / "catalog.duckdb")
    try:
        first = servicelogs.convert("alb", src, lake, workers=1, catalog=cat)
        assert first.catalog["tables_changed"] == ["main.alb", "main.alb_rejects", "main.alb_raw"], first.catalog
        later = src / key.replace(".log.gz", "_later.log.gz")
        shutil.copy(src / key, later)
        statements: list[str] = []
        connection = cat.con

        class Recording:  # the real connection, its statements noted
            def __getattr__(self, name):
                return getattr(connection, name)

            def execute(self, query, *args):
                statements.append(query)
                return connection.execute(query, *args)

        cat._con = Recording()
        second = servicelogs.convert("alb", src, lake, workers=1, catalog=cat)
        assert second.objects_new == 1 and second.catalog["tables_changed"] == [], second.catalog
        assert statements and not [q for q in statements if "VIEW" in q], statements
        lines = sorted(connection.sql("SELECT source_key, line_number FROM alb").fetchall())
        objects = (f"{src.resolve()}/{key}", str(later.resolve()))
        assert lines == sorted((k, n) for k in objects for n in range(1, len(ALB.examples) + 1))
        rejects = connection.sql("SELECT source_key, line_number FROM alb_rejects").fetchall()
        assert sorted(rejects) == [(k, len(ALB.examples) + 1) for k in objects]
    finally:
        cat._con = connection
        cat.close()
