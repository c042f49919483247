"""Protection and the API load balancer, decided as data from the stack config."""

from __future__ import annotations

from typing import Any

import pytest
from test_config import raw_config

from keybuzz.config import parse_config, project_defaults
from keybuzz.hetzner import ApiLoadBalancerPlan, Protection, api_load_balancer_plan, protection


def cfg(stack: str = "dev", **overrides: Any):
    return parse_config(raw_config(**overrides), stack, project_defaults())


@pytest.mark.parametrize("on", [True, False])
def test_deletion_protection_sets_every_flag_together(on):
    assert protection(cfg(deletionProtection=on)) == Protection(protect=on, delete_protection=on,
                                                                 rebuild_protection=on)


def test_protection_is_off_by_default():
    assert protection(cfg()) == Protection(False, False, False)


def test_three_servers_get_a_private_only_load_balancer_targeting_each():
    plan = api_load_balancer_plan(cfg(controlPlane={"count": 3, "serverType": "cx33"}, location="nbg1"))
    assert plan == ApiLoadBalancerPlan(
        name="keybuzz-api",
        load_balancer_type="lb11",
        location="nbg1",
        private_ip="10.0.1.5",
        public_interface=False,  # Cloud Firewalls do not filter load balancers: no public 6443
        listen_port=6443,
        destination_port=6443,
        health_check={"protocol": "tcp", "port": 6443, "interval": 10, "timeout": 5, "retries": 3},
        targets=("keybuzz-cp-1", "keybuzz-cp-2", "keybuzz-cp-3"),
        algorithm="round_robin",
    )


@pytest.mark.parametrize(
    ("count", "mode", "exists"),
    [(1, "auto", False), (3, "auto", True), (1, "on", True), (3, "off", False), (5, "auto", True)],
)
def test_load_balancer_follows_the_mode_and_the_server_count(count, mode, exists):
    config = cfg(controlPlane={"count": count, "serverType": "cx23"}, apiLoadBalancer={"mode": mode})
    plan = api_load_balancer_plan(config)
    assert (plan is not None) == exists
    if plan:
        assert len(plan.targets) == count


def test_load_balancer_type_and_private_ip_come_from_config():
    plan = api_load_balancer_plan(
        cfg(apiLoadBalancer={"mode": "on", "type": "lb21"}, subnetCidr="10.0.8.0/24")
    )
    assert (plan.load_balancer_type, plan.private_ip) == ("lb21", "10.0.8.5")
