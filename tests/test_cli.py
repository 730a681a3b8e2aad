"""The command line, run as a user runs it."""

from __future__ import annotations

import gzip
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


def _one_alb_object(root: Path, day: str = "2024/05/28") -> Path:
    """One ALB object, in the AWS key layout, delivered on `day`."""
    from servicelogs import formats

    fmt = formats.get("alb")
    key = root / fmt.key_layouts[0].example.replace("2024/05/28", day).replace("20240528", day.replace("/", ""))
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(gzip.compress(("\n".join(e.line for e in fmt.examples) + "\n").encode()))
    return key


def test_mistakes_are_one_line_and_exit_2(tmp_path):
    source = tmp_path / "src"
    _one_alb_object(source)
    lake = str(tmp_path / "lake")
    cases = {
        ("convert", "alb", str(source), lake, "--since", "2024-03-02", "--until", "2024-03-01"): (
            "servicelogs: error: --since 2024-03-02 is after --until 2024-03-01: the window holds no day"
        ),
        ("convert", "alb", str(source), lake, "--workers", "0"): (
            "servicelogs: error: argument --workers: 0 is not a positive number (1 or more) "
            "(see servicelogs convert --help)"
        ),
        ("convert", "alb", str(source), lake, "--workers", "-2"): (
            "servicelogs: error: argument --workers: -2 is not a positive number (1 or more) "
            "(see servicelogs convert --help)"
        ),
        ("convert", "ALB", str(source), lake): (
            "servicelogs: error: unknown log format 'ALB' (known: alb, cloudfront, cloudtrail, elb, s3_access, "
            "vpc_flow); did you mean 'alb'?"
        ),
        ("formats", "Vpc_Flow"): (
            "servicelogs: error: unknown log format 'Vpc_Flow' (known: alb, cloudfront, cloudtrail, elb, s3_access, "
            "vpc_flow); did you mean 'vpc_flow'?"
        ),
        ("status", lake, "--table", "alb"): (
            f"servicelogs: error: no table 'alb' under {lake} (it holds no servicelogs table)"
        ),
        ("convert", "alb", str(source)): (
            "servicelogs: error: the following arguments are required: target (see servicelogs convert --help)"
        ),
    }
    for args, message in cases.items():
        out = run(*args)
        assert (out.returncode, out.stderr, out.stdout) == (2, message + "\n", ""), args
    assert run("convert", "alb", str(source), lake, "--json").returncode == 0
    out = run("status", lake, "--table", "elb")
    assert (out.returncode, out.stderr) == (2, f"servicelogs: error: no table 'elb' under {lake} (its tables: alb)\n")


