"""The Parquet writer's options, compared on one fixed Arrow table (a corpus's rows, as the writer gets them).

    python bench/write_options.py s3_access bench/out/s3_access-small-1200x50kb [--objects 1200] [--files 22]
        [--rounds 5] [--only base,none,...] [--save table.arrow]
    python bench/write_options.py s3_access --table table.arrow ...   # the rows kept by --save

Parses the first objects of a corpus of bench/throughput.py or bench/small_objects.py once, then writes the
same rows with each variant (VARIANTS: pyarrow options on top of the writer's own), as one file and as
`--files` files of equal rows (what many batches, or many partitions, make of the same rows). Variants are run
alternately, round after round, and the minimum CPU time of each is printed with the bytes written. For reading,
not for asserting.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from stages import text_opener  # bench/, beside this script

from servicelogs import formats
from servicelogs.engines import writer as writer_module
from servicelogs.engines.batch import _write_rows, parser_for
from servicelogs.render import arrow
from servicelogs.render.arrow import schema
from servicelogs.sources import SourceObject, decompressed

Options = Callable[[pa.Table], dict[str, Any]]


class _Tables:
    """Stands in for the PartitionedWriter: keeps what it is given, per partition."""

    def __init__(self) -> None:
        self.tables: dict[str, list[pa.Table]] = {}

    def write(self, partition: str, table: pa.Table) -> None:
        self.tables.setdefault(partition, []).append(table)


def base(table: pa.Table) -> dict[str, Any]:
    """The writer's own options (engines/writer.py), as it would pass them for this table."""
    if hasattr(writer_module, "parquet_options"):
        return writer_module.parquet_options(table)
    s = table.schema  # the writer before parquet_options (PYTHONPATH=an older src)
    return {
        "compression": "zstd",
        "compression_level": 1,
        "write_statistics": writer_module.statistics_columns(s),
        "use_dictionary": writer_module.dictionary_columns(table),
        "column_encoding": writer_module.column_encodings(s) or None,  # type: ignore[call-arg]
    }


def _with(**overrides: Any) -> Options:
    return lambda table: {**base(table), **overrides}


def _zstd_level(level: int) -> Options:
    """The writer's options at another zstd level, for the columns it compresses (it writes empty ones plain, and
    pyarrow refuses a level for those)."""

    def options(table: pa.Table) -> dict[str, Any]:
        o = base(table)
        codecs = o["compression"]
        if isinstance(codecs, dict):
            return {**o, "compression_level": {path: level for path, codec in codecs.items() if codec == "zstd"}}
        return {**o, "compression_level": level}

    return options


def _plain_numbers(table: pa.Table) -> dict[str, Any]:
    """The writer's options, but its integers and times written plain where it would delta-encode them."""
    options = base(table)
    encodings = {name: e for name, e in (options["column_encoding"] or {}).items() if name in arrow.DELTA_ENCODED}
    return {**options, "column_encoding": encodings or None}


VARIANTS: dict[str, Options] = {
    "base": base,
    "none": _with(compression="none", compression_level=None),
    "zstd-3": _zstd_level(3),
    "zstd--1": _zstd_level(-1),
    "zstd--3": _zstd_level(-3),
    "lz4": _with(compression="lz4", compression_level=None),
    "nostore": _with(store_schema=False),
    "nostats": _with(write_statistics=False),
    "v2": _with(data_page_version="2.0"),
    "batch8k": _with(write_batch_size=8192),
    "page": _with(max_rows_per_page=writer_module.ROW_GROUP_ROWS),
    "page+8k": _with(max_rows_per_page=writer_module.ROW_GROUP_ROWS, write_batch_size=8192),
    "plain-num": _plain_numbers,
}


