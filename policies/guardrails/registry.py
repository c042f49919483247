"""The policy table (names, default levels, config schemas, checks), config resolution and ``evaluate``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .network import check_admin_ports_not_world, check_ipip_pool, check_no_vxlan_port
from .props import Finding, show_number
from .services import check_no_node_port
from .workloads import (
    check_helm_release_opaque,
    check_no_app_daemonset,
    check_no_hardcoded_ips,
    check_no_host_network,
    check_no_host_port,
)

PACK_NAME = "keybuzz-guardrails"
ENFORCEMENT_LEVELS = ("advisory", "mandatory", "remediate", "disabled")
DEFAULT_EXEMPT_NAMESPACES = (
    "kube-system",
    "calico-system",
    "tigera-operator",
    "ingress-nginx",
    "traefik",
    "overlay-probe",
)


class ConfigError(ValueError):
    """Raised when a pack config does not match the pack's policies or their schema."""


@dataclass(frozen=True)
class Violation:
    """A finding attributed to a policy and a resource, with the enforcement level in force."""

    policy: str
    enforcement_level: str
    resource_type: str
    resource: str
    path: str
    message: str
    unknown: bool = False

    @property
    def blocking(self) -> bool:
        """Mandatory (or remediate, which pulumi-policy downgrades to mandatory) stops a deployment."""
        return self.enforcement_level in ("mandatory", "remediate")

    def __str__(self) -> str:
        return f"[{self.enforcement_level}] {self.policy}: {self.resource} ({self.resource_type}) {self.path}: " + (
            self.message
        )


Check = Callable[[str, Any, Mapping[str, Any]], list[Finding]]


def _string_list(default: Iterable[str], description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "default": list(default), "description": description}


def _port_list(default: Iterable[int], description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": 65535},
        "default": list(default),
        "description": description,
    }


_NAMESPACED_NAME = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"
_EXEMPT = _string_list(DEFAULT_EXEMPT_NAMESPACES, "Namespaces of system components this policy does not apply to.")


@dataclass(frozen=True)
class PolicySpec:
    """A policy's identity, default level, config schema (JSON schema properties) and check."""

    name: str
    description: str
    default_level: str
    check: Check
    config_properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        "no-host-network",
        "Workloads outside system namespaces must not set hostNetwork, hostPID or hostIPC.",
        "mandatory",
        check_no_host_network,
        {"exemptNamespaces": _EXEMPT},
    ),
    PolicySpec(
        "no-host-port",
        "Containers outside system namespaces must not set hostPort.",
        "mandatory",
        check_no_host_port,
        {"exemptNamespaces": _EXEMPT},
    ),
    PolicySpec(
        "no-app-daemonset",
        "Applications outside system namespaces are Deployments, not DaemonSets.",
        "mandatory",
        check_no_app_daemonset,
        {"exemptNamespaces": _EXEMPT},
    ),
    PolicySpec(
        "no-node-port",
        "Services of type NodePort or LoadBalancer need an explicit allow-list entry.",
        "mandatory",
        check_no_node_port,
        {
            "allowedServices": {
                "type": "array",
                "items": {"type": "string", "pattern": _NAMESPACED_NAME},
                "default": ["ingress-nginx/ingress-nginx-controller"],
                "description": "Services allowed to be NodePort/LoadBalancer, as namespace/name.",
            }
        },
    ),
    PolicySpec(
        "no-hardcoded-ips",
        "Container env values must not hold literal IPv4 addresses.",
        "mandatory",
        check_no_hardcoded_ips,
        {
            "exemptNamespaces": _EXEMPT,
            "allowedAddresses": _string_list(
                ("0.0.0.0", "127.0.0.1"), "Literal addresses allowed in env values (bind/loopback addresses)."
            ),
        },
    ),
    PolicySpec(
        "no-vxlan-port",
        "No firewall rule opens a VXLAN UDP port and no Calico resource enables VXLAN.",
        "mandatory",
        check_no_vxlan_port,
        {"vxlanPorts": _port_list((8472, 4789), "VXLAN UDP ports: 8472 (Flannel/Linux), 4789 (IANA, Calico).")},
    ),
    PolicySpec(
        "ipip-pool",
        "Calico IP pools use IPIP Always and VXLAN Never (Installation: encapsulation IPIP).",
        "mandatory",
        check_ipip_pool,
    ),
    PolicySpec(
        "admin-ports-not-world",
        "SSH and the Kubernetes API are not open to 0.0.0.0/0 or ::/0.",
        "advisory",
        check_admin_ports_not_world,
        {"adminPorts": _port_list((22, 6443), "Admin TCP ports that must not be open to the world.")},
    ),
    PolicySpec(
        "helm-release-opaque",
        "A helm.sh/v3 Release outside system namespaces is checked on its values only; its rendered objects "
        "are not (kubernetes.helm.v4.Chart makes them checkable).",
        "advisory",
        check_helm_release_opaque,
        {"exemptNamespaces": _EXEMPT},
    ),
)
POLICY_NAMES = tuple(p.name for p in POLICIES)
_BY_NAME = {p.name: p for p in POLICIES}


