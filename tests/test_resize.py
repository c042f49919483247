"""ServerTypeChange: the resize plan as data, and the provider against a fake Hetzner API and clock."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc

from keybuzz import hcloud_api, resize
from keybuzz.resize import CHANGE_TYPE, POWERON, SHUTDOWN, WAIT_OFF, WAIT_RUNNING, ServerTypeChangeProvider

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hz-test-token-0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class FakeHetzner:
    """A server 42 that behaves like Hetzner's: statuses change with (fake) time, actions finish later."""

    def __init__(self, clock, status="running", server_type="cx23", acpi_works=True, change_type_error=None,
                 http_error=None):
        self.clock = clock
        self.status = status
        self.server_type = server_type
        self.acpi_works = acpi_works
        self.change_type_error = change_type_error
        self.http_error = http_error  # (action, status, code, message): the POST is refused
        self.transitions: list[tuple[float, str]] = []
        self.actions: dict[int, dict] = {}
        self.calls: list[tuple[str, str, dict | None]] = []

    def _advance(self) -> None:
        while self.transitions and self.transitions[0][0] <= self.clock.now():
            self.status = self.transitions.pop(0)[1]
        for action in self.actions.values():
            if action["status"] == "running" and action["done_at"] <= self.clock.now():
                action["status"] = action["final"]
                if action["final"] == "success" and action.get("then"):
                    action["then"]()

    def _action(self, command, takes, final="success", error=None, then=None) -> dict:
        action_id = len(self.actions) + 1
        self.actions[action_id] = {"id": action_id, "command": command, "status": "running", "progress": 0,
                                   "error": error, "done_at": self.clock.now() + takes, "final": final, "then": then}
        return self._public(action_id)

    def _public(self, action_id) -> dict:
        a = self.actions[action_id]
        return {"id": a["id"], "command": a["command"], "status": a["status"], "error": a["error"]}

    def __call__(self, method, url, headers, body, timeout):
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert url.startswith(hcloud_api.API_URL + "/") and timeout > 0
        path = url[len(hcloud_api.API_URL):]
        payload = json.loads(body) if body else None
        self.calls.append((method, path, payload))
        self._advance()
        if method == "GET" and path == "/servers/42":
            return 200, json.dumps({"server": {"id": 42, "status": self.status,
                                               "server_type": {"name": self.server_type}}}).encode()
        if method == "GET" and path.startswith("/actions/"):
            return 200, json.dumps({"action": self._public(int(path.rsplit("/", 1)[1]))}).encode()
        action = path.rsplit("/", 1)[1]
        if self.http_error and self.http_error[0] == action:
            _, status, code, message = self.http_error
            return status, json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
        if action == "shutdown":
            if self.acpi_works:
                now = self.clock.now()
                self.transitions += [(now, "stopping"), (now + 12, "off")]
            return 201, json.dumps({"action": self._action("shutdown_server", 1)}).encode()
        if action == "change_type":
            assert self.status == "off", "Hetzner only changes the type of a stopped server"
            if self.change_type_error:
                code, message = self.change_type_error
                act = self._action("change_server_type", 30, "error", {"code": code, "message": message})
            else:
                act = self._action("change_server_type", 90,
                                   then=lambda: setattr(self, "server_type", payload["server_type"]))
            return 201, json.dumps({"action": act}).encode()
        if action == "poweron":
            now = self.clock.now()
            self.transitions += [(now, "starting"), (now + 20, "running")]
            return 201, json.dumps({"action": self._action("start_server", 5)}).encode()
        return 404, json.dumps({"error": {"code": "not_found", "message": path}}).encode()

    def distinct_calls(self) -> list[tuple[str, str, dict | None]]:
        """The calls with repeated polls folded into one."""
        out: list = []
        for call in self.calls:
            if not out or out[-1] != call:
                out.append(call)
        return out


