"""The scripts the servers run against the Kubernetes API on day 2 (keybuzz/node_ops.py)."""

from __future__ import annotations

import subprocess

import pytest
from fakes.node_stubs import kubectl_calls, make_stubs, run_script
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
    "retire with fallbacks": node_ops.retire_script(
        "keybuzz-cp-3", "server", "10.0.1.12", api_fallbacks=("10.0.1.5", "10.0.1.10")
    ),
    "drain with fallbacks": node_ops.drain_script("keybuzz-w-1", "fp1", api_fallbacks=("10.0.1.5", "10.0.1.10")),
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
    bin_dir, state = make_stubs(tmp_path)
    (state / "registered").write_text("keybuzz-w-1")
    (state / "fingerprint").write_text(recorded_fingerprint)
    done = run_script(script, bin_dir)
    assert done.returncode == 0, done.stderr
    return [call.split(" ")[1] for call in kubectl_calls(state)]


def test_a_node_at_a_new_fingerprint_is_cordoned_and_drained_then_uncordoned_and_recorded(tmp_path):
    drained = run_with_fake_k3s(tmp_path / "a", node_ops.drain_script("keybuzz-w-1", "new"), "old")
    assert drained == ["get", "get", "cordon", "drain"]
    readied = run_with_fake_k3s(tmp_path / "b", node_ops.ready_script("keybuzz-w-1", "new"), "old")
    assert readied == ["get", "get", "uncordon", "annotate"]


def test_a_replaced_first_server_without_k3s_has_nothing_to_drain_on_itself(tmp_path):
    """The first server drains itself; once replaced, the new machine has no k3s until its install."""
    bare = tmp_path / "bare"
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
    assert done.returncode == 1 and "no Kubernetes API is ready: not on this server" in done.stderr
    # With K3s there, on_node changes nothing: the node is drained as usual.
    (tmp_path / "k").mkdir()
    assert run_with_fake_k3s(tmp_path / "k", script, "old") == ["get", "get", "cordon", "drain"]


def test_a_node_already_at_the_fingerprint_is_neither_drained_nor_uncordoned(tmp_path):
    # The commands also update when only their SSH connection changed: that must not drain anything,
    # nor uncordon a node someone cordoned by hand.
    assert run_with_fake_k3s(tmp_path / "a", node_ops.drain_script("keybuzz-w-1", "same"), "same") == ["get", "get"]
    assert run_with_fake_k3s(tmp_path / "b", node_ops.ready_script("keybuzz-w-1", "same"), "same") == ["get", "get"]


def test_a_new_node_records_its_fingerprint_once_registered(tmp_path):
    calls = run_with_fake_k3s(tmp_path, node_ops.registered_script("keybuzz-w-1", "fp1"))
    assert calls == ["get", "annotate"]
    script = node_ops.registered_script("keybuzz-w-1", "fp1")
    assert "kc annotate node \"$NODE\" --overwrite keybuzz.io/rollout-fingerprint=fp1" in script


def test_drain_is_bounded_keeps_daemonsets_and_skips_an_unregistered_node():
    script = node_ops.drain_script("keybuzz-w-1", "fp1")
    assert "NODE=keybuzz-w-1\n" in script and "# keybuzz rollout fingerprint: fp1" in script
    assert (
        'kc_within 330 drain "$NODE" --ignore-daemonsets --delete-emptydir-data --skip-wait-for-delete-timeout=60 '
        "--timeout=300s" in script
    )
    assert "--force" not in script  # a pod without a controller stops the drain instead of being lost
    assert 'if [ -z "$out" ]; then echo "keybuzz: node $NODE is not registered: nothing to drain"; exit 0; fi' in script
    assert 'fail "cordon failed"' in script


def test_ready_waits_for_node_ready_then_uncordons_and_create_waits_only_for_registration():
    ready = node_ops.ready_script("keybuzz-w-1", "fp1")
    assert "{.status.conditions[?(@.type==\"Ready\")].status}" in ready and '= True ]' in ready
    assert ready.index("= True ]") < ready.index('uncordon "$NODE"') < ready.index("rollout-fingerprint=fp1")
    assert "deadline=$((started + 300))" in ready  # 300 s from the start, whatever each try takes
    registered = node_ops.registered_script("keybuzz-w-1", "fp1")
    assert "--ignore-not-found -o name" in registered and "Ready" not in registered  # no CNI yet on day 1
    assert "uncordon" not in registered


def test_a_new_node_has_nothing_to_drain():
    script = node_ops.new_node_script("keybuzz-w-1", "fp1")
    assert "kubectl" not in script and "fp1" in script


