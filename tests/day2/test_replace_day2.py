"""Day 2, replacing a node (`bin/deploy <stack> replace <node>`), the keys Pulumi connects with, and
the kubeconfig a year on: the program run twice under the mock engine, before and after.

What the engine does with these declarations is read from its source (pulumi/pulumi
pkg/resource/deploy/step_generator.go): a server replaced delete-first makes the engine first delete
every dependent that the replacement would replace (``calculateDependentReplacements``: inputs that
depend on the server become unknown and the dependent's provider diff decides; ``replaceOnChanges``
counts), in reverse dependency order, then the server, then create it. The tests pin the
declarations that order rests on.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from fakes.clock import FakeClock
from harness import run_program, secret_value

import components.k3s
import keybuzz.offline
from keybuzz import kubeconfig_renewal
from keybuzz.config import ConfigError
from keybuzz.offline import Secret
from keybuzz.ssh_keys import fingerprint, key_id

P = "keybuzz-k3s"
C = "keybuzz-staging"
K = f"{C}-k3s"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SSH = FIXTURES / "ssh"
OLD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl old@laptop"
NEW_KEY = (SSH / "throwaway_ed25519.pub").read_text().strip()
WORKERS = {"name": "workers", "count": 2, "serverType": "cx33"}


def staging(**overrides):
    return run_program("staging", overrides={f"{P}:{key}": value for key, value in overrides.items()})


def replacing(monkeypatch, *nodes):
    monkeypatch.setenv("KEYBUZZ_REPLACE_NODES", ",".join(nodes))


@pytest.fixture(scope="module")
def created():
    """The stack as first created: cx23/cx33 servers, one key (later rotated away)."""
    return staging(sshPublicKeys=[OLD_KEY])


def _after_config_changed(**extra):
    """Since creation: every type went up and the key was rotated (two steps, the old key gone)."""
    return dict(
        sshPublicKeys=[NEW_KEY],
        controlPlane={"count": 3, "serverType": "cx33"},
        nodePools=[{**WORKERS, "serverType": "cx43"}],
        **extra,
    )


def assert_created_with_current_type_and_keys(before, after, node, server_type):
    server = after.named(f"{C}-{node}")
    # Not ignored for this node only: the engine creates it from these inputs, not the recorded ones.
    assert server.options["ignore_changes"] == []
    assert server.options["delete_before_replace"] is True
    assert server.inputs["serverType"] == server_type
    assert after.named(f"{C}-nodes-key-{key_id(NEW_KEY)}").type == "hcloud:index/sshKey:SshKey"
    assert server.inputs["sshKeys"] == [mock_id(f"{C}-nodes-key-{key_id(NEW_KEY)}")]
    assert before.named(f"{C}-{node}").inputs["sshKeys"] == [mock_id(f"{C}-nodes-key-{key_id(OLD_KEY)}")]
    # Same name and private IP as the machine it replaces.
    assert server.inputs["name"] == before.named(f"{C}-{node}").inputs["name"] == f"{C}-{node}"
    assert server.inputs["networks"][0]["ip"] == before.named(f"{C}-{node}").inputs["networks"][0]["ip"]
    # Every other server keeps ignoring both (a key or type change must not replace or hard-stop it).
    others = [r for r in after.of_type("hcloud:index/server:Server") if r.name != f"{C}-{node}"]
    assert others and all(r.options["ignore_changes"] == ["serverType", "sshKeys"] for r in others)
    assert all(r.options["delete_before_replace"] is True for r in others)


def mock_id(name):
    """The id the mock engine gives a resource (derived from its name, see keybuzz/offline.py)."""
    return str(zlib.crc32(name.encode()) % 900_000_000 + 100_000_000)


def assert_retired_before_its_server_goes(after, node):
    retire = after.named(f"{K}-retire-{C}-{node}")
    server_id = mock_id(f"{C}-{node}")
    # triggers hold the server id (a property dependency) and are replace-on-change: the engine's
    # dependent-replacement walk deletes the retire step (drain, Node, etcd member) before the server.
    assert retire.inputs["triggers"] == [server_id]
    assert retire.options["replace_on_changes"] == ["triggers[*]"]
    assert retire.options["delete_before_replace"] is True
    assert f"{C}-{node}" in retire.depends_on
    delete = retire.inputs["delete"]
    # Bounded, and not blocked by pods stuck on a dead node (i16a's retire script, keybuzz/node_ops.py).
    assert "--skip-wait-for-delete-timeout=" in delete and "--timeout=300s" in delete
    assert delete.index(" drain ") < delete.index('delete node "$NODE"')
    # The new machine joins only after that: its install waits for the retire step and the server.
    assert f"{K}-retire-{C}-{node}" in after.named(f"{K}-install-{C}-{node}").depends_on


def test_every_server_is_replaced_delete_first(created):
    servers = created.of_type("hcloud:index/server:Server")
    assert len(servers) == 5
    assert all(s.options["delete_before_replace"] is True for s in servers)


def test_a_worker_replaced_is_created_with_the_current_type_and_keys(created, monkeypatch):
    replacing(monkeypatch, "workers-1")
    after = staging(**_after_config_changed())
    assert_created_with_current_type_and_keys(created, after, "workers-1", "cx43")
    assert_retired_before_its_server_goes(after, "workers-1")
    # The resize step holds the current type: on the new server id it compares it with the observed one.
    resize = after.named(f"{K}-resize-{C}-workers-1")
    assert resize.inputs["serverType"] == "cx43"


def test_a_server_replaced_is_created_with_the_current_type_and_keys(created, monkeypatch):
    replacing(monkeypatch, "keybuzz-staging-cp-2")
    after = staging(**_after_config_changed())
    assert_created_with_current_type_and_keys(created, after, "cp-2", "cx33")
    assert_retired_before_its_server_goes(after, "cp-2")
    retire = after.named(f"{K}-retire-{C}-cp-2")
    # A server's retire waits for its etcd member to go, reading the list where K3s v1.34 serves it.
    assert "https://127.0.0.1:2382/v3/cluster/member/list" in retire.inputs["delete"]


def test_the_first_server_replaced_keeps_the_provider_and_does_not_reread_the_kubeconfig(monkeypatch):
    before = staging()
    replacing(monkeypatch, "cp-1")
    after = staging()
    assert after.named(f"{C}-cp-1").options["ignore_changes"] == []
    assert_retired_before_its_server_goes(after, "cp-1")
    # The kubeconfig reads ignore connection changes (the new machine's address) and their triggers do
    # not change: nothing is read again, the kubeconfig is not unknown because of the reads.
    for name in (f"{K}-kubeconfig", f"{K}-kubeconfig-reread"):
        assert after.named(name).inputs["triggers"] == before.named(name).inputs["triggers"]
        assert after.named(name).options["ignore_changes"] == ["connection"]
    # The provider: same clusterIdentifier, no option that replaces it. pulumi-kubernetes DiffConfig
    # (provider/pkg/provider/provider.go): with an unchanged clusterIdentifier, Replaces is cleared,
    # even when the kubeconfig is unknown at preview (cp-1's new public IP): an update.
    old, new = before.named(f"{K}-k8s"), after.named(f"{K}-k8s")
    assert new.inputs["clusterIdentifier"] == old.inputs["clusterIdentifier"] == C
    assert not new.options["delete_before_replace"] and not new.options["replace_on_changes"]


def test_an_unknown_node_to_replace_fails_before_any_resource(monkeypatch):
    replacing(monkeypatch, "cp-7")
    with pytest.raises(ConfigError) as caught:
        staging()
    message = str(caught.value)
    assert "'cp-7' is not a node of stack 'staging'" in message
    assert "cp-1, cp-2, cp-3, workers-1, workers-2" in message


# --- the key Pulumi connects with -------------------------------------------------------------------


def test_a_key_list_without_the_connecting_key_is_refused_before_any_resource():
    private = Secret((SSH / "throwaway_ed25519").read_text())
    with pytest.raises(ConfigError) as caught:
        staging(sshPublicKeys=[OLD_KEY], sshPrivateKey=private)
    assert caught.value.key == "sshPrivateKey"
    message = str(caught.value)
    assert fingerprint(NEW_KEY) in message and "not in sshPublicKeys" in message
    assert "ssh-keygen -y -f KEYFILE" in message
    assert "PRIVATE KEY" not in message and private.value.splitlines()[1] not in message


def test_a_listed_connecting_key_is_used_as_a_secret():
    private = Secret((SSH / "throwaway_ed25519").read_text())
    run = staging(sshPublicKeys=[OLD_KEY, NEW_KEY], sshPrivateKey=private)
    install = run.named(f"{K}-install-{C}-cp-1")
    assert secret_value(install.inputs["connection"])["privateKey"] == private.value


def test_key_fingerprints_are_recorded_after_every_node_has_the_keys(created):
    record = created.named(f"{C}-authorized-keys-on-every-node")
    commands = sorted(r.name for r in created.resources if r.name.startswith(f"{C}-authorized-keys-{C}-"))
    assert len(commands) == 5
    assert sorted(record.depends_on) == commands
    assert record.inputs["sshKeyFingerprints"] == [fingerprint(OLD_KEY)]


# --- the kubeconfig, a year on ---------------------------------------------------------------------

KUBECONFIG = (FIXTURES / "k3s_kubeconfig_admin_cert.yaml").read_text()
NOT_AFTER = kubeconfig_renewal.client_cert_not_after(KUBECONFIG)
DAY = 86400.0


@pytest.fixture
def k3s_file_with_a_real_certificate(monkeypatch):
    """What `cat /etc/rancher/k3s/k3s.yaml` returns under the mocks: a kubeconfig with a real certificate."""
    monkeypatch.setattr(keybuzz.offline, "SAMPLE_K3S_KUBECONFIG", KUBECONFIG)
    warnings: list[str] = []
    monkeypatch.setattr(components.k3s.pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    return warnings


def at(monkeypatch, days_before_expiry):
    monkeypatch.setattr(components.k3s, "KUBECONFIG_CLOCK", FakeClock(NOT_AFTER.timestamp() - days_before_expiry * DAY))


def test_a_kubeconfig_whose_certificate_expires_in_30_days_is_read_again_and_the_provider_kept(
    monkeypatch, k3s_file_with_a_real_certificate
):
    at(monkeypatch, 200)
    before = staging()
    at(monkeypatch, 30)
    after = staging()
    reread = f"{K}-kubeconfig-reread"
    old_triggers, new_triggers = before.named(reread).inputs["triggers"], after.named(reread).inputs["triggers"]
    assert old_triggers[1] == "" and new_triggers[1] == "window 2027-09-07 period 2"
    assert new_triggers[0] == old_triggers[0]  # same install: only the renewal period changed
    assert after.named(reread).options["replace_on_changes"] == ["triggers[*]"]  # a new trigger re-reads
    assert after.named(reread).inputs["create"] == "cat /etc/rancher/k3s/k3s.yaml"
    # The first read is not touched, the provider keeps its identifier: an update, never a replacement.
    assert after.named(f"{K}-kubeconfig").inputs == before.named(f"{K}-kubeconfig").inputs
    assert after.named(f"{K}-k8s").inputs["clusterIdentifier"] == before.named(f"{K}-k8s").inputs["clusterIdentifier"]
    # The kubeconfig the provider uses is the re-read one.
    assert "client-certificate-data" in secret_value(after.named(f"{K}-k8s").inputs["kubeconfig"])
    # The re-read file still holds the old certificate here (K3s not restarted): the operator is told.
    warned = [w for w in k3s_file_with_a_real_certificate if "expires on 2027-12-06" in w]
    assert warned and "systemctl restart k3s" in warned[0] and f"{C}-cp-1" in warned[0]


def test_within_a_period_the_kubeconfig_is_not_read_again(monkeypatch, k3s_file_with_a_real_certificate):
    at(monkeypatch, 30)
    first = staging()
    at(monkeypatch, 25)
    second = staging()
    reread = f"{K}-kubeconfig-reread"
    assert first.named(reread).inputs["triggers"] == second.named(reread).inputs["triggers"]


def test_a_fresh_certificate_is_not_read_again_nor_warned_about(monkeypatch, k3s_file_with_a_real_certificate):
    at(monkeypatch, 300)
    run = staging()
    assert run.named(f"{K}-kubeconfig-reread").inputs["triggers"][1] == ""
    assert not [w for w in k3s_file_with_a_real_certificate if "certificate" in w]


# --- what the engine deletes before a replaced server ----------------------------------------------
#
# The rule, from step_generator.go (calculateDependentReplacements): a dependent is deleted before a
# delete-first replacement when an input that depends on the server (made unknown) makes its provider
# diff (plus its replaceOnChanges) ask for a replacement. For remote commands that is `triggers`
# (pulumi-command marks it replaceOnChanges; `connection` is not, a change there is an update), for a
# load balancer target its `serverId` (force-new). Inputs carry the server's id or address as values
# under the mock engine (ids derive from names), so the walk can be checked on the declarations.


def _mentions(value, needles):
    if isinstance(value, dict):
        return any(_mentions(v, needles) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, needles) for v in value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # ids handed over as numbers (the hcloud provider's int ids)
    return str(value) in needles


def deleted_first(run, node):
    server = run.named(f"{C}-{node}")
    needles = {mock_id(server.name), "203.0.113." + server.inputs["networks"][0]["ip"].rsplit(".", 1)[1]}
    out = set()
    for r in run.resources:
        if r.type == "command:remote:Command" and _mentions(r.inputs.get("triggers"), needles):
            out.add(r.name)
        target = r.type == "hcloud:index/loadBalancerTarget:LoadBalancerTarget"
        if target and _mentions(r.inputs.get("serverId"), needles):
            out.add(r.name)
    return out


@pytest.mark.parametrize("node", ["cp-1", "cp-2", "workers-1"])
def test_replacing_a_server_deletes_first_only_that_nodes_own_steps(created, node):
    first = deleted_first(created, node)
    retires = {name for name in first if "-retire-" in name}
    # Its own retire step, and no other node's: deleting another node's retire would drain that node
    # and remove its Node (and etcd member).
    assert retires == {f"{K}-retire-{C}-{node}"}
    # Besides: its taints command (re-applied on the new Node) and, for a server, its API LB target.
    expected = {f"{K}-retire-{C}-{node}", f"{K}-taints-{C}-{node}"}
    if node.startswith("cp-"):
        expected.add(f"{C}-api-lb-target-{C}-{node}")
    assert first == expected
    # Commands that only connect to the server (its address in `connection`) are updated, not deleted:
    # none of them carries the address in `triggers`.
    assert not any(_mentions(r.inputs.get("triggers"), {"203.0.113."}) for r in created.resources
                   if r.type == "command:remote:Command")
