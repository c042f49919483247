"""A preview-time guard against changing K3s critical values on an existing cluster.

K3s refuses to start a server whose critical values (cluster-cidr, service-cidr, flannel-backend,
disable-network-policy) differ from the cluster's, and a podCidr change is a Calico pool
migration, not an edit. Pulumi would otherwise happily rewrite config.yaml node by node and leave
a half-restarted control plane. The guard is a dynamic resource whose ``check`` compares the old
and new values: the engine calls ``check`` during ``pulumi preview``, so the change is refused
before any node is touched.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from keybuzz.config import ClusterConfig

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


# --- what an existing stack cannot change, refused at preview ------------------------------------
#
# The hcloud provider marks a server's image and location force-new: a change replaces every server
# at once (etcd included, since Pulumi replaces them in parallel), and the replacement collides with
# the fixed name and private IP. K3s does not support downgrades (docs.k3s.io, upgrades). And a key
# list that shares no key with the nodes' would lock Pulumi out of the nodes it must reach over SSH.

STACK_GUARD_ID = "deployed-stack"
_K3S_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)$")


def k3s_version_key(version: str) -> tuple[int, int, int, int]:
    """Comparable form of a K3s release: v1.34.1+k3s2 -> (1, 34, 1, 2); the k3sN suffix orders rebuilds."""
    match = _K3S_VERSION_RE.match(version)
    if not match:
        raise ValueError(f"not a K3s release such as v1.34.1+k3s1: {version!r}")
    major, minor, patch, build = (int(g) for g in match.groups())
    return major, minor, patch, build


def stack_guard_values(image: str, location: str, k3s_version: str, ssh_key_fingerprints: list[str]) -> dict[str, Any]:
    """The guard's inputs (all public): what the next run is compared with."""
    return {
        "image": image,
        "location": location,
        "k3sVersion": k3s_version,
        "sshKeyFingerprints": sorted(ssh_key_fingerprints),
    }


def deployed_stack_changes(olds: dict[str, Any], news: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for every change an existing stack refuses; empty olds (a new stack) refuse nothing."""
    from keybuzz.ssh_keys import rotation_problem

    changes = []
    for key, what in (("image", "OS image"), ("location", "location")):
        if key in olds and key in news and olds[key] != news[key]:
            changes.append(
                (
                    key,
                    f"'{key}' cannot change on an existing stack ({olds[key]!r} -> {news[key]!r}): Hetzner cannot "
                    f"change a server's {what} in place, so every server, etcd included, would be replaced at "
                    "once. Revert it; to move, create a new stack and migrate the workloads.",
                )
            )
    old_version, new_version = olds.get("k3sVersion"), news.get("k3sVersion")
    if old_version and new_version and _is_downgrade(old_version, new_version):
        changes.append(
            (
                "k3sVersion",
                f"K3s downgrade refused ({old_version} -> {new_version}): K3s does not support downgrades "
                f"(docs.k3s.io, upgrades). Keep {old_version} or pick a newer release.",
            )
        )
    problem = rotation_problem(olds.get("sshKeyFingerprints") or [], news.get("sshKeyFingerprints") or [])
    if "sshKeyFingerprints" in olds and problem:
        changes.append(("sshKeyFingerprints", problem))
    return changes


def _is_downgrade(old: str, new: str) -> bool:
    try:
        return k3s_version_key(new) < k3s_version_key(old)
    except ValueError:
        return False  # config validation owns the format


class DeployedStackProvider(ResourceProvider):
    """Holds the deployed image, location, K3s version and key fingerprints; refuses at ``check``."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(key, message) for key, message in deployed_stack_changes(_olds or {}, news)]
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(STACK_GUARD_ID, props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("image", "location", "k3sVersion", "sshKeyFingerprints")
        return DiffResult(changes=any(olds.get(k) != news.get(k) for k in keys), replaces=[], stables=[],
                          delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(news)


class DeployedStackGuard(pulumi.dynamic.Resource):
    """Declare once per stack, before any Hetzner resource; every one of them depends on it."""

    def __init__(self, name: str, values: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(DeployedStackProvider(), name, dict(values), opts)


def deployed_stack_values(cfg: ClusterConfig) -> dict[str, Any]:
    """The guard's inputs for ``cfg``."""
    from keybuzz.ssh_keys import fingerprint

    return stack_guard_values(cfg.image, cfg.location, cfg.k3s_version, [fingerprint(k) for k in cfg.ssh_public_keys])


# --- SSH key fingerprints confirmed on every node -------------------------------------------------
#
# The deployed-stack guard above records the configured fingerprints when the run starts. If the
# authorized_keys command then fails on one node, that node never got the new key; a second step
# that drops the old key would pass that guard and strand the node. This record is updated only
# after the authorized_keys command succeeded on every node (it depends on all of them), and refuses
# at preview a list that shares no key with what every node is known to accept.

KEYS_RECORD_ID = "ssh-keys-on-every-node"


def confirmed_keys_problem(confirmed: list[str], configured: list[str]) -> str | None:
    """Why ``configured`` fingerprints must be refused against those every node has, or None."""
    old, new = set(confirmed), set(configured)
    if not old or old & new:
        return None
    return (
        f"sshPublicKeys shares no key with the keys every node is known to accept ({', '.join(sorted(old))}: "
        "recorded after the last run whose authorized_keys update succeeded on every node). A node that "
        "missed a later update would not let Pulumi in with the new key. Run `up` with a list that keeps "
        "one of those keys until it succeeds on every node, then remove the old key in the next run."
    )


class SshKeysRecordProvider(ResourceProvider):
    """Holds the fingerprints every node has; refuses at ``check`` a list sharing none of them."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        problem = confirmed_keys_problem((_olds or {}).get("sshKeyFingerprints") or [],
                                         news.get("sshKeyFingerprints") or [])
        return CheckResult(news, [CheckFailure("sshKeyFingerprints", problem)] if problem else [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(KEYS_RECORD_ID, props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = olds.get("sshKeyFingerprints") != news.get("sshKeyFingerprints")
        return DiffResult(changes=changed, replaces=[], stables=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(news)


class SshKeysRecord(pulumi.dynamic.Resource):
    """Declare after the authorized_keys commands, depending on every one of them."""

    def __init__(self, name: str, fingerprints: list[str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(SshKeysRecordProvider(), name, {"sshKeyFingerprints": sorted(fingerprints)}, opts)
