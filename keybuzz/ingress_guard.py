"""A preview-time guard on the order of an ingress-nginx -> Traefik switch (see keybuzz.ingress.refuse_move).

Like keybuzz/guards.py: a dynamic resource that holds the deployed edge state; its ``check`` compares
it with the new one, and the engine runs ``check`` during `pulumi preview`, so a jump that would leave
nodes without a listener on :80 is refused before anything in the cluster changes.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from keybuzz.ingress import refuse_move

GUARD_ID = "ingress-edge"


class EdgeGuardProvider(ResourceProvider):
    """Holds ``{"edge": <state>}``; fails ``check`` for a move keybuzz.ingress does not allow."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        old = (_olds or {}).get("edge")
        reason = refuse_move(old, news.get("edge", ""))
        return CheckResult(news, [CheckFailure("edge", reason)] if reason else [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(GUARD_ID, props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=olds.get("edge") != news.get("edge"), replaces=[], stables=[],
                          delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(news)


class EdgeGuard(pulumi.dynamic.Resource):
    """Declare once per cluster; every ingress resource depends on it."""

    def __init__(self, name: str, edge: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(EdgeGuardProvider(), name, {"edge": edge}, opts)
