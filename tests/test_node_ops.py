"""The scripts the servers run against the Kubernetes API on day 2 (keybuzz/node_ops.py)."""

from __future__ import annotations

import subprocess

import pytest
from shell_lint import assert_valid_bash

from keybuzz import node_ops

ALL_SCRIPTS = {
    "new node": node_ops.new_node_script("keybuzz-w-1", "fp1"),
    "drain": node_ops.drain_script("keybuzz-w-1", "fp1"),
    "drain on the node": node_ops.drain_script("keybuzz-cp-1", "fp1", on_node=True),
    "registered": node_ops.registered_script("keybuzz-w-1", "fp1"),
    "ready": node_ops.ready_script("keybuzz-w-1", "fp1"),
    "taints": node_ops.taints_script("keybuzz-w-1", ("gpu=true:NoSchedule", "spot:NoExecute")),
    "no taints": node_ops.taints_script("keybuzz-w-1", ()),
    "retire agent": node_ops.retire_script("keybuzz-w-1", "agent", "10.0.1.20"),
    "retire server": node_ops.retire_script("keybuzz-cp-3", "server", "10.0.1.12"),
    "retire first server": node_ops.retire_script("keybuzz-cp-1", "server", "10.0.1.10", first=True),
    "retire lone server": node_ops.retire_script("keybuzz-cp-1", "server", "10.0.1.10", alone=True),
    "retire create": node_ops.retire_create_script("keybuzz-w-1"),
}


@pytest.mark.parametrize("name", sorted(ALL_SCRIPTS))
def test_every_script_passes_bash_n_and_shellcheck(name):
    assert_valid_bash(ALL_SCRIPTS[name])


@pytest.mark.parametrize("name", sorted(ALL_SCRIPTS))
def test_no_script_traces_or_dumps_its_environment(name):
    words = ALL_SCRIPTS[name].split()
    assert "set -x" not in ALL_SCRIPTS[name] and "env" not in words and "printenv" not in words


def run_with_fake_k3s(tmp_path, script, recorded_fingerprint=""):
    """Run a script against a stand-in ``k3s`` that logs each kubectl call and answers like a live node."""
    log = tmp_path / "calls"
    fake = tmp_path / "k3s"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$*" in\n'
        '  *"-o name"*) echo node/keybuzz-w-1 ;;\n'
        f"  *rollout-fingerprint}}*) printf '%s' '{recorded_fingerprint}' ;;\n"
        "  *Ready*) printf True ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=10, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}
    )
    assert done.returncode == 0, done.stderr
    return [line.removeprefix("kubectl ").split(" ")[0] for line in log.read_text().splitlines()]


def test_a_node_at_a_new_fingerprint_is_cordoned_and_drained_then_uncordoned_and_recorded(tmp_path):
    drained = run_with_fake_k3s(tmp_path, node_ops.drain_script("keybuzz-w-1", "new"), "old")
    assert drained == ["get", "get", "cordon", "drain"]
    (tmp_path / "calls").unlink()
    readied = run_with_fake_k3s(tmp_path, node_ops.ready_script("keybuzz-w-1", "new"), "old")
    assert readied == ["get", "get", "uncordon", "annotate"]


