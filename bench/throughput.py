"""Throughput of `servicelogs convert` against the plain DuckDB pipeline a user would write, on one corpus.

    python bench/throughput.py alb --mb 1000 [--workers 2] [--object-mb 8] [--templates-only] [--only chdb] [--rounds 3]

Generates (once, cached under bench/out/) a corpus of real sample lines in the AWS key layout, gzipped, over
several regions and days, with the id-like, address-like and free-text fields drawn anew on every line
(VARIATIONS below; `--templates-only`: the template lines as they are, times moved); then runs, each in its own
process, on the same files:
  servicelogs  `servicelogs convert FORMAT SRC DST`
  duckdb       read_csv of the lines (the format's delimiter and quote) + typed casts + COPY … PARTITION_BY
  chdb         ClickHouse's CSV reader (chDB) + to*OrNull casts + INSERT INTO FUNCTION file(…) PARTITION BY
and prints MB/s of uncompressed log text (wall), MB per CPU-second, and peak RSS (largest process, and the
whole process tree sampled every 50 ms). Timings are for reading, not for asserting: no test depends on them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures"
sys.path.insert(0, str(HERE))

from chdb_baseline import chdb_sql  # noqa: E402
from duckdb_baseline import baseline_sql  # noqa: E402

from servicelogs.synth import Address, Digits, Id, Query, Time, Url, UserAgent, Variation  # noqa: E402

# Template groups per format: each generated object draws its lines from one group, as a real object holds one
# field layout. Files are the repository's own fixtures (real lines, provenance in their README): (file, the
# lines to draw from, how many leading lines are the object's header).
TEMPLATES: dict[str, list[tuple[str, slice, int]]] = {
    "alb": [
        ("alb/coralogix-aws-shipper-elb.log.gz", slice(None), 0),  # a real 5-minute file, 29 fields
        ("alb/crowdsecurity-hub-aws-alb-logs.log", slice(7, None), 0),  # 33 fields
        ("alb/awsdocs-elb-application-load-balancers-user-guide-examples-history.log", slice(22, None), 0),  # 29
    ],
    "elb": [("elb/awsdocs-elb-classic-load-balancers-user-guide-examples.log", slice(None), 0)],
    "s3_access": [("s3_access/aws-docs-s3-userguide-LogFormat-current.log", slice(None), 0)],
    "cloudfront": [("cloudfront/coralogix-aws-shipper-cloudfront.gz", slice(None), 2)],  # a real 2024 file
    "cloudtrail": [("cloudtrail/coralogix-aws-shipper-cloudtrail.log.gz", slice(None), 0)],  # a real delivery
    "vpc_flow": [
        ("vpc_flow/coralogix-aws-shipper-vpcflow.log.gz", slice(None), 1),  # default v2 format
        # the doc example's last line has a stray double space (a reject, tested elsewhere): not a template
        ("vpc_flow/awsdocs-amazon-vpc-user-guide-flow-logs-records-examples-custom-v3-tcp-flags.log", slice(0, 7), 1),
    ],
}


# Which fields get a fresh value on every line, and of which kind (servicelogs.synth): the id-like and address-like
# fields of each format, its URLs, user agents, byte counts and times, so columns have the cardinality of real
# logs. Keys are the names the format's lines give a field (grammar token names, header names, JSON keys).
PUBLIC = Address(pool=1 << 20)  # clients: a million addresses, ephemeral ports
PRIVATE = Address(pool=512, first=10, ports=(80, 443, 3000, 8000, 8080, 8443, 9000))  # targets in a VPC
VARIATIONS: dict[str, dict[str, Variation]] = {
    "alb": {
        "time": Time(),
        "client:port": PUBLIC,
        "target:port": PRIVATE,
        **dict.fromkeys(["request_processing_time", "target_processing_time", "response_processing_time"], Digits()),
        **dict.fromkeys(["received_bytes", "sent_bytes"], Digits()),
        "request": Url(),
        "user_agent": UserAgent(),
        "trace_id": Id(),
        "request_creation_time": Time(),
        "target_port_list": PRIVATE,
        "conn_trace_id": Id(),
    },
    "elb": {
        "timestamp": Time(),
        "client:port": PUBLIC,
        "backend:port": PRIVATE,
        **dict.fromkeys(["request_processing_time", "backend_processing_time", "client_response_time"], Digits()),
        **dict.fromkeys(["received_bytes", "sent_bytes"], Digits()),
        "request": Url(),
        "user_agent": UserAgent(),
    },
    "s3_access": {
        "time": Time("[%d/%b/%Y:%H:%M:%S"),  # the first of its two pieces; the second is "+0000]"
        "remoteip": PUBLIC,
        "requestid": Id(),
        "key": Url(),
        "request_uri": Url(),
        **dict.fromkeys(["bytessent", "objectsize", "totaltime", "turnaroundtime"], Digits()),
        "useragent": UserAgent(),
        "hostid": Id(),
    },
    "cloudfront": {
        "date": Time("%Y-%m-%d"),
        "time": Time("%H:%M:%S"),
        "sc-bytes": Digits(),
        "c-ip": PUBLIC,
        "cs-uri-stem": Url(),
        "cs(User-Agent)": UserAgent(encoded=True),
        "cs-uri-query": Query(),
        "x-edge-request-id": Id(),
        **dict.fromkeys(["cs-bytes", "time-taken", "time-to-first-byte", "sc-content-len"], Digits()),
        "c-port": Digits(),
        "x-forwarded-for": PUBLIC,
    },
    "vpc_flow": {
        # One side of a flow is the interface's own address, the other anyone's.
        **dict.fromkeys(["srcaddr", "pkt-srcaddr"], PUBLIC),
        **dict.fromkeys(["dstaddr", "pkt-dstaddr"], PRIVATE),
        **dict.fromkeys(["srcport", "packets", "bytes"], Digits()),
    },
    "cloudtrail": {
        "eventTime": Time(),
        "sourceIPAddress": PUBLIC,
        "userAgent": UserAgent(),
        "requestID": Id(),
        "eventID": Id(),
        "accessKeyId": Id(),
        "principalId": Id(),
        "sharedEventID": Id(),
    },
}


# Formats whose objects are one JSON document of records: each template file's records, one per line, framed.
JSON_RECORDS = {"cloudtrail": "Records"}


def template_groups(fmt: str) -> tuple[list[list[str]], list[list[str]]]:
    """(line groups, header lines per group)."""
    groups, preambles = [], []
    for name, lines, header in TEMPLATES[fmt]:
        path = FIXTURES / name
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        if fmt in JSON_RECORDS:
            records = json.loads(data)[JSON_RECORDS[fmt]]
            groups.append([json.dumps(r, separators=(",", ":")) for r in records][lines])
            preambles.append([f'{{"{JSON_RECORDS[fmt]}":['])
            continue
        all_lines = [line for line in data.decode().splitlines() if line]
        preambles.append(all_lines[:header])
        groups.append(all_lines[header:][lines])
    return groups, preambles


def corpus(fmt_name: str, megabytes: float, object_megabytes: float = 8.0, templates_only: bool = False) -> Path:
    """The corpus's folder (generated once): fields varied line by line (VARIATIONS), or the template lines
    with their times moved (`templates_only`, the corpora of the figures before 2026-12-02)."""
    from servicelogs import formats
    from servicelogs.synth import write_corpus

    size = "" if object_megabytes == 8.0 else f"-objects-{object_megabytes:g}mb"
    kind = "templates" if templates_only else "varied"
    out = HERE / "out" / f"{fmt_name}-{megabytes:g}mb{size}-{kind}"
    done = out / ".complete"
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        groups, preambles = template_groups(fmt_name)
        framing = {"separator": ",\n", "end": "]}"} if fmt_name in JSON_RECORDS else {}
        info = write_corpus(
            formats.get(fmt_name),
            out / "source",
            megabytes,
            groups,
            preambles=preambles,
            variations=None if templates_only else VARIATIONS[fmt_name],
            object_megabytes=object_megabytes,
            **framing,
        )
        done.write_text(f"{info.objects} objects, {info.text_bytes} text bytes, {info.stored_bytes} stored bytes\n")
    return out


@dataclass
class Measure:
    wall: float
    cpu: float
    max_rss_mb: float
    tree_rss_mb: float


def measure(cmd: list[str], env: dict[str, str] | None = None) -> Measure:
    """The command's wall time, CPU and RSS. Python writes its bytecode caches as users' runs do (a shell with
    PYTHONDONTWRITEBYTECODE would have every process compile servicelogs anew: ~0.1 CPU-s each)."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "PYTHONDONTWRITEBYTECODE"}
    _adopt_orphans()
    ours = _children()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    largest = max([usage.ru_maxrss, *_reap_orphans(ours)])
    stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {code}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measure(wall, cpu, largest / 1024, peak[0] / 1024)