FALLBACKS = ("10.0.1.5", "10.0.1.10", "10.0.1.11", "10.0.1.12")
MEMBERS_WITH_CP3 = (
    '{"header":{},"members":[{"ID":"1","name":"keybuzz-cp-1-a","peerURLs":["https://10.0.1.10:2380"]},'
    '{"ID":"3","name":"keybuzz-cp-3-c","peerURLs":["https://10.0.1.12:2380"]}]}'
)
MEMBERS_WITHOUT_CP3 = '{"header":{},"members":[{"ID":"1","name":"keybuzz-cp-1-a","peerURLs":["https://10.0.1.10:2380"]}]}'


def test_a_server_retire_reads_the_member_list_where_k3s_v1_34_serves_it():
    script = node_ops.retire_script("keybuzz-cp-3", "server", "10.0.1.12")
    drain = script.index(" drain ")
    delete = script.index('delete node "$NODE" --timeout=300s')
    members = script.index("list=$(members)")
    assert drain < delete < members
    # JSON gateway on loopback 2382 (k3s pkg/etcd/etcd.go listenClientHTTPURLs); 2379 is gRPC only.
    assert "-X POST -d '{}' https://127.0.0.1:2382/v3/cluster/member/list" in script
    assert "2379" not in script
    tls = "/var/lib/rancher/k3s/server/tls/etcd"
    assert f"--cacert {tls}/server-ca.crt --cert {tls}/client.crt --key {tls}/client.key" in script
    assert 'case "$list" in *https://10.0.1.12:2380*) false ;; *) true ;; esac' in script


def run_retire(tmp_path, script, *, apis="local", node_ready="True", members=MEMBERS_WITHOUT_CP3,
               etcd_nodes="node/keybuzz-cp-1\nnode/keybuzz-cp-2", registered="keybuzz-cp-3"):
    bin_dir, state = make_stubs(tmp_path)
    (state / "ready_apis").write_text(apis)
    (state / "node_ready").write_text(node_ready)
    (state / "etcd_nodes").write_text(etcd_nodes + "\n")
    if registered:
        (state / "registered").write_text(registered)
    if members is not None:
        (state / "members").write_text(members)
    return run_script(script, bin_dir), state


def test_a_3_to_1_shrink_step_completes_once_the_member_is_gone_from_the_2382_list(tmp_path):
    script = node_ops.retire_script("keybuzz-cp-3", "server", "10.0.1.12", api_fallbacks=FALLBACKS)
    done, state = run_retire(tmp_path / "gone", script)
    assert done.returncode == 0, done.stderr
    assert "etcd member https://10.0.1.12:2380 gone" in done.stdout
    assert [c.split(" ")[1] for c in kubectl_calls(state)] == ["get", "get", "cordon", "drain", "delete"]
    assert "https://127.0.0.1:2382/v3/cluster/member/list" in (state / "curl").read_text()
    # Still listed: bounded by time (the fake clock advances only when the script sleeps), and says so.
    done, state = run_retire(tmp_path / "stuck", script, members=MEMBERS_WITH_CP3)
    assert done.returncode == 1
    assert "etcd member https://10.0.1.12:2380 still listed" in done.stderr
    assert "300 s after its Node was deleted (waited 300 s)" in done.stderr


def test_a_dead_nodes_drain_does_not_block_on_its_pods(tmp_path):
    script = node_ops.retire_script("keybuzz-w-1", "agent", "10.0.1.20", api_fallbacks=FALLBACKS)
    done, state = run_retire(tmp_path / "dead", script, node_ready="Unknown", registered="keybuzz-w-1")
    assert done.returncode == 0, done.stderr
    (drain,) = [c for c in kubectl_calls(state) if " drain " in c]
    # Pods of a dead node never finish terminating: skipped after 60 s, deleted without the eviction API.
    assert "--skip-wait-for-delete-timeout=60 --disable-eviction --force --timeout=300s" in drain
    assert "unreachable (Ready=Unknown)" in done.stdout
    # A live node is evicted (PodDisruptionBudgets hold), still never waiting on pods stuck terminating.
    done, state = run_retire(tmp_path / "live", script, registered="keybuzz-w-1")
    (drain,) = [c for c in kubectl_calls(state) if " drain " in c]
    assert "--skip-wait-for-delete-timeout=60 --timeout=300s" in drain and "--disable-eviction" not in drain


def test_an_agent_retire_drains_and_deletes_its_node_only():
    script = node_ops.retire_script("keybuzz-w-1", "agent", "10.0.1.20")
    assert " drain " in script and 'delete node "$NODE"' in script
    assert "2382" not in script and "2379" not in script


