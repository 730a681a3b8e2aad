"""Where one worker's CPU goes, stage by stage, on a corpus of bench/throughput.py (generate it there first).

    python bench/stages.py alb bench/out/alb-300mb-varied [--objects 6] [--rounds 3] [--profile]

Reads the first objects in process: gunzip, parse (tokenize and type), write (partition and Parquet), each timed
in CPU seconds (time.process_time, all threads), the minimum over rounds; `--profile` prints cProfile's busiest
functions (process-time clock) over the parse and write stages. For reading, not for asserting.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from servicelogs import lean

if TYPE_CHECKING:
    from servicelogs.engines.arrow_parse import Opener


def text_opener(text: bytes) -> Opener:
    """An opener over text already read and decompressed (the parsers take openers)."""
    return lambda: contextlib.nullcontext(io.BytesIO(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--objects", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    lean.lean_process()  # as in a worker (no pandas, one BLAS thread, freed memory kept), before numpy loads
    from servicelogs import formats
    from servicelogs.engines.batch import _write_rows, parser_for
    from servicelogs.engines.writer import PartitionedWriter
    from servicelogs.render.arrow import schema
    from servicelogs.sources import SourceObject, decompressed

    fmt = formats.get(args.format)
    files = sorted(p for p in (args.corpus / "source").rglob("*") if p.is_file())[: args.objects]
    profile = cProfile.Profile(time.process_time) if args.profile else None
    best: dict[str, float] = {}
    out = Path(tempfile.mkdtemp())
    for _ in range(args.rounds):
        started = time.process_time()
        texts = []
        for path in files:
            with path.open("rb") as raw:
                texts.append(decompressed(raw, str(path)).read())
        unzipped = time.process_time()
        if profile:
            profile.enable()
        blocks = []
        for path, text in zip(files, texts, strict=True):
            for _, block in parser_for(fmt).parse_objects([(path, str(path), text_opener(text))]):
                if block is not None:
                    blocks.append((path, block))
        parsed = time.process_time()
        shutil.rmtree(out, ignore_errors=True)
        writer = PartitionedWriter(out, "part.parquet", schema(fmt))
        for path, block in blocks:
            key = str(path)
            groups = {key: tuple(sorted((fmt.match_key(key) or {}).items()))}
            _write_rows(fmt, block.rows, [SourceObject(key, 0, "")], None, groups, "run", writer)
        files_written = writer.close()
        written = time.process_time()
        if profile:
            profile.disable()
        for stage, seconds in (
            ("gunzip", unzipped - started),
            ("parse", parsed - unzipped),
            ("write", written - parsed),
            ("total", written - started),
        ):
            best[stage] = min(best.get(stage, float("inf")), seconds)
    shutil.rmtree(out, ignore_errors=True)
    mb = sum(map(len, texts)) / 1e6
    print(f"{len(files)} objects, {mb:.1f} MB of text, {sum(b.rows.num_rows for _, b in blocks)} rows")
    print(f"  wrote {len(files_written)} files, {sum(f.size for f in files_written):,} bytes")
    for stage, seconds in best.items():
        print(f"  {stage:8} {seconds:6.3f} CPU-s  {seconds * 1000 / mb:6.2f} ms/MB  ({mb / seconds:6.1f} MB/CPU-s)")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