def props(server_type="cx33", upgrade_disk=False, server_id="42", node="keybuzz-prod-workers-1"):
    return {"serverId": server_id, "nodeName": node, "serverType": server_type, "upgradeDisk": upgrade_disk}


@pytest.fixture(autouse=True)
def token(monkeypatch):
    monkeypatch.setenv("HCLOUD_TOKEN", TOKEN)


def provider_with(fake, clock):
    return ServerTypeChangeProvider(transport=fake, clock=clock)


# --- the plan, as data ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "current", "target", "steps"),
    [
        ("running", "cx23", "cx33", (SHUTDOWN, WAIT_OFF, CHANGE_TYPE, POWERON, WAIT_RUNNING)),
        ("stopping", "cx23", "cx33", (WAIT_OFF, CHANGE_TYPE, POWERON, WAIT_RUNNING)),
        ("off", "cx23", "cx33", (CHANGE_TYPE, POWERON, WAIT_RUNNING)),  # a run that failed after the shutdown
        ("off", "cx33", "cx33", (POWERON, WAIT_RUNNING)),  # failed after change_type: only start it again
        ("starting", "cx33", "cx33", (WAIT_RUNNING,)),
        ("running", "cx33", "cx33", ()),  # e.g. a new server created with the type
    ],
)
def test_resize_steps_follow_the_observed_state(status, current, target, steps):
    assert resize.resize_steps(status, current, target) == steps


@pytest.mark.parametrize("status", ["migrating", "rebuilding", "initializing", "deleting", "unknown"])
def test_resize_refuses_to_start_from_a_busy_server(status):
    with pytest.raises(resize.ResizeRefused, match=f"server is '{status}'"):
        resize.resize_steps(status, "cx23", "cx33")


@pytest.mark.parametrize(
    ("olds", "news", "changed"),
    [
        (props("cx23"), props("cx33"), ["serverType"]),
        (props(upgrade_disk=False), props(upgrade_disk=True), ["upgradeDisk"]),
        (props(server_id="42"), props(server_id="77"), ["serverId"]),
        (props(), props(), []),
    ],
)
def test_diff_reports_type_disk_and_server_changes_and_never_replaces(olds, news, changed):
    assert resize.changed_props(olds, news) == changed
    diff = ServerTypeChangeProvider().diff("id", olds, news)
    assert (diff.changes, diff.replaces, diff.delete_before_replace) == (bool(changed), [], False)


def test_check_refuses_malformed_inputs_and_passes_unknowns():
    bad = ServerTypeChangeProvider().check({}, {"nodeName": "", "serverType": "CX 33", "upgradeDisk": "yes"})
    assert sorted(f.property for f in bad.failures) == ["nodeName", "serverType", "upgradeDisk"]
    preview = props(server_id=rpc.UNKNOWN)
    preview["serverType"] = rpc.UNKNOWN
    assert ServerTypeChangeProvider().check({}, preview).failures == []
    ok = ServerTypeChangeProvider().check(props("cx23"), props("cx22"))  # a downgrade is Hetzner's to refuse
    assert ok.failures == [] and ok.inputs == props("cx22")


# --- the provider against the fake API -----------------------------------------------------------


def test_update_shuts_down_gracefully_changes_type_keeping_the_disk_and_starts_again():
    clock = FakeClock()
    fake = FakeHetzner(clock)
    result = provider_with(fake, clock).update("id", props("cx23"), props("cx33"))
    assert result.outs == props("cx33")
    assert fake.distinct_calls() == [
        ("GET", "/servers/42", None),
        ("POST", "/servers/42/actions/shutdown", {}),
        ("GET", "/servers/42", None),  # polled until 'off'
        ("POST", "/servers/42/actions/change_type", {"server_type": "cx33", "upgrade_disk": False}),
        ("GET", "/actions/2", None),  # polled until 'success'
        ("POST", "/servers/42/actions/poweron", {}),
        ("GET", "/actions/3", None),
        ("GET", "/servers/42", None),  # polled until 'running'
    ]
    assert (fake.server_type, fake.status) == ("cx33", "running")
    assert not any(path.endswith(("poweroff", "reset")) for _, path, _ in fake.calls)


