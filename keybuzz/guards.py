"""A preview-time guard against changing K3s critical values on an existing cluster.

K3s refuses to start a server whose critical values (cluster-cidr, service-cidr, flannel-backend,
disable-network-policy) differ from the cluster's, and a podCidr change is a Calico pool
migration, not an edit. Pulumi would otherwise happily rewrite config.yaml node by node and leave
a half-restarted control plane. The guard is a dynamic resource whose ``check`` compares the old
and new values: the engine calls ``check`` during ``pulumi preview``, so the change is refused
before any node is touched.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

GUARD_ID = "k3s-critical-config"

# What to tell the operator for each critical value; keyed by K3s flag name.
_WHY = {
    "cluster-cidr": "it is the pod network and Calico's IP pool (podCidr): changing it is a pool migration",
    "service-cidr": "every Service ClusterIP and CoreDNS's address live in it",
    "flannel-backend": "K3s does not support switching the CNI of a running cluster",
    "disable-network-policy": "K3s servers refuse to start when it differs across the cluster",
}


def critical_changes(olds: dict[str, Any], news: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for every critical value that differs from the one already deployed."""
    changes = []
    for key, why in _WHY.items():
        if key in olds and key in news and olds[key] != news[key]:
            changes.append(
                (
                    key,
                    f"K3s critical value '{key}' cannot change on an existing cluster "
                    f"({olds[key]!r} -> {news[key]!r}): {why}. K3s refuses to start servers whose critical "
                    "values differ. Revert the stack config, or create a new stack and migrate workloads.",
                )
            )
    return changes


class CriticalConfigProvider(ResourceProvider):
    """Holds the deployed critical values; fails ``check`` when a new value differs."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(key, message) for key, message in critical_changes(_olds or {}, news)]
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(GUARD_ID, props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in _WHY if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(news)


class CriticalConfigGuard(pulumi.dynamic.Resource):
    """Declare once per cluster; make every K3s install command depend on it."""

    def __init__(self, name: str, values: dict[str, str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(CriticalConfigProvider(), name, dict(values), opts)
