"""Restore as an operation (keybuzz/restore.py): the steps in order, bounded, on every server, and the refusals."""

from __future__ import annotations

import json
import re

import pytest
from fakes.clock import FakeClock
from shell_lint import assert_valid_bash

from keybuzz import restore
from keybuzz.etcd_backup import Snapshot
from keybuzz.restore import Result, Server

SERVERS = [Server(f"kb-cp-{i}", f"203.0.113.{i}", f"10.0.1.{9 + i}") for i in (1, 2, 3)]
S3_SNAP = Snapshot("etcd-snapshot-kb-cp-1-1753178523", "s3://bk/kb/etcd-snapshot-kb-cp-1-1753178523", 5062688,
                   "2025-07-22T10:02:03Z")
LOCAL_SNAP = Snapshot("pre-upgrade-kb-cp-2-1753178600",
                      "file:///var/lib/rancher/k3s/server/db/snapshots/pre-upgrade-kb-cp-2-1753178600", 5062688,
                      "2025-07-22T10:03:20Z")
# `k3s etcd-snapshot ls` as printed in docs.k3s.io/cli/etcd-snapshot (a log line before the table, as K3s logs).
LS_HEADER = "Name                              Location                      Size    Created\n"


def ls_output(*snaps: Snapshot) -> str:
    rows = "".join(f"{s.name}     {s.location}     {s.size} {s.created}\n" for s in snaps)
    return 'time="2025-07-22T10:05:00Z" level=info msg="Managed etcd cluster bootstrap already complete"\n' + \
        LS_HEADER + rows


def members_json(*servers: Server, learner: str = "", ids: dict[str, str] | None = None) -> str:
    members = []
    for s in servers:
        m = {"ID": (ids or {}).get(s.name, str(abs(hash(s.name)) % 10**12)), "name": f"{s.name}-3f2a9c1d",
             "peerURLs": [s.peer_url], "clientURLs": [f"https://{s.private_ip}:2379"]}
        if s.name == learner:
            m["isLearner"] = True
        members.append(m)
    return json.dumps({"header": {"cluster_id": "1", "member_id": "2", "raft_term": "3"}, "members": members})


class FakeSsh:
    """A cluster of three servers as the scripts see it: which ran, in what order, and what they answered."""

    def __init__(self, listings: dict[str, str], tokens: dict[str, str] | None = None, fail: str = "") -> None:
        self.listings = listings
        self.tokens = tokens or {s.public_ip: "abc" for s in SERVERS}
        self.fail = fail
        self.calls: list[tuple[str, str, str, int]] = []  # (node, kind, script, timeout)
        self.started: list[str] = []

    def node(self, host: str) -> Server:
        return next(s for s in SERVERS if s.public_ip == host)

    def run(self, host: str, script: str, timeout: int) -> Result:
        node = self.node(host)
        kind = kind_of(script)
        self.calls.append((node.name, kind, script, timeout))
        if self.fail and self.fail == f"{node.name}:{kind}":
            return Result(1, "", f"keybuzz: node {node.name}: simulated failure")
        if kind == "preflight":
            return Result(0, f"token-sha256 {self.tokens[host]}\n" + self.listings.get(node.name, LS_HEADER), "")
        if kind in ("start", "wipe-start"):
            self.started.append(node.name)
        if kind == "members":
            return Result(0, members_json(*[s for s in SERVERS if s.name in self.started]), "")
        return Result(0, "", "")


def kind_of(script: str) -> str:
    if "etcd-snapshot ls" in script:
        return "preflight"
    if "systemctl stop k3s" in script:
        return "stop"
    if "--cluster-reset" in script:
        return "reset"
    if "rm -rf /var/lib/rancher/k3s/server/db" in script:
        return "wipe-start"
    if "systemctl start" in script:
        return "start"
    if "member/list" in script:
        return "members"
    raise AssertionError(f"unknown script:\n{script}")


def run(ssh: FakeSsh, name: str) -> list[str]:
    said: list[str] = []
    clock = FakeClock()
    restore.Restore(ssh, SERVERS, say=said.append, clock=clock, sleep=clock.sleep).run(name)
    return said


def steps(ssh: FakeSsh) -> list[tuple[str, str]]:
    return [(n, k) for n, k, _, _ in ssh.calls if k not in ("preflight", "members")]