def _adopt_orphans() -> None:
    """Become the subreaper of what we start: a process the command leaves behind (servicelogs' fork server,
    which forked its workers) is then reparented to us instead of to init, so we can wait for it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER (Linux)


def _reap_orphans(ours: set[int]) -> list[int]:
    """Wait for every descendant the command left behind (not for `ours`, the children we had before it, such
    as a moto server): RUSAGE_CHILDREN counts only the CPU of processes waited for (a fork server's includes
    the workers it waited for), so without this a run's workers would be missing from its CPU seconds. Returns
    the peak RSS (KiB) of each, its own descendants included (wait4's; RUSAGE_CHILDREN's would be the largest of
    every process this bench ever waited for, another pipeline's of an earlier round among them)."""
    peaks = []
    while left := _children() - ours:
        for pid in left:
            with contextlib.suppress(ChildProcessError):
                peaks.append(os.wait4(pid, 0)[2].ru_maxrss)
    return peaks


def _children() -> set[int]:
    pid = os.getpid()
    found: set[int] = set()
    for t in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):  # a thread that ended since the listing (the proxy's)
            found.update(int(c) for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split())
    return found


def proc_table() -> dict[int, tuple[int, float, int]]:
    """Every process, from /proc: (its parent, its user + system CPU seconds, its resident KiB)."""
    tick, page_kb = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE") // 1024
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, int(fields[21]) * page_kb)
    return table


