"""A real S3 API for the tests: moto in server mode on 127.0.0.1, behind a fault-injecting HTTP proxy.

moto runs in its own process, single-threaded, so its conditional writes are atomic as S3's are (its
threaded server checks If-None-Match and stores in two steps). The proxy forwards every request and can
fail chosen ones, by operation, a given number of times or for good: an S3 error status (429 SlowDown,
500 InternalError, 503 SlowDown), a connection reset, a timeout (it holds the request past the
client's read timeout), or a lost answer (the request reaches S3, the client sees a reset). It also
logs the requests, so a test can see which objects were read.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

MOTO_SCRIPT = """
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=False, use_reloader=False)
"""

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SERVICELOGS_S3_BACKOFF": "0.01",
    "SERVICELOGS_S3_ATTEMPTS": "4",
    "SERVICELOGS_S3_TIMEOUT": "2",
    "SERVICELOGS_S3_PART_MB": "0.005",  # ~5 KB parts: the tests' Parquet files go up in several parts
    "SERVICELOGS_LEASE_SECONDS": "1",  # a killed run counts as dead after 1 s (default 600)
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "S3_UPLOAD_PART_MIN_SIZE": "256", "MOTO_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-c", MOTO_SCRIPT, str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def operation(method: str, path: str, query: str, headers: dict[str, str]) -> str:
    """The S3 API operation of a request (the names boto3 and our errors use)."""
    keyed = path.strip("/").count("/") >= 1
    if method == "GET":
        if "uploads" in query.split("&"):
            return "ListMultipartUploads"
        return "GetObject" if keyed else "ListObjectsV2"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "partNumber=" in query:
            return "UploadPart"
        if "x-amz-copy-source" in headers:
            return "CopyObject"
        return "PutObject If-None-Match" if headers.get("if-none-match") else "PutObject"
    if method == "POST":
        if "uploads" in query.split("&") or query.startswith("uploads"):
            return "CreateMultipartUpload"
        if "uploadId=" in query:
            return "CompleteMultipartUpload"
        if "delete" in query:
            return "DeleteObjects"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId=" in query else "DeleteObject"
    return method


@dataclass
class Fault:
    operation: str  # as `operation()` names it
    kind: str  # "429", "500", "503", "reset", "timeout", "drop" (forwarded, then the answer is lost)
    times: int = 1  # -1: every time
    key_contains: str = ""
    hits: int = 0


@dataclass
class Proxy:
    upstream: int
    port: int = 0
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)  # (operation, path)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delays: dict[str, float] = field(default_factory=dict)  # operation -> seconds each waits before it is sent on
    running: Counter[str] = field(default_factory=Counter)  # operation -> requests in flight
    most_at_once: Counter[str] = field(default_factory=Counter)  # operation -> the most ever in flight together

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, op: str, kind: str, times: int = 1, key_contains: str = "") -> Fault:
        fault = Fault(op, kind, times, key_contains)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.log.clear()
            self.delays.clear()
            self.most_at_once.clear()

    @contextlib.contextmanager
    def in_flight(self, op: str) -> Iterator[None]:
        with self.lock:
            self.running[op] += 1
            self.most_at_once[op] = max(self.most_at_once[op], self.running[op])
            delay = self.delays.get(op, 0.0)
        try:
            time.sleep(delay)
            yield
        finally:
            with self.lock:
                self.running[op] -= 1

    def pick(self, op: str, path: str) -> Fault | None:
        with self.lock:
            self.log.append((op, path))
            for fault in self.faults:
                if fault.operation == op and fault.key_contains in path and (fault.times < 0 or fault.times > 0):
                    fault.hits += 1
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None


_ERRORS = {
    "429": (429, "SlowDown", "Please reduce your request rate."),
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
}


def start_proxy(upstream: int) -> tuple[Proxy, ThreadingHTTPServer]:
    proxy = Proxy(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = _read_chunked(self.rfile)
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            op = operation(self.command, parts.path, parts.query, headers)
            fault = proxy.pick(op, unquote(parts.path))
            with proxy.in_flight(op):
                self._answer(fault, body)

        def _answer(self, fault: Fault | None, body: bytes) -> None:
            if fault and fault.kind == "drop":  # the request lands, its answer is lost
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=60)
                fwd = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "content-length")
                }
                conn.request(self.command, self.path, body=body, headers={**fwd, "Content-Length": str(len(body))})
                conn.getresponse().read()
                conn.close()
            if fault and fault.kind in ("reset", "drop"):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if fault and fault.kind == "timeout":
                time.sleep(float(ENV["SERVICELOGS_S3_TIMEOUT"]) + 1)
                self.close_connection = True
                return
            if fault:
                status, code, message = _ERRORS[fault.kind]
                data = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
                    f"<RequestId>fault</RequestId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=60)
            fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "content-length")}
            fwd["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=fwd)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "content-length", "connection", "server", "date"):
                    self.send_header(k, v)
            # A HEAD answer has no body, but says the object's length: pass S3's own.
            length = resp.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
            pass  # clients killed mid-request are the point of these tests

    server = Server(("127.0.0.1", 0), Handler)
    proxy.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True, name="s3-fault-proxy").start()
    return proxy, server


def _read_chunked(rfile) -> bytes:  # type: ignore[no-untyped-def]
    out = b""
    while True:
        size = int(rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
            while rfile.readline().strip():
                pass
            return out
        out += rfile.read(size)
        rfile.readline()


def download(client, bucket: str, prefix: str, dest: Path) -> None:  # type: ignore[no-untyped-def]
    """Copy every object under `prefix` to `dest`, to read the tables with DuckDB's local globs."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            path = dest / item["Key"][len(prefix) :].lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())


def keys(client, bucket: str, prefix: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [item["Key"] for item in page.get("Contents", [])]
    return out


@dataclass
class MotoServer:
    """A moto server and the fault proxy in front of it, with a client that talks to moto directly (the
    tests' own requests go around the proxy: they are neither logged nor failed)."""

    proxy: Proxy
    client: Any  # boto3's S3 client

    @property
    def url(self) -> str:
        """The endpoint the code under test is given: the proxy's."""
        return self.proxy.url

    def new_bucket(self, name: str = "lake") -> str:
        bucket = f"{name}-{secrets.token_hex(4)}"
        self.client.create_bucket(Bucket=bucket)
        return bucket


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Start moto and the proxy (once a session: a test takes fresh buckets), stop them at the end. The
    environment is the test's business (`ENV`, set per test), so nothing leaks into other tests."""
    import boto3

    moto, port = start_moto()
    proxy, server = start_proxy(port)
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
    )
    try:
        yield MotoServer(proxy, client)
    finally:
        server.shutdown()
        moto.kill()
        moto.wait()
