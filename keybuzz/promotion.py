"""The promotion gate: a stack only deploys a commit the previous stage has verified.

dev -> staging -> prod. Each stack exports ``verifiedCommit`` once every overlay check passed on a
clean work tree; a stack with ``promotesFrom`` compares that value with the commit being deployed.
The decision is pure (``decide``); reading git and the previous stack happens at the edges.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

PROJECT = "keybuzz-k3s"
STACKS_REFUSING_DIRTY_TREES = ("prod",)


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
) -> Decision:
    """May ``stack`` deploy ``commit``? Ungated stacks always may."""
    if not promotes_from:
        return Decision(True, "")
    problems = []
    if stack in STACKS_REFUSING_DIRTY_TREES and commit.dirty:
        problems.append(f"the work tree has uncommitted changes (stack '{stack}' deploys only committed code)")
    if not commit.sha:
        problems.append("the program is not in a git checkout, so its commit cannot be compared")
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
        return Decision(True, f"allowUnverifiedPromotion is set, deploying anyway. {summary}", overridden=True)
    return Decision(False, f"{summary}. Emergency override: pulumi config set allowUnverifiedPromotion true")


class PromotionGateProvider(ResourceProvider):
    """Refuses the update in ``check``, which the engine runs during preview, before any change."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        decision = decide(
            news["stack"],
            news["promotesFrom"],
            news.get("previousVerified") or "",
            Commit(sha=news.get("commit") or "", dirty=bool(news.get("dirty"))),
            bool(news.get("allowUnverified")),
        )
        failures = [] if decision.allowed else [CheckFailure("promotesFrom", decision.message)]
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("promotion-gate", props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("commit", "dirty", "previousVerified", "allowUnverified", "promotesFrom")
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
    ) -> None:
        inputs = {
            "stack": stack,
            "promotesFrom": promotes_from,
            "previousVerified": previous_verified,
            "commit": commit.sha,
            "dirty": commit.dirty,
            "allowUnverified": allow_unverified,
        }
        super().__init__(PromotionGateProvider(), name, inputs, opts)