@dataclass(frozen=True)
class PolicySettings:
    """The resolved enforcement level and properties (defaults filled in) of one policy."""

    enforcement_level: str
    properties: Mapping[str, Any]


def _check_value(policy: str, key: str, schema: Mapping[str, Any], value: Any) -> None:
    # Just enough JSON schema for this pack's own properties (arrays of strings/integers).
    if schema.get("type") != "array":
        return
    if not isinstance(value, list):
        raise ConfigError(f"{policy}.{key} must be a list, got {value!r}")
    items = schema.get("items", {})
    for item in value:
        if items.get("type") == "string":
            if not isinstance(item, str):
                raise ConfigError(f"{policy}.{key} must hold strings, got {item!r}")
            if "pattern" in items and not re.search(items["pattern"], item):
                raise ConfigError(f"{policy}.{key}: {item!r} does not match {items['pattern']}")
        elif items.get("type") == "integer":
            if isinstance(item, bool) or not isinstance(item, int | float) or not float(item).is_integer():
                raise ConfigError(f"{policy}.{key} must hold integers, got {item!r}")
            if not items.get("minimum", item) <= item <= items.get("maximum", item):
                raise ConfigError(f"{policy}.{key}: {item!r} is out of range")


def policy_properties(spec: PolicySpec, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Schema defaults overlaid with ``given`` (validated); what a check receives as settings."""
    properties = {key: schema.get("default") for key, schema in spec.config_properties.items()}
    for key, value in (given or {}).items():
        if key == "enforcementLevel":
            continue
        if key not in spec.config_properties:
            known = ", ".join(spec.config_properties) or "none"
            raise ConfigError(f"{spec.name} has no property {key!r} (known: {known})")
        schema = spec.config_properties[key]
        _check_value(spec.name, key, schema, value)
        if schema.get("items", {}).get("type") == "integer":
            value = [show_number(item) for item in value]  # the engine hands 22 over as 22.0
        properties[key] = value
    return properties


def _level(where: str, value: Any) -> str:
    if value not in ENFORCEMENT_LEVELS:
        raise ConfigError(f"{where}: {value!r} is not an enforcement level ({', '.join(ENFORCEMENT_LEVELS)})")
    return value


def resolve_config(config: Mapping[str, Any] | None) -> dict[str, PolicySettings]:
    """Resolve a ``--policy-pack-config`` dict as the CLI does: defaults, then "all", then per policy."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(POLICY_NAMES) - {"all"})
    if unknown:
        raise ConfigError(f"unknown policies in config: {', '.join(unknown)} (known: {', '.join(POLICY_NAMES)})")
    all_level = config.get("all")
    if isinstance(all_level, Mapping):
        all_level = all_level.get("enforcementLevel")
    if all_level is not None:
        _level("all", all_level)
    resolved = {}
    for spec in POLICIES:
        entry = config.get(spec.name)
        level = all_level or spec.default_level
        given: Mapping[str, Any] = {}
        if isinstance(entry, str):
            level = _level(spec.name, entry)
        elif isinstance(entry, Mapping):
            if "enforcementLevel" in entry:
                level = _level(f"{spec.name}.enforcementLevel", entry["enforcementLevel"])
            given = entry
        elif entry is not None:
            raise ConfigError(f"{spec.name}: expected an enforcement level or an object, got {entry!r}")
        resolved[spec.name] = PolicySettings(level, policy_properties(spec, given))
    return resolved


def evaluate(
    resources: Iterable[tuple[str, str, Mapping[str, Any]]], config: Mapping[str, Any] | None = None
) -> list[Violation]:
    """Run every enabled policy on every (type, name, props); findings on unknowns come out advisory.

    Ordered by resource (name, then type), each resource's findings in policy and field order: the mock
    engine registers resources in no fixed order, and a CI log or a test must read the same verdict twice.
    """
    settings = resolve_config(config)
    violations = []
    for resource_type, name, props in resources:
        for spec in POLICIES:
            policy_settings = settings[spec.name]
            if policy_settings.enforcement_level == "disabled":
                continue
            for finding in spec.check(resource_type, props, policy_settings.properties):
                level = "advisory" if finding.unknown else policy_settings.enforcement_level
                violations.append(
                    Violation(spec.name, level, resource_type, name, finding.path, finding.message, finding.unknown)
                )
    return sorted(violations, key=lambda v: (v.resource, v.resource_type))  # stable: keeps field order