def test_s3_restore_stops_every_server_then_resets_one_then_wipes_and_starts_the_others_one_at_a_time():
    ssh = FakeSsh({"kb-cp-1": ls_output(S3_SNAP, LOCAL_SNAP), "kb-cp-2": ls_output(S3_SNAP)})
    said = run(ssh, S3_SNAP.name)
    assert steps(ssh) == [
        ("kb-cp-1", "stop"), ("kb-cp-2", "stop"), ("kb-cp-3", "stop"),
        ("kb-cp-1", "reset"), ("kb-cp-1", "start"),
        ("kb-cp-2", "wipe-start"), ("kb-cp-3", "wipe-start"),
    ]
    # The list comes first, on every server; a joined server is a voter before the next one starts.
    kinds = [(n, k) for n, k, _, _ in ssh.calls]
    assert kinds[:3] == [("kb-cp-1", "preflight"), ("kb-cp-2", "preflight"), ("kb-cp-3", "preflight")]
    cp2, cp3 = kinds.index(("kb-cp-2", "wipe-start")), kinds.index(("kb-cp-3", "wipe-start"))
    assert ("kb-cp-1", "members") in kinds[cp2 + 1 : cp3]
    # Success is judged by the member lists read on every server, after the last join.
    assert kinds[-3:] == [("kb-cp-1", "members"), ("kb-cp-2", "members"), ("kb-cp-3", "members")]
    assert "restore: kb-cp-2: remove server/db and rejoin ..." in said
    assert said[-1].startswith(f"restore: etcd restored from {S3_SNAP.name}: 3 voting member(s)")


def test_a_local_snapshot_is_reset_on_the_server_that_holds_it_with_s3_off_and_its_full_path():
    ssh = FakeSsh({"kb-cp-2": ls_output(LOCAL_SNAP)})
    run(ssh, LOCAL_SNAP.name)
    reset = [(n, s) for n, k, s, _ in ssh.calls if k == "reset"]
    assert [n for n, _ in reset] == ["kb-cp-2"]
    assert f"--etcd-s3=false --cluster-reset-restore-path={LOCAL_SNAP.local_path}" in reset[0][1]
    assert [n for n, k in steps(ssh) if k == "wipe-start"] == ["kb-cp-1", "kb-cp-3"]


def test_an_s3_snapshot_is_passed_by_name_and_read_through_the_config_without_server():
    script = restore.reset_script("kb-cp-1", S3_SNAP)
    assert f"--cluster-reset-restore-path={S3_SNAP.name} " in script and "--etcd-s3=false" not in script
    # The reset reads a copy of config.yaml without `server:` (K3s refuses a reset with a server URL).
    sed = script.index("sed '/^server:/d' /etc/rancher/k3s/config.yaml > /etc/rancher/k3s/reset-config.yaml")
    reset = script.index("k3s server --config /etc/rancher/k3s/reset-config.yaml --cluster-reset")
    cleanup = script.index("rm -f /etc/rancher/k3s/reset-config.yaml")
    assert sed < reset < cleanup
    assert "grep -q 'restart without --cluster-reset'" in script


def test_a_snapshot_name_that_exists_nowhere_is_refused_before_anything_is_stopped():
    ssh = FakeSsh({"kb-cp-1": ls_output(S3_SNAP)})
    with pytest.raises(restore.RestoreError, match=r"no snapshot named 'nope'.*nothing was stopped.*"
                       + re.escape(S3_SNAP.name)):
        run(ssh, "nope")
    assert {k for _, k, _, _ in ssh.calls} == {"preflight"}


def test_servers_with_different_tokens_are_refused_before_anything_is_stopped():
    tokens = {"203.0.113.1": "abc", "203.0.113.2": "abc", "203.0.113.3": "other"}
    ssh = FakeSsh({"kb-cp-1": ls_output(S3_SNAP)}, tokens=tokens)
    with pytest.raises(restore.RestoreError, match="same cluster token"):
        run(ssh, S3_SNAP.name)
    assert {k for _, k, _, _ in ssh.calls} == {"preflight"}


def test_a_failed_step_names_the_node_the_step_and_what_was_done_and_stops_there():
    ssh = FakeSsh({"kb-cp-1": ls_output(S3_SNAP)}, fail="kb-cp-1:reset")
    with pytest.raises(restore.RestoreError) as err:
        run(ssh, S3_SNAP.name)
    message = str(err.value)
    assert message.startswith(f"kb-cp-1: step 'cluster reset from {S3_SNAP.name}' failed (exit 1)")
    assert "steps done: kb-cp-1: stop k3s; kb-cp-2: stop k3s; kb-cp-3: stop k3s." in message
    assert not ssh.started  # nothing started after the failed reset


def test_a_server_that_never_becomes_a_voter_fails_after_the_join_bound():
    class LearnerSsh(FakeSsh):
        def run(self, host, script, timeout):
            result = super().run(host, script, timeout)
            if kind_of(script) == "members":
                return Result(0, members_json(*[s for s in SERVERS if s.name in self.started], learner="kb-cp-2"), "")
            return result

    ssh = LearnerSsh({"kb-cp-1": ls_output(S3_SNAP)})
    clock = FakeClock()
    with pytest.raises(restore.RestoreError, match=r"kb-cp-2: still a learner of the restored etcd 300 s"):
        restore.Restore(ssh, SERVERS, say=lambda _: None, clock=clock, sleep=clock.sleep).run(S3_SNAP.name)
    assert clock() == pytest.approx(restore.JOIN_TIMEOUT_SECONDS, abs=restore.POLL_SECONDS)
    assert ("kb-cp-3", "wipe-start") not in steps(ssh)


