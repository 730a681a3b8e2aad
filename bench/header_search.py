"""Header lines of grouped objects: searched for (`_marked_lines`) against matched on every line (`_marked_lines_of`).

    python bench/header_search.py [--mb 8] [--rounds 15]

Cuts the objects of small_objects.py's corpora of 120 objects of 500 KB (made there if missing) into objects of 5
to 500 KB, each with its object's header lines, joins ~`--mb` MB of them as a group is joined, and prints the best
time of each way of finding the header lines, by lines per object: where they cross is
`header_parse.SPARSE_HEADERS`.
For reading, not for asserting.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

from servicelogs import lean

HERE = Path(__file__).resolve().parent


def best(f: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        f()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    lean.lean_process()
    import numpy as np

    from servicelogs import formats
    from servicelogs.engines import header_parse
    from servicelogs.engines.arrow_parse import read_whole
    from servicelogs.sources import LocalSource, decompressed
    from servicelogs.spec import HeaderDelimited

    sys.path.insert(0, str(HERE))
    from small_objects import small_corpus

    for name in formats.names():
        if not isinstance(formats.get(name).grammar, HeaderDelimited):
            continue
        source = LocalSource(str(small_corpus(name, 120, 500) / "source"))
        whole = []
        for obj in list(source.list())[:16]:
            with decompressed(source.open(obj), obj.key) as stream:
                whole.append(read_whole(stream, obj.key, 1 << 30))
        header = header_parse.HeaderDelimitedParser(formats.get(name))
        for kb in (5, 20, 50, 100, 200, 500):
            texts = []
            for text in whole:
                lines = text.split(b"\n")[:-1]
                head = [line for line in lines[:3] if header._judge(line) is not False]
                body = lines[len(head) :]
                per = max(1, int(kb * 1000 * len(lines) / len(text)))
                texts += [b"\n".join(head + body[at : at + per]) + b"\n" for at in range(0, len(body), per)]
            chosen = texts[: max(1, int(args.mb * 1e6 / (kb * 1000)))]
            group = b"".join(chosen)
            newlines = np.flatnonzero(np.frombuffer(group, np.uint8) == 10)
            starts = header_parse._starts_after(newlines, len(newlines), len(group))
            assert header._marked_lines(group, newlines) == header._marked_lines_of(group, starts)
            searched = best(functools.partial(header._marked_lines, group, newlines), args.rounds)
            matched = best(functools.partial(header._marked_lines_of, group, starts), args.rounds)
            print(
                f"{name:10} {kb:4} KB objects, {len(newlines) / len(chosen):6.0f} lines each: searched "
                f"{searched * 1e3:6.2f} ms, matched {matched * 1e3:6.2f} ms, per {len(group) / 1e6:.1f} MB"
            )


if __name__ == "__main__":
    main()
