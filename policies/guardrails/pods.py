"""The one walker over pod specs: where each workload kind keeps its pod spec, and its containers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .props import UNKNOWN, K8sKind, Path, dig, items

# Kinds that carry a pod spec, and where. Matched on kind, whatever the API group/version.
POD_SPEC_PATHS: dict[str, Path] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
WORKLOAD_KINDS = frozenset(POD_SPEC_PATHS)
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def pod_spec(kind: K8sKind | None, props: Any) -> tuple[Path, Any] | None:
    """(path, pod spec) of a workload, the spec possibly ``UNKNOWN``/``MISSING``; None for other kinds."""
    if kind is None or kind.kind not in WORKLOAD_KINDS:
        return None
    path = POD_SPEC_PATHS[kind.kind]
    return path, dig(props, path)


def containers(pod_path: Path, pod: Any) -> Iterable[tuple[Path, Any]]:
    """Yield (path, container) for every container list; UNKNOWN containers are yielded as such."""
    for list_name in CONTAINER_LISTS:
        found = dig(pod, (list_name,))
        if found is UNKNOWN:
            yield (*pod_path, list_name), UNKNOWN
            continue
        for i, _ in items(found):
            yield (*pod_path, list_name, i), dig(found, (i,))
