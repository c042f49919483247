"""Server type changes done gently: graceful shutdown, ``change_type`` keeping the disk, power on.

Why not let the hcloud provider do it: its in-place ``serverType`` update is a hard ``poweroff``
followed by ``change_type`` with ``upgrade_disk: true`` (confirmed against the real provider, see
issue 9): no drain, no clean etcd/K3s stop, and a grown disk can never shrink, so the type could
never go back down. The Server therefore ignores ``serverType`` changes and ``ServerTypeChange``
(one per node) does the change; the K3s side chains it between a drain and an uncordon.

Order on ``update`` (each step decided from the server's observed state, so a failed run resumes):
ACPI ``shutdown`` -> wait for status ``off`` -> ``change_type`` {server_type, upgrade_disk} and wait
for its action -> ``poweron`` -> wait for status ``running``. Every wait is bounded; a server that
ignores the ACPI shutdown fails the update with what was seen. Nothing is ever hard powered off.

Downgrades: with ``upgrade_disk: false`` the disk keeps its size, so the type can go back down, but
only to a type whose disk is at least as large as the current disk. Whether a disk was ever grown
is not knowable offline, so this is not refused at preview; Hetzner refuses the ``change_type`` and
the update fails naming the node and Hetzner's error. Downgrading works only if the disk was never
upgraded (``upgradeDisk`` never true for that pool).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from keybuzz.hcloud_api import (  # Clock, MonotonicClock: re-exported for lb_public and tests
    Clock,
    HcloudApi,
    HcloudApiError,
    MonotonicClock,
    Transport,
    action_problem,
    polls,
    token_from_env,
    wait_action,
)

# Hetzner server statuses (docs.hetzner.cloud "Servers": running, initializing, starting, stopping,
# off, deleting, migrating, rebuilding, unknown).
RUNNING = "running"
OFF = "off"
STOPPING = "stopping"

# Steps, in order. A step that waits names what it waits for.
SHUTDOWN = "shutdown"  # ACPI request, the OS shuts down cleanly (K3s, etcd, containerd stop)
WAIT_OFF = "wait-off"
CHANGE_TYPE = "change_type"  # waits for its action to succeed
POWERON = "poweron"
WAIT_RUNNING = "wait-running"

PROPS = ("serverId", "nodeName", "serverType", "upgradeDisk")
_SERVER_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Deadlines:
    """Seconds each wait may take; ``poll`` is the first pause between two reads of the API (pauses grow
    from there up to 30 s, hcloud_api.PollSchedule: ten nodes polling every 3 s would empty the
    project's 3,600 requests an hour in about 25 minutes)."""

    shutdown: float = 180.0  # a clean OS shutdown; K3s stops in seconds
    change_type: float = 1800.0  # a type change may move the server to another host (disk copy)
    poweron: float = 300.0
    poll: float = 3.0


class ResizeRefused(Exception):
    """The server is in a state a resize must not start from."""


class ResizeFailed(Exception):
    """A step failed or timed out; the message names the node, the step and what was seen."""


# --- decisions (pure) ----------------------------------------------------------------------------


def resize_steps(status: str, current_type: str, target_type: str) -> tuple[str, ...]:
    """What remains to do for a server observed in ``status`` with ``current_type``.

    Derived from the observed state, not from the previous run's inputs, so a run that failed
    half-way (e.g. after ``change_type``, leaving the server off) resumes at the right step.
    """
    if current_type == target_type:
        return (POWERON, WAIT_RUNNING) if status == OFF else ((WAIT_RUNNING,) if status == "starting" else ())
    if status == RUNNING:
        return (SHUTDOWN, WAIT_OFF, CHANGE_TYPE, POWERON, WAIT_RUNNING)
    if status == STOPPING:
        return (WAIT_OFF, CHANGE_TYPE, POWERON, WAIT_RUNNING)
    if status == OFF:
        return (CHANGE_TYPE, POWERON, WAIT_RUNNING)
    raise ResizeRefused(
        f"server is '{status}' (needs 'running' or 'off' to change type {current_type} -> {target_type}); "
        "wait until Hetzner finishes what it is doing and run `pulumi up` again"
    )


def type_change_requested(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """True when the server must be compared with its desired type: the type changed, or the server is a
    new machine (replaced). A disk flag alone changes nothing.

    The comparison itself is with the type Hetzner reports (``run_resize`` reads the server): a server
    created with another type than configured (a replacement the engine created with the type recorded
    at first creation) is corrected, and one already of the right type is left alone.
    """
    return olds.get("serverType") != news.get("serverType") or olds.get("serverId") != news.get("serverId")


def changed_props(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """Recorded props that differ; a new ``serverId`` is a new server (recorded, no resize by itself)."""
    return [key for key in PROPS if olds.get(key) != news.get(key)]


def validate_props(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(property, reason) for malformed inputs; unknown values (preview) pass."""
    from pulumi.runtime import rpc

    failures = []
    node = props.get("nodeName")
    if not isinstance(node, str) or not node:
        failures.append(("nodeName", "the node's name (a non-empty string)"))
    server_type = props.get("serverType")
    if server_type != rpc.UNKNOWN and (not isinstance(server_type, str) or not _SERVER_TYPE_RE.match(server_type)):
        failures.append(("serverType", f"{server_type!r} is not a Hetzner server type name such as cx33"))
    upgrade = props.get("upgradeDisk")
    if upgrade != rpc.UNKNOWN and not isinstance(upgrade, bool):
        failures.append(("upgradeDisk", f"{upgrade!r} is not true or false"))
    return failures


# --- doing (the API, with an injected transport and clock) ---------------------------------------


def run_resize(
    api: HcloudApi,
    clock: Clock,
    server_id: str,
    node: str,
    target_type: str,
    upgrade_disk: bool,
    deadlines: Deadlines = Deadlines(),
) -> list[str]:
    """Bring server ``server_id`` to ``target_type``; returns the steps done. Raises ResizeFailed, whose
    message ends with the state the server was last seen in (a limit or a deadline can stop a resize
    with the server off)."""
    try:
        server = api.get_server(server_id)
    except HcloudApiError as exc:
        raise ResizeFailed(f"{node}: reading server {server_id} failed: {exc}") from None
    current = (server.get("server_type") or {}).get("name", "?")
    seen = {"status": str(server.get("status")), "type": current}
    try:
        steps = resize_steps(seen["status"], current, target_type)
    except ResizeRefused as exc:
        raise ResizeFailed(f"{node}: {exc}") from None
    for step in steps:
        try:
            _do(api, clock, server_id, node, step, target_type, upgrade_disk, deadlines, seen)
        except ResizeFailed as exc:
            raise ResizeFailed(f"{exc} {left_in(server_id, seen, step)}") from None
    return list(steps)


def left_in(server_id: str, seen: Mapping[str, str], step: str) -> str:
    """The sentence that says what state the server was left in, from what was last read of it."""
    return f"Server {server_id} was last seen '{seen['status']}' (type {seen['type']}) when '{step}' failed."


def _do(
    api: HcloudApi,
    clock: Clock,
    server_id: str,
    node: str,
    step: str,
    target_type: str,
    upgrade_disk: bool,
    deadlines: Deadlines,
    seen: dict[str, str],
) -> None:
    left_off = "" if step in (SHUTDOWN, WAIT_OFF) else " The server may be left off; `pulumi up` resumes from here."
    status_of = lambda: _status(api, server_id, seen)  # noqa: E731 (read by both waits)
    try:
        if step == SHUTDOWN:
            api.server_action(server_id, "shutdown")
        elif step == WAIT_OFF:
            status = _wait(api, clock, deadlines.shutdown, deadlines.poll, status_of, OFF)
            if status != OFF:
                raise ResizeFailed(
                    f"{node}: still '{status}' {deadlines.shutdown:.0f} s after an ACPI shutdown; nothing was "
                    "forced (no hard poweroff). Find out why the OS does not shut down, or stop it yourself "
                    "(`hcloud server shutdown`, or `poweroff` if a hard stop is acceptable), then `pulumi up`."
                )
        elif step == CHANGE_TYPE:
            action = api.server_action(
                server_id, "change_type", {"server_type": target_type, "upgrade_disk": upgrade_disk}
            )
            _wait_action(api, clock, action, node, step, deadlines.change_type, deadlines.poll, left_off)
        elif step == POWERON:
            action = api.server_action(server_id, "poweron")
            _wait_action(api, clock, action, node, step, deadlines.poweron, deadlines.poll, left_off)
        elif step == WAIT_RUNNING:
            status = _wait(api, clock, deadlines.poweron, deadlines.poll, status_of, RUNNING)
            if status != RUNNING:
                raise ResizeFailed(f"{node}: still '{status}' {deadlines.poweron:.0f} s after poweron.{left_off}")
    except HcloudApiError as exc:
        raise ResizeFailed(f"{node}: Hetzner refused '{step}' on server {server_id}: {exc}.{left_off}") from None


def _status(api: HcloudApi, server_id: str, seen: dict[str, str]) -> str:
    server = api.get_server(server_id)
    seen["status"] = str(server.get("status"))
    seen["type"] = (server.get("server_type") or {}).get("name", seen["type"])
    return seen["status"]


def _wait(api: HcloudApi, clock: Clock, deadline: float, poll: float, read: Callable[[], str], want: str) -> str:
    """Read until ``want`` or the deadline, at growing intervals; returns the last value read."""
    start = clock.now()
    pauses = polls(api, poll)
    while True:
        value = read()
        left = deadline - (clock.now() - start)
        if value == want or left <= 0:
            return value
        clock.sleep(min(next(pauses), left))


def _wait_action(
    api: HcloudApi,
    clock: Clock,
    action: Mapping[str, Any],
    node: str,
    step: str,
    deadline: float,
    poll: float,
    left_off: str,
) -> None:
    """Wait for the action (bounded by ``deadline``); a timeout or an error fails the step."""
    current = wait_action(api, clock, action, deadline, poll)
    problem = action_problem(current, deadline)
    if problem is not None:
        which = f"'{step}'" if current.get("status") == "error" else f"'{step}' (id {action.get('id')})"
        raise ResizeFailed(f"{node}: Hetzner action {which} {problem}.{left_off}")


# --- the dynamic resource ------------------------------------------------------------------------


class ServerTypeChangeProvider(ResourceProvider):
    """Pickled by reference (module-level class); ``transport``/``clock`` are None except in tests."""

    def __init__(
        self, transport: Transport | None = None, clock: Clock | None = None, deadlines: Deadlines | None = None
    ) -> None:
        super().__init__()
        self.transport = transport
        self.clock = clock
        self.deadlines = deadlines

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [CheckFailure(key, reason) for key, reason in validate_props(news)])

    def create(self, props: dict[str, Any]) -> CreateResult:
        """No API call: the server was just created with this type."""
        return CreateResult(f"server-type-{props.get('nodeName')}", _recorded(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=bool(changed_props(olds, news)), replaces=[], stables=[],
                          delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if type_change_requested(olds, news):
            clock = self.clock or MonotonicClock()
            api = HcloudApi(token_from_env(), self.transport, clock=clock)
            run_resize(api, clock, str(news["serverId"]), str(news["nodeName"]),
                       str(news["serverType"]), bool(news["upgradeDisk"]), self.deadlines or Deadlines())
        return UpdateResult(_recorded(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: the server itself is the hcloud.Server's to delete."""


def _recorded(props: Mapping[str, Any]) -> dict[str, Any]:
    return {key: props.get(key) for key in PROPS}


class ServerTypeChange(pulumi.dynamic.Resource):
    """One per node: keeps the server's Hetzner type equal to ``server_type`` without a hard poweroff.

    Make it depend on the node's drain and make the uncordon depend on it: the update shuts the
    server down. ``HCLOUD_TOKEN`` is read by the provider process, never passed as an input.
    """

    serverType: pulumi.Output[str]
    serverId: pulumi.Output[str]
    nodeName: pulumi.Output[str]
    upgradeDisk: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        *,
        server_id: pulumi.Input[str],
        node_name: str,
        server_type: str,
        upgrade_disk: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"serverId": server_id, "nodeName": node_name, "serverType": server_type, "upgradeDisk": upgrade_disk}
        super().__init__(ServerTypeChangeProvider(), name, props, opts)