def tree_of(pid: int, table: dict[int, tuple[int, float, int]]) -> set[int]:
    """`pid` and its descendants among `table`'s processes."""
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(child)
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += children.get(p, [])
    return tree


def _tree_rss(pid: int) -> int:
    """Resident KiB of `pid` and its descendants, from /proc."""
    table = proc_table()
    return sum(table[p][2] for p in tree_of(pid, table) if p in table)


PIPELINES = ("servicelogs", "duckdb", "chdb")


def run_pipelines(
    fmt: str,
    root: Path,
    workers: int,
    pipelines: tuple[str, ...] = PIPELINES,
    src: Path | None = None,
    rounds: int = 1,
) -> list[tuple[str, Measure]]:
    """Each pipeline in its own process over `root`/source, into `root`/<pipeline>-target: (name, measure).
    `src`: run servicelogs from that tree (an older copy of `src/`, for before/after figures). With `rounds`,
    the pipelines take turns, round after round, and each one's run of median CPU is its measure: this
    machine's speed drifts within minutes, and a run at a time would compare a fast minute with a slow one."""
    runs: dict[str, list[Measure]] = {}
    for _ in range(rounds):
        for name, m in _run_pipelines_once(fmt, root, workers, pipelines, src):
            runs.setdefault(name, []).append(m)
    return [(name, sorted(ms, key=lambda m: m.cpu)[(len(ms) - 1) // 2]) for name, ms in runs.items()]


def _run_pipelines_once(
    fmt: str, root: Path, workers: int, pipelines: tuple[str, ...], src: Path | None
) -> list[tuple[str, Measure]]:
    source = root / "source"
    rows = []
    if "servicelogs" in pipelines:
        target = root / "servicelogs-target"
        shutil.rmtree(target, ignore_errors=True)
        env = {**os.environ, "PYTHONPATH": str(src.resolve())} if src else None
        command = [sys.executable, "-m", "servicelogs", "convert", fmt, str(source), str(target)]
        rows.append(("servicelogs convert", measure([*command, "--workers", str(workers), "--json"], env)))
    header = template_groups(fmt)[1][0]
    if "duckdb" in pipelines:
        target = root / "duckdb-target"
        shutil.rmtree(target, ignore_errors=True)
        script = baseline_sql(fmt, source, target, workers, header)
        m = measure([sys.executable, "-c", f"import duckdb; duckdb.sql({script!r})"])
        rows.append(("duckdb read_json + COPY" if fmt in JSON_RECORDS else "duckdb read_csv + COPY", m))
    if "chdb" in pipelines:
        target = root / "chdb-target"
        shutil.rmtree(target, ignore_errors=True)
        script = chdb_sql(fmt, source, target, workers, header)
        m = measure([sys.executable, "-c", f"import chdb; chdb.query({script!r})"])
        rows.append(("chdb RawBLOB + INSERT" if fmt in JSON_RECORDS else "chdb CSV + INSERT", m))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=sorted(TEMPLATES))
    parser.add_argument("--mb", type=float, default=1000, help="MB of uncompressed log text to generate")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--object-mb", type=float, default=8.0, help="MB of log text per object (AWS: often < 1)")
    parser.add_argument("--only", choices=("servicelogs", "duckdb", "chdb"))
    parser.add_argument(
        "--src", type=Path, help="run servicelogs from this source tree (a copy of an older src/, to compare)"
    )
    parser.add_argument(
        "--templates-only", action="store_true", help="lines as the templates wrote them (times moved), no VARIATIONS"
    )
    parser.add_argument("--rounds", type=int, default=1, help="pipelines take turns; each one's median-CPU run")
    args = parser.parse_args()

    root = corpus(args.format, args.mb, args.object_mb, args.templates_only)
    text_mb = int((root / ".complete").read_text().split(", ")[1].split()[0]) / 1e6
    print(f"corpus: {root} ({(root / '.complete').read_text().strip()})")
    print(f"machine: {os.cpu_count()} cores; workers {args.workers}; rounds {args.rounds}\n")
    pipelines = (args.only,) if args.only else PIPELINES
    rows = run_pipelines(args.format, root, args.workers, pipelines, args.src, args.rounds)

    print(
        f"{'pipeline':26} {'wall s':>8} {'MB/s':>8} {'CPU s':>8} {'MB/CPU-s':>9} {'max RSS MB':>11} {'tree RSS MB':>12}"
    )
    for name, m in rows:
        print(
            f"{name:26} {m.wall:8.2f} {text_mb / m.wall:8.1f} {m.cpu:8.2f} {text_mb / m.cpu:9.1f} "
            f"{m.max_rss_mb:11.0f} {m.tree_rss_mb:12.0f}"
        )
    if rows[0][0].startswith("servicelogs"):
        for name, m in rows[1:]:
            print(f"\nservicelogs / {name.split()[0]}, MB per CPU-second: {m.cpu / rows[0][1].cpu:.2f}x", end="")
        print()


if __name__ == "__main__":
    main()
