"""Day-2 matrix, storage and backups: the program run twice, before and after one config change.

What a change touches on a running cluster: turning local-path off or adding etcdBackup rewrites every
server's K3s config (so each server is snapshotted, drained, restarted and waited for, one at a time;
agents untouched, nothing replaced); the StorageClass and the chart version touch only themselves.
"""

from __future__ import annotations

import pytest
import yaml
from harness import run_program, secret_value

from keybuzz import k3s

P = "keybuzz-k3s"
C = "keybuzz-day2"
K = f"{C}-k3s"
SERVERS = ("cp-1", "cp-2", "cp-3")
AGENTS = ("workers-1", "workers-2")
SECRET_KEYS = {f"{P}:etcdBackupAccessKey": {"secure": "v1:x"}, f"{P}:etcdBackupSecretKey": {"secure": "v1:y"}}


def existing(extra=None, **config):
    """A running 3-server stack that has local-path volumes (fixture, not an operator's stack file)."""
    doc = {
        f"{P}:clusterName": C,
        f"{P}:controlPlane": {"count": 3, "serverType": "cx23"},
        f"{P}:nodePools": [{"name": "workers", "count": 2, "serverType": "cx33"}],
        f"{P}:storage": {"localPath": True},
    }
    doc.update({f"{P}:{k}": v for k, v in config.items()})
    return run_program("dev", stack_doc={"config": doc}, overrides=extra)


def inputs(resource):
    return {k: v for k, v in resource.inputs.items() if not k.startswith("__")}


def scoped(run):
    """What a storage or backup change may touch: K3s's steps, the servers, the storage resources (the
    overlay checks re-run on every `up` by design, keyed on a new run id)."""
    return {
        r.name: r
        for r in run.resources
        if r.name.startswith((f"{K}-", f"{C}-storage")) or r.type == "hcloud:index/server:Server"
    }


def changed(before, after):
    old, new = scoped(before), scoped(after)
    assert set(old) == set(new), "resources added or removed"
    return {n for n in old if inputs(old[n]) != inputs(new[n])}


def per_node(steps, nodes):
    return {f"{K}-{step}-{C}-{node}" for step in steps for node in nodes}


@pytest.fixture(scope="module")
def base():
    return existing()


def test_the_same_config_twice_changes_nothing(base):
    assert changed(base, existing()) == set()


def test_turning_local_path_off_restarts_each_server_in_turn_with_a_snapshot_first(base):
    after = existing(storage={"localPath": False})
    server_steps = per_node(("drain", "install", "ready"), SERVERS)
    assert changed(base, after) == server_steps | {f"{C}-storage-class"}
    for node in SERVERS:
        script = after.named(f"{K}-install-{C}-{node}").inputs["create"]
        assert yaml.safe_load(k3s.config_in_install_script(script))["disable"] == [
            "traefik", "servicelb", "local-storage"]
    # One server at a time, each snapshotted first: cp-2's drain waits for cp-1 to be ready again
    # (through the overlay check after cp-1's batch, which waits for cp-1's ready).
    for batch, (done, next_node) in enumerate([("cp-1", "cp-2"), ("cp-2", "cp-3")]):
        check = f"{C}-rollout-check-batch-{batch}"
        assert check in after.named(f"{K}-drain-{C}-{next_node}").depends_on
        assert f"{K}-ready-{C}-{done}" in after.named(check).depends_on
    for node in SERVERS:
        assert "etcd-snapshot save --name pre-upgrade" in after.named(f"{K}-drain-{C}-{node}").inputs["update"]
    sc = after.named(f"{C}-storage-class")
    assert sc.inputs["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}


def test_adding_etcd_backup_rewrites_every_server_config_and_no_agent(base):
    after = existing(extra=SECRET_KEYS, etcdBackup={"bucket": "keybuzz-etcd"})
    assert changed(base, after) == per_node(("drain", "install", "ready"), SERVERS)
    for node in SERVERS:
        config = yaml.safe_load(k3s.config_in_install_script(
            secret_value(after.named(f"{K}-install-{C}-{node}").inputs["create"])))
        assert config["etcd-s3-bucket"] == "keybuzz-etcd"
    # Nothing is replaced: the servers keep their inputs, the retire steps (replacement triggers) too.
    assert not {r.name for r in after.resources if r.type == "hcloud:index/server:Server"} & changed(base, after)


def test_a_reclaim_policy_change_touches_only_the_storage_class(base):
    after = existing(storage={"localPath": True, "reclaimPolicy": "Retain"})
    assert changed(base, after) == {f"{C}-storage-class"}
    sc = after.named(f"{C}-storage-class")
    assert sc.inputs["reclaimPolicy"] == "Retain"
    # Immutable field, fixed name: the old class goes first (existing volumes keep their own policy).
    assert sc.options["delete_before_replace"] is True


def test_a_csi_chart_bump_touches_only_the_release(base):
    after = existing(storage={"localPath": True, "csiVersion": "2.20.0"})
    assert changed(base, after) == {f"{C}-storage-hcloud-csi"}


def _guard(run):
    (guard,) = [r for r in run.resources if r.name.endswith("-deployed-stack")]
    return {k: v for k, v in guard.inputs.items() if k != "__provider"}


def test_a_stack_deployed_before_storage_existed_is_refused_local_path_off_at_preview(base):
    from keybuzz.guards import DeployedStackProvider

    before_this_version = {k: v for k, v in _guard(base).items() if k != "localPath"}
    new_default = existing(storage={"localPath": False})
    refused = DeployedStackProvider().check(before_this_version, _guard(new_default)).failures
    assert [f.property for f in refused] == ["localPath"]
    assert "Set storage.localPath: true" in refused[0].reason
    # The stack file that says true is accepted; from true, false is a deliberate change.
    assert DeployedStackProvider().check(before_this_version, _guard(base)).failures == []
    assert DeployedStackProvider().check(_guard(base), _guard(new_default)).failures == []
    # A new stack (nothing deployed) gets the new default without a word.
    assert DeployedStackProvider().check({}, _guard(new_default)).failures == []
    assert _guard(base)["localPath"] is True and _guard(new_default)["localPath"] is False
