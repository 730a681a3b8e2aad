"""`servicelogs ddl`: Athena CREATE statements for the raw, converted and rejects tables of every format."""

from __future__ import annotations

import re

import pytest

from servicelogs import formats
from servicelogs.cli import main
from servicelogs.render import hive


@pytest.mark.parametrize("name", formats.names())
def test_ddl_prints_the_three_tables_of_every_format(capsys, name):
    assert main(["ddl", name, "--location", "s3://lake-bucket/lake", "--source", "s3://logs/prefix"]) == 0
    out = capsys.readouterr().out
    heads = re.findall(r"CREATE EXTERNAL TABLE IF NOT EXISTS `(\w+)`", out)
    assert heads == [f"{name}_raw", name, f"{name}_rejects"]
    assert f"LOCATION 's3://lake-bucket/lake/{name}/'" in out
    assert f"LOCATION 's3://lake-bucket/lake/{name}_rejects/'" in out
    assert "LOCATION 's3://logs/prefix/'" in out
    fmt = formats.get(name)
    for f in fmt.columns:
        assert f"`{f.name}` {hive.hive_type(f.type)}," in out or f"`{f.name}` {hive.hive_type(f.type)}\n" in out
    assert "projection.enabled" not in out


def test_ddl_with_projection_declares_athenas_keys(capsys):
    assert main(["ddl", "alb", "--projection", "--location", "s3://b/lake", "--database", "logs"]) == 0
    out = capsys.readouterr().out
    converted = out.split("\n\n")[1]
    assert converted.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `logs`.`alb` (")
    for line in (
        "'projection.enabled' = 'true'",
        "'projection.region.type' = 'injected'",
        "'projection.year.range' = '2000,2100'",
        "'projection.month.digits' = '2'",
        "'storage.location.template' = 's3://b/lake/alb/region=${region}/year=${year}/month=${month}/day=${day}/'",
    ):
        assert line in converted
    assert "PARTITIONED BY (`region` string, `year` string, `month` string, `day` string)" in converted
    assert "projection" not in out.split("\n\n")[2], "the rejects table has no partitions"


def test_ddl_of_an_unknown_format_is_a_one_line_usage_error(capsys):
    assert main(["ddl", "alx"]) == 2
    assert "did you mean 'alb'" in capsys.readouterr().err
