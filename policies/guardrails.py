"""Guardrail checks for keybuzz-k3s, as pure functions over planned resources.

Why pure: the same decisions run inside the Pulumi policy pack (``pack.py`` wraps them in
``ResourceValidationPolicy`` objects) and in-process, e.g. from tests or an offline plan, without
a Pulumi engine.

Entry point for other code::

    import guardrails  # put the policies/ folder on sys.path first
    violations = guardrails.evaluate(
        [("kubernetes:apps/v1:Deployment", "web", {"metadata": {...}, "spec": {...}})],
        config=None,  # or the dict of a --policy-pack-config JSON file
    )
    blocking = [v for v in violations if v.blocking]

``evaluate(resources, config) -> list[Violation]`` takes ``(type token, resource name, props)``
tuples, where props are the resource inputs as plain data in the camelCase the Kubernetes API and
the Pulumi engine use (``hostNetwork``, ``sourceIps``). ``config`` has the format of the CLI's
``--policy-pack-config`` file: ``{"all": "advisory", "<policy>": "disabled" | {"enforcementLevel":
..., "<property>": ...}}``; unknown policy names, levels or property types raise ``ConfigError``
(the CLI silently ignores unknown keys, this does not).

Unknown values (preview placeholders, the ``UNKNOWN_*`` sentinels of ``pulumi_policy.proxy``) never
raise: a check that depends on one returns a finding with ``unknown=True``; ``evaluate`` reports it
as advisory, like pulumi-policy does for its own ``UnknownValueError``. The resource is checked
again with known values during ``pulumi up``.

Missing fields, ``None`` and wrong types are treated as absent: the API server rejects malformed
objects itself; these checks only look for what they forbid.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
)

PACK_NAME = "keybuzz-guardrails"

ENFORCEMENT_LEVELS = ("advisory", "mandatory", "remediate", "disabled")

DEFAULT_EXEMPT_NAMESPACES = ("kube-system", "calico-system", "tigera-operator", "ingress-nginx", "overlay-probe")

# Kinds that carry a pod spec, and where. Matched on kind, whatever the API group/version.
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
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
WORKLOAD_KINDS = frozenset(_POD_SPEC_PATHS)

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_GENERIC_CUSTOM_RESOURCES = ("CustomResource", "CustomResourcePatch")

_UNKNOWN_SENTINELS = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)
# How Pulumi serializes secrets when a caller hands us wire-format props (e.g. from mocks).
_SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


class ConfigError(ValueError):
    """Raised when a pack config does not match the pack's policies or their schema."""


@dataclass(frozen=True)
class Finding:
    """One thing a check objects to: the field path and what to do about it."""

    path: str
    message: str
    unknown: bool = False  # the decision depends on a value not known yet (preview)


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


# --------------------------------------------------------------------------------------------
# Safe access to untrusted props
# --------------------------------------------------------------------------------------------


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


MISSING: Any = _Marker("MISSING")
UNKNOWN: Any = _Marker("UNKNOWN")

PathKey = str | int


def is_unknown(value: Any) -> bool:
    """True for Pulumi's preview placeholders (any of the pulumi-policy sentinels)."""
    return value is UNKNOWN or (isinstance(value, str) and value in _UNKNOWN_SENTINELS)


def _unwrap(value: Any) -> Any:
    if isinstance(value, Mapping) and value.get(_SECRET_SIG_KEY) == _SECRET_SIG:
        value = value.get("value")
    return UNKNOWN if is_unknown(value) else value


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def dig(root: Any, path: Iterable[PathKey]) -> Any:
    """The value at ``path``, or ``MISSING`` (absent, null, wrong type) or ``UNKNOWN``."""
    value = _unwrap(root)
    for key in path:
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(key, int):
            if not _is_list(value) or not 0 <= key < len(value):
                return MISSING
            value = value[key]
        else:
            if not isinstance(value, Mapping) or key not in value:
                return MISSING
            value = value[key]
        value = _unwrap(value)
        if value is None:
            return MISSING
    return value


