"""`bin/deploy <stack> replace <node>`, driven as an operator runs it, against the fake Pulumi CLI."""

from __future__ import annotations

import pytest
from deploy_harness import SECRETS, Project

POLICY = ["--policy-pack", "policies", "--policy-pack-config", "policies/config.example.json"]
CP1_URN = "urn:pulumi:dev::keybuzz-k3s::keybuzz:hetzner:NodeServers$hcloud:index/server:Server::keybuzz-dev-cp-1"


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    p.add_keys("dev", "staging")
    p.commit("keys")
    p.create_stacks("dev", "staging")
    return p


def test_replace_runs_up_with_the_servers_urn_and_names_the_node_for_the_program(project):
    result = project.deploy("dev", "replace", "cp-1", **SECRETS)
    assert result.returncode == 0, result.stderr
    call = project.last("up")
    # `pulumi up` previews and asks before changing anything (no --yes added).
    assert call["argv"] == ["up", "--replace", CP1_URN, *POLICY, "--stack", "dev"]
    assert call["env"]["KEYBUZZ_REPLACE_NODES"] == "keybuzz-dev-cp-1"
    assert call["env"]["HCLOUD_TOKEN"] == SECRETS["HCLOUD_TOKEN"]
    assert "replacing keybuzz-dev-cp-1:" in result.stderr


def test_the_full_node_name_and_extra_flags_are_passed_on(project):
    # staging promotes from dev: a replacement deploys the program too, so the gate applies as for `up`.
    project.create_stacks("dev", verified=project.git("rev-parse", "HEAD"))
    result = project.deploy("staging", "replace", "keybuzz-staging-workers-2", "--yes", **SECRETS)
    assert result.returncode == 0, result.stderr
    urn = "urn:pulumi:staging::keybuzz-k3s::keybuzz:hetzner:NodeServers$hcloud:index/server:Server::"
    assert project.last("up")["argv"] == [
        "up", "--replace", urn + "keybuzz-staging-workers-2", "--yes", *POLICY, "--stack", "staging"
    ]
    assert project.last("up")["env"]["KEYBUZZ_REPLACE_NODES"] == "keybuzz-staging-workers-2"


def test_preview_only_previews_the_replacement(project):
    result = project.deploy("dev", "replace", "workers-1", "--preview-only", **SECRETS)
    assert result.returncode == 0, result.stderr
    assert [c[0] for c in project.argvs() if c[0] in ("preview", "up")] == ["preview"]
    call = project.last("preview")
    assert call["argv"][:3] == ["preview", "--replace", CP1_URN.replace("cp-1", "workers-1")]
    assert call["env"]["KEYBUZZ_REPLACE_NODES"] == "keybuzz-dev-workers-1"


def test_an_unknown_node_is_refused_naming_the_nodes_and_nothing_runs(project):
    result = project.deploy("dev", "replace", "cp-2", **SECRETS)
    assert result.returncode == 2
    assert "'cp-2' is not a node of stack 'dev'. Its nodes: cp-1, workers-1" in result.stderr
    assert not [c for c in project.argvs() if c[0] in ("preview", "up")]


def test_a_missing_node_is_reported_with_the_other_missing_items(project):
    result = project.deploy("dev", "replace", HCLOUD_TOKEN="", PULUMI_CONFIG_PASSPHRASE="pass")
    assert result.returncode == 1
    assert "the node to replace: bin/deploy dev replace <node>" in result.stderr
    assert "export HCLOUD_TOKEN=..." in result.stderr
    assert not [c for c in project.argvs() if c[0] in ("preview", "up")]


def test_a_replace_variable_left_in_the_shell_is_refused_for_other_commands(project):
    result = project.deploy("dev", "up", KEYBUZZ_REPLACE_NODES="keybuzz-dev-cp-1", **SECRETS)
    assert result.returncode == 1
    assert "unset KEYBUZZ_REPLACE_NODES" in result.stderr
    assert not [c for c in project.argvs() if c[0] in ("preview", "up")]


def test_a_protected_stack_is_told_the_steps_and_nothing_runs(project):
    project.add_keys("prod")
    project.commit("prod keys")
    project.create_stacks("prod")
    result = project.deploy("prod", "replace", "cp-2", **SECRETS)
    assert result.returncode == 2
    assert "deletionProtection is true in Pulumi.prod.yaml" in result.stderr
    assert "then `bin/deploy prod replace cp-2`" in result.stderr
    assert not [c for c in project.argvs() if c[0] in ("preview", "up")]
