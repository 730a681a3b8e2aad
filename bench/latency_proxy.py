"""An HTTP forwarder that adds a fixed delay to every request: S3's round trip in front of a local moto server.

    python bench/latency_proxy.py UPSTREAM_PORT [--port 0] [--delay-ms 20]

Each request waits `delay` before it is forwarded (one thread a request, so requests in flight wait together,
as they would on a network), then goes to 127.0.0.1:UPSTREAM_PORT; the answer streams back in 1 MB pieces.
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


def start(upstream: int, delay: float, port: int = 0) -> ThreadingHTTPServer:
    """A running proxy (its port: `server.server_address[1]`); `server.delay` may be changed while it runs."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stall

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            body = self._body()
            time.sleep(server.delay)
            upstream_conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            upstream_conn.request(self.command, self.path, body=body, headers=headers)
            resp = upstream_conn.getresponse()
            length = resp.getheader("Content-Length")
            data = b"" if length is not None else resp.read()  # chunked upstream: buffered, then sent with a length
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP_BY_HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", length if length is not None else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                while chunk := (data or resp.read(1 << 20)):
                    self.wfile.write(chunk)
                    data = b""
            upstream_conn.close()

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                    out += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline().strip():  # trailers
                    pass
                return bytes(out)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128
        delay = 0.0

    server = Server(("127.0.0.1", port), Handler)
    server.delay = delay
    threading.Thread(target=server.serve_forever, daemon=True, name="latency-proxy").start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("upstream", type=int, help="port of the server on 127.0.0.1 to forward to")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args()
    server = start(args.upstream, args.delay_ms / 1000, args.port)
    print(
        f"http://127.0.0.1:{server.server_address[1]} -> 127.0.0.1:{args.upstream}, +{args.delay_ms:g} ms", flush=True
    )
    threading.Event().wait()


if __name__ == "__main__":
    main()
