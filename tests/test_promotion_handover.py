"""bin/deploy hands the previous stage's verdict to the gate through the environment: any backend, a
missing stage refused by the gate itself, and an override for one run that does not touch the stack file."""

from __future__ import annotations

import pulumi
import pytest
from harness import run_program

from keybuzz import offline, promotion
from keybuzz.promotion import Commit, PromotionGateProvider, previous_from_env, withheld_reason

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
CLEAN = Commit(SHA, dirty=False)


def gate_of(run):
    (gate,) = [r for r in run.resources if r.name.endswith("-promotion-gate")]
    return gate


def check(gate):
    inputs = {k: v for k, v in gate.inputs.items() if not k.startswith("__")}
    return PromotionGateProvider().check({}, inputs).failures


def test_without_the_handover_the_gate_reads_a_stack_reference():
    assert previous_from_env({}) is None


def test_handover_values():
    assert previous_from_env({promotion.ENV_PREVIOUS_VERIFIED: SHA}) == promotion.PreviousStage(SHA, False)
    assert previous_from_env({promotion.ENV_PREVIOUS_MISSING: "1"}) == promotion.PreviousStage("", True)


@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), ("", False), ("0", False), ("false", False)])
def test_override_variable_values(value, on):
    assert promotion.override_from_env({promotion.ENV_OVERRIDE: value}) is on


def test_override_variable_refuses_anything_else():
    # A RunError: under plain `pulumi`, the language host prints this one line, no traceback.
    with pytest.raises(pulumi.RunError, match="KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION='yes' is invalid: 1 or true"):
        promotion.override_from_env({promotion.ENV_OVERRIDE: "yes"})


def test_a_missing_previous_stack_is_refused_before_any_resource_exists(monkeypatch):
    monkeypatch.setenv(promotion.ENV_PREVIOUS_MISSING, "1")
    monkeypatch.setenv(promotion.ENV_PREVIOUS_VERIFIED, "")
    registered = []
    new_resource = offline.RecordingMocks.new_resource
    def recording(mocks, args):
        registered.append(args.typ)
        return new_resource(mocks, args)

    monkeypatch.setattr(offline.RecordingMocks, "new_resource", recording)
    with pytest.raises(promotion.PromotionRefused) as caught:
        run_program("prod", commit=CLEAN)
    # A RunError raised in the program's body: the language host prints it as one line, and the program
    # exits by itself, so the engine has no registration to fail and no program to interrupt.
    assert isinstance(caught.value, pulumi.RunError)
    assert "stack 'staging' does not exist in this state backend" in str(caught.value)
    assert "KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION=1 bin/deploy prod <command>" in str(caught.value)
    assert registered == []  # not one resource registered


def test_the_gate_check_refuses_a_missing_stage_too(monkeypatch):
    # The same verdict in the resource's check, which guards runs without bin/deploy's handover.
    inputs = {"stack": "prod", "promotesFrom": "staging", "previousVerified": "", "previousMissing": True,
              "commit": SHA, "dirty": False, "allowUnverified": False}  # fmt: skip
    (failure,) = PromotionGateProvider().check({}, inputs).failures
    assert "stack 'staging' does not exist in this state backend" in failure.reason


def test_a_handed_over_verified_commit_passes_the_gate(monkeypatch):
    monkeypatch.setenv(promotion.ENV_PREVIOUS_VERIFIED, SHA)
    staging = run_program("staging", commit=CLEAN)
    gate = gate_of(staging)
    assert gate.inputs["previousVerified"] == SHA and gate.inputs["previousMissing"] is False
    assert check(gate) == []


def test_a_handed_over_other_commit_is_refused_while_the_program_is_evaluated(monkeypatch):
    monkeypatch.setenv(promotion.ENV_PREVIOUS_VERIFIED, OTHER)
    with pytest.raises(promotion.PromotionRefused, match="stack 'dev' verified fedcba987654, but this is 0123456789ab"):
        run_program("staging", commit=CLEAN)


def test_the_override_for_one_run_passes_a_missing_stage_and_is_logged(monkeypatch, caplog):
    caplog.set_level("WARNING")
    monkeypatch.setenv(promotion.ENV_PREVIOUS_MISSING, "1")
    monkeypatch.setenv(promotion.ENV_OVERRIDE, "1")
    prod = run_program("prod", commit=CLEAN)
    assert gate_of(prod).inputs["allowUnverified"] is True
    assert check(gate_of(prod)) == []
    (warning,) = [r.getMessage() for r in caplog.records if "PROMOTION GATE OVERRIDDEN" in r.getMessage()]
    assert warning.startswith(
        "PROMOTION GATE OVERRIDDEN (KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION=1 for this run): deploying anyway. "
    )
    assert "allowUnverifiedPromotion" not in warning  # only what was actually set is named
    assert "stack 'staging' does not exist" in warning


def test_the_override_in_the_stack_config_is_named_as_such(monkeypatch, caplog):
    caplog.set_level("WARNING")
    monkeypatch.setenv(promotion.ENV_PREVIOUS_MISSING, "1")
    run_program("prod", commit=CLEAN, overrides={"keybuzz-k3s:allowUnverifiedPromotion": True})
    (warning,) = [r.getMessage() for r in caplog.records if "PROMOTION GATE OVERRIDDEN" in r.getMessage()]
    assert warning.startswith("PROMOTION GATE OVERRIDDEN (allowUnverifiedPromotion: true in the stack config): ")
    assert "KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION=1 for this run" not in warning


def test_withheld_reason_names_the_dirty_tree():
    assert withheld_reason(CLEAN, True) == ""
    reason = withheld_reason(Commit(SHA, dirty=True), True)
    assert reason.startswith("verifiedCommit withheld, the next stage will refuse this commit:")
    assert "uncommitted changes" in reason and "commit them and run `up` again" in reason
    assert "not every overlay check passed" in withheld_reason(CLEAN, False)
    assert "verify.enabled is false" in withheld_reason(CLEAN, False, verify_enabled=False)


def test_an_up_on_a_dirty_tree_warns_loudly_that_verified_commit_is_withheld(caplog):
    caplog.set_level("WARNING")
    run = run_program("dev", commit=Commit(SHA, dirty=True))
    assert run.outputs["verifiedCommit"] == ""
    (warning,) = [r.getMessage() for r in caplog.records if "WITHHELD" in r.getMessage()]
    assert warning.startswith("VERIFIEDCOMMIT WITHHELD, THE NEXT STAGE WILL REFUSE THIS COMMIT:")
    assert "uncommitted changes" in warning


def test_a_clean_up_exports_the_commit_without_a_warning(caplog):
    caplog.set_level("WARNING")
    run = run_program("dev", commit=CLEAN)
    assert run.outputs["verifiedCommit"] == SHA
    assert not [r for r in caplog.records if "WITHHELD" in r.getMessage()]
