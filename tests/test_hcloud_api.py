"""The one bounded wait for a Hetzner action, shared by the resize and the load balancer's interface."""

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
    assert reads == [2.0, 4.0]


def test_wait_action_stops_at_the_deadline_with_the_action_still_running():
    clock, reads = FakeClock(), []
    api = HcloudApi(TOKEN, _actions(["running"] * 100, clock, reads))
    done = wait_action(api, clock, {"id": 5, "status": "running"}, deadline=10.0, poll=3.0)
    assert done["status"] == "running"
    assert reads == [3.0, 6.0, 9.0] and clock.t == 9.0  # never sleeps past the deadline


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
