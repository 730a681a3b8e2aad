"""The embedded catalog of an s3:// lake: the DuckDB script `<lake>/catalog.sql` (the views cannot be created
in a DuckDB file without httpfs, which may not be downloaded). Tested by its SQL: for every declared format,
the statements a conversion to S3 (moto server over HTTP) writes equal the local catalog's with the lake's
paths swapped, and run by the real duckdb command line over a copy of the lake they return the engine's rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")

from catalog_support import write_corpus  # noqa: E402
from conftest import read_table  # noqa: E402
from glue_support import glue_server  # noqa: E402
from s3_support import download  # noqa: E402

import servicelogs  # noqa: E402
from servicelogs import formats, status  # noqa: E402
from servicelogs.catalogs.embedded import META, EmbeddedCatalog  # noqa: E402
from servicelogs.catalogs.script import PREAMBLE  # noqa: E402
from servicelogs.render import duckdb as render_duckdb  # noqa: E402
from servicelogs.s3 import S3Store  # noqa: E402

DUCKDB_CLI = Path(sys.executable).with_name("duckdb")


@pytest.fixture(scope="module")
def s3():
    """An S3 client on a moto server (the AWS settings in os.environ while the module's tests run)."""
    for glue in glue_server():
        endpoint = glue.meta.endpoint_url
        yield endpoint, boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def local_statements(lake: Path) -> str:
    """The statements the local embedded catalog ran: one view per table, in name order."""
    cat = EmbeddedCatalog(lake / "catalog.duckdb")
    try:
        rows = cat.con.execute(f"SELECT database, name, body FROM {META}.tables ORDER BY database, name").fetchall()
    finally:
        cat.close()
    return "".join(f"{render_duckdb.create_view(db, name, body)};\n" for db, name, body in rows)


def duckdb_cli(db_file: Path, query: str) -> list[dict]:
    done = subprocess.run(
        [str(DUCKDB_CLI), "-readonly", "-json", str(db_file), "-c", query],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout or "[]")


@pytest.mark.parametrize("name", formats.names())
def test_an_s3_lake_gets_its_catalog_as_a_duckdb_script_of_the_local_catalogs_views(s3, tmp_path, name):
    endpoint, client = s3
    fmt = formats.get(name)
    bucket = f"lake-{name.replace('_', '-')}"
    client.create_bucket(Bucket=bucket)
    src, local = tmp_path / "src", tmp_path / "local"
    write_corpus(fmt, src)
    url = f"s3://{bucket}/lake"
    on_s3 = servicelogs.convert(name, src, url, workers=1, catalog="duckdb", endpoint_url=endpoint)
    assert on_s3.ok and "error" not in on_s3.catalog, on_s3.catalog
    assert on_s3.catalog["tables_changed"] == [f"main.{name}", f"main.{name}_rejects", f"main.{name}_raw"]
    servicelogs.convert(name, src, local, workers=1)
    assert status.tables(S3Store.from_url(url, endpoint)) == [name], "the catalog's state is no table"

    script = client.get_object(Bucket=bucket, Key="lake/catalog.sql")["Body"].read().decode()
    preamble = PREAMBLE.format(url=url)
    assert script.startswith(preamble + "\n") and "INSTALL" not in script.replace("`INSTALL httpfs;`", "")
    statements = script[len(preamble) + 1 :]
    assert statements == local_statements(local).replace(os.path.abspath(local), url)

    copy = tmp_path / "copy"
    download(client, bucket, "lake/", copy)
    (tmp_path / "local.sql").write_text(statements.replace(url, str(copy)))
    db_file = tmp_path / "from_script.duckdb"
    subprocess.run([str(DUCKDB_CLI), str(db_file), "-c", f".read {tmp_path / 'local.sql'}"], check=True, timeout=60)
    event = fmt.event_time
    rows = duckdb_cli(
        db_file,
        f'SELECT source_key, line_number, CAST("{event}" AS VARCHAR) AS t, {", ".join(fmt.partitions)} '
        f"FROM {name} ORDER BY source_key, line_number",
    )
    engine = read_table(copy, name, fmt.partitions)
    assert len(rows) == len(fmt.examples) == len(engine)
    assert [(r["source_key"], r["line_number"]) for r in rows] == [(r["source_key"], r["line_number"]) for r in engine]
    assert [[r[p] for p in fmt.partitions] for r in rows] == [[r[p] for p in fmt.partitions] for r in engine]
    times = duckdb_cli(db_file, f'SELECT CAST("{event}" AS VARCHAR) AS t FROM {name} ORDER BY source_key, line_number')
    assert [r["t"] for r in times] == [r["t"] for r in rows]
    assert duckdb_cli(db_file, f"SELECT count(*) AS n FROM {name}_rejects") == [{"n": on_s3.rejects}]
    assert duckdb_cli(db_file, f"SELECT count(*) AS n FROM {name}_raw") == [{"n": len(fmt.examples)}]


def test_one_script_holds_every_table_of_the_lake_and_a_lost_rewrite_is_repaired_by_the_next_run(s3, tmp_path):
    endpoint, client = s3
    client.create_bucket(Bucket="shared-lake")
    url = "s3://shared-lake/lake"
    for name in ("alb", "cloudtrail"):
        write_corpus(formats.get(name), tmp_path / name)
        servicelogs.convert(name, tmp_path / name, url, workers=1, catalog="duckdb", endpoint_url=endpoint)

    def views() -> list[str]:
        script = client.get_object(Bucket="shared-lake", Key="lake/catalog.sql")["Body"].read().decode()
        return [line.split(" AS ", 1)[0] for line in script.splitlines() if line.startswith("CREATE OR REPLACE VIEW")]

    both = [f'CREATE OR REPLACE VIEW "main"."{t}"' for t in ("alb", "alb_raw", "alb_rejects", "cloudtrail")]
    both += [f'CREATE OR REPLACE VIEW "main"."{t}"' for t in ("cloudtrail_raw", "cloudtrail_rejects")]
    assert views() == both
    # A concurrent run's rewrite from a listing that missed alb's views: alb's next run puts them back.
    client.put_object(Bucket="shared-lake", Key="lake/catalog.sql", Body=PREAMBLE.format(url=url).encode())
    again = servicelogs.convert("alb", tmp_path / "alb", url, workers=1, catalog="duckdb", endpoint_url=endpoint)
    assert again.objects_new == 0 and "error" not in again.catalog and again.catalog["tables_changed"] == []
    assert views() == both
