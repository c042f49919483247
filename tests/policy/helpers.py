"""Builders for test resources and the entry point a program-level test can feed resources to.

``violations_for([(type, name, props), ...], config)`` runs the whole pack in-process; with the
mock harness: ``violations_for((r.type, r.name, r.inputs) for r in run.resources)``.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PACK_DIR = Path(__file__).resolve().parents[2] / "policies"
EXAMPLE_CONFIG = PACK_DIR / "config.example.json"


def guardrails_module() -> Any:
    """Import the pack's pure module the way the CLI sees it (pack folder on sys.path)."""
    if str(PACK_DIR) not in sys.path:
        sys.path.insert(0, str(PACK_DIR))
    return importlib.import_module("guardrails")


def violations_for(resources: Iterable[tuple[str, str, Mapping[str, Any]]], config: Mapping | None = None) -> list:
    """Every violation the pack reports for these (type token, name, props), config as in the CLI file."""
    return guardrails_module().evaluate(resources, config)


def blocking_violations(resources: Iterable[tuple[str, str, Mapping[str, Any]]], config: Mapping | None = None) -> list:
    """Only the violations that would stop ``pulumi up`` (mandatory level, decided values)."""
    return [v for v in violations_for(resources, config) if v.blocking]


def example_config() -> dict[str, Any]:
    return json.loads(EXAMPLE_CONFIG.read_text())


# Every kind with a pod spec, in the API versions Pulumi has typed them with, and where the pod spec is.
TEMPLATE = ("spec", "template", "spec")
CRON = ("spec", "jobTemplate", "spec", "template", "spec")
WORKLOAD_TYPES: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:core/v1:PodTemplate": ("template", "spec"),
    "kubernetes:core/v1:ReplicationController": TEMPLATE,
    "kubernetes:apps/v1:Deployment": TEMPLATE,
    "kubernetes:apps/v1beta1:Deployment": TEMPLATE,
    "kubernetes:apps/v1beta2:Deployment": TEMPLATE,
    "kubernetes:extensions/v1beta1:Deployment": TEMPLATE,
    "kubernetes:apps/v1:StatefulSet": TEMPLATE,
    "kubernetes:apps/v1beta2:StatefulSet": TEMPLATE,
    "kubernetes:apps/v1:ReplicaSet": TEMPLATE,
    "kubernetes:extensions/v1beta1:ReplicaSet": TEMPLATE,
    "kubernetes:apps/v1:DaemonSet": TEMPLATE,
    "kubernetes:extensions/v1beta1:DaemonSet": TEMPLATE,
    "kubernetes:batch/v1:Job": TEMPLATE,
    "kubernetes:batch/v1:CronJob": CRON,
    "kubernetes:batch/v1beta1:CronJob": CRON,
    "kubernetes:apps/v1:DeploymentPatch": TEMPLATE,
    "kubernetes:apps/v1:StatefulSetPatch": TEMPLATE,
    "kubernetes:apps/v1:DaemonSetPatch": TEMPLATE,
    "kubernetes:batch/v1:CronJobPatch": CRON,
    "kubernetes:core/v1:PodPatch": ("spec",),
}


def nest(path: tuple[str, ...], value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def workload(type_token: str, pod_spec: Any, namespace: Any = None, name: str = "app") -> dict[str, Any]:
    """Props of a ``type_token`` workload whose pod spec is ``pod_spec`` (any value, for malformed cases)."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    kind = type_token.rsplit(":", 1)[1].removesuffix("Patch")
    api_version = type_token.split(":")[1].replace("core/", "")
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **nest(WORKLOAD_TYPES[type_token], pod_spec)}


def pod_path(type_token: str) -> str:
    return ".".join(WORKLOAD_TYPES[type_token])


def firewall(*rules: Any) -> dict[str, Any]:
    return {"name": "fw", "rules": list(rules)}


def rule(direction: str = "in", protocol: str = "tcp", port: Any = "22", sources: Any = ("0.0.0.0/0",)) -> dict:
    out: dict[str, Any] = {"direction": direction, "protocol": protocol, "port": port}
    if sources is not None:
        out["sourceIps" if direction == "in" else "destinationIps"] = list(sources)
    return out


def of_policy(violations: Iterable[Any], policy: str) -> list[Any]:
    return [v for v in violations if v.policy == policy]
