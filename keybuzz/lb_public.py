"""The API load balancer's public interface, switched on and off in place.

Why not the provider's ``enable_public_interface``: terraform-provider-hcloud marks it ForceNew on
``hcloud_load_balancer_network`` (internal/loadbalancer/resource_network.go: no Update at all), so a
flip would replace the network attachment. Pulumi creates the replacement first, and attaching a
load balancer to a network it is already on fails (``load_balancer_already_attached``, which the
provider then treats as success without switching the interface), after which the old attachment
is deleted: the load balancer would end up detached from the private network every node joins
through. So the attachment ignores changes to that field and this resource calls the two Hetzner
actions made for it (``enable_public_interface``/``disable_public_interface``, docs.hetzner.cloud
"Load Balancer Actions"), which change nothing else: same IPs, same services, same targets.

``HCLOUD_TOKEN`` is read from the environment of `pulumi up` (keybuzz/hcloud_api.py), never an input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from keybuzz.hcloud_api import (
    Clock,
    HcloudApi,
    HcloudApiError,
    MonotonicClock,
    Transport,
    action_problem,
    token_from_env,
    wait_action,
)

PROPS = ("loadBalancerId", "enabled")
ACTION_DEADLINE_SECONDS = 120.0
POLL_SECONDS = 2.0


class PublicInterfaceFailed(Exception):
    """Hetzner refused or did not finish the switch; the message says which and what was seen."""


def action_for(currently_enabled: bool, want_enabled: bool) -> str | None:
    """The Hetzner action that brings the interface from what is seen to what is wanted, or None."""
    if currently_enabled == want_enabled:
        return None
    return "enable_public_interface" if want_enabled else "disable_public_interface"


def ensure_public_interface(
    api: HcloudApi,
    clock: Clock,
    load_balancer_id: str,
    enabled: bool,
    deadline: float = ACTION_DEADLINE_SECONDS,
    poll: float = POLL_SECONDS,
) -> str | None:
    """Switch the interface to ``enabled`` if it is not already; returns the action done (or None)."""
    try:
        seen = bool((api.get_load_balancer(load_balancer_id).get("public_net") or {}).get("enabled"))
        action_name = action_for(seen, enabled)
        if action_name is None:
            return None
        action = wait_action(api, clock, api.load_balancer_action(load_balancer_id, action_name), deadline, poll)
    except HcloudApiError as exc:
        raise PublicInterfaceFailed(f"load balancer {load_balancer_id}: Hetzner refused: {exc}") from None
    problem = action_problem(action, deadline)
    if problem is not None:
        retry = "; run `pulumi up` again (it reads the interface's state first)"
        retry = "" if action.get("status") == "error" else retry
        raise PublicInterfaceFailed(f"load balancer {load_balancer_id}: '{action_name}' {problem}{retry}")
    return action_name


class PublicInterfaceProvider(ResourceProvider):
    """Pickled by reference (module-level class); ``transport``/``clock`` are None except in tests."""

    def __init__(self, transport: Transport | None = None, clock: Clock | None = None) -> None:
        super().__init__()
        self.transport = transport
        self.clock = clock

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        from pulumi.runtime import rpc

        enabled = news.get("enabled")
        failures = []
        if enabled != rpc.UNKNOWN and not isinstance(enabled, bool):
            failures.append(CheckFailure("enabled", f"{enabled!r} is not true or false"))
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Off: nothing to do (the attachment was created that way, as every stack before this option).

        On: read the state and switch if needed: a stack whose attachment was created private gets
        this resource and ``public: true`` in the same run.
        """
        if props.get("enabled") is True:
            self._ensure(props)
        return CreateResult(f"public-interface-{props.get('loadBalancerId')}", _recorded(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in PROPS if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._ensure(news)
        return UpdateResult(_recorded(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: the load balancer goes with its own resource."""

    def _ensure(self, props: Mapping[str, Any]) -> None:
        clock = self.clock or MonotonicClock()
        api = HcloudApi(token_from_env(), self.transport, clock=clock)
        ensure_public_interface(api, clock, str(props["loadBalancerId"]), bool(props["enabled"]))


def _recorded(props: Mapping[str, Any]) -> dict[str, Any]:
    return {key: props.get(key) for key in PROPS}


class LoadBalancerPublicInterface(pulumi.dynamic.Resource):
    """Keeps the load balancer's public interface ``enabled`` (in place, never a new attachment)."""

    loadBalancerId: pulumi.Output[str]
    enabled: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        *,
        load_balancer_id: pulumi.Input[str],
        enabled: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(PublicInterfaceProvider(), name, {"loadBalancerId": load_balancer_id, "enabled": enabled},
                         opts)