def test_a_source_without_objects_of_the_format_says_so_and_exits_4(tmp_path):
    from servicelogs import formats

    example = formats.get("alb").key_layouts[0].example
    (tmp_path / "empty").mkdir()
    out = run("convert", "alb", str(tmp_path / "empty"), str(tmp_path / "lake"))
    assert out.returncode == 4
    assert out.stderr == (
        f"servicelogs: nothing to convert: source {str(tmp_path / 'empty')!r} lists no object; "
        f"a key of this format looks like {example}\n"
    )
    elsewhere = tmp_path / "cloudfront-logs"
    _one_alb_object(elsewhere)
    (elsewhere / "notes.txt").write_text("not a log\n")
    out = run("convert", "cloudfront", str(elsewhere), str(tmp_path / "lake"), "--json")
    assert out.returncode == 4 and json.loads(out.stdout)["objects_skipped"] == 2
    assert out.stderr == (
        f"servicelogs: nothing to convert: none of the 2 objects under {str(elsewhere)!r} matches a key layout of "
        "CloudFront standard logs (web distributions) (each is skipped with its reason in the summary); a key of "
        f"this format looks like {formats.get('cloudfront').key_layouts[0].example}\n"
    )
    # Objects of the format, none new: an incremental run with nothing to do is a success.
    assert run("convert", "alb", str(elsewhere), str(tmp_path / "lake"), "--json").returncode == 0
    again = run("convert", "alb", str(elsewhere), str(tmp_path / "lake"), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["objects_done_before"] == 1
    window = run("convert", "alb", str(elsewhere), str(tmp_path / "lake2"), "--since", "2025-01-01", "--json")
    # A listing window (--since) that holds no day of the source's lists none of its day folders (only notes.txt,
    # outside them): a success, not "nothing found".
    assert window.returncode == 0
    assert {k: json.loads(window.stdout)[k] for k in ("listing", "listing_from", "objects_listed", "objects_new")} == {
        "listing": "window",
        "listing_from": "2025-01-01",
        "objects_listed": 1,
        "objects_new": 0,
    }


def test_help_names_s3_and_the_exit_codes():
    out = run("convert", "--help")
    text = " ".join(out.stdout.split())
    assert out.returncode == 0
    assert "SOURCE may be" not in text  # worded as the argument's help:
    assert "where the logs are: a folder or s3://bucket/prefix" in text
    assert "where the tables go: a folder or s3://bucket/prefix" in text
    assert "4 the source holds no object of the format" in text


def test_status_shows_each_runs_source_window_and_outcome(tmp_path):
    import servicelogs
    from servicelogs.run import INTERRUPTED

    source, lake = tmp_path / "src", tmp_path / "lake"
    _one_alb_object(source, "2024/05/28")
    _one_alb_object(source, "2024/06/02")
    assert (
        run("convert", "alb", str(source), str(lake), "--since", "2024-05-01", "--until", "2024-05-31").returncode == 0
    )

    class StopAfterListing:
        def planned(self, objects: int, source_bytes: int) -> None:
            raise KeyboardInterrupt  # as Ctrl-C would, once the listing is known

    try:
        servicelogs.convert("alb", source, lake, progress=StopAfterListing())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the interrupt did not reach the caller")
    killed = "20000101T000000Z-dead00"  # a run killed before its summary: its lock file, held by no process
    lock = lake / "_servicelogs" / "alb" / "runs" / f"{killed}.lock"
    lock.write_text("")

    out = run("status", str(lake), "--json")
    assert out.returncode == 0, out.stderr
    [table] = json.loads(out.stdout)
    runs = table["last_runs"]
    assert [r["outcome"] for r in runs] == [INTERRUPTED, "ok", "killed before it wrote its summary"]
    assert [(r["source"], r["since"], r["until"]) for r in runs] == [
        (str(source), "", ""),
        (str(source), "2024-05-01", "2024-05-31"),
        (None, None, None),
    ]
    examples = len(servicelogs.formats.get("alb").examples)  # one object holds every example line, each a row
    # --since/--until are the listing's window: the object of 2024/06/02 is not listed
    assert (runs[1]["objects_listed"], runs[1]["objects_converted"], runs[1]["rows"]) == (1, 1, examples)
    assert not lock.exists()  # found dead, so removed (the store's is_dead); seen once more below
    lock.write_text("")
    text = run("status", str(lake)).stdout
    assert f"      alb from {source}, 2024-05-01 to 2024-05-31\n" in text
    assert f"{runs[0]['run_id']}  {INTERRUPTED}\n      alb from {source}, all dates\n" in text
    assert f"    {killed}  killed before it wrote its summary" in text


def test_formats_alb_prints_columns_partitions_and_key_layouts():
    from servicelogs import formats

    fmt = formats.get("alb")
    out = run("formats", "alb")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0] == "alb: Application Load Balancer access logs"
    by_name = {line.split()[0]: line for line in lines if line.startswith("  ") and len(line.split()) > 3}
    assert by_name["time"].split()[:4] == ["time", "timestamp", "since", "18"]
    assert by_name["conn_trace_id"].split()[:4] == ["conn_trace_id", "string", "since", "30"]
    assert by_name["error_reason"].endswith("[AWS's Athena DDL: named `lambda_error_reason`]")
    assert by_name["account_id"].split()[:4] == ["account_id", "string", "object", "key"]
    assert "partition columns: region (string), year (string), month (string), day (string)" in lines
    for layout in fmt.key_layouts:
        assert f"    e.g. {layout.example}" in lines

    ref = json.loads(run("formats", "alb", "--json").stdout)
    assert [c["name"] for c in ref["columns"]] == [f.name for f in fmt.columns]
    assert ref["partitions"][0] == {"name": "region", "type": "string", "doc": fmt.partition_fields[0].doc}
    assert ref["key_layouts"][0]["example"] == fmt.key_layouts[0].example
    column = {c["name"]: c for c in ref["columns"]}
    assert column["request_transform_status"]["since"] == "33"
    assert column["error_reason"]["athena_name"] == "lambda_error_reason"
    listing = json.loads(run("formats", "--json").stdout)
    assert [f["name"] for f in listing] == list(formats.names())


def test_athena_ddl_differences_are_declared():
    """The columns named or typed otherwise than in the Athena DDL AWS publishes for each log type."""
    from servicelogs import formats

    differences = {
        (fmt.name, f.name): (f.athena_name, f.athena_type)
        for fmt in formats.all_formats()
        for f in fmt.columns
        if f.athena_name or f.athena_type
    }
    assert differences == {
        ("alb", "error_reason"): ("lambda_error_reason", None),
        ("cloudfront", "forwarded_for"): ("xforwarded_for", None),
        ("cloudfront", "time"): (None, "string, the time of day alone (the day is its own column, `date` DATE)"),
        ("cloudtrail", "json_requestParameters"): ("requestparameters", None),
        ("cloudtrail", "json_responseElements"): ("responseelements", None),
        ("cloudtrail", "json_additionalEventData"): ("additionaleventdata", None),
        ("cloudtrail", "json_serviceEventDetails"): ("serviceeventdetails", None),
        ("cloudtrail", "json_edgeDeviceDetails"): ("edgedevicedetails", None),
        ("vpc_flow", "record_region"): ("region", None),
        ("vpc_flow", "start"): (None, "bigint (epoch seconds)"),
        ("vpc_flow", "end"): (None, "bigint (epoch seconds)"),
    }


def test_docs_formats_md_is_generated_and_current():
    from servicelogs.render.docs import markdown

    checked_in = Path(__file__).resolve().parents[1] / "docs" / "formats.md"
    assert checked_in.read_text() == markdown(), "run: python -m servicelogs.render.docs > docs/formats.md"
    out = subprocess.run([sys.executable, "-m", "servicelogs.render.docs"], capture_output=True, text=True)
    assert out.stdout == checked_in.read_text()
    text = checked_in.read_text()
    assert (
        "| `error_reason` | `string` | 25 | Error reason code. **AWS's Athena DDL: named `lambda_error_reason`.** |"
        in text
    )
    assert "**AWS's Athena DDL: named `xforwarded_for`.**" in text
    assert "**AWS's Athena DDL: typed bigint (epoch seconds).**" in text


def test_the_demo_folder_is_ignored_by_git():
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(["git", "check-ignore", "servicelogs-demo/lake/alb/x.parquet"], cwd=repo, capture_output=True)
    assert out.returncode == 0, out.stderr  # `servicelogs demo` writes ./servicelogs-demo: never committed by accident
