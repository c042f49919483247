"""The Hetzner client's limits: bounded, growing polls of an action, retries with backoff on 429/locked/
conflict/5xx, the RateLimit headers read, and the error when a limit is hit (all on a fake clock)."""

from __future__ import annotations

import json

from test_resize import TOKEN, FakeClock

from keybuzz.hcloud_api import HcloudApi, wait_action


def _actions(statuses: list[str], clock: FakeClock, reads: list[float]):
    """A transport whose GET /actions/5 answers the next status of ``statuses``, noting when it was read."""

    def transport(method, url, headers, body, timeout):
        assert (method, url) == ("GET", "https://api.hetzner.cloud/v1/actions/5")
        reads.append(clock.now())
        return 200, json.dumps({"action": {"id": 5, "status": statuses.pop(0)}}).encode()

    return transport


def test_wait_action_polls_until_the_action_ends_and_returns_it():
    clock, reads = FakeClock(), []
    api = HcloudApi(TOKEN, _actions(["running", "error"], clock, reads))
    done = wait_action(api, clock, {"id": 5, "status": "running"}, deadline=60.0, poll=2.0)
    assert dict(done) == {"id": 5, "status": "error"}
    assert reads == [2.0, 5.0]  # pauses grow: 2 s, then 3 s


def test_wait_action_stops_at_the_deadline_with_the_action_still_running():
    clock, reads = FakeClock(), []
    api = HcloudApi(TOKEN, _actions(["running"] * 100, clock, reads))
    done = wait_action(api, clock, {"id": 5, "status": "running"}, deadline=10.0, poll=3.0)
    assert done["status"] == "running"
    assert reads == [3.0, 7.5, 10.0] and clock.t == 10.0  # the last read on the deadline, never after


def test_wait_action_does_not_read_an_action_already_finished():
    clock, reads = FakeClock(), []
    api = HcloudApi(TOKEN, _actions([], clock, reads))
    assert dict(wait_action(api, clock, {"id": 5, "status": "success"}, deadline=10.0, poll=3.0)) == {
        "id": 5,
        "status": "success",
    }
    assert reads == []


def test_action_problem_words_a_timeout_and_an_error_and_nothing_for_success():
    from keybuzz.hcloud_api import action_problem

    assert action_problem({"status": "success"}, 30) is None
    assert action_problem({"status": "running"}, 30) == "still 'running' after 30 s"
    failed = {"status": "error", "error": {"code": "server_disk_too_large", "message": "disk too large"}}
    assert action_problem(failed, 30) == "failed: server_disk_too_large: disk too large"


# --- retries and backoff ---------------------------------------------------------------------------

import threading  # noqa: E402
from http.server import BaseHTTPRequestHandler, HTTPServer  # noqa: E402

import pytest  # noqa: E402

from keybuzz.hcloud_api import HcloudApiError, PollSchedule, RateLimit, RetryPolicy, polls  # noqa: E402