def _items(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if _is_list(value) else []


def fmt_path(path: Iterable[PathKey]) -> str:
    """``("spec", "containers", 0, "ports")`` -> ``spec.containers[0].ports``."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def _show(value: Any) -> str:
    # Numbers come back from the gRPC Struct as floats: show 8080.0 as 8080.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------------------------
# Resource identity
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class K8sKind:
    """What a Kubernetes resource is, independent of API version and of typed vs generic form."""

    group: str  # "core" for the legacy group
    kind: str  # without the Patch suffix
    patch: bool


def k8s_kind(resource_type: str, props: Any) -> K8sKind | None:
    """Identify a Kubernetes resource from its type token, or its apiVersion/kind for generic CRs."""
    if not isinstance(resource_type, str):
        return None
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes":
        return None
    module, type_name = parts[1], parts[2]
    if type_name in _GENERIC_CUSTOM_RESOURCES:
        api_version, kind = dig(props, ("apiVersion",)), dig(props, ("kind",))
        if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
            return None
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else "core"
        return K8sKind(group, kind.removesuffix("Patch"), type_name.endswith("Patch"))
    group = module.rsplit("/", 1)[0] if "/" in module else module
    patch = type_name.endswith("Patch")
    return K8sKind(group, type_name.removesuffix("Patch") if patch else type_name, patch)


def namespace_of(props: Any) -> Any:
    """``metadata.namespace``; ``default`` when absent or empty; ``UNKNOWN`` when not known yet."""
    ns = dig(props, ("metadata", "namespace"))
    if ns is UNKNOWN:
        return UNKNOWN
    return ns if isinstance(ns, str) and ns else "default"


def _is_calico(kind: K8sKind, name: str) -> bool:
    return kind.kind == name and kind.group.endswith("projectcalico.org")


def _is_installation(kind: K8sKind) -> bool:
    return kind.kind == "Installation" and kind.group == "operator.tigera.io"


# --------------------------------------------------------------------------------------------
# Shared walkers
# --------------------------------------------------------------------------------------------


def _pod_spec(kind: K8sKind | None, props: Any) -> tuple[tuple[PathKey, ...], Any] | None:
    if kind is None or kind.kind not in WORKLOAD_KINDS:
        return None
    path = _POD_SPEC_PATHS[kind.kind]
    return path, dig(props, path)


def _unknown(path: Iterable[PathKey], what: str) -> Finding:
    return Finding(fmt_path(path), f"{what} is not known yet (preview); it is checked again on update", unknown=True)


def _containers(pod_path: tuple[PathKey, ...], pod: Any) -> Iterable[tuple[tuple[PathKey, ...], Any]]:
    """Yield (path, container) for every container list; UNKNOWN containers are yielded as such."""
    for list_name in _CONTAINER_LISTS:
        containers = dig(pod, (list_name,))
        if containers is UNKNOWN:
            yield (*pod_path, list_name), UNKNOWN
            continue
        for i, _ in _items(containers):
            yield (*pod_path, list_name, i), dig(containers, (i,))


def _exempt_scope(props: Any, settings: Mapping[str, Any], findings: list[Finding]) -> list[Finding]:
    """Drop findings in exempt namespaces; make them undecidable when the namespace is unknown."""
    if not findings:
        return findings
    ns = namespace_of(props)
    if ns is UNKNOWN:
        return [
            Finding(f.path, f"metadata.namespace is not known yet, so exemption cannot be decided: {f.message}", True)
            for f in findings
        ]
    return [] if ns in settings.get("exemptNamespaces", ()) else findings


def _port_range(spec: Any) -> tuple[int, int] | None:
    """Hetzner firewall port spec ("22", "8000-9000", "any") as an inclusive range, or None."""
    if isinstance(spec, bool):
        return None
    if isinstance(spec, int | float) and float(spec).is_integer():
        return int(spec), int(spec)
    if not isinstance(spec, str):
        return None
    text = spec.strip().lower()
    if text == "any":
        return 1, 65535
    match = re.fullmatch(r"(\d{1,5})(?:\s*-\s*(\d{1,5}))?", text)
    if not match:
        return None
    low = int(match.group(1))
    high = int(match.group(2) or low)
    return (low, high) if low <= high else None


def _firewall_rules(resource_type: str, props: Any) -> Iterable[tuple[tuple[PathKey, ...], Any]]:
    if resource_type != "hcloud:index/firewall:Firewall":
        return
    rules = dig(props, ("rules",))
    if rules is UNKNOWN:
        yield ("rules",), UNKNOWN
        return
    for i, _ in _items(rules):
        yield ("rules", i), dig(rules, (i,))


def _is_set_port(value: Any) -> bool:
    # 0 and "" mean "not set" to the API server; other types are malformed, hence absent.
    return isinstance(value, int | float | str) and not isinstance(value, bool) and value not in (0, "0", "")


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# --------------------------------------------------------------------------------------------
# Checks: (resource_type, props, settings) -> findings
# --------------------------------------------------------------------------------------------

FIX_EXPOSE = "expose the app through a ClusterIP Service + Ingress instead"


def check_no_host_network(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """hostNetwork/hostPID/hostIPC share the node's namespaces (PSS baseline forbids them)."""
    located = _pod_spec(k8s_kind(resource_type, props), props)
    if located is None:
        return []
    path, pod = located
    if pod is UNKNOWN:
        return _exempt_scope(props, settings, [_unknown(path, "the pod spec")])
    findings = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        value = dig(pod, (flag,))
        if value is UNKNOWN:
            findings.append(_unknown((*path, flag), flag))
        elif value is True:
            fix = FIX_EXPOSE if flag == "hostNetwork" else f"keep the pod in its own {flag[4:]} namespace"
            findings.append(Finding(fmt_path((*path, flag)), f"{flag} is true; remove it and {fix}"))
    return _exempt_scope(props, settings, findings)


def check_no_host_port(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """A hostPort binds every node it lands on and bypasses Services and NetworkPolicies."""
    located = _pod_spec(k8s_kind(resource_type, props), props)
    if located is None:
        return []
    path, pod = located
    if pod is UNKNOWN:
        return _exempt_scope(props, settings, [_unknown(path, "the pod spec")])
    findings = []
    for c_path, container in _containers(path, pod):
        ports = dig(container, ("ports",))
        if container is UNKNOWN or ports is UNKNOWN:
            findings.append(_unknown(c_path if container is UNKNOWN else (*c_path, "ports"), "the container ports"))
            continue
        for j, _ in _items(ports):
            port_path = (*c_path, "ports", j, "hostPort")
            host_port = dig(ports, (j, "hostPort"))
            if host_port is UNKNOWN:
                findings.append(_unknown(port_path, "hostPort"))
            elif _is_set_port(host_port):
                findings.append(
                    Finding(fmt_path(port_path), f"hostPort {_show(host_port)} is set; remove it and {FIX_EXPOSE}")
                )
    return _exempt_scope(props, settings, findings)


def check_no_app_daemonset(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """Apps scale with load, not with node count; node agents live in exempt system namespaces."""
    kind = k8s_kind(resource_type, props)
    if kind is None or kind.kind != "DaemonSet" or kind.patch:
        return []
    finding = Finding("kind", "apps are not DaemonSets; run it as a Deployment + HorizontalPodAutoscaler")
    return _exempt_scope(props, settings, [finding])


def check_no_node_port(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """NodePort/LoadBalancer Services open ports on every node's public interface."""
    kind = k8s_kind(resource_type, props)
    if kind is None or kind.kind != "Service" or kind.group != "core":
        return []
    service_type = dig(props, ("spec", "type"))
    if service_type is UNKNOWN:
        return [_unknown(("spec", "type"), "spec.type")]
    if service_type not in ("NodePort", "LoadBalancer"):
        return []
    ns, name = namespace_of(props), dig(props, ("metadata", "name"))
    if ns is UNKNOWN or name is UNKNOWN:
        return [_unknown(("metadata",), "the Service's namespace/name (needed for the allow-list)")]
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


# Dotted quads with word boundaries: not part of a longer dotted/word token (1.2.3.4-rc, v1.2.3.4,
# 1.2.3.4.5) and not a CIDR (10.42.0.0/16). A following ":port" or "/path" still counts.
_IPV4_CANDIDATE = re.compile(r"(?<![\w.-])(\d{1,3}(?:\.\d{1,3}){3})(?![\w.-]|/\d)")


def find_ipv4_literals(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """IPv4 addresses written literally in ``text``, except ``allowed`` ones.

    Counts: a valid dotted quad (``ipaddress`` accepts it) standing alone or inside a URL/host:port.
    Does not count: CIDRs (``10.42.0.0/16``), versions glued to other tokens (``1.2.3.4-rc``,
    ``v1.2.3.4``), out-of-range or zero-padded quads (``300.1.1.1``, ``010.0.0.1``).
    """
    allowed_set = set(allowed)
    found = []
    for match in _IPV4_CANDIDATE.finditer(text):
        literal = match.group(1)
        try:
            ipaddress.IPv4Address(literal)
        except ValueError:
            continue
        if literal not in allowed_set:
            found.append(literal)
    return found


def check_no_hardcoded_ips(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """Pod and node IPs change; env vars should hold Service DNS names or injected URLs."""
    located = _pod_spec(k8s_kind(resource_type, props), props)
    if located is None:
        return []
    path, pod = located
    if pod is UNKNOWN:
        return _exempt_scope(props, settings, [_unknown(path, "the pod spec")])
    allowed = settings.get("allowedAddresses", ())
    findings = []
    for c_path, container in _containers(path, pod):
        env = dig(container, ("env",))
        if container is UNKNOWN or env is UNKNOWN:
            findings.append(_unknown(c_path if container is UNKNOWN else (*c_path, "env"), "the container env"))
            continue
        for i, _ in _items(env):
            var_name, value = dig(env, (i, "name")), dig(env, (i, "value"))
            if isinstance(var_name, str) and "VERSION" in var_name.upper():
                continue  # four-part versions look like IPs; a *VERSION* variable holds a version
            if value is UNKNOWN:
                findings.append(_unknown((*c_path, "env", i, "value"), "the env value"))
            elif isinstance(value, str):
                for literal in find_ipv4_literals(value, allowed):
                    findings.append(
                        Finding(
                            fmt_path((*c_path, "env", i, "value")),
                            f"env {var_name if isinstance(var_name, str) else '?'} holds the literal IP {literal}; "
                            "put a Service DNS name (<svc>.<ns>.svc.cluster.local) in the env var, "
                            "or inject the URL from a ConfigMap/Secret",
                        )
                    )
    return _exempt_scope(props, settings, findings)


def check_no_vxlan_port(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """The overlay is Calico IPIP over the private network: VXLAN ports or pools mean a wrong design."""
    ports = settings.get("vxlanPorts", ())
    findings: list[Finding] = []
    for r_path, rule in _firewall_rules(resource_type, props):
        if rule is UNKNOWN:
            findings.append(_unknown(r_path, "the firewall rule"))
            continue
        protocol, port = _lower(dig(rule, ("protocol",))), dig(rule, ("port",))
        if protocol is UNKNOWN or (protocol == "udp" and port is UNKNOWN):
            findings.append(_unknown(r_path, "the rule's protocol/port"))
            continue
        span = _port_range(port) if protocol == "udp" else None
        hits = [p for p in ports if span and span[0] <= p <= span[1]]
        if hits:
            findings.append(
                Finding(
                    fmt_path((*r_path, "port")),
                    f"udp {_show(port)} opens VXLAN port {', '.join(map(str, hits))}; remove the rule: Calico IPIP "
                    "runs over the private network, which Cloud Firewalls do not filter",
                )
            )
    kind = k8s_kind(resource_type, props)
    if kind is None:
        return findings
    if _is_calico(kind, "IPPool"):
        mode = dig(props, ("spec", "vxlanMode"))
        if mode is UNKNOWN:
            findings.append(_unknown(("spec", "vxlanMode"), "vxlanMode"))
        elif mode in ("Always", "CrossSubnet"):
            findings.append(Finding("spec.vxlanMode", f"vxlanMode is {mode}; set vxlanMode: Never (overlay is IPIP)"))
    elif _is_calico(kind, "FelixConfiguration"):
        enabled = dig(props, ("spec", "vxlanEnabled"))
        if enabled is UNKNOWN:
            findings.append(_unknown(("spec", "vxlanEnabled"), "vxlanEnabled"))
        elif enabled is True:
            findings.append(Finding("spec.vxlanEnabled", "vxlanEnabled is true; remove it (overlay is IPIP)"))
    elif _is_installation(kind):
        for p_path, pool in _installation_pools(props):
            encapsulation = dig(pool, ("encapsulation",))
            if pool is UNKNOWN or encapsulation is UNKNOWN:
                findings.append(_unknown(p_path, "the pool encapsulation"))
            elif isinstance(encapsulation, str) and encapsulation.startswith("VXLAN"):
                findings.append(
                    Finding(
                        fmt_path((*p_path, "encapsulation")),
                        f"encapsulation is {encapsulation}; set encapsulation: IPIP",
                    )
                )
    return findings


_INSTALLATION_POOLS = ("spec", "calicoNetwork", "ipPools")


def _installation_pools(props: Any) -> Iterable[tuple[tuple[PathKey, ...], Any]]:
    pools = dig(props, _INSTALLATION_POOLS)
    if pools is UNKNOWN:
        yield _INSTALLATION_POOLS, UNKNOWN
        return
    for i, _ in _items(pools):
        yield (*_INSTALLATION_POOLS, i), dig(pools, (i,))


def _is_ipv6_pool(pool: Any) -> bool:
    cidr = dig(pool, ("cidr",))
    return isinstance(cidr, str) and ":" in cidr  # IPIP is IPv4-only; a v6 pool cannot use it


def check_ipip_pool(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """Pools must say IPIP Always / VXLAN Never explicitly: the IPPool default for ipipMode is Never."""
    kind = k8s_kind(resource_type, props)
    if kind is None:
        return []
    findings: list[Finding] = []
    if _is_calico(kind, "IPPool"):
        spec = dig(props, ("spec",))
        if spec is UNKNOWN:
            return [_unknown(("spec",), "the pool spec")]
        ipip, vxlan = dig(spec, ("ipipMode",)), dig(spec, ("vxlanMode",))
        if ipip is UNKNOWN:
            findings.append(_unknown(("spec", "ipipMode"), "ipipMode"))
        elif ipip != "Always" and not (ipip is MISSING and kind.patch) and not _is_ipv6_pool(spec):
            shown = "missing (Calico defaults to Never)" if ipip is MISSING else _show(ipip)
            findings.append(Finding("spec.ipipMode", f"ipipMode is {shown}; set ipipMode: Always"))
        if vxlan is UNKNOWN:
            findings.append(_unknown(("spec", "vxlanMode"), "vxlanMode"))
        elif vxlan is not MISSING and vxlan != "Never":
            findings.append(Finding("spec.vxlanMode", f"vxlanMode is {_show(vxlan)}; set vxlanMode: Never"))
    elif _is_installation(kind):
        pools = dig(props, _INSTALLATION_POOLS)
        if pools is MISSING and not kind.patch:
            findings.append(
                Finding(
                    fmt_path(_INSTALLATION_POOLS),
                    "no ipPools: the operator would create its default pool (192.168.0.0/16, its own "
                    "encapsulation); declare the pool with encapsulation: IPIP and the K3s cluster-cidr",
                )
            )
        for p_path, pool in _installation_pools(props):
            encapsulation = dig(pool, ("encapsulation",))
            if pool is UNKNOWN or encapsulation is UNKNOWN:
                findings.append(_unknown(p_path, "the pool encapsulation"))
            elif encapsulation != "IPIP" and not (encapsulation is MISSING and kind.patch) and not _is_ipv6_pool(pool):
                shown = "missing" if encapsulation is MISSING else _show(encapsulation)
                findings.append(
                    Finding(fmt_path((*p_path, "encapsulation")), f"encapsulation is {shown}; set encapsulation: IPIP")
                )
    return findings


def _world_sources(rule: Any) -> Any:
    sources = dig(rule, ("sourceIps",))
    if sources is UNKNOWN:
        return UNKNOWN
    world = []
    for _, source in _items(sources):
        source = _unwrap(source)
        if source is UNKNOWN:
            return UNKNOWN
        try:
            if isinstance(source, str) and ipaddress.ip_network(source.strip(), strict=False).prefixlen == 0:
                world.append(source)
        except ValueError:
            continue
    return world


def check_admin_ports_not_world(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """SSH and the K8s API open to the Internet invite brute force; restrict them to known sources."""
    admin_ports = settings.get("adminPorts", ())
    findings: list[Finding] = []
    for r_path, rule in _firewall_rules(resource_type, props):
        if rule is UNKNOWN:
            findings.append(_unknown(r_path, "the firewall rule"))
            continue
        direction, protocol = _lower(dig(rule, ("direction",))), _lower(dig(rule, ("protocol",)))
        if direction is UNKNOWN or protocol is UNKNOWN:
            findings.append(_unknown(r_path, "the rule's direction/protocol"))
            continue
        if direction != "in" or protocol != "tcp":
            continue
        port = dig(rule, ("port",))
        if port is UNKNOWN:
            findings.append(_unknown((*r_path, "port"), "the rule's port"))
            continue
        span = _port_range(port)
        hits = [p for p in admin_ports if span and span[0] <= p <= span[1]]
        if not hits:
            continue
        world = _world_sources(rule)
        if world is UNKNOWN:
            findings.append(_unknown((*r_path, "sourceIps"), "the rule's sourceIps"))
        elif world:
            findings.append(
                Finding(
                    fmt_path((*r_path, "sourceIps")),
                    f"tcp {_show(port)} (admin port {', '.join(map(str, hits))}) is open to {', '.join(world)}; "
                    "restrict sourceIps to the operator/CI addresses or a bastion",
                )
            )
    return findings


# --------------------------------------------------------------------------------------------
# Policy table and config
# --------------------------------------------------------------------------------------------

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
        _check_value(spec.name, key, spec.config_properties[key], value)
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
    """Run every enabled policy on every (type, name, props); findings on unknowns come out advisory."""
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
    return violations
