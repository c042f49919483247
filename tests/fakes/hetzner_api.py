"""A stand-in Hetzner Cloud API on 127.0.0.1: answers GET /v1/locations as Hetzner does, for one token.

bin/deploy (keybuzz/preflight.py) and the hcloud provider read the endpoint from HCLOUD_ENDPOINT.
Hetzner's 401 body: {"error": {"code": "unauthorized", "message": "unable to authenticate", ...}}
(docs.hetzner.cloud, "Errors").
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A well-formed token (64 letters and digits) the stand-in accepts; not a real one.
GOOD_TOKEN = "Kb19" * 16
LOCATIONS = {"locations": [{"id": 1, "name": "fsn1", "network_zone": "eu-central"}], "meta": {}}


class HetznerApi:
    """Start with ``with HetznerApi() as api``; ``api.endpoint`` is the HCLOUD_ENDPOINT to use."""

    def __init__(self, accepted: str = GOOD_TOKEN) -> None:
        self.accepted = accepted
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Authorization header)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                api.requests.append(("GET", self.path, self.headers.get("Authorization", "")))
                if self.headers.get("Authorization") != f"Bearer {api.accepted}":
                    status = 401
                    body = {"error": {"code": "unauthorized", "message": "unable to authenticate", "details": {}}}
                elif self.path.split("?")[0] == "/v1/locations":
                    status, body = 200, LOCATIONS
                else:
                    status, body = 404, {"error": {"code": "not_found", "message": "not found", "details": {}}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HetznerApi:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()
