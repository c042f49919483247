"""Which Hetzner server created the cluster, recorded once in state: the one fact that allows ``cluster-init``.

A server that starts with ``cluster-init`` and no etcd data becomes a new one-member cluster with a
new CA, while the old cluster carries on at the other addresses: a split brain in which every
``/readyz`` is ok (FIELD_GUIDE, "Measured on a real K3s"). ``/ping`` cannot tell "join" from
"initialise" (it answers from a server without quorum and from a rogue cluster), so the choice is
made from Pulumi state instead: this resource records the first server's Hetzner id when it is
created and never changes it. The first server's install may initialise only while its current
id is that one; a replacement (a new id under the same name) always joins.

An existing stack that had no such record gets it on its first ``up`` with this program, holding
the first server of that moment, which already has etcd data: nothing initialises, nothing restarts
(see tests/day2). A first server rebuilt in place (Hetzner "rebuild" keeps the id but wipes the
disk) would count as the creator again: replace it instead (bin/deploy replace).
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

ORIGIN_ID = "k3s-cluster-origin"


def may_initialise(current_server_id: str, origin_server_id: str) -> bool:
    """The first server may run ``cluster-init`` only as the very server that created the cluster."""
    return bool(current_server_id) and str(current_server_id) == str(origin_server_id)


class ClusterOriginProvider(ResourceProvider):
    """Keeps the ``serverId`` it was created with: a later id is never an update."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(ORIGIN_ID, {"serverId": str(props["serverId"])})

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        # No change, ever: the engine keeps the recorded outputs (a "same" step).
        return DiffResult(changes=False, replaces=[], stables=["serverId"], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({"serverId": olds["serverId"]})


class ClusterOrigin(pulumi.dynamic.Resource):
    """Declare once per cluster with the first server's id; read ``serverId`` (the recorded one)."""

    serverId: pulumi.Output[str]  # noqa: N815 (the property name in state)

    def __init__(self, name: str, server_id: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None) -> None:
        # ignore_changes too: the recorded input stays the creator's id in state, not only the output.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["serverId"]))
        super().__init__(ClusterOriginProvider(), name, {"serverId": server_id}, opts)
