"""The lab's servers, run inside a network namespace: an echo pod or an ingress controller.

Standard library only, so it runs under any Python 3 the lab finds.

    echo    --node NAME --port 8080 --bulk-bytes N
            /node -> "NAME\\n", /bulk -> N random bytes, /mtu -> this namespace's eth0 MTU, /healthz
    ingress --port 80 --host HOST --upstream http://IP:PORT
            requests with Host HOST are proxied to the upstream (the echo Service ClusterIP, DNAT'd by
            the node's nftables like kube-proxy); another Host gets 404, a dead upstream 502.
"""

from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _mtu() -> str:
    try:
        with open("/sys/class/net/eth0/mtu") as f:
            return f.read().strip() + "\n"
    except OSError as exc:
        return f"error {exc}\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("echo", "ingress"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--node", default="")
    parser.add_argument("--bulk-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--host", default="")
    parser.add_argument("--upstream", default="")
    args = parser.parse_args()
    bulk = os.urandom(args.bulk_bytes) if args.mode == "echo" else b""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *a: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if args.mode == "echo":
                if self.path == "/node":
                    self._send(200, (args.node + "\n").encode())
                elif self.path == "/bulk":
                    self._send(200, bulk, "application/octet-stream")
                elif self.path == "/mtu":
                    self._send(200, _mtu().encode())
                elif self.path == "/healthz":
                    self._send(200, b"ok\n")
                else:
                    self._send(404, b"not found\n")
                return
            host = (self.headers.get("Host") or "").split(":")[0]
            if host != args.host:
                self._send(404, b"<html><body>404 Not Found (lab ingress)</body></html>\n", "text/html")
                return
            try:
                with urllib.request.urlopen(args.upstream + self.path, timeout=2) as resp:
                    self._send(resp.status, resp.read())
            except (urllib.error.URLError, OSError):
                self._send(502, b"<html><body>502 Bad Gateway (lab ingress)</body></html>\n", "text/html")

    # socketserver's listen backlog is 5: a burst of parallel probes overflows it, the kernel drops
    # the SYNs and they connect only on the 1 s retransmission, which the ClusterIP judge counts as
    # a lost SYN. nginx listens with 511.
    ThreadingHTTPServer.request_queue_size = 511
    server = ThreadingHTTPServer(("0.0.0.0", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
