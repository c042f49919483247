"""The promotion gate: a stack only deploys a commit the previous stage has verified.

dev -> staging -> prod. Each stack exports ``verifiedCommit`` once every overlay check passed on a
clean work tree; a stack with ``promotesFrom`` compares that value with the commit being deployed.
The decision is pure (``decide``); reading git and the previous stack happens at the edges.

How the previous stage is read: ``bin/deploy`` asks the CLI (``pulumi stack output verifiedCommit
--stack <previous>``, which works on any backend) and hands the answer over in the environment
(``KEYBUZZ_PREVIOUS_*``). A StackReference to a stack that does not exist fails the whole engine
with a traceback before the gate can speak; read this way, a missing stage is the gate's own,
overridable refusal. Without those variables (the program run by `pulumi` directly, or offline) the
program falls back to a StackReference.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

PROJECT = "keybuzz-k3s"
STACKS_REFUSING_DIRTY_TREES = ("prod",)
# Set by bin/deploy for a gated stack: the previous stage's verifiedCommit ("" when it has none) and
# "1" in ..._MISSING when that stack does not exist in the backend.
ENV_PREVIOUS_VERIFIED = "KEYBUZZ_PREVIOUS_VERIFIED_COMMIT"
ENV_PREVIOUS_MISSING = "KEYBUZZ_PREVIOUS_STACK_MISSING"
# The override for one run, without editing (and dirtying) the stack file.
ENV_OVERRIDE = "KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION"


@dataclass(frozen=True)
class PreviousStage:
    """What bin/deploy read of the previous stage: its verified commit, or that it does not exist."""

    verified: str
    missing: bool


def previous_from_env(environ: Mapping[str, str]) -> PreviousStage | None:
    """The previous stage as bin/deploy handed it over; None when not run through bin/deploy."""
    if ENV_PREVIOUS_VERIFIED not in environ and ENV_PREVIOUS_MISSING not in environ:
        return None
    return PreviousStage(
        verified=environ.get(ENV_PREVIOUS_VERIFIED, "").strip(),
        missing=environ.get(ENV_PREVIOUS_MISSING, "") == "1",
    )


class OverrideValueError(pulumi.RunError, ValueError):
    """A bad override value: a RunError, so the language host prints the one line, not a traceback."""


class PromotionRefused(pulumi.RunError):
    """The gate's refusal, raised while the program is evaluated, before it registers any resource.

    Why not only the gate resource's ``check``: a failed ``check`` fails a resource registration inside
    the engine, which then tears the still-running program down; under the real CLI that printed a
    ``KeyboardInterrupt`` traceback or "Resource monitor has terminated" after the refusal. A RunError
    raised in the program's own body is caught by the language host, printed as one error line, and the
    program exits by itself (pulumi ``run_pulumi_func`` waits for the RPCs already sent, then re-raises).
    Possible whenever bin/deploy handed the previous stage over; with a StackReference the verdict is
    only known inside an apply, and the gate's ``check`` stays the refusal.
    """


def override_from_env(environ: Mapping[str, str]) -> bool:
    """KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION: 1/true turns the override on for this run; unset, 0, false off."""
    value = environ.get(ENV_OVERRIDE, "").strip()
    if value in ("", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise OverrideValueError(f"{ENV_OVERRIDE}={value!r} is invalid: 1 or true (on for this run), 0 or false (off)")


@dataclass(frozen=True)
class Commit:
    """The program's source as git sees it; ``sha`` is empty outside a git checkout."""

    sha: str
    dirty: bool


def read_commit(repo: Path) -> Commit:
    """HEAD and whether the work tree has uncommitted changes (untracked files count)."""
    try:
        sha = _git(repo, "rev-parse", "HEAD")
        dirty = bool(_git(repo, "status", "--porcelain"))
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return Commit(sha="", dirty=True)
    return Commit(sha=sha, dirty=dirty)


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=10)
    return result.stdout.strip()


def stack_reference_name(stack: str) -> str:
    """The fully qualified name of a stack on the DIY (file) backend."""
    return f"organization/{PROJECT}/{stack}"


def verified_commit(commit: Commit, checks_passed: bool) -> str:
    """What this stack exports as verified: the commit, only if it is clean and every check passed."""
    return commit.sha if (checks_passed and commit.sha and not commit.dirty) else ""


