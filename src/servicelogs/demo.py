"""`servicelogs demo`: a small realistic ALB corpus, converted and queried, on this machine alone."""

from __future__ import annotations

import shutil
from pathlib import Path

from servicelogs import formats
from servicelogs.catalogs.embedded import EMBEDDED_FILE
from servicelogs.errors import UsageError
from servicelogs.synth import write_corpus

DEMO_FORMAT = "alb"
QUERY = """
SELECT region, year || '-' || month || '-' || day AS day, elb_status_code,
       count(*) AS requests, round(avg(target_processing_time), 4) AS avg_target_s, sum(sent_bytes) AS bytes_sent
FROM {table}
GROUP BY ALL ORDER BY region, day, requests DESC
LIMIT 12"""


def run_demo(folder: str, megabytes: float = 20.0) -> int:
    import duckdb

    import servicelogs

    root = Path(folder)
    source, target = root / "source", root / "lake"
    _fresh(root)
    fmt = formats.get(DEMO_FORMAT)
    corpus = write_corpus(fmt, source, megabytes, [[e.line for e in fmt.examples]], object_megabytes=2)
    print(
        f"made {corpus.objects} {fmt.title} objects ({corpus.text_bytes / 1e6:.1f} MB of log text, "
        f"{corpus.lines} lines) under {source}/AWSLogs/…\n"
    )
    summary = servicelogs.convert(DEMO_FORMAT, source, target)
    print(summary.text())
    catalog = target / EMBEDDED_FILE
    query = QUERY.format(table=DEMO_FORMAT)
    print(f"\nThe converted table in the embedded catalog (`duckdb {catalog}`, from any folder):{query}\n")
    with duckdb.connect(str(catalog), read_only=True) as con:
        print(con.sql(query))
    print(
        f"Beside it in {catalog}: {DEMO_FORMAT}_raw (the logs where they lie, parsed in place) and "
        f"{DEMO_FORMAT}_rejects (lines that are not rows, and why); the run summary is in "
        f"{target / '_servicelogs' / DEMO_FORMAT / 'runs'}/."
    )
    return 0 if summary.ok else 1


MARKER = ".servicelogs-demo"  # says a folder is the demo's own, so a later demo may replace it


def _fresh(root: Path) -> None:
    """An empty folder for the demo: a new one, or one an earlier demo made; never another folder."""
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise UsageError(f"--dir {str(root)!r} is not a folder")
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise UsageError(
                f"--dir {str(root)!r} holds files that servicelogs demo did not make: give a new or empty folder"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by `servicelogs demo`, which replaces this folder when run again\n")
