"""Day-2 matrix, Hetzner rows: each test runs the program twice (before/after config) under the mock
engine and asserts what is declared, with which options, and what the preview-time guards refuse.

One test per row of the README's "Day-2 operations (Hetzner rows)" table.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from harness import PROJECT, ProgramRun, run_program, secret_value
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


# --- API load balancer: public off -> on ---------------------------------------------------------

LB_PUBLIC_IP = "198.51.100.5"  # the mock engine's LB IPv4 (keybuzz/offline.py)
K8S_PROVIDER = "pulumi:providers:kubernetes"
STAGING_SERVERS = ("cp-1", "cp-2", "cp-3")
STAGING_AGENTS = ("workers-1", "workers-2")


def user_inputs(resource: Any) -> dict[str, Any]:
    return {k: v for k, v in resource.inputs.items() if not k.startswith("__")}  # __provider: pickled code


def changed_inputs(before: ProgramRun, after: ProgramRun) -> dict[str, set[str]]:
    """Resource name -> the input keys that differ, for every resource in both runs."""
    old, new = {r.name: user_inputs(r) for r in before.resources}, {r.name: user_inputs(r) for r in after.resources}
    diff = {name: {k for k in old[name].keys() | new[name].keys() if old[name].get(k) != new[name].get(k)}
            for name in old.keys() & new.keys()}
    return {name: keys for name, keys in diff.items() if keys}


def kubeconfig_server(program: ProgramRun) -> str:
    import yaml

    doc = yaml.safe_load(program.outputs["kubeconfig"])
    return doc["clusters"][0]["cluster"]["server"]


def rendered_sans(program: ProgramRun, node: str) -> list[str]:
    """The tls-san list in a server's install script (the config.yaml it writes)."""
    import re

    script = program.named(f"keybuzz-staging-k3s-install-keybuzz-staging-{node}").inputs["create"]
    block = re.search(r"tls-san:\n((?:- .*\n)+)", script)
    assert block, node
    return [line[2:].strip("'\"") for line in block.group(1).splitlines()]


@pytest.fixture(scope="module")
def lb_private() -> ProgramRun:
    return run("staging")


@pytest.fixture(scope="module")
def lb_public() -> ProgramRun:
    return run("staging", apiLoadBalancer={"public": True})