def withheld_reason(commit: Commit, checks_passed: bool, verify_enabled: bool = True) -> str:
    """Why ``verifiedCommit`` is exported empty (the next stage will refuse this commit); "" when it is set."""
    if verified_commit(commit, checks_passed):
        return ""
    reasons = []
    if not verify_enabled:
        reasons.append("verify.enabled is false, so nothing was verified")
    elif not checks_passed:
        reasons.append("not every overlay check passed")
    if not commit.sha:
        reasons.append("the program is not in a git checkout")
    elif commit.dirty:
        reasons.append(
            "the work tree has uncommitted changes (`git status`; a stack file that `stack init` or "
            "`config set` changed counts): commit them and run `up` again"
        )
    return "verifiedCommit withheld, the next stage will refuse this commit: " + "; ".join(reasons)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str  # why refused, or what was overridden; empty for an ordinary pass
    overridden: bool = False


def decide(
    stack: str,
    promotes_from: str,
    previous_verified: str | None,
    commit: Commit,
    allow_unverified: bool,
    previous_missing: bool = False,
) -> Decision:
    """May ``stack`` deploy ``commit``? Ungated stacks always may."""
    if not promotes_from:
        return Decision(True, "")
    problems = []
    if stack in STACKS_REFUSING_DIRTY_TREES and commit.dirty:
        problems.append(f"the work tree has uncommitted changes (stack '{stack}' deploys only committed code)")
    if not commit.sha:
        problems.append("the program is not in a git checkout, so its commit cannot be compared")
    elif previous_missing:
        problems.append(
            f"stack '{promotes_from}' does not exist in this state backend: create and verify it with "
            f"`bin/deploy {promotes_from} up` on this commit first (same PULUMI_BACKEND_URL)"
        )
    elif not previous_verified:
        problems.append(
            f"stack '{promotes_from}' has not verified any commit yet (its verifiedCommit output is empty or "
            f"missing): run `bin/deploy {promotes_from} up` on this commit first"
        )
    elif previous_verified != commit.sha:
        problems.append(
            f"stack '{promotes_from}' verified {previous_verified[:12]}, but this is {commit.sha[:12]}: "
            f"deploy this commit to '{promotes_from}' first (or check out {previous_verified[:12]})"
        )
    if not problems:
        return Decision(True, "")
    summary = f"promotion to '{stack}' refused: " + "; ".join(problems)
    if allow_unverified:
        # The caller names what turned the override on (the stack config or the variable for one run).
        return Decision(True, f"deploying anyway. {summary}", overridden=True)
    return Decision(
        False,
        f"{summary}. Emergency override for one run: {ENV_OVERRIDE}=1 bin/deploy {stack} <command> "
        f"(or bin/deploy {stack} config set allowUnverifiedPromotion true, and commit it)",
    )


class PromotionGateProvider(ResourceProvider):
    """Refuses the update in ``check``, which the engine runs during preview, before any change."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        decision = decide(
            news["stack"],
            news["promotesFrom"],
            news.get("previousVerified") or "",
            Commit(sha=news.get("commit") or "", dirty=bool(news.get("dirty"))),
            bool(news.get("allowUnverified")),
            bool(news.get("previousMissing")),
        )
        failures = [] if decision.allowed else [CheckFailure("promotesFrom", decision.message)]
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("promotion-gate", props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("commit", "dirty", "previousVerified", "previousMissing", "allowUnverified", "promotesFrom")
        return DiffResult(changes=any(olds.get(k) != news.get(k) for k in keys))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(news)


class PromotionGate(pulumi.dynamic.Resource):
    """Declared first in a gated stack; every cloud resource depends on it."""

    def __init__(
        self,
        name: str,
        stack: str,
        promotes_from: str,
        previous_verified: pulumi.Input[str | None],
        commit: Commit,
        allow_unverified: bool,
        opts: pulumi.ResourceOptions | None = None,
        previous_missing: bool = False,
    ) -> None:
        inputs = {
            "stack": stack,
            "promotesFrom": promotes_from,
            "previousVerified": previous_verified,
            "previousMissing": previous_missing,
            "commit": commit.sha,
            "dirty": commit.dirty,
            "allowUnverified": allow_unverified,
        }
        super().__init__(PromotionGateProvider(), name, inputs, opts)
