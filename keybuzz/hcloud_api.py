"""A tiny Hetzner Cloud API client for the few calls the program makes itself (server resize).

Why not the hcloud provider: its in-place ``server_type`` change is a hard ``poweroff`` followed by
``change_type`` with ``upgrade_disk: true`` (terraform-provider-hcloud), with no drain and no way
back to a smaller type. The resize resource (keybuzz/resize.py) shuts down gracefully instead, and
needs only four endpoints (docs.hetzner.cloud, "Server Actions", "Actions"):

- ``GET  /servers/{id}``                    -> ``{"server": {"status": ..., "server_type": {"name": ...}}}``
- ``POST /servers/{id}/actions/shutdown``   -> ACPI shutdown request; ``{"action": {...}}``
- ``POST /servers/{id}/actions/change_type`` ``{"server_type": "cx33", "upgrade_disk": false}``
- ``POST /servers/{id}/actions/poweron``
- ``GET  /actions/{id}``                    -> ``{"action": {"status": "running|success|error", "error": ...}}``

and, for the API load balancer's public interface (keybuzz/lb_public.py; "Load Balancer Actions"):

- ``GET  /load_balancers/{id}``             -> ``{"load_balancer": {"public_net": {"enabled": ...}}}``
- ``POST /load_balancers/{id}/actions/enable_public_interface`` (or ``disable_public_interface``)

Errors come back as ``{"error": {"code": "...", "message": "..."}}``. The token is read from
``HCLOUD_TOKEN`` in the process that talks to the API (the dynamic provider), never passed as an
input, so it is never in Pulumi state, diffs or messages. The transport is injectable for tests.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol

API_URL = "https://api.hetzner.cloud/v1"
TOKEN_ENV = "HCLOUD_TOKEN"
# The hcloud provider's endpoint override (terraform-provider-hcloud: `endpoint` defaults from it): honoured
# here too, so the provider, bin/deploy's token check and these calls all talk to the same API.
ENDPOINT_ENV = "HCLOUD_ENDPOINT"
REQUEST_TIMEOUT_SECONDS = 30.0

# (method, url, headers, body or None, timeout) -> (HTTP status, response body)
Transport = Callable[[str, str, dict[str, str], "bytes | None", float], tuple[int, bytes]]


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock; tests pass a fake one that advances on ``sleep``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class HcloudApiError(Exception):
    """A failed call: Hetzner's error code and message (or the transport's reason), never the token."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{code}: {message}" + (f" (HTTP {status})" if status else ""))


def urllib_transport(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
) -> tuple[int, bytes]:
    """The real transport: one HTTPS request; HTTP errors are answers (their body holds the reason)."""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (fixed https URL)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HcloudApiError("unreachable", f"Hetzner Cloud API not reachable: {reason}") from None


def token_from_env(environ: dict[str, str] | None = None) -> str:
    """The project token; a clear error when it is missing (the provider runs under `pulumi up`'s env)."""
    token = (environ if environ is not None else os.environ).get(TOKEN_ENV, "").strip()
    if not token:
        raise HcloudApiError(
            "no_token", f"{TOKEN_ENV} is not set in the environment of `pulumi up` (export it, see README)"
        )
    return token


class HcloudApi:
    """The endpoints the resize needs; every call returns the decoded JSON object or raises HcloudApiError."""

    def __init__(self, token: str, transport: Transport | None = None, base_url: str | None = None) -> None:
        self._token = token
        self._transport = transport or urllib_transport
        self._base_url = (base_url or os.environ.get(ENDPOINT_ENV) or API_URL).rstrip("/")

    def get_server(self, server_id: str) -> dict[str, Any]:
        return self._call("GET", f"/servers/{server_id}")["server"]

    def server_action(self, server_id: str, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a server action (``shutdown``, ``change_type``, ``poweron``); returns the action object."""
        return self._call("POST", f"/servers/{server_id}/actions/{action}", body if body is not None else {})[
            "action"
        ]

    def get_load_balancer(self, load_balancer_id: str) -> dict[str, Any]:
        return self._call("GET", f"/load_balancers/{load_balancer_id}")["load_balancer"]

    def load_balancer_action(self, load_balancer_id: str, action: str) -> dict[str, Any]:
        """Start a load balancer action without a body (``enable_public_interface``...); returns the action."""
        return self._call("POST", f"/load_balancers/{load_balancer_id}/actions/{action}", {})["action"]

    def get_action(self, action_id: int | str) -> dict[str, Any]:
        return self._call("GET", f"/actions/{action_id}")["action"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, raw = self._transport(method, self._base_url + path, headers, data, REQUEST_TIMEOUT_SECONDS)
        try:
            decoded = json.loads(raw or b"{}")
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            decoded = {}
        error = decoded.get("error")
        if status >= 400 or error:
            error = error if isinstance(error, dict) else {}
            raise HcloudApiError(
                str(error.get("code") or "http_error"),
                _scrub(str(error.get("message") or raw[:200].decode(errors="replace")), self._token),
                status,
            )
        if not decoded:
            raise HcloudApiError("bad_response", f"unexpected answer to {method} {path}", status)
        return decoded


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "[token]") if token else text


def wait_action(
    api: HcloudApi, clock: Clock, action: Mapping[str, Any], deadline: float, poll: float
) -> Mapping[str, Any]:
    """Poll ``action`` until ``success`` or ``error``, at most ``deadline`` seconds.

    Returns the last state read: its ``status`` is still ``running`` when the deadline passed; the
    caller words the failure (it knows which node or load balancer, and what is left to do).
    """
    start = clock.now()
    current: Mapping[str, Any] = action
    while current.get("status") not in ("success", "error"):
        if clock.now() - start + poll > deadline:
            return current
        clock.sleep(poll)
        current = api.get_action(action["id"])
    return current


def action_problem(action: Mapping[str, Any], deadline: float) -> str | None:
    """What went wrong with an action ``wait_action`` returned: still running at the deadline, or
    Hetzner's error code and message; None when it succeeded. Callers add which resource and step."""
    status = action.get("status")
    if status == "success":
        return None
    if status == "error":
        error = action.get("error") or {}
        return f"failed: {error.get('code', 'error')}: {error.get('message', '')}"
    return f"still '{status}' after {deadline:.0f} s"
