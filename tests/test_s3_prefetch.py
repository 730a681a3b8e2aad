"""The read-ahead of a batch's S3 objects (servicelogs.prefetch) against a real S3 API (moto in server mode
over HTTP, behind the fault proxy of s3_support): the bound on bytes in flight, order and content as a
sequential read gives them, a failing object failing alone and named, and a whole convert giving the rows
of the same objects converted from a local folder."""

from __future__ import annotations

import gzip
import itertools
import threading
from pathlib import Path

import pytest
from exactly_once_support import expected_lines, oracle, source_objects, write_local

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")


import servicelogs  # noqa: E402
from servicelogs import prefetch  # noqa: E402
from servicelogs.errors import SourceError  # noqa: E402
from servicelogs.prefetch import ReadAhead, prefetched  # noqa: E402
from servicelogs.s3 import S3Source  # noqa: E402
from servicelogs.sources import LocalSource, SourceObject  # noqa: E402

_buckets = itertools.count()


@pytest.fixture
def s3(moto, aws_env):
    """The session's fault proxy (cleared) and a client that talks to moto directly."""
    moto.proxy.clear()
    return moto.proxy, moto.client


def bucket_with(s3, objects: dict[str, bytes]) -> tuple[S3Source, list[SourceObject]]:
    """A fresh bucket holding `objects`; its source (read through the proxy) and its listing, in key order."""
    proxy, client = s3
    proxy.clear()
    bucket = f"prefetch-{next(_buckets)}"
    client.create_bucket(Bucket=bucket)
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    source = S3Source(f"s3://{bucket}", proxy.url)
    return source, sorted(source.list())


def mixed_sizes() -> dict[str, bytes]:
    """Objects of many sizes: empty, a byte, a part's worth, several parts, one larger than the budget."""
    sizes = [0, 1, 700, 4096, 4097, 9000, 3000, 40_000, 12, 16_384, 2500, 5000, 100]
    return {f"k/{i:02d}": bytes((i * 7 + j) % 251 for j in range(size)) for i, size in enumerate(sizes)}


class Recorded:
    """The source's ranged reads as they run: how many bytes at once at most, and each read's range."""

    def __init__(self, source: S3Source) -> None:
        self.source, self.lock = source, threading.Lock()
        self.running = self.running_peak = self.most_at_once = self.at_once = 0
        self.ranges: list[tuple[str, int, int]] = []

    def read_range(self, obj: SourceObject, start: int, end: int) -> bytes:
        with self.lock:
            self.running += end - start
            self.at_once += 1
            self.running_peak = max(self.running_peak, self.running)
            self.most_at_once = max(self.most_at_once, self.at_once)
            self.ranges.append((obj.key, start, end))
        try:
            return self.source.read_range(obj, start, end)
        finally:
            with self.lock:
                self.running -= end - start
                self.at_once -= 1


def read_all(reader_openers) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    out = []
    for obj, opened in reader_openers:
        with opened() as stream:
            out.append((obj.key, stream.read()))
    return out


def test_bytes_in_flight_stay_within_the_budget_whatever_the_sizes(s3) -> None:
    source, listed = bucket_with(s3, mixed_sizes())
    budget, part = 16_384, 4096
    recorded = Recorded(source)
    with ReadAhead(recorded, budget, part, threads=8) as reader:
        got = read_all(reader.openers(listed))
    assert [k for k, _ in got] == [o.key for o in listed]
    assert reader.peak <= budget and recorded.running_peak <= budget
    assert reader.peak > part and recorded.most_at_once >= 2  # reads did overlap
    assert reader.reserved == 0  # every reserved byte was given back
    large = next(o for o in listed if o.size == 40_000)
    assert [(s, e) for k, s, e in recorded.ranges if k == large.key] == [
        (s, min(s + part, 40_000)) for s in range(0, 40_000, part)
    ]
    empty = next(o for o in listed if o.size == 0)
    assert all(k != empty.key for k, _, _ in recorded.ranges)  # nothing to fetch


def test_order_and_content_are_those_of_sequential_reads(s3) -> None:
    objects = mixed_sizes()
    source, listed = bucket_with(s3, objects)
    sequential = []
    for obj in listed:
        with source.open(obj) as stream:
            sequential.append((obj.key, stream.read()))
    ahead = read_all(prefetched(source, listed, max_bytes=16_384, part_bytes=4096, threads=4))
    assert ahead == sequential
    assert ahead == [(f"s3://{source.bucket}/{k}", objects[k]) for k in sorted(objects)]
    # A budget below the part size: one part of the budget's size at a time, still everything in order.
    assert read_all(prefetched(source, listed, max_bytes=1000, part_bytes=4096, threads=4)) == sequential