def split(table: pa.Table, files: int) -> list[pa.Table]:
    """`table` in `files` parts of equal rows, each with dictionaries of its own values only (as each of the
    writer's files has)."""
    rows = -(-table.num_rows // files)
    parts = []
    for i in range(files):
        part = table.slice(i * rows, rows)
        for j, field in enumerate(part.schema):
            if pa.types.is_dictionary(field.type):
                part = part.set_column(j, field, part.column(j).cast(field.type.value_type).dictionary_encode())
        parts.append(part.cast(table.schema).combine_chunks())
    return parts


def write_files(parts: list[pa.Table], options: Options, out: Path, buffered: bool) -> int:
    """Each part as a file, through the writer's counting sink, with the options the variant picks for its
    rows (as the writer picks them per file); their bytes."""
    size = 0
    for i, part in enumerate(parts):
        sink = writer_module._CountingFile(out / f"{i}.parquet")
        where: Any = pa.BufferedOutputStream(pa.PythonFile(sink, mode="w"), 1 << 20) if buffered else sink
        with pq.ParquetWriter(where, part.schema, **options(part)) as w:
            w.write_table(part, row_group_size=writer_module.ROW_GROUP_ROWS)
        if buffered:
            where.close()
        sink.close()
        size += sink.size
    return size


def corpus_table(format_name: str, corpus: Path, objects: int) -> tuple[pa.Table, float]:
    """The first `objects` objects' rows, as one table of the format's schema; and their MB of text."""
    fmt = formats.get(format_name)
    paths = sorted(p for p in (corpus / "source").rglob("*") if p.is_file())[:objects]
    kept = _Tables()
    mb = 0.0
    for path in paths:
        with path.open("rb") as raw:
            text = decompressed(raw, str(path)).read()
        mb += len(text) / 1e6
        key = str(path)
        groups = {key: tuple(sorted((fmt.match_key(key) or {}).items()))}
        for _, block in parser_for(fmt).parse_objects([(path, key, text_opener(text))]):
            if block is not None:
                _write_rows(fmt, block.rows, [SourceObject(key, 0, "")], None, groups, "run", kept)  # type: ignore[arg-type]
    # One table, as the writer's largest partition would be written (all partitions' rows, in order).
    target = schema(fmt)
    table = (
        pa.concat_tables(t for ts in kept.tables.values() for t in ts)
        .select(target.names)
        .cast(target)
        .unify_dictionaries()
        .combine_chunks()
    )
    print(f"{len(paths)} objects, {mb:.1f} MB of text, {table.num_rows} rows, {table.num_columns} columns")
    return table, mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format")
    parser.add_argument("corpus", type=Path, nargs="?")
    parser.add_argument("--objects", type=int, default=6)
    parser.add_argument("--files", type=int, default=22)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="comma-separated variants (default: all); 'buffered' wraps the sink")
    parser.add_argument("--save", type=Path, help="also keep the table here, as an Arrow IPC file")
    parser.add_argument("--table", type=Path, help="the table kept by --save, instead of the corpus's objects")
    args = parser.parse_args()
    if args.table:
        table = pa.ipc.open_file(args.table).read_all()
        mb = float(table.schema.metadata[b"text_mb"])
        table = table.replace_schema_metadata(schema(formats.get(args.format)).metadata)
    else:
        table, mb = corpus_table(args.format, args.corpus, args.objects)
    if args.save:
        kept = table.replace_schema_metadata({**(table.schema.metadata or {}), b"text_mb": str(mb).encode()})
        with pa.ipc.new_file(args.save, kept.schema) as ipc:
            ipc.write_table(kept)
    names = args.only.split(",") if args.only else [*VARIANTS, "buffered"]
    parts = {1: [table], args.files: split(table, args.files)}
    best: dict[tuple[str, int], float] = {}
    sizes: dict[tuple[str, int], int] = {}
    out = Path(tempfile.mkdtemp())
    try:
        for _ in range(args.rounds):
            for name in names:
                options = VARIANTS["base"] if name == "buffered" else VARIANTS[name]
                for files in (1, args.files):
                    started = time.process_time()
                    size = write_files(parts[files], options, out, buffered=name == "buffered")
                    seconds = time.process_time() - started
                    best[name, files] = min(best.get((name, files), float("inf")), seconds)
                    sizes[name, files] = size
                    shutil.rmtree(out)
                    out.mkdir()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    columns = f"{'ms':>8} {'ms/MB':>6} {'bytes':>11}"
    print(f"{'':10} {'one file':^27}   {f'{args.files} files':^27}")
    print(f"{'variant':10} {columns}   {columns} ms/file")
    for name in names:
        one, many = best[name, 1], best[name, args.files]
        print(
            f"{name:10} {one * 1e3:8.1f} {one * 1e3 / mb:6.2f} {sizes[name, 1]:11,}   {many * 1e3:8.1f} "
            f"{many * 1e3 / mb:6.2f} {sizes[name, args.files]:11,} {(many - one) * 1e3 / (args.files - 1):6.2f}"
        )


if __name__ == "__main__":
    main()
