"""keybuzz/lb_public.py: the API load balancer's public interface switch, against a fake Hetzner API."""

from __future__ import annotations

import json

import pytest
from test_resize import TOKEN, FakeClock

from keybuzz import lb_public
from keybuzz.hcloud_api import HcloudApi


def fake_hetzner(enabled: bool, final: str = "success", finishes: bool = True, refuse: bool = False):
    calls: list[tuple[str, str]] = []

    def transport(method, url, headers, body, timeout):
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        path = url.split("/v1", 1)[1]
        calls.append((method, path))
        if method == "GET" and path == "/load_balancers/7":
            return 200, json.dumps({"load_balancer": {"public_net": {"enabled": enabled}}}).encode()
        if method == "POST" and refuse:
            return 423, b'{"error": {"code": "locked", "message": "load balancer is locked"}}'
        if method == "POST":
            return 201, b'{"action": {"id": 3, "status": "running"}}'
        status = final if finishes else "running"
        error = {"code": "action_failed", "message": "no"} if final == "error" else None
        return 200, json.dumps({"action": {"id": 3, "status": status, "error": error}}).encode()

    return transport, calls


@pytest.mark.parametrize(("seen", "want", "action"), [(False, True, "enable_public_interface"),
                                                      (True, False, "disable_public_interface"),
                                                      (True, True, None), (False, False, None)])
def test_action_follows_what_is_seen(seen, want, action):
    assert lb_public.action_for(seen, want) == action


def test_nothing_is_posted_when_the_interface_is_already_as_wanted():
    transport, calls = fake_hetzner(enabled=True)
    assert lb_public.ensure_public_interface(HcloudApi(TOKEN, transport), FakeClock(), "7", True) is None
    assert calls == [("GET", "/load_balancers/7")]


def test_a_failed_action_names_the_load_balancer_and_hetzners_error():
    transport, _ = fake_hetzner(enabled=False, final="error")
    with pytest.raises(lb_public.PublicInterfaceFailed, match="load balancer 7: 'enable_public_interface' failed: "
                                                             "action_failed: no"):
        lb_public.ensure_public_interface(HcloudApi(TOKEN, transport), FakeClock(), "7", True)


def test_a_refused_call_fails_with_the_reason_and_never_the_token():
    transport, _ = fake_hetzner(enabled=False, refuse=True)
    with pytest.raises(lb_public.PublicInterfaceFailed) as err:
        lb_public.ensure_public_interface(HcloudApi(TOKEN, transport), FakeClock(), "7", True)
    assert "locked" in str(err.value) and TOKEN not in str(err.value)


def test_an_action_that_never_finishes_fails_at_the_deadline():
    transport, calls = fake_hetzner(enabled=False, finishes=False)
    clock = FakeClock()
    with pytest.raises(lb_public.PublicInterfaceFailed, match="still 'running' after 120 s"):
        lb_public.ensure_public_interface(HcloudApi(TOKEN, transport), clock, "7", True)
    assert clock.t <= lb_public.ACTION_DEADLINE_SECONDS


def test_check_refuses_a_non_boolean():
    result = lb_public.PublicInterfaceProvider().check({}, {"loadBalancerId": "7", "enabled": "yes"})
    assert [(f.property, f.reason) for f in result.failures] == [("enabled", "'yes' is not true or false")]