def test_update_passes_upgrade_disk_when_the_operator_opted_in():
    clock = FakeClock()
    fake = FakeHetzner(clock)
    provider_with(fake, clock).update("id", props("cx23"), props("cx33", upgrade_disk=True))
    sent = [body for _, path, body in fake.calls if path.endswith("change_type")]
    assert sent == [{"server_type": "cx33", "upgrade_disk": True}]


def test_a_server_ignoring_acpi_fails_within_the_deadline_and_is_never_forced_off():
    clock = FakeClock()
    fake = FakeHetzner(clock, acpi_works=False)
    with pytest.raises(resize.ResizeFailed) as failed:
        provider_with(fake, clock).update("id", props("cx23"), props("cx33"))
    message = str(failed.value)
    assert message.startswith("keybuzz-prod-workers-1: still 'running' 180 s after an ACPI shutdown")
    assert "no hard poweroff" in message
    assert clock.now() <= resize.Deadlines().shutdown
    assert [path for m, path, _ in fake.calls if m == "POST"] == ["/servers/42/actions/shutdown"]


def test_a_failed_change_type_names_node_action_and_hetzners_error_and_does_not_power_on():
    clock = FakeClock()
    fake = FakeHetzner(clock, server_type="cx33",
                       change_type_error=("server_disk_too_large", "disk is larger than the new type's"))
    with pytest.raises(resize.ResizeFailed) as failed:
        provider_with(fake, clock).update("id", props("cx33"), props("cx23"))
    assert str(failed.value) == (
        "keybuzz-prod-workers-1: Hetzner action 'change_type' failed: server_disk_too_large: disk is larger "
        "than the new type's. The server may be left off; `pulumi up` resumes from here. "
        "Server 42 was last seen 'off' (type cx33) when 'change_type' failed."
    )
    assert not any(path.endswith("poweron") for _, path, _ in fake.calls)


def test_an_api_refusal_names_the_step_and_hetzners_code_and_never_the_token():
    clock = FakeClock()
    fake = FakeHetzner(clock, http_error=("shutdown", 423, "locked", f"server is locked (token {TOKEN})"))
    with pytest.raises(resize.ResizeFailed) as failed:
        provider_with(fake, clock).update("id", props("cx23"), props("cx33"))
    message = str(failed.value)
    assert message.startswith("keybuzz-prod-workers-1: Hetzner refused 'shutdown' on server 42: locked: server is")
    assert "(HTTP 423)" in message and TOKEN not in message


def test_a_hung_change_type_action_fails_at_its_deadline():
    clock = FakeClock()
    fake = FakeHetzner(clock)
    deadlines = resize.Deadlines(shutdown=60, change_type=30, poweron=60, poll=5)
    with pytest.raises(resize.ResizeFailed, match=r"'change_type' \(id 2\) still 'running' after 30 s") as failed:
        ServerTypeChangeProvider(fake, clock, deadlines).update("id", props("cx23"), props("cx33"))
    assert clock.now() <= 12 + 30 + 5 + 7.5  # shutdown took 12 s, seen off at most one (grown) poll later
    assert str(failed.value).endswith(
        "The server may be left off; `pulumi up` resumes from here. "
        "Server 42 was last seen 'off' (type cx23) when 'change_type' failed."
    )


def test_a_rerun_after_a_failure_resumes_where_it_stopped():
    clock = FakeClock()
    fake = FakeHetzner(clock, status="off", server_type="cx33")  # type changed, never powered on
    provider_with(fake, clock).update("id", props("cx23"), props("cx33"))
    assert [path for m, path, _ in fake.calls if m == "POST"] == ["/servers/42/actions/poweron"]
    assert fake.status == "running"


