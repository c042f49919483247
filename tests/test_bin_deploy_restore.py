"""bin/deploy <stack> snapshots | restore: what they ask for, and that nothing runs without a name and --yes."""

from __future__ import annotations

import json

import pytest
from deploy_harness import Project

NODES = [
    {"name": "keybuzz-dev-cp-1", "role": "server", "privateIp": "10.0.1.10", "publicIp": "203.0.113.10"},
    {"name": "keybuzz-dev-workers-1", "role": "agent", "privateIp": "10.0.1.20", "publicIp": "203.0.113.20"},
]


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)


def with_nodes(project):
    project.create_stacks("dev")
    state = json.loads(project.state.read_text())
    # The fake CLI prints one output as it is stored: stored as JSON text, as `--json` prints it.
    state[f"file://{project.dir}/.pulumi-state"]["dev"]["outputs"]["nodes"] = json.dumps(NODES)
    project.state.write_text(json.dumps(state))


@pytest.mark.parametrize("command", ["snapshots", "restore"])
def test_they_need_the_passphrase_not_the_hetzner_token(project, command):
    result = project.deploy("dev", command)
    assert result.returncode == 1
    assert "PULUMI_CONFIG_PASSPHRASE" in result.stderr and "HCLOUD_TOKEN" not in result.stderr
    assert all(c["argv"][0] == "version" for c in project.calls())  # nothing but the version check


def test_restore_without_a_snapshot_name_prints_the_usage_and_touches_nothing(project):
    result = project.deploy("dev", "restore", PULUMI_CONFIG_PASSPHRASE="pass")
    assert result.returncode == 2
    assert "bin/deploy <stack> restore <snapshot name> --yes" in result.stderr
    assert [c["argv"][0] for c in project.calls()] == ["version"]


def test_restore_without_yes_reads_the_servers_and_stops_before_any_ssh(project):
    with_nodes(project)
    result = project.deploy("dev", "restore", "etcd-snapshot-x", PULUMI_CONFIG_PASSPHRASE="pass")
    assert result.returncode == 2, result.stderr
    assert "stops K3s on every server" in result.stderr and "with --yes" in result.stderr
    argvs = [c["argv"] for c in project.calls()]
    assert ["stack", "output", "nodes", "--json", "--stack", "dev"] in argvs
    assert not any(a[0] in ("up", "preview", "refresh") for a in argvs)


@pytest.mark.parametrize("key", ["etcdBackupAccessKey", "etcdBackupSecretKey"])
def test_the_s3_keys_are_refused_without_secret_before_the_cli_writes_them(key):
    from keybuzz.preflight import Refusal, check_config_set

    with pytest.raises(Refusal) as refused:
        check_config_set("prod", ["set", key, "AKIAPLAIN"])
    assert key in str(refused.value) and "AKIAPLAIN" not in str(refused.value)
    check_config_set("prod", ["set", "--secret", key, "AKIAPLAIN"])  # with --secret: fine
