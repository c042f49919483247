"""The README's promotion walkthrough, run as written: fake Pulumi CLI, a real git repo in a temp dir."""

from __future__ import annotations

import pytest
from deploy_harness import SECRETS, Project


@pytest.fixture
def team(tmp_path):
    """README "First run" and "Promotion", once per team: keys in the stack files, three stacks, salts committed."""
    project = Project(tmp_path)
    project.add_keys("dev", "staging", "prod")
    project.commit("stack config: team keys and admin ranges")
    for stack in ("dev", "staging", "prod"):
        result = project.deploy(stack, "stack", "init", PULUMI_CONFIG_PASSPHRASE="pass")
        assert result.returncode == 0, result.stderr
        assert f"Pulumi.{stack}.yaml changed: stack init wrote its encryptionsalt" in result.stderr
    project.commit("stacks: encryption salts")
    assert project.git("status", "--porcelain") == ""
    return project


def test_staging_is_accepted_after_devs_up_on_a_committed_tree(team):
    head = team.git("rev-parse", "HEAD")
    refused = team.deploy("staging", "preview", **SECRETS)
    assert refused.returncode != 0
    assert "stack 'dev' has not verified any commit yet" in refused.stdout

    dev = team.deploy("dev", "up", **SECRETS)
    assert dev.returncode == 0, dev.stdout + dev.stderr
    assert "withheld" not in dev.stdout
    out = team.deploy("dev", "stack", "output", "verifiedCommit")
    assert out.stdout.strip() == head

    staging = team.deploy("staging", "preview", **SECRETS)
    assert staging.returncode == 0, staging.stdout + staging.stderr
    assert f"stack 'dev' verified {head}" in staging.stderr
    assert team.last("preview")["env"]["KEYBUZZ_PREVIOUS_VERIFIED_COMMIT"] == head
    assert team.git("status", "--porcelain") == ""  # nothing in the walkthrough dirtied the tree


def test_prod_follows_staging_and_a_new_commit_starts_over(team):
    # dev and staging have verified HEAD (the previous test walks that part through bin/deploy).
    head = team.git("rev-parse", "HEAD")
    team.create_stacks("dev", "staging", "prod", verified=head)
    prod = team.deploy("prod", "preview", **SECRETS)
    assert prod.returncode == 0, prod.stdout + prod.stderr
    assert f"stack 'staging' verified {head}" in prod.stderr

    (team.dir / "README.md").write_text("changed\n")
    new = team.commit("a change")
    refused = team.deploy("prod", "preview", **SECRETS)
    assert refused.returncode != 0
    assert f"stack 'staging' verified {head[:12]}, but this is {new[:12]}" in refused.stdout
