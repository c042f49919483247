"""Day-2 matrix, Hetzner rows: each test runs the program twice (before/after config) under the mock
engine and asserts what is declared, with which options, and what the preview-time guards refuse.

One test per row of the README's "Day-2 operations (Hetzner rows)" table.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from harness import PROJECT, ProgramRun, run_program
from test_resize import TOKEN as TEST_TOKEN
from test_resize import FakeClock, FakeHetzner

from keybuzz import resize, ssh_keys
from keybuzz.guards import DeployedStackProvider

SERVER = "hcloud:index/server:Server"
SSH_KEY = "hcloud:index/sshKey:SshKey"
COMMAND = "command:remote:Command"
NETWORK = "hcloud:index/network:Network"
SUBNET = "hcloud:index/networkSubnet:NetworkSubnet"
FIREWALL = "hcloud:index/firewall:Firewall"
LOAD_BALANCER = "hcloud:index/loadBalancer:LoadBalancer"
LB_NETWORK = "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork"
LB_SERVICE = "hcloud:index/loadBalancerService:LoadBalancerService"
LB_TARGET = "hcloud:index/loadBalancerTarget:LoadBalancerTarget"
TOKEN = "random:index/randomPassword:RandomPassword"
# terraform-provider-hcloud internal/server/resource.go: the Server properties marked ForceNew.
SERVER_FORCE_NEW = {"image", "location", "datacenter", "userData", "sshKeys"}


def ed25519_key(seed: str) -> str:
    """A well-formed OpenSSH ed25519 public key line, deterministic per seed."""
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + hashlib.sha256(seed.encode()).digest()
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {seed}@keybuzz"


KEY_A, KEY_B = ed25519_key("alice"), ed25519_key("bob")


def run(stack: str = "dev", **config: Any) -> ProgramRun:
    return run_program(stack, overrides={f"{PROJECT}:{key}": value for key, value in config.items()})


_KEY_RUNS: dict[tuple[str, ...], ProgramRun] = {}


def keys_run(*keys: str) -> ProgramRun:
    """The dev stack with these SSH keys, run once per module: the key tests read the same few runs
    (each a mock-engine run, seconds on a loaded machine); before and after are distinct runs."""
    if keys not in _KEY_RUNS:
        _KEY_RUNS[keys] = run(sshPublicKeys=list(keys))
    return _KEY_RUNS[keys]


def guard_inputs(program: ProgramRun) -> dict[str, Any]:
    (guard,) = [r for r in program.resources if r.name.endswith("-deployed-stack")]
    return {k: v for k, v in guard.inputs.items() if k != "__provider"}


def preview_refusals(before: ProgramRun, after: ProgramRun) -> dict[str, str]:
    """What ``pulumi preview`` of ``after`` on a stack deployed as ``before`` refuses (the guard's check)."""
    result = DeployedStackProvider().check(guard_inputs(before), guard_inputs(after))
    return {f.property: f.reason for f in result.failures}


def servers(program: ProgramRun) -> dict[str, Any]:
    return {r.name: r for r in program.of_type(SERVER)}


def key_resources(program: ProgramRun) -> dict[str, str]:
    """Pulumi name -> (Hetzner name, public key) of every SshKey."""
    return {r.name: (r.inputs["name"], r.inputs["publicKey"]) for r in program.of_type(SSH_KEY)}


def authorized_keys_commands(program: ProgramRun) -> dict[str, Any]:
    return {r.name: r for r in program.of_type(COMMAND) if "-authorized-keys-" in r.name}


def comparable(inputs: dict[str, Any]) -> dict[str, Any]:
    """Server inputs without the mock engine's per-run resource ids."""
    return {k: v for k, v in inputs.items() if k not in ("sshKeys", "placementGroupId", "firewallIds")} | {
        "networks": [{k: v for k, v in n.items() if k != "networkId"} for n in inputs["networks"]]
    }


# --- SSH key add ---------------------------------------------------------------------------------


def test_ssh_key_add_creates_only_that_key_and_reaches_running_nodes_over_ssh():
    before = keys_run(KEY_A)
    after = keys_run(KEY_A, KEY_B)
    id_a, id_b = ssh_keys.key_id(KEY_A), ssh_keys.key_id(KEY_B)
    assert key_resources(before) == {f"keybuzz-dev-nodes-key-{id_a}": (f"keybuzz-dev-{id_a}", KEY_A)}
    assert key_resources(after) == {
        f"keybuzz-dev-nodes-key-{id_a}": (f"keybuzz-dev-{id_a}", KEY_A),  # untouched
        f"keybuzz-dev-nodes-key-{id_b}": (f"keybuzz-dev-{id_b}", KEY_B),  # the one new resource
    }
    # Servers: same inputs but the key ids, which they ignore (force-new in the provider).
    for name, server in servers(after).items():
        assert server.options["ignore_changes"] == ["serverType", "sshKeys"]
        assert comparable(server.inputs) == comparable(servers(before)[name].inputs)
        assert set(server.inputs) - set(servers(before)[name].inputs) == set()
    # Every running node gets the new key through its authorized_keys command, re-run by its trigger.
    commands = authorized_keys_commands(after)
    assert sorted(commands) == [f"keybuzz-dev-authorized-keys-{n}" for n in sorted(servers(after))]
    for name, command in commands.items():
        assert command.inputs["triggers"] == sorted([ssh_keys.fingerprint(KEY_A), ssh_keys.fingerprint(KEY_B)])
        assert command.inputs["triggers"] != authorized_keys_commands(before)[name].inputs["triggers"]
        assert command.inputs["create"] == ssh_keys.authorized_keys_script([KEY_A, KEY_B])
        assert command.depends_on == [name.removeprefix("keybuzz-dev-authorized-keys-")]
    assert preview_refusals(before, after) == {}


# --- SSH key rotate ------------------------------------------------------------------------------


def test_ssh_key_rotation_in_two_steps_never_reuses_a_name_and_never_replaces_a_server():
    first = keys_run(KEY_A)
    both = keys_run(KEY_A, KEY_B)
    last = keys_run(KEY_B)
    names = [key_resources(r) for r in (first, both, last)]
    # A name always means the same key: no create-before-delete can collide on it.
    owner: dict[str, str] = {}
    for step in names:
        for pulumi_name, (hetzner_name, key) in step.items():
            assert owner.setdefault(pulumi_name, key) == key
            assert owner.setdefault(hetzner_name, key) == key
    assert set(names[2]) == {f"keybuzz-dev-nodes-key-{ssh_keys.key_id(KEY_B)}"}
    assert names[2].items() <= names[1].items()  # B's resource is the one step 1 created
    for key in last.of_type(SSH_KEY):
        assert key.options["delete_before_replace"] is True  # a public key is unique per project
    for program in (both, last):
        for name, server in servers(program).items():
            assert "sshKeys" in server.options["ignore_changes"]
            assert comparable(server.inputs) == comparable(servers(first)[name].inputs)
    for command in authorized_keys_commands(last).values():
        assert command.inputs["create"] == ssh_keys.authorized_keys_script([KEY_B])  # A leaves the nodes
    assert preview_refusals(first, both) == {}
    assert preview_refusals(both, last) == {}


def test_ssh_key_swap_in_one_step_is_refused_at_preview():
    refusals = preview_refusals(keys_run(KEY_A), keys_run(KEY_B))
    assert list(refusals) == ["sshKeyFingerprints"]
    assert "add the new key, `pulumi up`, then remove the old one" in refusals["sshKeyFingerprints"]


# --- image / location change (refused) -----------------------------------------------------------


@pytest.mark.parametrize(("key", "before", "after"), [("image", "ubuntu-24.04", "debian-12"),
                                                      ("location", "fsn1", "hel1")])
def test_image_or_location_change_is_refused_at_preview_before_any_server(key, before, after):
    deployed, changed = run(**{key: before}), run(**{key: after})
    refusals = preview_refusals(deployed, changed)
    assert list(refusals) == [key]
    assert f"({before!r} -> {after!r})" in refusals[key]
    # Every Hetzner resource that could be touched waits for the guard, so a refusal stops them all.
    guard = next(r.name for r in changed.resources if r.name.endswith("-deployed-stack"))
    for r in [*changed.of_type(SERVER), *changed.of_type(NETWORK), *changed.of_type(FIREWALL),
              *changed.of_type(SSH_KEY)]:
        assert guard in r.depends_on, r.name


def test_k3s_downgrade_is_refused_and_an_upgrade_is_not():
    deployed = run(k3sVersion="v1.34.1+k3s2")
    assert list(preview_refusals(deployed, run(k3sVersion="v1.34.1+k3s1"))) == ["k3sVersion"]
    assert preview_refusals(deployed, run(k3sVersion="v1.34.2+k3s1")) == {}


# --- server type change --------------------------------------------------------------------------


def type_change_props(program: ProgramRun, node: str, upgrade_disk: bool) -> dict[str, Any]:
    """ServerTypeChange inputs for ``node``: the declared resource when the program has one, else the
    inputs the K3s side gives it (the Server's type and the pool's upgradeDisk)."""
    for r in program.resources:
        if r.inputs.get("nodeName") == node and "upgradeDisk" in r.inputs:
            return {k: r.inputs[k] for k in resize.PROPS} | {"serverId": "42"}
    return {"serverId": "42", "nodeName": node, "serverType": servers(program)[node].inputs["serverType"],
            "upgradeDisk": upgrade_disk}


@pytest.mark.parametrize("upgrade_disk", [False, True])
def test_server_type_change_resizes_gracefully_and_keeps_the_disk_unless_opted_in(upgrade_disk, monkeypatch):
    pool = {"name": "workers", "count": 1, "serverType": "cx23"}
    before = run(nodePools=[pool])
    after = run(nodePools=[pool | {"serverType": "cx33", "upgradeDisk": upgrade_disk}])
    node = "keybuzz-dev-workers-1"
    # The Server never changes its own type (the provider would hard-poweroff with upgrade_disk true).
    assert servers(after)[node].options["ignore_changes"] == ["serverType", "sshKeys"]
    changed = {k for k, v in servers(after)[node].inputs.items() if servers(before)[node].inputs.get(k) != v}
    assert changed - {"sshKeys", "placementGroupId", "firewallIds", "networks"} == {"serverType"}
    old, new = type_change_props(before, node, False), type_change_props(after, node, upgrade_disk)
    provider_diff = resize.ServerTypeChangeProvider().diff("id", old, new)
    assert (provider_diff.changes, provider_diff.replaces) == (True, [])
    clock = FakeClock()
    fake = FakeHetzner(clock, server_type="cx23")
    monkeypatch.setenv("HCLOUD_TOKEN", TEST_TOKEN)
    resize.ServerTypeChangeProvider(transport=fake, clock=clock).update("id", old, new)
    posts = [(path.rsplit("/", 1)[1], body) for method, path, body in fake.calls if method == "POST"]
    assert posts == [("shutdown", {}), ("change_type", {"server_type": "cx33", "upgrade_disk": upgrade_disk}),
                     ("poweron", {})]
    assert preview_refusals(before, after) == {}


# --- prod delete refused -------------------------------------------------------------------------

PROTECTED = (SERVER, NETWORK, SUBNET, FIREWALL, LOAD_BALANCER, TOKEN)


def test_prod_protects_servers_network_firewall_load_balancer_and_token_and_dev_does_not():
    prod, dev = run_program("prod"), run_program("dev")
    for type_token in PROTECTED:
        assert prod.of_type(type_token), type_token
        assert all(r.options["protect"] is True for r in prod.of_type(type_token)), type_token
        assert all(not r.options["protect"] for r in dev.of_type(type_token)), type_token
    for server in prod.of_type(SERVER):
        assert (server.inputs["deleteProtection"], server.inputs["rebuildProtection"]) == (True, True)
    assert [n.inputs["deleteProtection"] for n in prod.of_type(NETWORK)] == [True]
    assert [lb.inputs["deleteProtection"] for lb in prod.of_type(LOAD_BALANCER)] == [True]
    for server in dev.of_type(SERVER):
        assert (server.inputs["deleteProtection"], server.inputs["rebuildProtection"]) == (False, False)


def test_turning_protection_off_is_an_in_place_update_not_a_replacement():
    on, off = run_program("prod"), run("prod", deletionProtection=False)
    for name, server in servers(off).items():
        changed = {k for k, v in server.inputs.items() if servers(on)[name].inputs.get(k) != v}
        changed -= {"sshKeys", "placementGroupId", "firewallIds", "networks"}  # mock ids
        assert changed == {"deleteProtection", "rebuildProtection"}
        assert not changed & SERVER_FORCE_NEW
        assert comparable(server.inputs)["networks"] == comparable(servers(on)[name].inputs)["networks"]
        assert server.options["protect"] is False
    assert [n.inputs["deleteProtection"] for n in off.of_type(NETWORK)] == [False]
    assert [lb.inputs["deleteProtection"] for lb in off.of_type(LOAD_BALANCER)] == [False]
    assert {r.name for r in off.resources} == {r.name for r in on.resources}  # nothing renamed or dropped
    assert preview_refusals(on, off) == {}


# --- API load balancer ---------------------------------------------------------------------------


def test_api_load_balancer_is_on_for_three_servers_private_only_and_off_for_one():
    one = run(controlPlane={"count": 1, "serverType": "cx23"})
    three = run(controlPlane={"count": 3, "serverType": "cx23"})
    assert [one.of_type(t) for t in (LOAD_BALANCER, LB_NETWORK, LB_SERVICE, LB_TARGET)] == [[], [], [], []]
    (lb,) = three.of_type(LOAD_BALANCER)
    assert (lb.inputs["loadBalancerType"], lb.inputs["location"], lb.inputs["algorithm"]) == (
        "lb11", "fsn1", {"type": "round_robin"})
    (attachment,) = three.of_type(LB_NETWORK)
    assert (attachment.inputs["ip"], attachment.inputs["enablePublicInterface"]) == ("10.0.1.5", False)
    (service,) = three.of_type(LB_SERVICE)
    assert {k: service.inputs[k] for k in ("protocol", "listenPort", "destinationPort")} == {
        "protocol": "tcp", "listenPort": 6443, "destinationPort": 6443}
    assert service.inputs["healthCheck"] == {"protocol": "tcp", "port": 6443, "interval": 10, "timeout": 5,
                                             "retries": 3}
    targets = sorted(three.of_type(LB_TARGET), key=lambda r: r.name)
    assert [t.name for t in targets] == [f"keybuzz-dev-api-lb-target-keybuzz-dev-cp-{i}" for i in (1, 2, 3)]
    assert all(t.inputs["type"] == "server" and t.inputs["usePrivateIp"] is True for t in targets)
    assert all(t.depends_on == ["keybuzz-dev-api-lb-network"] for t in targets)
    assert "keybuzz-dev-deployed-stack" in lb.depends_on
    # Growing the control plane 1 -> 3 adds the balancer; it replaces nothing that exists.
    assert {r.name for r in one.resources} <= {r.name for r in three.resources}


def test_api_load_balancer_component_exposes_its_addresses():
    program = run_program("prod", probe=lambda built: {
        "lbPrivateIp": built.load_balancer.private_ip,
        "lbPublicIpIsNone": built.load_balancer.public_ip is None,
    })
    assert program.outputs["lbPrivateIp"] == "10.0.1.5"
    assert program.outputs["lbPublicIpIsNone"] is True
