"""Realistic synthetic corpora, made from real log lines: for the demo and the benchmarks.

Real lines are the templates. Each generated object gets a key from the format's key layout template, and
each line is a template line with its timestamps (ISO 8601, and epoch seconds where the format's event time
is written so) moved to the object's day and its IPv4 addresses and long hex ids drawn at random, so the
text compresses like real logs and the rows spread over regions and days. Nothing here knows a format:
the key layout and the template lines say it all.
"""

from __future__ import annotations

import gzip
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from servicelogs.spec import EPOCH_SECONDS, LogFormat

_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_EPOCH_SECONDS = re.compile(r"(?<![\d.])1[0-9]{9}(?![\d.])")  # 2001-09-09 to 2033-05-18
_HEX_ID = re.compile(r"(?<![0-9a-f])(?=[0-9]*[a-f])[0-9a-f]{12,}(?![0-9a-f])")


@dataclass
class Corpus:
    objects: int = 0
    text_bytes: int = 0
    stored_bytes: int = 0
    lines: int = 0


class _Fill(dict):
    """Key template values: the known ones, and a random token for any other placeholder."""

    def __init__(self, rng: random.Random, **known: str) -> None:
        super().__init__(known)
        self.rng = rng

    def __missing__(self, name: str) -> str:
        if name == "ip":
            return ".".join(str(self.rng.randint(1, 254)) for _ in range(4))
        return "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=8))


def _mutate(line: str, day: date, rng: random.Random, epoch_times: bool) -> str:
    def time_of_day(m: re.Match[str]) -> str:
        s = rng.randrange(86400)
        fraction = f".{rng.randrange(10**6):06d}" if "." in m.group(0) else ""  # keep the writer's precision
        return f"{day.isoformat()}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}{fraction}Z"

    line = _ISO_TIME.sub(time_of_day, line)
    if epoch_times and (first := _EPOCH_SECONDS.search(line)):
        # Every time of the line moves by the same amount, so a flow's start and end keep their distance.
        midnight = int(datetime.combine(day, time(), timezone.utc).timestamp())
        shift = midnight + rng.randrange(86400) - int(first.group(0))
        line = _EPOCH_SECONDS.sub(lambda m: str(int(m.group(0)) + shift), line)
    line = _IPV4.sub(
        lambda _: f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", line
    )
    return _HEX_ID.sub(lambda m: "".join(rng.choices("0123456789abcdef", k=len(m.group(0)))), line)


def write_corpus(
    fmt: LogFormat,
    out: Path,
    megabytes: float,
    templates: Sequence[Sequence[str]],
    *,
    preambles: Sequence[Sequence[str]] = (),
    object_megabytes: float = 8.0,
    regions: Sequence[str] = ("us-east-1", "eu-west-1", "ap-southeast-2"),
    first_day: date = date(2024, 3, 1),
    days: int = 3,
    seed: int = 7,
    compress: bool | None = None,
    separator: str = "\n",
    end: str = "\n",
) -> Corpus:
    """Write about `megabytes` MB of log text under `out`, in objects of about `object_megabytes` each.

    `templates` are groups of real lines; each object draws from one group, as a real object holds one
    layout; `preambles[i]` (a header, say), if given, starts every object of group i. Objects are gzipped
    when `compress` says so; by default when the key layout's template ends in .gz, as AWS does. Lines are
    joined by `separator` and the object closes with `end` (",\n" and "]}" frame JSON records).
    """
    rng = random.Random(seed)
    layout = fmt.key_layouts[0]
    # Placeholders the generator has no value for take the layout's own example's (a CloudFront distribution
    # id, an S3 bucket), so generated keys match the layout.
    match = layout.regex.search(layout.example)
    example_groups = {k: v for k, v in (match.groupdict() if match else {}).items() if v is not None}
    corpus = Corpus()
    target = int(megabytes * 1e6)
    per_object = max(1, int(object_megabytes * 1e6))
    pools: dict[tuple[date, int], list[str]] = {}
    epoch_times = fmt.field(fmt.event_time).time_format == EPOCH_SECONDS
    while corpus.text_bytes < target:
        day = first_day + timedelta(days=corpus.objects % days)
        region = regions[(corpus.objects // days) % len(regions)]
        group = corpus.objects % len(templates)
        pool = pools.get((day, group))
        if pool is None:
            pool = pools[day, group] = [
                _mutate(rng.choice(templates[group]), day, rng, epoch_times) for _ in range(4000)
            ]
        fill = _Fill(
            rng,
            prefix="logs/",
            account_id="123456789012",
            region=region,
            year=f"{day.year:04d}",
            month=f"{day.month:02d}",
            day=f"{day.day:02d}",
            hour=f"{rng.randrange(24):02d}",
            minute=f"{rng.randrange(0, 60, 5):02d}",
            second=f"{rng.randrange(60):02d}",
        )
        for name, value in example_groups.items():
            fill.setdefault(name, value)
        key = layout.template.format_map(fill)
        gzipped = key.endswith(".gz") if compress is None else compress
        size = min(per_object, target - corpus.text_bytes)
        preamble = preambles[group] if preambles else ()
        lines: list[str] = []
        written = 0
        while written < size:
            batch = rng.choices(pool, k=256)
            lines += batch
            written += sum(len(line) + len(separator) for line in batch)
        text = ("".join(line + "\n" for line in preamble) + separator.join(lines) + end).encode()
        data = gzip.compress(text, compresslevel=6) if gzipped else text
        path = out / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        corpus.objects += 1
        corpus.text_bytes += len(text)
        corpus.stored_bytes += len(data)
        corpus.lines += text.count(b"\n")
    return corpus