def test_api_load_balancer_public_on_moves_the_api_address_and_replaces_nothing(lb_private, lb_public):
    before, after = lb_private, lb_public
    per_run = changed_inputs(before, run("staging"))  # what changes on every run (run ids, re-checks)
    changes = changed_inputs(before, after)
    k3s = "keybuzz-staging-k3s"
    servers_restart = {f"{k3s}-{step}-keybuzz-staging-{n}" for step in ("drain", "install", "ready")
                       for n in STAGING_SERVERS}
    # Each rollout batch's overlay check gets the new kubeconfig; the servers' batches also their new
    # fingerprints (so those checks run: keybuzz/verify/rollout_check.py), the agents' do not.
    batch_checks = {f"keybuzz-staging-rollout-check-batch-{i}" for i in range(5)}
    expected = {"keybuzz-staging-api-lb-network", "keybuzz-staging-api-lb-public-interface", f"{k3s}-k8s",
                *servers_restart, *batch_checks}
    assert set(changes) - set(per_run) == expected
    for i in range(5):
        assert changes[f"keybuzz-staging-rollout-check-batch-{i}"] == (
            {"kubeconfig", "fingerprints"} if i < 3 else {"kubeconfig"}), i
    # What also changes on every run only picks up the new kubeconfig (the checks talk to the API).
    for name in set(changes) & set(per_run):
        assert changes[name] <= per_run[name] | {"kubeconfig"}, name
    assert {r.name for r in before.resources} == {r.name for r in after.resources}  # nothing added or removed
    # The interface is switched in place; the attachment ignores its force-new field.
    attachment = after.named("keybuzz-staging-api-lb-network")
    assert changes["keybuzz-staging-api-lb-network"] == {"enablePublicInterface"}
    assert attachment.options["ignore_changes"] == ["enablePublicInterface"]
    assert attachment.inputs["ip"] == before.named("keybuzz-staging-api-lb-network").inputs["ip"] == "10.0.1.5"
    switch = after.named("keybuzz-staging-api-lb-public-interface")
    assert (before.named(switch.name).inputs["enabled"], switch.inputs["enabled"]) == (False, True)
    assert switch.depends_on == ["keybuzz-staging-api-lb-network"]
    # The one TCP 6443 service and the targets are untouched; no server is replaced or changed.
    for type_token in (LB_SERVICE, LB_TARGET, LOAD_BALANCER, SERVER):
        assert all(r.name not in changes for r in after.of_type(type_token)), type_token
    # The kubeconfig, the provider and apiServer use the LB's public IPv4; the provider is updated,
    # not replaced (its clusterIdentifier is fixed).
    assert kubeconfig_server(before) == "https://203.0.113.10:6443"  # cp-1's public IP
    assert kubeconfig_server(after) == f"https://{LB_PUBLIC_IP}:6443"
    assert (before.outputs["apiServer"], after.outputs["apiServer"]) == (
        "https://203.0.113.10:6443", f"https://{LB_PUBLIC_IP}:6443")
    (provider,) = after.of_type(K8S_PROVIDER)
    assert changes[provider.name] == {"kubeconfig"}
    assert provider.inputs["clusterIdentifier"] == before.named(provider.name).inputs["clusterIdentifier"] == (
        "keybuzz-staging")
    # Through the LB any server may answer: the provider waits for every server and for the LB.
    assert provider.depends_on == [f"{k3s}-ready-keybuzz-staging-{n}" for n in STAGING_SERVERS] + [
        "keybuzz-staging-api-lb"]
    assert before.named(provider.name).depends_on == [f"{k3s}-ready-keybuzz-staging-cp-1"]


def test_api_load_balancer_public_on_adds_its_ip_to_tls_san_restarting_servers_one_at_a_time(lb_private, lb_public):
    for node in STAGING_SERVERS:
        assert rendered_sans(lb_public, node) == [*rendered_sans(lb_private, node), LB_PUBLIC_IP]
    # Agents do not serve the API: their config, and so their K3s, stay as they are.
    for node in STAGING_AGENTS:
        for step in ("drain", "install", "ready"):
            name = f"keybuzz-staging-k3s-{step}-keybuzz-staging-{node}"
            assert user_inputs(lb_public.named(name)) == user_inputs(lb_private.named(name)), name
    # One server at a time: a server's drain waits for the previous server to be Ready again (through
    # that server's overlay check, verify.betweenBatches on in staging).
    k3s = "keybuzz-staging-k3s"
    for batch, (previous, current) in enumerate(zip(STAGING_SERVERS, STAGING_SERVERS[1:], strict=False)):
        drain = lb_public.named(f"{k3s}-drain-keybuzz-staging-{current}")
        check = f"keybuzz-staging-rollout-check-batch-{batch}"
        assert check in drain.depends_on
        assert lb_public.named(check).depends_on == [f"{k3s}-ready-keybuzz-staging-{previous}"]
        assert 'kc_within 330 drain "$NODE"' in drain.inputs["update"]


