"""Many sources from one TOML file: validated with errors naming the file line and the key, run together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalog_support import write_corpus

from servicelogs import formats
from servicelogs.catalogs.embedded import EmbeddedCatalog
from servicelogs.cli import main
from servicelogs.config import ConfigError, load


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "servicelogs.toml"
    path.write_text(text)
    return path


def test_two_sources_convert_into_one_lake_and_one_catalog(tmp_path, capsys):
    for name in ("alb", "vpc_flow"):
        write_corpus(formats.get(name), tmp_path / name)
    lake = tmp_path / "lake"
    path = _write(
        tmp_path,
        f"""
[defaults]
target = "{lake}"
workers = 1

[[source]]
name = "load balancers"
format = "alb"
source = "{tmp_path / "alb"}"
table = "lb"
raw_table = "lb_lines"

[[source]]
format = "vpc_flow"
source = "{tmp_path / "vpc_flow"}"
database = "network"
""",
    )
    assert main(["run", "--config", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["rows"], s["catalog"]["database"]) for s in out] == [
        ("load balancers", len(formats.get("alb").examples), "main"),
        ("vpc_flow", len(formats.get("vpc_flow").examples), "network"),
    ]
    cat = EmbeddedCatalog(lake / "catalog.duckdb")
    try:
        assert cat.table_exists("main", "lb") and cat.table_exists("main", "lb_lines")
        assert cat.table_exists("main", "lb_rejects") and cat.table_exists("network", "vpc_flow_raw")
        assert cat.con.sql("SELECT count(*) FROM network.vpc_flow").fetchall() == [(1,)]
    finally:
        cat.close()


@pytest.mark.parametrize(
    ("text", "line", "key", "problem"),
    [
        (
            '[[source]]\nformat = "alb"\nsource = "s"\ntarget = "t"\ncatalog = "hive"\n',
            5,
            "source[0].catalog",
            "not one of",
        ),
        ('[[source]]\nformat = "alx"\nsource = "s"\ntarget = "t"\n', 2, "source[0].format", "did you mean 'alb'"),
        ('[[source]]\nformat = "alb"\nsource = "s"\n', 1, "source[0].target", "missing"),
        (
            '[[source]]\nformat = "alb"\nsource = "s"\ntarget = "t"\n\n[[source]]\nformat = "elb"\nsource = "s"\n'
            'target = "t"\ntabel = "x"\n',
            10,
            "source[1].tabel",
            "did you mean 'table'",
        ),
        (
            '[defaults]\nworkers = 0\n[[source]]\nformat = "alb"\nsource = "s"\ntarget = "t"\n',
            2,
            "source[0].workers",
            "positive",
        ),
        (
            '[[source]]\nformat = "alb"\nsource = "s"\ntarget = "t"\ntable = "a-b"\n',
            5,
            "source[0].table",
            "not a table name",
        ),
        ('[[source]]\nformat = "alb"\nsource = \n', 3, "syntax", "Invalid"),
        ('[sources]\nformat = "alb"\n', 1, "sources", "unknown table"),
    ],
)
def test_a_mistake_names_the_file_line_and_key(tmp_path, text, line, key, problem):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}:{line}: {key}: "), str(e.value)
    assert problem in str(e.value)


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path, capsys):
    path = _write(tmp_path, '[[source]]\nformat = "alb"\n')
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:1: source[0].source: missing" in err[0]