SERVER = {"server": {"id": 42, "status": "running", "server_type": {"name": "cx23"}}}
LIMITS = {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": "1765000000"}


def answers(*replies):
    """A transport that answers each call with the next (status, body[, headers]); records (time, method)."""
    calls = []
    queue = list(replies)

    def transport(method, url, headers, body, timeout):
        calls.append(method)
        status, doc, *rest = queue.pop(0)
        return (status, json.dumps(doc).encode(), *rest)

    return transport, calls


def error(code):
    return {"error": {"code": code, "message": f"{code} (test)"}}


def api_with(transport, clock, jitter=1.0):
    return HcloudApi(TOKEN, transport, clock=clock, jitter=lambda: jitter)


def test_backoff_doubles_from_one_second_up_to_a_minute_like_hcloud_go():
    policy = RetryPolicy()
    assert [policy.backoff(i, 1.0) for i in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    # Full jitter: somewhere between the base and that value.
    assert [policy.backoff(i, 0.0) for i in range(4)] == [1, 1, 1, 1]
    assert policy.backoff(3, 0.5) == 4.5


@pytest.mark.parametrize(
    ("method", "status", "code"),
    [("GET", 429, "rate_limit_exceeded"), ("POST", 429, "rate_limit_exceeded"), ("POST", 423, "locked"),
     ("POST", 409, "conflict"), ("GET", 503, "unavailable"), ("GET", 502, "http_error"), ("GET", 500, "server_error")],
)
def test_refusals_that_did_nothing_are_retried_with_growing_pauses(method, status, code):
    clock = FakeClock()
    ok = (201, {"action": {"id": 1, "status": "running"}}) if method == "POST" else (200, SERVER)
    transport, calls = answers((status, error(code)), (status, error(code)), (status, error(code)), ok)
    api = api_with(transport, clock)
    if method == "POST":
        assert api.server_action("42", "shutdown")["id"] == 1
    else:
        assert api.get_server("42")["status"] == "running"
    assert calls == [method] * 4 and api.retries == 3
    assert clock.t == 1 + 2 + 4  # slept 1, 2, 4 s between the tries


@pytest.mark.parametrize(("status", "code"), [(503, "unavailable"), (502, "http_error"), (500, "server_error")])
def test_a_post_that_failed_on_the_server_side_is_not_retried(status, code):
    """It may have started its action: the resize re-reads the server on the next run instead."""
    clock = FakeClock()
    transport, calls = answers((status, error(code)))
    with pytest.raises(HcloudApiError) as failed:
        api_with(transport, clock).server_action("42", "change_type", {"server_type": "cx33"})
    assert calls == ["POST"] and clock.t == 0 and failed.value.status == status


@pytest.mark.parametrize(("status", "code"), [(404, "not_found"), (422, "invalid_input"), (403, "forbidden")])
def test_other_errors_are_final_at_once(status, code):
    clock = FakeClock()
    transport, calls = answers((status, error(code)))
    with pytest.raises(HcloudApiError):
        api_with(transport, clock).get_server("42")
    assert calls == ["GET"] and clock.t == 0


def test_at_the_retry_limit_the_error_says_how_long_it_tried_and_what_the_rate_limit_said():
    clock = FakeClock()
    transport, calls = answers(*[(429, error("rate_limit_exceeded"), LIMITS)] * 9)
    api = api_with(transport, clock)
    with pytest.raises(HcloudApiError) as failed:
        api.get_server("42")
    assert len(calls) == 9 and clock.t == 1 + 2 + 4 + 8 + 16 + 32 + 60 + 60
    assert str(failed.value) == (
        "rate_limit_exceeded: rate_limit_exceeded (test) (gave up after 9 tries in 183 s; rate limit: "
        "0 of 3600 requests left, full again at 05:46:40 UTC) (HTTP 429)"
    )
    assert TOKEN not in str(failed.value)


def test_rate_limit_headers_are_read_whatever_their_case_and_a_low_budget_is_noticed():
    rate = RateLimit.from_headers({"ratelimit-limit": "3600", "RATELIMIT-REMAINING": "359", "RateLimit-Reset": "x"})
    assert (rate.limit, rate.remaining, rate.reset, rate.low) == (3600, 359, None, True)
    assert RateLimit.from_headers({"RateLimit-Limit": "3600", "RateLimit-Remaining": "360"}).low is False
    assert RateLimit().low is False and RateLimit().describe() == "no rate limit headers seen"


def test_polls_grow_to_half_a_minute_and_jump_there_while_the_budget_is_low():
    clock = FakeClock()
    transport, _ = answers((200, SERVER, {**LIMITS, "RateLimit-Remaining": "3000"}),
                           (200, SERVER, {**LIMITS, "RateLimit-Remaining": "100"}))
    api = api_with(transport, clock)
    pauses = polls(api, PollSchedule(first=2.0, factor=1.5, cap=30.0))
    api.get_server("42")
    assert [next(pauses) for _ in range(3)] == [2.0, 3.0, 4.5]
    api.get_server("42")  # 100 of 3600 left: below a tenth
    assert next(pauses) == 30.0


def test_ten_nodes_polling_one_resize_each_stay_under_the_hourly_budget():
    """The issue's arithmetic: 3 s polls for 10 nodes ran out of 3,600 requests in ~25 min. A poll that
    grows to 30 s asks at most 2 a minute per node once grown: 10 nodes, 1,200 an hour."""
    reads = 0
    elapsed = 0.0
    for pause in PollSchedule().intervals():
        if elapsed >= 3600:
            break
        elapsed += pause
        reads += 1
    assert reads * 10 < 3600 / 2


def test_the_real_transport_hands_back_the_rate_limit_headers():
    served = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            status, doc = (429, error("rate_limit_exceeded")) if not served else (200, SERVER)
            served.append(status)
            body = json.dumps(doc).encode()
            self.send_response(status)
            for key, value in {**LIMITS, "RateLimit-Remaining": str(len(served) - 1)}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=lambda: [server.handle_request() for _ in range(2)], daemon=True)
    thread.start()
    clock = FakeClock()
    api = HcloudApi(TOKEN, base_url=f"http://127.0.0.1:{server.server_port}/v1", clock=clock, jitter=lambda: 0.0)
    assert api.get_server("42")["status"] == "running"
    thread.join(5)
    server.server_close()
    assert served == [429, 200] and clock.t == 1.0
    assert api.rate == RateLimit(limit=3600, remaining=1, reset=1765000000)


def test_hcloud_endpoint_moves_the_calls_as_it_moves_the_provider(monkeypatch):
    seen = []

    def transport(method, url, headers, body, timeout):
        seen.append(url)
        return 200, b'{"action": {"id": 5, "status": "success"}}'

    monkeypatch.setenv("HCLOUD_ENDPOINT", "http://127.0.0.1:9999/v1/")
    HcloudApi(TOKEN, transport).get_action(5)
    monkeypatch.delenv("HCLOUD_ENDPOINT")
    HcloudApi(TOKEN, transport).get_action(5)
    assert seen == ["http://127.0.0.1:9999/v1/actions/5", "https://api.hetzner.cloud/v1/actions/5"]
