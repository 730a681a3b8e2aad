"""The gunzip every gzip object is read through (servicelogs.sources._Gunzip, isal's inflater called directly):
the same bytes as Python's gzip for any members, padding and read sizes; a damaged object an error naming it."""

from __future__ import annotations

import gzip
import io
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicelogs import sources
from servicelogs.engines.arrow_parse import read_whole
from servicelogs.errors import SourceError
from servicelogs.sources import decompressed, line_blocks

KEY = "AWSLogs/x.log.gz"


class _Unseekable(io.RawIOBase):
    """An S3 body: read only, no seek."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self._data.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_in(stream: io.RawIOBase, sizes: list[int]) -> bytes:
    out, turn = [], 0
    while chunk := stream.read(sizes[turn % len(sizes)]):
        out.append(chunk)
        turn += 1
    return b"".join(out)


@settings(max_examples=150, deadline=None, database=None)
@given(
    members=st.lists(st.binary(max_size=3000) | st.text(max_size=3000).map(str.encode), min_size=1, max_size=4),
    padding=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    level=st.integers(0, 9),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
    chunk=st.sampled_from([1, 7, 64, 256 << 10]),
    seekable=st.booleans(),
)
def test_any_members_padding_and_read_sizes_give_gzip_s_bytes(
    members: list[bytes], padding: list[int], level: int, sizes: list[int], chunk: int, seekable: bool
) -> None:
    blob = b"".join(gzip.compress(m, level) + b"\x00" * pad for m, pad in zip(members, padding, strict=False))
    raw = io.BytesIO(blob) if seekable else _Unseekable(blob)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sources._Gunzip, "CHUNK", chunk)
        stream = decompressed(raw, KEY)  # type: ignore[arg-type]
        assert _read_in(stream, sizes) == gzip.decompress(blob) == b"".join(members)


def _member_with_every_header_field(data: bytes) -> bytes:
    """A gzip member whose header has every optional field (RFC 1952): extra, name, comment and a header CRC,
    which Python's gzip never writes and isal checks wrongly when the header comes in pieces."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    header = b"\x1f\x8b\x08" + bytes([2 | 4 | 8 | 16]) + struct.pack("<I", 1700000000) + b"\x00\x03"
    header += struct.pack("<H", 6) + b"AB\x02\x00xy" + b"access.log\x00" + b"a comment\x00"
    header += struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    return header + body + struct.pack("<II", zlib.crc32(data), len(data))


@pytest.mark.parametrize("chunk", [1, 3, 17, 256 << 10])
def test_every_header_field_and_header_crc_in_any_chunks(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(sources._Gunzip, "CHUNK", chunk)
    texts = [b"first member\n" * 50, b"second\n", b"third member\n" * 3]
    blob = b"".join(_member_with_every_header_field(t) + b"\x00" * i for i, t in enumerate(texts))
    assert gzip.decompress(blob) == b"".join(texts)
    for sizes in ([1], [7, 3], [1 << 20]):
        assert _read_in(decompressed(_Unseekable(blob), KEY), sizes) == b"".join(texts)  # type: ignore[arg-type]


def _text(lines: int = 4000) -> bytes:
    return b"".join(b"2024-03-01T00:00:%02dZ request %d GET /path/%d 200\n" % (i % 60, i, i * 7) for i in range(lines))


@pytest.mark.parametrize("cut", [3, 10, 11, 100, -9, -8, -1])
def test_an_object_cut_short_fails_with_its_key(cut: int) -> None:
    blob = gzip.compress(_text())
    with pytest.raises(SourceError, match=r"x\.log\.gz.*cannot decompress"):
        list(line_blocks(decompressed(io.BytesIO(blob[:cut]), KEY), KEY))
    with pytest.raises(SourceError, match=r"x\.log\.gz.*cannot decompress"):
        read_whole(decompressed(io.BytesIO(blob[:cut]), KEY), KEY, 1 << 20)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:-8] + (zlib.crc32(b"other") & 0xFFFFFFFF).to_bytes(4, "little") + b[-4:], id="crc"),
        pytest.param(lambda b: b[:-4] + (len(b) + 1).to_bytes(4, "little"), id="length"),
        pytest.param(lambda b: b[:20] + bytes(x ^ 0x5A for x in b[20:60]) + b[60:], id="deflate"),
        pytest.param(lambda b: b + b"PK\x03\x04 trailing garbage", id="trailing garbage"),
        pytest.param(lambda b: b + b"\x00\x00" + b[:30], id="a second member cut short"),
    ],
)
def test_a_damaged_object_fails_with_its_key(damage) -> None:  # type: ignore[no-untyped-def]
    blob = damage(gzip.compress(_text()))
    with pytest.raises(SourceError, match=r"x\.log\.gz.*cannot decompress"):
        list(line_blocks(decompressed(io.BytesIO(blob), KEY), KEY))


def test_a_gzip_bomb_stops_within_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read inflates at most what it asks for, so the ratio limit (of the compressed bytes read) holds
    within a read's size."""
    monkeypatch.setattr(sources, "RATIO_FLOOR_BYTES", 1 << 20)
    bomb = gzip.compress(b"\x00" * (64 << 20), 9)  # ~64 KB that inflates ~1000-fold
    stream = decompressed(io.BytesIO(bomb), KEY)
    inflated = 0
    with pytest.raises(SourceError, match=r"inflates \d+-fold"):
        while chunk := stream.read(1 << 20):
            assert len(chunk) <= 1 << 20
            inflated += len(chunk)
    assert inflated <= sources.MAX_RATIO * len(bomb) + (1 << 20)


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_local_object_is_read_once_to_its_end(tmp_path, monkeypatch: pytest.MonkeyPatch, gzipped: bool) -> None:
    """A small object is read whole through three readers (a buffer, the gunzip, the bounds), each of which asks
    for more at the end: the file is read to its end once and its identity checked once there, not at every
    ask (a read and a stat each: ~5 % of a run of 50 KB objects). Read again after a seek, it is checked again:
    an object of one empty line, whose gzip sniff reaches its end before the seek back, is still that line."""
    stats: list[int] = []
    real_fstat = sources.os.fstat
    monkeypatch.setattr(sources.os, "fstat", lambda fd: stats.append(fd) or real_fstat(fd))
    for name, text, checks in (("a.log", b"line one\nline two\n", 2), ("b.log", b"\n", 2 if gzipped else 3)):
        path = tmp_path / (name + ".gz" if gzipped else name)
        path.write_bytes(gzip.compress(text) if gzipped else text)
        obj = next(o for o in sources.LocalSource(tmp_path).list() if o.key == str(path))
        stats.clear()
        with sources.LocalSource(tmp_path).open(obj) as raw:
            assert read_whole(decompressed(raw, obj.key), obj.key, 1 << 20) == text
        assert len(stats) == checks, (name, stats)  # when opened, and at its end (after the seek too)