def test_a_stream_read_in_pieces_and_a_gzip_object_across_parts(s3) -> None:
    text = b"".join(b"line %d of a log that goes on\n" % i for i in range(3000))
    objects = {"a.gz": gzip.compress(text), "b": text}
    source, listed = bucket_with(s3, objects)
    for obj, opened in prefetched(source, listed, max_bytes=8192, part_bytes=1000, threads=3):
        with opened() as stream:
            pieces = iter(lambda: stream.read(777), b"")
            data = b"".join(pieces)
        assert (gzip.decompress(data) if obj.key.endswith(".gz") else data) == text


def test_an_object_deleted_after_listing_fails_alone_with_its_key(s3) -> None:
    objects = mixed_sizes()
    source, listed = bucket_with(s3, objects)
    gone = listed[7]  # the 40 KB one, read in parts
    s3[1].delete_object(Bucket=source.bucket, Key=gone.key.split("/", 3)[3])
    results: dict[str, bytes | str] = {}
    for obj, opened in prefetched(source, listed, max_bytes=16_384, part_bytes=4096, threads=4):
        try:
            with opened() as stream:
                results[obj.key] = stream.read()
        except SourceError as e:
            assert e.key == obj.key
            results[obj.key] = str(e)
    failed = {k: v for k, v in results.items() if isinstance(v, str)}
    assert list(failed) == [gone.key]
    assert f"S3 GetObject {gone.key}" in failed[gone.key] and "NoSuchKey" in failed[gone.key]
    expected = {f"s3://{source.bucket}/{k}": v for k, v in objects.items()}
    assert {k: v for k, v in results.items() if k != gone.key} == {k: v for k, v in expected.items() if k != gone.key}


def test_a_transient_error_is_retried_and_a_lasting_one_names_the_object(s3) -> None:
    proxy = s3[0]
    source, listed = bucket_with(s3, mixed_sizes())
    once = [
        proxy.fail("GetObject", "500", key_contains="/k/03"),
        proxy.fail("GetObject", "reset", key_contains="/k/07"),
    ]
    lasting = proxy.fail("GetObject", "503", times=-1, key_contains="/k/10")
    outcome = []
    for obj, opened in prefetched(source, listed, max_bytes=16_384, part_bytes=4096, threads=4):
        try:
            with opened() as stream:
                outcome.append((obj.key, len(stream.read())))
        except SourceError as e:
            outcome.append((e.key, e.reason))
    bad = listed[10].key
    assert outcome == [
        (o.key, o.size) if o.key != bad else (bad, f"S3 GetObject {bad}: SlowDown Please reduce your request "
                                               "rate. (gave up after 4 attempts)")
        for o in listed
    ]  # fmt: skip
    assert [f.hits for f in once] == [1, 1] and lasting.hits == 4


def test_a_local_source_is_opened_object_by_object(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"one\n")
    (tmp_path / "b").write_bytes(b"two\n")
    source = LocalSource(tmp_path)
    listed = list(source.list())
    assert read_all(prefetched(source, listed)) == [(o.key, Path(o.key).read_bytes()) for o in listed]


def convert_objects() -> dict[str, bytes]:
    """The exactly-once ALB objects, every other one gzipped, and one of ~1,200 lines (many parts)."""
    objects = source_objects(12)
    for i, key in enumerate(sorted(objects)):
        if i % 2:
            objects[key] = gzip.compress(objects[key])
    big_key = next(iter(source_objects(1))).replace("obj0000", "obj9999")
    objects[big_key] = b"".join(itertools.islice(itertools.cycle(source_objects(40).values()), 400))
    return objects


def rows(target: Path, root: str) -> list[tuple]:
    import duckdb

    con = duckdb.connect()
    out = []
    for table in ("alb", "alb_rejects"):
        out += con.sql(
            f"SELECT * EXCLUDE (run_id, source_key), replace(source_key, '{root}/', '') AS key "
            f"FROM read_parquet('{target}/{table}/**/*.parquet', hive_partitioning = false) ORDER BY ALL"
        ).fetchall()
    return out


