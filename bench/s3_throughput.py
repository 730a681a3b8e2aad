"""Reading from S3: objects/s and MB/s of `servicelogs convert` from an S3 source, with and without latency.

    python bench/s3_throughput.py [--small 10000] [--large 4 --large-mb 64] [--latency-ms 0,20] [--workers 1]

A moto server (the tests' one: single-threaded, on 127.0.0.1) holds the objects; every request goes through
bench/latency_proxy.py, which adds the given delay to each (0: the same path with no delay, so the two runs
differ only by the latency). The objects are S3 server access logs made by bench/throughput.py's generator
(cached under bench/out/): `--small` objects of ~2.4 KB and `--large` objects of `--large-mb` MB. Each run is
its own `servicelogs convert` process writing to a fresh local folder (`--target s3`: a fresh prefix of an S3
bucket behind the same proxy); the local-disk figure converts the same files from their folder. Wall time
covers the whole command (listing, reading, ledger, staging, commit); MB are of log text; CPU is the
command's (user + system, its workers included), then the server side's during it: moto's, then this process's
(the proxy's threads and the RSS sampler). `--mode read` times only listing and reading every object (the
batch's read-ahead, no parsing), in its own process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import latency_proxy  # noqa: E402
from s3_support import start_moto  # noqa: E402
from throughput import corpus, measure  # noqa: E402

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def small_corpus(count: int, object_bytes: int = 2200) -> Path:
    """`count` objects of ~`object_bytes` (S3 writes access logs of a few KB), cut at line ends from the
    generator's objects; each keeps its object's key with a counter appended to the unique string."""
    out = HERE / "out" / f"s3_access-{count}-small-objects"
    done = out / ".complete"
    if done.exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    whole = corpus("s3_access", count * object_bytes * 1.3 / 1e6 + 1, object_megabytes=8)  # pieces end past a line
    written = text = 0
    for path in sorted(p for p in (whole / "source").rglob("*") if p.is_file()):
        data = path.read_bytes()
        start = 0
        while start < len(data) and written < count:
            end = data.find(b"\n", start + object_bytes) + 1 or len(data)
            piece = out / "source" / path.relative_to(whole / "source").with_name(f"{path.name}x{written:06d}")
            piece.parent.mkdir(parents=True, exist_ok=True)
            piece.write_bytes(data[start:end])
            written, text, start = written + 1, text + end - start, end
    done.write_text(f"{written} objects, {text} text bytes, {text} stored bytes\n")
    return out


def upload(client, bucket: str, source: Path) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Put every file under `source` in `bucket` (same relative keys); returns (objects, stored bytes)."""
    client.create_bucket(Bucket=bucket)
    files = sorted(p for p in source.rglob("*") if p.is_file())

    def put(path: Path) -> int:
        client.put_object(Bucket=bucket, Key=path.relative_to(source).as_posix(), Body=path.read_bytes())
        return path.stat().st_size

    with ThreadPoolExecutor(8) as pool:
        return len(files), sum(pool.map(put, files))


READ_ONLY = """
import sys
from servicelogs.s3 import S3Source
source = S3Source(sys.argv[1], sys.argv[2])
objects = list(source.list())
try:
    from servicelogs.prefetch import prefetched
except ImportError:  # the code before the read-ahead: one object at a time
    opened = [(obj, lambda obj=obj: source.open(obj)) for obj in objects]
else:
    opened = prefetched(source, objects)
for obj, open_raw in opened:
    with open_raw() as stream:
        assert sum(map(len, iter(lambda: stream.read(8 << 20), b""))) == obj.size  # as the parser reads: 8 MB blocks
"""


def server_cpu(moto_pid: int) -> tuple[float, float]:
    """CPU seconds so far of the moto server, and of this process (the latency proxy's threads, and the RSS
    sampler of `measure`: ~0.04 CPU-s a second)."""
    with open(f"/proc/{moto_pid}/stat") as f:
        utime, stime = f.read().rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK"), time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10000, help="small objects (~2.4 KB each; 0: none)")
    parser.add_argument("--large", type=int, default=4, help="large objects (0: none)")
    parser.add_argument("--large-mb", type=float, default=64)
    parser.add_argument("--latency-ms", default="0,20", help="delays added to every request, comma-separated")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--target", choices=("local", "s3"), default="local")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--mode", choices=("convert", "read"), default="convert", help="read: list and read every object, no parsing"
    )
    args = parser.parse_args()

    import boto3

    os.environ.update(CREDENTIALS)
    moto, port = start_moto()
    proxy = latency_proxy.start(port, 0.0)
    endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
    client.create_bucket(Bucket="lake")
    exe = [sys.executable, "-m", "servicelogs", "convert", "s3_access"]
    common = ["--workers", str(args.workers), "--json"]
    scratch = Path(tempfile.mkdtemp(prefix="s3-throughput-"))
    delays = [float(d) for d in args.latency_ms.split(",")]
    sets = []
    if args.small:
        sets.append(("small", small_corpus(args.small)))
    if args.large:
        sets.append(("large", corpus("s3_access", args.large * args.large_mb, object_megabytes=args.large_mb)))
    try:
        for name, root in sets:
            objects, stored = upload(client, name, root / "source")
            text_mb = int((root / ".complete").read_text().split(", ")[1].split()[0]) / 1e6
            print(f"{name}: {objects} objects, {stored / 1e6:.1f} MB stored, {text_mb:.1f} MB of text", flush=True)
            for round_ in range(args.rounds):
                runs = [(f"S3 +{d:g} ms", d) for d in delays]
                runs += [("local disk", None)] if args.mode == "convert" else []
                for label, delay in runs:
                    out = scratch / f"{name}-{round_}-{label.replace(' ', '_')}"
                    if delay is None:
                        cmd = [*exe, str(root / "source"), str(out), *common]
                    elif args.mode == "read":
                        proxy.delay = delay / 1000
                        cmd = [sys.executable, "-c", READ_ONLY, f"s3://{name}", endpoint]
                    else:
                        proxy.delay = delay / 1000
                        target = f"s3://lake/{out.name}" if args.target == "s3" else str(out)
                        cmd = [*exe, f"s3://{name}", target, "--endpoint-url", endpoint, *common]
                    moto_before, proxy_before = server_cpu(moto.pid)
                    m = measure(cmd)
                    moto_after, proxy_after = server_cpu(moto.pid)
                    moto_cpu, proxy_cpu = moto_after - moto_before, proxy_after - proxy_before
                    shutil.rmtree(out, ignore_errors=True)
                    print(
                        f"  {label:12} {m.wall:7.2f} s  {objects / m.wall:8.1f} objects/s  "
                        f"{text_mb / m.wall:7.1f} MB/s  CPU {m.cpu:6.2f} s (+ moto and proxy "
                        f"{moto_cpu + proxy_cpu:5.2f} s: {moto_cpu:.2f} + {proxy_cpu:.2f})  "
                        f"tree RSS {m.tree_rss_mb:4.0f} MB",
                        flush=True,
                    )
    finally:
        proxy.shutdown()
        moto.kill()
        moto.wait()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
