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
input, so it is never in Pulumi state, diffs or messages. The transport and the clock are
injectable for tests.

Limits (docs.hetzner.cloud, "Rate Limiting"): 3,600 requests an hour per project, refilled at one a
second; every answer carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``
(UNIX time when the budget is full again); an empty budget answers ``429 rate_limit_exceeded``.
The client retries like hcloud-go (hcloud/client_handler_retry.go, client.go: exponential backoff
from 1 s, x2, capped at 60 s, jittered between the base and that value), on the answers that say
"nothing was done, try again": ``429``, ``locked`` (423: another action runs on the resource) and
``conflict`` (409), for any method; ``502``/``503``/``504`` (and 500) only for GET, as hcloud-go does:
a POST that failed there may or may not have started its action, and the resize re-reads the server
before each step instead. Polls of a running action or status start short and grow (``PollSchedule``),
and go to the longest interval while the budget is below a tenth of the limit.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

API_URL = "https://api.hetzner.cloud/v1"
TOKEN_ENV = "HCLOUD_TOKEN"
# The hcloud provider's endpoint override (terraform-provider-hcloud: `endpoint` defaults from it): honoured
# here too, so the provider, bin/deploy's token check and these calls all talk to the same API.
ENDPOINT_ENV = "HCLOUD_ENDPOINT"
REQUEST_TIMEOUT_SECONDS = 30.0

# (method, url, headers, body or None, timeout) -> (HTTP status, response body[, response headers])
Answer = "tuple[int, bytes] | tuple[int, bytes, Mapping[str, str]]"
Transport = Callable[[str, str, dict[str, str], "bytes | None", float], Answer]

# Answers that mean "refused, nothing was done": retried for any method.
RETRY_ANY_METHOD = {429: "rate_limit_exceeded", 423: "locked", 409: "conflict"}
RETRY_CODES = frozenset(RETRY_ANY_METHOD.values())
# Server-side failures: retried for GET only (hcloud-go: 502, 503, 504; 500 added, a read is harmless).
RETRY_GET_STATUSES = frozenset({500, 502, 503, 504})


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


@dataclass(frozen=True)
class RetryPolicy:
    """hcloud-go's defaults (client.go ``NewClient``): 1 s, doubling, capped at 60 s; more tries than its 5,
    since a rollout's batch shares one project's budget and a 429 there only means "wait"."""

    base: float = 1.0
    multiplier: float = 2.0
    cap: float = 60.0
    max_retries: int = 8  # 1+2+4+8+16+32+60+60 s at most: about 3 minutes

    def backoff(self, retries: int, jitter: float) -> float:
        """Seconds before retry number ``retries`` (0-based); ``jitter`` in [0, 1] picks a point between
        the base and the exponential value (hcloud-go's full jitter)."""
        value = min(self.cap, self.base * self.multiplier**retries)
        return self.base + (value - self.base) * jitter


@dataclass(frozen=True)
class RateLimit:
    """What the last answer said of the project's budget (None where a header was missing)."""

    limit: int | None = None
    remaining: int | None = None
    reset: int | None = None  # UNIX time when the budget is full again

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit:
        lowered = {k.lower(): v for k, v in headers.items()}

        def number(name: str) -> int | None:
            try:
                return int(str(lowered[name]).strip())
            except (KeyError, ValueError):
                return None

        return cls(number("ratelimit-limit"), number("ratelimit-remaining"), number("ratelimit-reset"))

    @property
    def low(self) -> bool:
        """Below a tenth of the limit: polls slow down to leave the budget to the calls that act."""
        return self.limit is not None and self.remaining is not None and self.remaining < self.limit / 10

    def describe(self) -> str:
        if self.remaining is None:
            return "no rate limit headers seen"
        reset = (
            time.strftime("%H:%M:%S UTC", time.gmtime(self.reset)) if self.reset is not None else "an unknown time"
        )
        limit = self.limit if self.limit is not None else "?"
        return f"{self.remaining} of {limit} requests left, full again at {reset}"