def test_convert_from_s3_gives_the_rows_of_the_local_run(s3, tmp_path: Path, monkeypatch) -> None:
    objects = convert_objects()
    source, _ = bucket_with(s3, {f"in/{k}": v for k, v in objects.items()})
    write_local(tmp_path / "local", objects)
    monkeypatch.setattr(prefetch, "READ_AHEAD_BYTES", 16_384)
    monkeypatch.setattr(prefetch, "PART_BYTES", 4096)
    url = f"s3://{source.bucket}/in"
    from_s3 = servicelogs.convert("alb", url, tmp_path / "from-s3", workers=1, endpoint_url=s3[0].url, batch_objects=5)
    local = servicelogs.convert("alb", tmp_path / "local", tmp_path / "from-disk", workers=1, batch_objects=5)
    assert from_s3.ok and local.ok, from_s3.text()
    assert (from_s3.objects_converted, from_s3.rows, from_s3.rejects) == (
        local.objects_converted,
        local.rows,
        local.rejects,
    )
    verdict = oracle(expected_lines({k: _text(v) for k, v in objects.items()}), tmp_path / "from-s3", root=url)
    assert verdict.ok, str(verdict)
    s3_rows = rows(tmp_path / "from-s3", url)
    assert s3_rows == rows(tmp_path / "from-disk", (tmp_path / "local").resolve().as_posix())
    assert len(s3_rows) == sum(data.count(b"\n") for data in map(_text, objects.values()))
    gets = [p for op, p in s3[0].log if op == "GetObject"]
    big = next(k for k in objects if "obj9999" in k)
    assert sum(big in p for p in gets) == -(-len(objects[big]) // 4096)  # read in ranged parts


def test_an_object_that_cannot_be_read_fails_alone_in_a_convert(s3, tmp_path: Path) -> None:
    objects = source_objects(9)
    source, _ = bucket_with(s3, {f"in/{k}": v for k, v in objects.items()})
    bad = sorted(objects)[4]
    s3[0].fail("GetObject", "500", times=-1, key_contains=bad)
    url = f"s3://{source.bucket}/in"
    summary = servicelogs.convert("alb", url, tmp_path / "lake", workers=1, endpoint_url=s3[0].url, batch_objects=3)
    assert [(p.key, p.reason) for p in summary.failed] == [
        (
            f"{url}/{bad}",
            f"S3 GetObject {url}/{bad}: InternalError We encountered an internal error. Please try again. "
            "(gave up after 4 attempts)",
        )
    ]
    assert (summary.objects_converted, summary.objects_failed) == (8, 1)
    verdict = oracle(expected_lines({k: v for k, v in objects.items() if k != bad}), tmp_path / "lake", root=url)
    assert verdict.ok, str(verdict)


def _text(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


class InMemory:
    """A ranged source over bytes in memory (a unit-test fake: the S3 tests above are the real thing); reads of
    `broken` (key, start) fail as S3Source's do."""

    def __init__(self, objects: dict[str, bytes], broken: tuple[str, int] = ("", -1)) -> None:
        self.objects, self.broken = objects, broken
        self.unlisted: list = []

    def listing(self) -> list[SourceObject]:
        return [SourceObject(k, len(v), "") for k, v in self.objects.items()]

    def read_range(self, obj: SourceObject, start: int, end: int) -> bytes:
        if (obj.key, start) == self.broken:
            raise SourceError(obj.key, f"S3 GetObject {obj.key}: InternalError (gave up after 4 attempts)")
        return self.objects[obj.key][start:end]


def test_objects_left_unread_or_half_read_give_their_bytes_back() -> None:
    objects = {f"o{i}": bytes([i]) * size for i, size in enumerate([5000, 30_000, 10, 30_000, 7000, 1])}
    source = InMemory(objects)
    with ReadAhead(source, 12_000, 4000, threads=3) as reader:
        got = {}
        for n, (obj, opened) in enumerate(reader.openers(source.listing())):
            if n == 1:
                continue  # never opened
            with opened() as stream:
                got[obj.key] = stream.read(4500 if n == 3 else -1)  # the second large one: a part and a bit
        assert reader.reserved == 0 and reader.peak <= 12_000
    assert got == {k: v[:4500] if k == "o3" else v for k, v in objects.items() if k != "o1"}


def test_a_part_that_fails_mid_object_fails_that_object_alone() -> None:
    objects = {"a": b"x" * 9000, "b": b"y" * 9000, "c": b"z" * 100}
    source = InMemory(objects, broken=("b", 4000))
    outcome = {}
    for obj, opened in prefetched(source, source.listing(), max_bytes=8000, part_bytes=4000, threads=2):
        try:
            with opened() as stream:
                outcome[obj.key] = len(stream.read())
        except SourceError as e:
            outcome[obj.key] = e.reason
    assert outcome == {"a": 9000, "b": "S3 GetObject b: InternalError (gave up after 4 attempts)", "c": 100}