def test_a_disk_flag_change_alone_makes_no_api_call(monkeypatch):
    monkeypatch.delenv("HCLOUD_TOKEN")

    def no_calls(*_args):
        raise AssertionError("no API call expected")

    olds, news = props(upgrade_disk=False), props(upgrade_disk=True)  # it matters only for the next change
    result = ServerTypeChangeProvider(transport=no_calls, clock=FakeClock()).update("id", olds, news)
    assert result.outs == news


def test_a_new_server_of_the_configured_type_is_only_read():
    clock = FakeClock()
    fake = FakeHetzner(clock, server_type="cx33")
    result = provider_with(fake, clock).update("id", props("cx33", server_id="77"), props("cx33", server_id="42"))
    assert fake.distinct_calls() == [("GET", "/servers/42", None)]
    assert result.outs == props("cx33", server_id="42")


def test_a_new_server_created_with_an_old_type_is_corrected_from_its_observed_type():
    """The inputs say cx33 before and after, but Hetzner reports cx23: the server was created with the type
    recorded at first creation (ignore_changes keeps old inputs on replacement, pulumi PR 2657)."""
    clock = FakeClock()
    fake = FakeHetzner(clock, server_type="cx23")
    provider_with(fake, clock).update("id", props("cx33", server_id="77"), props("cx33", server_id="42"))
    actions = [path for method, path, _ in fake.distinct_calls() if method == "POST"]
    assert actions == ["/servers/42/actions/shutdown", "/servers/42/actions/change_type", "/servers/42/actions/poweron"]
    assert fake.server_type == "cx33" and fake.status == "running"


def test_create_makes_no_api_call_and_records_the_type():
    def no_calls(*_args):
        raise AssertionError("no API call expected")

    created = ServerTypeChangeProvider(transport=no_calls).create(props("cx33"))
    assert created.id == "server-type-keybuzz-prod-workers-1"
    assert created.outs == props("cx33")


def test_a_missing_token_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("HCLOUD_TOKEN")
    with pytest.raises(hcloud_api.HcloudApiError, match="HCLOUD_TOKEN is not set"):
        ServerTypeChangeProvider(clock=FakeClock()).update("id", props("cx23"), props("cx33"))


def test_the_token_is_never_an_input_or_output():
    outs = ServerTypeChangeProvider().create(props())
    assert TOKEN not in json.dumps(outs.outs)
    assert set(outs.outs) == {"serverId", "nodeName", "serverType", "upgradeDisk"}


# --- the real transport, against a local HTTP server ---------------------------------------------


def test_urllib_transport_returns_hetzner_errors_as_answers():
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            seen["auth"] = self.headers["Authorization"]
            seen["body"] = self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"error": {"code": "invalid_input", "message": "server type unknown"}}).encode()
            self.send_response(422)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    api = hcloud_api.HcloudApi(TOKEN, base_url=f"http://127.0.0.1:{server.server_port}/v1")
    with pytest.raises(hcloud_api.HcloudApiError) as failed:
        api.server_action("42", "change_type", {"server_type": "zz", "upgrade_disk": False})
    thread.join(5)
    server.server_close()
    assert (failed.value.code, failed.value.message, failed.value.status) == ("invalid_input", "server type unknown",
                                                                              422)
    assert seen == {"auth": f"Bearer {TOKEN}", "body": b'{"server_type": "zz", "upgrade_disk": false}'}


# --- the provider as the engine runs it: dill into a fresh process -------------------------------

FRESH_PROCESS = r"""
import base64, json, sys
import dill
provider = dill.loads(base64.b64decode(sys.stdin.read()))
olds, news = json.loads(sys.argv[1]), json.loads(sys.argv[2])
diff = provider.diff("id", olds, news)
created = provider.create(news)
recorded = provider.update("id", dict(news, upgradeDisk=not news["upgradeDisk"]), news)
print(json.dumps({
    "class": type(provider).__module__ + "." + type(provider).__qualname__,
    "changes": diff.changes,
    "replaces": diff.replaces,
    "created": created.outs,
    "recorded": recorded.outs,
    "check_failures": [f.property for f in provider.check({}, dict(news, serverType="BAD TYPE")).failures],
}))
"""