def test_a_replaced_first_server_without_k3s_has_nothing_to_drain_on_itself(tmp_path):
    """The first server drains itself; once replaced, the new machine has no k3s until its install."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sh", "echo"):
        (bare / tool).symlink_to(f"/bin/{tool}")
    script = node_ops.drain_script("keybuzz-cp-1", "new", on_node=True)
    done = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True, timeout=10,
                          env={"PATH": str(bare)})
    assert (done.returncode, done.stdout) == (
        0, "keybuzz: node keybuzz-cp-1: no K3s on this machine yet (a new server): nothing to drain\n"
    )
    # Without on_node (another node drained through the first server), no K3s there is a failure.
    done = subprocess.run(["/bin/bash", "-c", node_ops.drain_script("keybuzz-w-1", "new")], capture_output=True,
                          text=True, timeout=10, env={"PATH": str(bare)})
    assert done.returncode == 1 and "the Kubernetes API does not answer on this server" in done.stderr
    # With K3s there, on_node changes nothing: the node is drained as usual.
    assert run_with_fake_k3s(tmp_path, script, "old") == ["get", "get", "cordon", "drain"]


def test_a_node_already_at_the_fingerprint_is_neither_drained_nor_uncordoned(tmp_path):
    # The commands also update when only their SSH connection changed: that must not drain anything,
    # nor uncordon a node someone cordoned by hand.
    assert run_with_fake_k3s(tmp_path, node_ops.drain_script("keybuzz-w-1", "same"), "same") == ["get", "get"]
    (tmp_path / "calls").unlink()
    assert run_with_fake_k3s(tmp_path, node_ops.ready_script("keybuzz-w-1", "same"), "same") == ["get", "get"]


def test_a_new_node_records_its_fingerprint_once_registered(tmp_path):
    calls = run_with_fake_k3s(tmp_path, node_ops.registered_script("keybuzz-w-1", "fp1"))
    assert calls == ["get", "annotate"]
    script = node_ops.registered_script("keybuzz-w-1", "fp1")
    assert "annotate node \"$NODE\" --overwrite keybuzz.io/rollout-fingerprint=fp1" in script


def test_drain_is_bounded_keeps_daemonsets_and_skips_an_unregistered_node():
    script = node_ops.drain_script("keybuzz-w-1", "fp1")
    assert "NODE=keybuzz-w-1\n" in script and "# keybuzz rollout fingerprint: fp1" in script
    assert 'timeout 330 k3s kubectl drain "$NODE" --ignore-daemonsets --delete-emptydir-data --timeout=300s' in script
    assert "--force" not in script  # a pod without a controller stops the drain instead of being lost
    assert 'if [ -z "$out" ]; then echo "keybuzz: node $NODE is not registered: nothing to drain"; exit 0; fi' in script
    assert 'fail "cordon failed"' in script


def test_ready_waits_for_node_ready_then_uncordons_and_create_waits_only_for_registration():
    ready = node_ops.ready_script("keybuzz-w-1", "fp1")
    assert "{.status.conditions[?(@.type==\"Ready\")].status}" in ready and '= True ]' in ready
    assert ready.index("= True ]") < ready.index('uncordon "$NODE"') < ready.index("rollout-fingerprint=fp1")
    assert '[ "$i" -lt 150 ]' in ready  # 300 s, 2 s apart
    registered = node_ops.registered_script("keybuzz-w-1", "fp1")
    assert "--ignore-not-found -o name" in registered and "Ready" not in registered  # no CNI yet on day 1
    assert "uncordon" not in registered


def test_a_new_node_has_nothing_to_drain():
    script = node_ops.new_node_script("keybuzz-w-1", "fp1")
    assert "kubectl" not in script and "fp1" in script


def test_a_server_retire_waits_until_its_etcd_member_is_gone():
    script = node_ops.retire_script("keybuzz-cp-3", "server", "10.0.1.12")
    drain = script.index("kubectl drain")
    delete = script.index('kubectl delete node "$NODE" --timeout=300s')
    members = script.index("list=$(members)")
    assert drain < delete < members
    assert "https://127.0.0.1:2379/v3/cluster/member/list" in script
    assert f"--cert {node_ops.ETCD_TLS}/client.crt --key {node_ops.ETCD_TLS}/client.key" in script
    assert 'case "$list" in *https://10.0.1.12:2380*) ;; *) break ;; esac' in script
    assert 'fail "the Kubernetes API does not answer on this server"' in script


def test_an_agent_retire_drains_and_deletes_its_node_only():
    script = node_ops.retire_script("keybuzz-w-1", "agent", "10.0.1.20")
    assert "kubectl drain" in script and 'kubectl delete node "$NODE"' in script
    assert "2379" not in script


def test_the_first_servers_retire_skips_only_when_its_host_api_is_gone():
    script = node_ops.retire_script("keybuzz-cp-1", "server", "10.0.1.10", first=True)
    assert "(cluster being destroyed?): skipped\"; exit 0; }" in script
    lone = node_ops.retire_script("keybuzz-cp-1", "server", "10.0.1.10", alone=True)
    assert "kubectl" not in lone and "nothing to remove it from" in lone


def run_taints(tmp_path, wanted, recorded):
    """Run the taints script with a stand-in ``k3s`` that logs each kubectl call."""
    log = tmp_path / "calls"
    fake = tmp_path / "k3s"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$*" in\n'
        f'  *"-o name"*) echo node/keybuzz-w-1 ;;\n'
        f"  *jsonpath*) printf '%s' '{recorded}' ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", node_ops.taints_script("keybuzz-w-1", wanted)],
        capture_output=True, text=True, timeout=10, env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return [line.removeprefix("kubectl ") for line in log.read_text().splitlines()]


def test_taints_no_longer_wanted_are_removed_and_others_are_left_alone(tmp_path):
    calls = run_taints(tmp_path, ("gpu=false:NoSchedule",), "gpu=true:NoSchedule,spot:NoExecute")
    assert calls[2:] == [
        "taint node keybuzz-w-1 gpu:NoSchedule-",
        "taint node keybuzz-w-1 spot:NoExecute-",
        "taint node keybuzz-w-1 gpu=false:NoSchedule --overwrite",
        "annotate node keybuzz-w-1 --overwrite keybuzz.io/managed-taints=gpu=false:NoSchedule",
    ]


def test_an_unchanged_taint_is_not_removed_and_an_empty_list_clears_ours(tmp_path):
    kept = run_taints(tmp_path, ("spot:NoExecute",), "spot:NoExecute")
    assert not [c for c in kept if c.endswith("-")]
    (tmp_path / "calls").unlink()
    cleared = run_taints(tmp_path, (), "spot:NoExecute")
    assert cleared[2:] == [
        "taint node keybuzz-w-1 spot:NoExecute-",
        "annotate node keybuzz-w-1 --overwrite keybuzz.io/managed-taints=",
    ]
