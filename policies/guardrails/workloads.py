"""Pod-spec policies: no-host-network, no-host-port, no-app-daemonset, no-hardcoded-ips.

Each walks pod specs through ``pods``; the first two also judge Helm release values (``helm``),
because a chart asked for ``hostNetwork: true`` is the same decision as a Deployment that sets it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from . import helm
from .pods import containers, pod_spec
from .props import UNKNOWN, Finding, dig, exempt_scope, fmt_path, items, k8s_kind, namespace_of, show, unknown_finding

FIX_EXPOSE = "expose the app through a ClusterIP Service + Ingress instead"


def _is_set_port(value: Any) -> bool:
    # 0 and "" mean "not set" to the API server; other types are malformed, hence absent.
    return isinstance(value, int | float | str) and not isinstance(value, bool) and value not in (0, "0", "")


def _scoped(props: Any, settings: Mapping[str, Any], findings: list[Finding]) -> list[Finding]:
    return exempt_scope(namespace_of(props), settings, findings)


def check_no_host_network(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """hostNetwork/hostPID/hostIPC share the node's namespaces (PSS baseline forbids them)."""
    if helm.is_release(resource_type):
        return helm.host_namespace_findings(props, settings)
    located = pod_spec(k8s_kind(resource_type, props), props)
    if located is None:
        return []
    path, pod = located
    if pod is UNKNOWN:
        return _scoped(props, settings, [unknown_finding(path, "the pod spec")])
    findings = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        value = dig(pod, (flag,))
        if value is UNKNOWN:
            findings.append(unknown_finding((*path, flag), flag))
        elif value is True:
            fix = FIX_EXPOSE if flag == "hostNetwork" else f"keep the pod in its own {flag[4:]} namespace"
            findings.append(Finding(fmt_path((*path, flag)), f"{flag} is true; remove it and {fix}"))
    return _scoped(props, settings, findings)


def check_no_host_port(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """A hostPort binds every node it lands on and bypasses Services and NetworkPolicies."""
    if helm.is_release(resource_type):
        return helm.host_port_findings(props, settings)
    located = pod_spec(k8s_kind(resource_type, props), props)
    if located is None:
        return []
    path, pod = located
    if pod is UNKNOWN:
        return _scoped(props, settings, [unknown_finding(path, "the pod spec")])
    findings = []
    for c_path, container in containers(path, pod):
        ports = dig(container, ("ports",))
        if container is UNKNOWN or ports is UNKNOWN:
            where = c_path if container is UNKNOWN else (*c_path, "ports")
            findings.append(unknown_finding(where, "the container ports"))
            continue
        for j, _ in items(ports):
            port_path = (*c_path, "ports", j, "hostPort")
            host_port = dig(ports, (j, "hostPort"))
            if host_port is UNKNOWN:
                findings.append(unknown_finding(port_path, "hostPort"))
            elif _is_set_port(host_port):
                findings.append(
                    Finding(fmt_path(port_path), f"hostPort {show(host_port)} is set; remove it and {FIX_EXPOSE}")
                )
    return _scoped(props, settings, findings)


def check_no_app_daemonset(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """Apps scale with load, not with node count; node agents live in exempt system namespaces."""
    kind = k8s_kind(resource_type, props)
    if kind is None or kind.kind != "DaemonSet" or kind.patch:
        return []
    finding = Finding("kind", "apps are not DaemonSets; run it as a Deployment + HorizontalPodAutoscaler")
    return _scoped(props, settings, [finding])


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
    located = pod_spec(k8s_kind(resource_type, props), props)
    if located is None:
        return []
    path, pod = located
    if pod is UNKNOWN:
        return _scoped(props, settings, [unknown_finding(path, "the pod spec")])
    allowed = settings.get("allowedAddresses", ())
    findings = []
    for c_path, container in containers(path, pod):
        env = dig(container, ("env",))
        if container is UNKNOWN or env is UNKNOWN:
            findings.append(unknown_finding(c_path if container is UNKNOWN else (*c_path, "env"), "the container env"))
            continue
        for i, _ in items(env):
            var_name, value = dig(env, (i, "name")), dig(env, (i, "value"))
            if isinstance(var_name, str) and "VERSION" in var_name.upper():
                continue  # four-part versions look like IPs; a *VERSION* variable holds a version
            if value is UNKNOWN:
                findings.append(unknown_finding((*c_path, "env", i, "value"), "the env value"))
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
    return _scoped(props, settings, findings)


def check_helm_release_opaque(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """A v3 Release hides its rendered objects from the pack: say so, and name the checkable form."""
    return helm.opaque_release_findings(props, settings) if helm.is_release(resource_type) else []