@dataclass(frozen=True)
class PollSchedule:
    """Pauses between two reads of a running action or status: ``first``, growing by ``factor`` up to ``cap``."""

    first: float = 2.0
    factor: float = 1.5
    cap: float = 30.0

    def intervals(self) -> Iterator[float]:
        interval = self.first
        while True:
            yield interval
            interval = min(self.cap, interval * self.factor)


def urllib_transport(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
) -> tuple[int, bytes]:
    """The real transport: one HTTPS request; HTTP errors are answers (their body holds the reason)."""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (fixed https URL)
            return response.status, response.read(), dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers.items()) if exc.headers else {}
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
    """The endpoints the resize needs; every call returns the decoded JSON object or raises HcloudApiError.

    ``clock`` paces retries (the real one by default); ``jitter`` returns a number in [0, 1] per retry.
    ``rate`` is what the last answer said of the budget.
    """

    def __init__(
        self,
        token: str,
        transport: Transport | None = None,
        base_url: str | None = None,
        *,
        clock: Clock | None = None,
        retry: RetryPolicy = RetryPolicy(),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._token = token
        self._transport = transport or urllib_transport
        self._base_url = (base_url or os.environ.get(ENDPOINT_ENV) or API_URL).rstrip("/")
        self._clock = clock or MonotonicClock()
        self._retry = retry
        self._jitter = jitter
        self.rate = RateLimit()
        self.retries = 0  # retries done by this client, all calls together

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
        """One call, retried with backoff while Hetzner answers "nothing done, try again" (see the module)."""
        start = self._clock.now()
        for retries in range(self._retry.max_retries + 1):
            try:
                return self._call_once(method, path, body)
            except HcloudApiError as exc:
                if not _retryable(method, exc) or retries == self._retry.max_retries:
                    if retries:
                        exc.message += (
                            f" (gave up after {retries + 1} tries in {self._clock.now() - start:.0f} s; "
                            f"rate limit: {self.rate.describe()})"
                        )
                        exc.args = (f"{exc.code}: {exc.message}" + (f" (HTTP {exc.status})" if exc.status else ""),)
                    raise
            self.retries += 1
            self._clock.sleep(self._retry.backoff(retries, self._jitter()))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _call_once(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        answer = self._transport(method, self._base_url + path, headers, data, REQUEST_TIMEOUT_SECONDS)
        status, raw = answer[0], answer[1]
        if len(answer) > 2:
            self.rate = RateLimit.from_headers(answer[2])  # type: ignore[misc]
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


def _retryable(method: str, exc: HcloudApiError) -> bool:
    if exc.status in RETRY_ANY_METHOD or exc.code in RETRY_CODES:
        return True
    return method == "GET" and exc.status in RETRY_GET_STATUSES


def polls(api: HcloudApi, schedule: PollSchedule | float) -> Iterator[float]:
    """Pauses between reads: ``schedule``'s growing intervals (a number: that many seconds to start
    with), and its longest while the project's budget is low."""
    if not isinstance(schedule, PollSchedule):
        schedule = PollSchedule(first=float(schedule), cap=max(float(schedule), PollSchedule.cap))
    for interval in schedule.intervals():
        yield schedule.cap if api.rate.low else interval


def wait_action(
    api: HcloudApi, clock: Clock, action: Mapping[str, Any], deadline: float, poll: PollSchedule | float
) -> Mapping[str, Any]:
    """Poll ``action`` until ``success`` or ``error``, at most ``deadline`` seconds, at growing intervals.

    Returns the last state read: its ``status`` is still ``running`` when the deadline passed; the
    caller words the failure (it knows which node or load balancer, and what is left to do).
    """
    start = clock.now()
    current: Mapping[str, Any] = action
    pauses = polls(api, poll)
    while current.get("status") not in ("success", "error"):
        pause = next(pauses)
        left = deadline - (clock.now() - start)
        if left <= 0:
            return current
        clock.sleep(min(pause, left))  # the last read falls on the deadline, never after it
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
