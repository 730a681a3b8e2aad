"""Many small objects: servicelogs against the plain DuckDB pipeline, in MB and objects per CPU-second.

    python bench/small_objects.py s3_access --objects 5000 --object-kb 2 [--workers 2] [--src /old/src] [--rounds 3]

AWS writes many logs as small objects (S3 server access logs: a few hundred bytes to a few KB each), where a
per-object cost, not the per-byte one, decides the speed. `bench/throughput.py` draws its objects 256 lines at a
time, so its objects are never that small; this script cuts the lines of its corpus (real sample lines, cached
under bench/out/) into objects of about `--object-kb` KB each, every one with its group's header (a CloudFront
`#Fields`, a VPC header) or JSON framing, under a key of the format's layout, gzipped when the layout's are.
Then it runs `servicelogs convert` and the DuckDB pipeline on the same files, each in its own process, and
prints MB of log text per CPU-second, objects per CPU-second (per core) and the ratio. `--src` runs servicelogs
from another source tree (PYTHONPATH), to compare a change with the code before it in one session.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput import JSON_RECORDS, TEMPLATES, corpus, run_pipelines, template_groups  # noqa: E402

# The key's last random token, before its extensions: a suffix there keeps every layout's key valid.
_KEY_TAIL = re.compile(r"([A-Za-z0-9]+)((?:\.log|\.json)?(?:\.gz)?)$")


def small_corpus(fmt_name: str, objects: int, object_kb: float) -> Path:
    """`objects` objects of about `object_kb` KB of text each, cut from throughput.py's corpus of 1 MB objects."""
    from servicelogs import formats

    fmt = formats.get(fmt_name)
    out = HERE / "out" / f"{fmt_name}-small-{objects}x{object_kb:g}kb"
    done = out / ".complete"
    if done.exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    big = corpus(fmt_name, max(2.0, objects * object_kb / 1000 * 1.2), 1.0) / "source"
    _, preambles = template_groups(fmt_name)
    heads = sorted({"".join(f"{line}\n" for line in p) for p in preambles}, key=len, reverse=True)
    separator, end = (",\n", "]}") if fmt_name in JSON_RECORDS else ("\n", "\n")
    made = text_bytes = stored = 0
    per_object = int(object_kb * 1000)
    for path in sorted(p for p in big.rglob("*") if p.is_file()):
        data = path.read_bytes()
        text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode()
        head = next(h for h in heads if text.startswith(h))
        lines = text[len(head) : len(text) - len(end)].split(separator)
        at = 0
        while at < len(lines) and made < objects:
            chunk, size = [], len(head)
            while at < len(lines) and (not chunk or size + len(lines[at]) <= per_object):
                chunk.append(lines[at])
                size += len(lines[at]) + len(separator)
                at += 1
            body = (head + separator.join(chunk) + end).encode()
            key = path.relative_to(big).as_posix()
            key = _KEY_TAIL.sub(rf"\g<1>{made:06x}\g<2>", key)
            if fmt.match_key(key) is None:
                raise SystemExit(f"generated key {key!r} matches no {fmt_name} key layout")
            stored_body = gzip.compress(body, compresslevel=6, mtime=0) if key.endswith(".gz") else body
            target = out / "source" / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(stored_body)
            made += 1
            text_bytes += len(body)
            stored += len(stored_body)
        if made >= objects:
            break
    if made < objects:
        raise SystemExit(f"the corpus held lines for {made} objects only")
    done.write_text(f"{made} objects, {text_bytes} text bytes, {stored} stored bytes\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=sorted(TEMPLATES))
    parser.add_argument("--objects", type=int, default=3000)
    parser.add_argument("--object-kb", type=float, default=2.0, help="KB of log text per object")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--src", help="run servicelogs from this source tree (its src/ folder) instead")
    parser.add_argument("--only", choices=("servicelogs", "duckdb"))
    parser.add_argument("--rounds", type=int, default=1, help="pipelines take turns; each one's median-CPU run")
    args = parser.parse_args()

    root = small_corpus(args.format, args.objects, args.object_kb)
    info = (root / ".complete").read_text().strip()
    n_objects, text_mb = int(info.split()[0]), int(info.split(", ")[1].split()[0]) / 1e6
    print(f"corpus: {root} ({info})")
    print(
        f"machine: {os.cpu_count()} cores; workers {args.workers}; rounds {args.rounds}; "
        f"servicelogs from {args.src or 'this tree'}\n"
    )
    pipelines = (args.only,) if args.only else ("servicelogs", "duckdb")
    rows = run_pipelines(args.format, root, args.workers, pipelines, Path(args.src) if args.src else None, args.rounds)

    print(f"{'pipeline':22} {'wall s':>8} {'CPU s':>8} {'MB/CPU-s':>9} {'objects/CPU-s':>14} {'max RSS MB':>11}")
    for name, m in rows:
        per_cpu = f"{text_mb / m.cpu:9.1f} {n_objects / m.cpu:14.0f}"
        print(f"{name:22} {m.wall:8.2f} {m.cpu:8.2f} {per_cpu} {m.max_rss_mb:11.0f}")
    if len(rows) == 2:
        print(f"\nservicelogs / duckdb, MB per CPU-second: {rows[1][1].cpu / rows[0][1].cpu:.2f}x")


if __name__ == "__main__":
    main()