def test_every_step_is_bounded_and_every_script_passes_bash_n_and_shellcheck():
    for snap in (S3_SNAP, LOCAL_SNAP):
        plan = restore.plan_restore(SERVERS, SERVERS[0], snap)
        assert {s.node for s in plan if s.what == "stop k3s"} == {s.name for s in SERVERS}
        for step in plan:
            assert 0 < step.timeout <= restore.RESET_TIMEOUT_SECONDS
            # Each command that can hang runs under `timeout` (or a counted loop), below the step's bound.
            for bound in re.findall(r"timeout (\d+) ", step.script):
                assert int(bound) < step.timeout, step.what
            assert_valid_bash(step.script)
    for script in (restore.preflight_script("n"), restore.members_script("n")):
        assert_valid_bash(script)


def test_the_others_remove_their_etcd_data_before_starting_and_refuse_to_if_k3s_runs():
    script = restore.start_script("kb-cp-2", wipe=True)
    assert script.index("rm -rf /var/lib/rancher/k3s/server/db") < script.index("systemctl start --no-block k3s")
    assert script.index("systemctl is-active --quiet k3s") < script.index("rm -rf")
    assert "rm -rf" not in restore.start_script("kb-cp-1", wipe=False)


def test_members_are_read_from_the_json_gateway_on_2382_not_the_grpc_port():
    script = restore.members_script("n")
    assert "https://127.0.0.1:2382/v3/cluster/member/list" in script and "2379" not in script


def test_judge_members_sees_a_split_brain_that_readiness_would_not():
    healthy = {s.name: restore.parse_members(members_json(*SERVERS, ids={x.name: x.name[-1] for x in SERVERS}))
               for s in SERVERS}
    assert restore.judge_members(healthy, SERVERS) == []
    # kb-cp-3 revived the old cluster: it lists other member IDs (even with all peers' URLs).
    split = dict(healthy)
    split["kb-cp-3"] = restore.parse_members(members_json(*SERVERS, ids={x.name: "9" + x.name[-1] for x in SERVERS}))
    problems = restore.judge_members(split, SERVERS)
    assert len(problems) == 1 and problems[0].startswith("kb-cp-3: member IDs") and "split brain" in problems[0]
    # One server missing from the membership.
    short = {s.name: restore.parse_members(members_json(*SERVERS[:2])) for s in SERVERS}
    assert any("expected" in p for p in restore.judge_members(short, SERVERS))


def test_servers_come_from_the_nodes_output_first_server_first():
    nodes = [
        {"name": "kb-workers-1", "role": "agent", "privateIp": "10.0.1.20", "publicIp": "203.0.113.20"},
        {"name": "kb-cp-2", "role": "server", "privateIp": "10.0.1.11", "publicIp": "203.0.113.11"},
        {"name": "kb-cp-1", "role": "server", "privateIp": "10.0.1.10", "publicIp": "203.0.113.10"},
    ]
    assert [s.name for s in restore.servers_from_outputs(nodes)] == ["kb-cp-1", "kb-cp-2"]
    with pytest.raises(restore.RestoreError, match="no 'nodes' output"):
        restore.servers_from_outputs(None)


def test_usage_without_a_snapshot_name_or_without_yes_is_refused(capsys):
    assert restore.main(["restore", "dev"]) == 2
    assert "restore <snapshot name> --yes" in capsys.readouterr().err


def test_the_preflight_lists_local_files_too_when_k3s_cannot_list_them():
    script = restore.preflight_script("kb-cp-1")
    ls = script.index("k3s etcd-snapshot ls")
    assert "|| echo" in script[ls : script.index("\n", ls)]  # a failed ls does not stop the listing
    assert script.index("for f in /var/lib/rancher/k3s/server/db/snapshots/*; do") > ls
    assert_valid_bash(script)
    # What the loop prints parses as a local snapshot.
    line = ("pre-upgrade-kb-cp-1-1753178600 file:///var/lib/rancher/k3s/server/db/snapshots/"
            "pre-upgrade-kb-cp-1-1753178600 5062688 2025-07-22T10:03:20Z")
    (snap,) = restore.parse_snapshot_list(line)
    assert snap.local_path == "/var/lib/rancher/k3s/server/db/snapshots/pre-upgrade-kb-cp-1-1753178600"


def test_an_unreadable_member_list_is_polled_again_until_the_bound():
    class FlakySsh(FakeSsh):
        reads = 0

        def run(self, host, script, timeout):
            if kind_of(script) == "members":
                FlakySsh.reads += 1
                if FlakySsh.reads <= 2:  # the gateway not answering yet, twice
                    self.calls.append((self.node(host).name, "members", script, timeout))
                    return Result(1, "", "cannot read the etcd member list")
            return super().run(host, script, timeout)

    ssh = FlakySsh({"kb-cp-1": ls_output(S3_SNAP)})
    said = run(ssh, S3_SNAP.name)
    assert said[-1].startswith("restore: etcd restored")
    assert FlakySsh.reads > 2