def test_the_public_interface_is_switched_by_hetzner_actions_and_never_replaced(monkeypatch):
    from keybuzz import lb_public

    provider_diff = lb_public.PublicInterfaceProvider().diff(
        "id", {"loadBalancerId": "7", "enabled": False}, {"loadBalancerId": "7", "enabled": True})
    assert (provider_diff.changes, provider_diff.replaces) == (True, [])
    calls: list[tuple[str, str]] = []
    state = {"enabled": False}

    def hetzner(method, url, headers, body, timeout):
        path = url.split("/v1", 1)[1]
        calls.append((method, path))
        if method == "GET" and path == "/load_balancers/7":
            return 200, json.dumps({"load_balancer": {"id": 7, "public_net": {"enabled": state["enabled"]}}}).encode()
        if method == "POST" and path.endswith("_public_interface"):
            state["enabled"] = path.endswith("/enable_public_interface")
            return 201, b'{"action": {"id": 3, "status": "running"}}'
        if path == "/actions/3":
            return 200, b'{"action": {"id": 3, "status": "success"}}'
        raise AssertionError(path)

    monkeypatch.setenv("HCLOUD_TOKEN", TEST_TOKEN)
    clock = FakeClock()
    provider = lb_public.PublicInterfaceProvider(transport=hetzner, clock=clock)
    provider.update("id", {"loadBalancerId": "7", "enabled": False}, {"loadBalancerId": "7", "enabled": True})
    assert calls == [("GET", "/load_balancers/7"), ("POST", "/load_balancers/7/actions/enable_public_interface"),
                     ("GET", "/actions/3")]
    assert state["enabled"] is True
    calls.clear()
    provider.update("id", {"loadBalancerId": "7", "enabled": True}, {"loadBalancerId": "7", "enabled": False})
    assert calls[1] == ("POST", "/load_balancers/7/actions/disable_public_interface") and state["enabled"] is False
    # Off at creation: no API call at all (the attachment was created private); on: read, then switch.
    calls.clear()
    provider.create({"loadBalancerId": "7", "enabled": False})
    assert calls == []
    provider.create({"loadBalancerId": "7", "enabled": True})
    assert [c[1] for c in calls] == ["/load_balancers/7", "/load_balancers/7/actions/enable_public_interface",
                                     "/actions/3"]


def test_first_preview_of_a_new_stack_with_a_public_load_balancer_succeeds_with_unknown_ips():
    preview = run_program("staging", preview=True,
                          overrides={f"{PROJECT}:apiLoadBalancer": {"public": True}})
    assert {"kubeconfig", "apiServer"} <= preview.unknown_outputs
    assert "kubeconfig" in preview.secret_outputs
    (attachment,) = preview.of_type(LB_NETWORK)
    assert attachment.inputs["enablePublicInterface"] is True
    assert len(preview.of_type(SERVER)) == 5


def test_the_kubeconfig_is_read_once_and_a_replaced_first_server_does_not_reread_it(lb_public):
    # Its connection (cp-1's public IP) is ignored: a replaced cp-1 leaves the kubeconfig known at
    # preview, so through the public LB nothing about the API address changes at all.
    read = lb_public.named("keybuzz-staging-k3s-kubeconfig")
    assert read.options["ignore_changes"] == ["connection"]
    assert secret_value(read.inputs["connection"])["host"] == "203.0.113.10"  # read from cp-1, once
    assert kubeconfig_server(lb_public) == f"https://{LB_PUBLIC_IP}:6443"  # but no server's address in it


def test_prod_pool_shrink_would_delete_only_protected_resources_so_the_engine_refuses_it():
    pool = {"name": "workers", "count": 3, "serverType": "cx43", "labels": {"keybuzz.io/pool": "workers"}}
    before = run("prod", nodePools=[pool])
    after = run("prod", nodePools=[pool | {"count": 2}])
    gone = {r.name for r in before.resources} - {r.name for r in after.resources}
    removed_server = "keybuzz-prod-workers-3"
    assert removed_server in gone
    # Pulumi refuses to delete a resource whose recorded state is protected: the `up` stops there,
    # with the server (and its Hetzner delete protection) intact. Protection off first, as its own `up`.
    assert before.named(removed_server).options["protect"] is True
    assert before.named(removed_server).inputs["deleteProtection"] is True
    unprotected = run("prod", nodePools=[pool], deletionProtection=False)
    assert unprotected.named(removed_server).options["protect"] is False
    assert {r.name for r in unprotected.resources} == {r.name for r in before.resources}
