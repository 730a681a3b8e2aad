"""The command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from servicelogs.cli import main


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servicelogs", *args], capture_output=True, text=True, cwd=cwd)


def test_demo_converts_and_queries(tmp_path):
    out = run("demo", "--dir", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stderr
    assert "0 failed" in out.stdout and "0 rejects" in out.stdout
    assert "elb_status_code" in out.stdout and "ap-southeast-2" in out.stdout
    assert list((tmp_path / "demo" / "lake" / "alb").glob("region=*/year=2024/month=03/day=0[123]/part-*.parquet"))


def test_convert_json_summary(tmp_path, capsys):
    from servicelogs import formats

    example = formats.get("alb").examples[0]
    key = tmp_path / "src" / formats.get("alb").key_layouts[1].example
    key.parent.mkdir(parents=True)
    key.write_text(example.line + "\n")
    assert main(["convert", "alb", str(tmp_path / "src"), str(tmp_path / "lake"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["objects_converted"], summary["lines"], summary["rows"], summary["rejects"]) == (1, 1, 1, 0)
    assert summary["generations"] == {"29": 1} and summary["ok"] is True
    runs = list((tmp_path / "lake" / "_servicelogs" / "alb" / "runs").glob("*.json"))
    assert [json.loads(p.read_text())["run_id"] for p in runs] == [summary["run_id"]]


def test_usage_errors_are_one_line_not_a_traceback(tmp_path):
    out = run("convert", "abl", str(tmp_path), str(tmp_path / "out"))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"servicelogs: error: unknown log format 'abl' (known: {', '.join(__import__('servicelogs').formats.names())})"
        "; did you mean 'alb'?"
    )
    out = run("convert", "alb", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert out.returncode == 2 and "is not a folder" in out.stderr and "Traceback" not in out.stderr


def test_formats_lists_every_format():
    out = run("formats")
    assert out.returncode == 0 and out.stdout.splitlines()[0].startswith("alb")
