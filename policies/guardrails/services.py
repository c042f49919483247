"""no-node-port: Services of type NodePort/LoadBalancer need an allow-list entry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .props import UNKNOWN, Finding, dig, k8s_kind, namespace_of, unknown_finding


def check_no_node_port(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """NodePort/LoadBalancer Services open ports on every node's public interface."""
    kind = k8s_kind(resource_type, props)
    if kind is None or kind.kind != "Service" or kind.group != "core":
        return []
    service_type = dig(props, ("spec", "type"))
    if service_type is UNKNOWN:
        return [unknown_finding(("spec", "type"), "spec.type")]
    if service_type not in ("NodePort", "LoadBalancer"):
        return []
    ns, name = namespace_of(props), dig(props, ("metadata", "name"))
    if ns is UNKNOWN or name is UNKNOWN:
        return [unknown_finding(("metadata",), "the Service's namespace/name (needed for the allow-list)")]
    key = f"{ns}/{name if isinstance(name, str) else ''}"
    if key in settings.get("allowedServices", ()):
        return []
    return [
        Finding(
            "spec.type",
            f"Service {key} has type {service_type}; use a ClusterIP Service + Ingress, or add "
            f"'{key}' to no-node-port.allowedServices (set metadata.name explicitly to match it)",
        )
    ]