def test_the_first_servers_retire_skips_only_when_no_cluster_is_left_after_it(tmp_path):
    script = node_ops.retire_script("keybuzz-cp-1", "server", "10.0.1.10", first=True, api_fallbacks=FALLBACKS)
    # pulumi destroy: every other server already retired; the host's own API is gone (it left etcd),
    # cp-1's answers and it is the last etcd member: nothing to remove it from.
    done, state = run_retire(tmp_path / "destroy", script, apis="10.0.1.10", etcd_nodes="node/keybuzz-cp-1",
                             registered="keybuzz-cp-1")
    assert done.returncode == 0, done.stderr
    assert "is the last etcd member: no cluster is left after it" in done.stdout
    assert not [c for c in kubectl_calls(state) if " delete " in c or " drain " in c]
    # No API answers anywhere: never "skipped" (that could leave a stale etcd member): a clear failure.
    done, _ = run_retire(tmp_path / "none", script, apis="")
    assert done.returncode == 1
    assert "no Kubernetes API is ready: not on this server, nor at 10.0.1.5, 10.0.1.10" in done.stderr
    assert "nothing was removed" in done.stderr
    # cp-1 replaced while the others run: removed like any server.
    done, state = run_retire(tmp_path / "replace", script, etcd_nodes="node/keybuzz-cp-1\nnode/keybuzz-cp-2",
                             registered="keybuzz-cp-1", members=MEMBERS_WITH_CP3.replace("10.0.1.10", "10.0.1.11"))
    assert done.returncode == 0, done.stderr
    assert [c.split(" ")[1] for c in kubectl_calls(state)][-2:] == ["drain", "delete"]
    lone = node_ops.retire_script("keybuzz-cp-1", "server", "10.0.1.10", alone=True)
    assert "kubectl" not in lone and "nothing to remove it from" in lone


def test_with_cp1_down_another_servers_api_runs_the_drain(tmp_path):
    """The command connects to cp-1; its K3s is down: the drain goes through the LB's or a server's API."""
    script = node_ops.drain_script("keybuzz-w-1", "new", api_fallbacks=FALLBACKS)
    bin_dir, state = make_stubs(tmp_path)
    (state / "ready_apis").write_text("10.0.1.11")  # only cp-2's API answers (no LB, cp-1 down)
    (state / "registered").write_text("keybuzz-w-1")
    (state / "fingerprint").write_text("old")
    done = run_script(script, bin_dir)
    assert done.returncode == 0, done.stderr
    assert "the API on test-host is not ready: using the one at 10.0.1.11" in done.stdout
    calls = kubectl_calls(state)
    assert [c.split(" ")[:2] for c in calls] == [
        ["10.0.1.11", "get"], ["10.0.1.11", "get"], ["10.0.1.11", "cordon"], ["10.0.1.11", "drain"],
    ]
    # The order tried: this server's own, the LB, then the servers: cp-1 (10.0.1.10) before cp-2.
    probes = [line.split(" ")[0] for line in (state / "kubectl").read_text().splitlines() if "/readyz" in line]
    assert probes == ["local", "10.0.1.5", "10.0.1.10", "10.0.1.11"]


def test_every_wait_is_bounded_by_time_and_the_message_says_how_long(tmp_path):
    bin_dir, state = make_stubs(tmp_path)
    (state / "registered").write_text("keybuzz-w-1")
    (state / "node_ready").write_text("False")
    done = run_script(node_ops.ready_script("keybuzz-w-1", "fp1"), bin_dir)
    assert done.returncode == 1
    assert "not Ready 300 s after its change (waited 300 s)" in done.stderr
    # 2 s between tries, deadline at 300 s: 150 tries, not 150 tries of up to 60 s each.
    tries = [c for c in kubectl_calls(state) if "Ready" in c]
    assert len(tries) == 151


def run_taints(tmp_path, wanted, recorded):
    """Run the taints script with a stand-in ``k3s`` that logs each kubectl call."""
    bin_dir, state = make_stubs(tmp_path)
    (state / "registered").write_text("keybuzz-w-1")
    (state / "taints").write_text(recorded)
    done = run_script(node_ops.taints_script("keybuzz-w-1", wanted), bin_dir)
    assert done.returncode == 0, done.stderr
    return [call.removeprefix("local ") for call in kubectl_calls(state)]


def test_taints_no_longer_wanted_are_removed_and_others_are_left_alone(tmp_path):
    calls = run_taints(tmp_path, ("gpu=false:NoSchedule",), "gpu=true:NoSchedule,spot:NoExecute")
    assert calls[2:] == [
        "taint node keybuzz-w-1 gpu:NoSchedule-",
        "taint node keybuzz-w-1 spot:NoExecute-",
        "taint node keybuzz-w-1 gpu=false:NoSchedule --overwrite",
        "annotate node keybuzz-w-1 --overwrite keybuzz.io/managed-taints=gpu=false:NoSchedule",
    ]


def test_an_unchanged_taint_is_not_removed_and_an_empty_list_clears_ours(tmp_path):
    kept = run_taints(tmp_path / "a", ("spot:NoExecute",), "spot:NoExecute")
    assert not [c for c in kept if c.endswith("-")]
    cleared = run_taints(tmp_path / "b", (), "spot:NoExecute")
    assert cleared[2:] == [
        "taint node keybuzz-w-1 spot:NoExecute-",
        "annotate node keybuzz-w-1 --overwrite keybuzz.io/managed-taints=",
    ]
