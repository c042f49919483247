"""The promotion gate: prod deploys only what staging verified, staging only what dev verified."""

from __future__ import annotations

import subprocess

import pytest
from harness import run_program

from keybuzz.promotion import Commit, PromotionGateProvider, decide, read_commit, verified_commit

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
CLEAN = Commit(SHA, dirty=False)


def test_ungated_stack_always_passes():
    decision = decide("dev", "", None, Commit("", dirty=True), allow_unverified=False)
    assert decision.allowed and decision.message == ""


def test_gate_passes_when_the_previous_stage_verified_this_commit():
    decision = decide("staging", "dev", SHA, CLEAN, allow_unverified=False)
    assert decision.allowed and not decision.overridden


def test_gate_refuses_a_commit_the_previous_stage_verified_another_of():
    decision = decide("prod", "staging", OTHER, CLEAN, allow_unverified=False)
    assert not decision.allowed
    assert "stack 'staging' verified fedcba987654, but this is 0123456789ab" in decision.message
    assert "allowUnverifiedPromotion" in decision.message


@pytest.mark.parametrize("previous", [None, ""])
def test_gate_refuses_when_the_previous_stage_verified_nothing(previous):
    decision = decide("staging", "dev", previous, CLEAN, allow_unverified=False)
    assert not decision.allowed
    assert "stack 'dev' has not verified any commit yet" in decision.message
    assert "bin/deploy dev up" in decision.message


def test_prod_refuses_a_dirty_work_tree_even_with_a_verified_commit():
    decision = decide("prod", "staging", SHA, Commit(SHA, dirty=True), allow_unverified=False)
    assert not decision.allowed and "uncommitted changes" in decision.message


def test_staging_accepts_a_dirty_tree_of_a_verified_commit():
    assert decide("staging", "dev", SHA, Commit(SHA, dirty=True), allow_unverified=False).allowed


def test_outside_git_the_commit_cannot_be_compared():
    decision = decide("staging", "dev", SHA, Commit("", dirty=True), allow_unverified=False)
    assert not decision.allowed and "not in a git checkout" in decision.message


def test_override_lets_an_unverified_promotion_through_and_says_so():
    decision = decide("prod", "staging", OTHER, CLEAN, allow_unverified=True)
    assert decision.allowed and decision.overridden
    assert decision.message.startswith("deploying anyway. promotion to")  # the caller names the source
    assert "verified fedcba987654" in decision.message


def test_the_gate_resource_fails_its_check_which_runs_at_preview():
    news = {
        "stack": "prod",
        "promotesFrom": "staging",
        "previousVerified": OTHER,
        "commit": SHA,
        "dirty": False,
        "allowUnverified": False,
    }
    failures = PromotionGateProvider().check({}, news).failures
    assert [f.property for f in failures] == ["promotesFrom"]
    assert "promotion to 'prod' refused" in failures[0].reason
    assert PromotionGateProvider().check({}, {**news, "previousVerified": SHA}).failures == []


def test_verified_commit_is_set_only_when_every_check_passed_on_a_clean_tree():
    assert verified_commit(CLEAN, checks_passed=True) == SHA
    assert verified_commit(CLEAN, checks_passed=False) == ""
    assert verified_commit(Commit(SHA, dirty=True), checks_passed=True) == ""
    assert verified_commit(Commit("", dirty=False), checks_passed=True) == ""


def test_read_commit_reports_head_and_dirtiness(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "c")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert read_commit(tmp_path) == Commit(head.stdout.strip(), dirty=False)
    (tmp_path / "f").write_text("2")
    assert read_commit(tmp_path).dirty is True


def test_read_commit_outside_git_is_unknown_and_dirty(tmp_path):
    assert read_commit(tmp_path) == Commit("", dirty=True)


def test_gated_stacks_read_the_previous_stage_through_a_stack_reference():
    staging = run_program(
        "staging",
        commit=CLEAN,
        stack_outputs={"organization/keybuzz-k3s/dev": {"verifiedCommit": SHA}},
    )
    (gate,) = [r for r in staging.resources if r.name.endswith("-promotion-gate")]
    assert gate.inputs["previousVerified"] == SHA and gate.inputs["commit"] == SHA
    assert gate.inputs["promotesFrom"] == "dev"
    (ref,) = staging.of_type("pulumi:pulumi:StackReference")
    assert ref.name == "organization/keybuzz-k3s/dev"
    # Nothing in Hetzner is created before the gate has passed.
    for name in ("keybuzz-staging-network", "keybuzz-staging-firewall"):
        assert gate.name in staging.named(name).depends_on
    assert all(gate.name in r.depends_on for r in staging.resources if r.type.startswith("hcloud:index/sshKey"))


def test_dev_is_ungated():
    dev = run_program("dev", commit=CLEAN)
    assert not [r for r in dev.resources if r.name.endswith("-promotion-gate")]
    assert not dev.of_type("pulumi:pulumi:StackReference")


def test_an_overridden_gate_is_logged_loudly(caplog):
    caplog.set_level("WARNING")
    run_program(
        "prod",
        commit=CLEAN,
        overrides={"keybuzz-k3s:allowUnverifiedPromotion": True},
        stack_outputs={"organization/keybuzz-k3s/staging": {"verifiedCommit": OTHER}},
    )
    warnings = [r.getMessage() for r in caplog.records if "PROMOTION GATE OVERRIDDEN" in r.getMessage()]
    assert len(warnings) == 1
    assert "stack 'staging' verified fedcba987654, but this is 0123456789ab" in warnings[0]


def test_a_gate_that_passes_logs_nothing(caplog):
    caplog.set_level("WARNING")
    run_program("prod", commit=CLEAN, stack_outputs={"organization/keybuzz-k3s/staging": {"verifiedCommit": SHA}})
    assert not [r for r in caplog.records if "PROMOTION GATE" in r.getMessage()]