def test_provider_round_trips_through_dill_into_a_fresh_process():
    blob = serialize_provider(ServerTypeChangeProvider())
    raw = base64.b64decode(blob)
    assert b"keybuzz.resize" in raw and b"ServerTypeChangeProvider" in raw  # by reference: no code, no token
    assert len(raw) < 1024
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, json.dumps(props("cx23")), json.dumps(props("cx33"))],
        input=blob, cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "class": "keybuzz.resize.ServerTypeChangeProvider",
        "changes": True,
        "replaces": [],
        "created": props("cx33"),
        "recorded": props("cx33"),  # only the disk flag changed: recorded without an API call or a token
        "check_failures": ["serverType"],
    }


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (502, b"<html>Bad Gateway</html>", "http_error"),  # a proxy's page, not JSON
        (200, b"[]", "bad_response"),
        (200, b"", "bad_response"),
        (409, b'{"error": {"code": "conflict", "message": "locked by action 7"}}', "conflict"),
    ],
)
def test_unexpected_answers_become_api_errors(status, body, code):
    clock = FakeClock()
    api = hcloud_api.HcloudApi(TOKEN, transport=lambda *_args: (status, body), clock=clock)
    with pytest.raises(hcloud_api.HcloudApiError) as failed:
        api.get_server("42")
    assert failed.value.code == code
    assert TOKEN not in str(failed.value)
    # A 502 on a read and a conflict are retried with backoff before the error; the others are final.
    assert api.retries == (8 if status in (502, 409) else 0)


# --- limits: a resize that hits Hetzner's rate limit or a deadline -----------------------------------


def test_a_resize_that_hits_the_rate_limit_names_the_node_and_the_state_its_server_was_left_in():
    clock = FakeClock()
    fake = FakeHetzner(clock)
    limits = {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": "1765000000"}

    def empty_after_shutdown(method, url, headers, body, timeout):
        """Hetzner's budget runs out once the shutdown was accepted: every later read gets 429."""
        if any(path.endswith("/shutdown") for _, path, _ in fake.calls) and fake.clock.now() > 4:
            fake.calls.append((method, url[len(hcloud_api.API_URL):], None))
            error = {"error": {"code": "rate_limit_exceeded", "message": "limit reached"}}
            return 429, json.dumps(error).encode(), limits
        return fake(method, url, headers, body, timeout)

    api = hcloud_api.HcloudApi(TOKEN, empty_after_shutdown, clock=clock, jitter=lambda: 1.0)
    with pytest.raises(resize.ResizeFailed) as failed:
        resize.run_resize(api, clock, "42", "keybuzz-prod-workers-7", "cx33", False)
    assert str(failed.value) == (
        "keybuzz-prod-workers-7: Hetzner refused 'wait-off' on server 42: rate_limit_exceeded: limit reached "
        "(gave up after 9 tries in 183 s; rate limit: 0 of 3600 requests left, full again at 05:46:40 UTC) "
        "(HTTP 429). Server 42 was last seen 'stopping' (type cx23) when 'wait-off' failed."
    )
    # Nothing was forced: no poweroff, no change_type on a server not seen off.
    assert [path for m, path, _ in fake.calls if m == "POST"] == ["/servers/42/actions/shutdown"]


def test_a_resize_polls_less_as_it_waits():
    clock = FakeClock()
    fake = FakeHetzner(clock)
    provider_with(fake, clock).update("id", props("cx23"), props("cx33"))
    gets = [c for c in fake.calls if c[0] == "GET"]
    # Shutdown 12 s, change_type 90 s, boot 20 s: 3 s polls would read ~45 times; growing ones far fewer.
    assert len(gets) <= 20 and fake.server_type == "cx33" and fake.status == "running"
