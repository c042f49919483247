"""Cluster network policies: no-vxlan-port, ipip-pool (Calico) and admin-ports-not-world (Hetzner firewall)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .props import (
    MISSING,
    UNKNOWN,
    Finding,
    K8sKind,
    Path,
    dig,
    fmt_path,
    items,
    k8s_kind,
    show,
    show_all,
    unknown_finding,
    unwrap,
)


def _is_calico(kind: K8sKind, name: str) -> bool:
    return kind.kind == name and kind.group.endswith("projectcalico.org")


def _is_installation(kind: K8sKind) -> bool:
    return kind.kind == "Installation" and kind.group == "operator.tigera.io"


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


def _firewall_rules(resource_type: str, props: Any) -> Iterable[tuple[Path, Any]]:
    if resource_type != "hcloud:index/firewall:Firewall":
        return
    rules = dig(props, ("rules",))
    if rules is UNKNOWN:
        yield ("rules",), UNKNOWN
        return
    for i, _ in items(rules):
        yield ("rules", i), dig(rules, (i,))


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def check_no_vxlan_port(resource_type: str, props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """The overlay is Calico IPIP over the private network: VXLAN ports or pools mean a wrong design."""
    ports = settings.get("vxlanPorts", ())
    findings: list[Finding] = []
    for r_path, rule in _firewall_rules(resource_type, props):
        if rule is UNKNOWN:
            findings.append(unknown_finding(r_path, "the firewall rule"))
            continue
        protocol, port = _lower(dig(rule, ("protocol",))), dig(rule, ("port",))
        if protocol is UNKNOWN or (protocol == "udp" and port is UNKNOWN):
            findings.append(unknown_finding(r_path, "the rule's protocol/port"))
            continue
        span = _port_range(port) if protocol == "udp" else None
        hits = [p for p in ports if span and span[0] <= p <= span[1]]
        if hits:
            findings.append(
                Finding(
                    fmt_path((*r_path, "port")),
                    f"udp {show(port)} opens VXLAN port {show_all(hits)}; remove the rule: Calico IPIP "
                    "runs over the private network, which Cloud Firewalls do not filter",
                )
            )
    kind = k8s_kind(resource_type, props)
    if kind is None:
        return findings
    if _is_calico(kind, "IPPool"):
        mode = dig(props, ("spec", "vxlanMode"))
        if mode is UNKNOWN:
            findings.append(unknown_finding(("spec", "vxlanMode"), "vxlanMode"))
        elif mode in ("Always", "CrossSubnet"):
            findings.append(Finding("spec.vxlanMode", f"vxlanMode is {mode}; set vxlanMode: Never (overlay is IPIP)"))
    elif _is_calico(kind, "FelixConfiguration"):
        enabled = dig(props, ("spec", "vxlanEnabled"))
        if enabled is UNKNOWN:
            findings.append(unknown_finding(("spec", "vxlanEnabled"), "vxlanEnabled"))
        elif enabled is True:
            findings.append(Finding("spec.vxlanEnabled", "vxlanEnabled is true; remove it (overlay is IPIP)"))
    elif _is_installation(kind):
        for p_path, pool in _installation_pools(props):
            encapsulation = dig(pool, ("encapsulation",))
            if pool is UNKNOWN or encapsulation is UNKNOWN:
                findings.append(unknown_finding(p_path, "the pool encapsulation"))
            elif isinstance(encapsulation, str) and encapsulation.startswith("VXLAN"):
                findings.append(
                    Finding(
                        fmt_path((*p_path, "encapsulation")),
                        f"encapsulation is {encapsulation}; set encapsulation: IPIP",
                    )
                )
    return findings


_INSTALLATION_POOLS = ("spec", "calicoNetwork", "ipPools")


def _installation_pools(props: Any) -> Iterable[tuple[Path, Any]]:
    pools = dig(props, _INSTALLATION_POOLS)
    if pools is UNKNOWN:
        yield _INSTALLATION_POOLS, UNKNOWN
        return
    for i, _ in items(pools):
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
            return [unknown_finding(("spec",), "the pool spec")]
        ipip, vxlan = dig(spec, ("ipipMode",)), dig(spec, ("vxlanMode",))
        if ipip is UNKNOWN:
            findings.append(unknown_finding(("spec", "ipipMode"), "ipipMode"))
        elif ipip != "Always" and not (ipip is MISSING and kind.patch) and not _is_ipv6_pool(spec):
            shown = "missing (Calico defaults to Never)" if ipip is MISSING else show(ipip)
            findings.append(Finding("spec.ipipMode", f"ipipMode is {shown}; set ipipMode: Always"))
        if vxlan is UNKNOWN:
            findings.append(unknown_finding(("spec", "vxlanMode"), "vxlanMode"))
        elif vxlan is not MISSING and vxlan != "Never":
            findings.append(Finding("spec.vxlanMode", f"vxlanMode is {show(vxlan)}; set vxlanMode: Never"))
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
                findings.append(unknown_finding(p_path, "the pool encapsulation"))
            elif encapsulation != "IPIP" and not (encapsulation is MISSING and kind.patch) and not _is_ipv6_pool(pool):
                shown = "missing" if encapsulation is MISSING else show(encapsulation)
                findings.append(
                    Finding(fmt_path((*p_path, "encapsulation")), f"encapsulation is {shown}; set encapsulation: IPIP")
                )
    return findings


def _world_sources(rule: Any) -> Any:
    sources = dig(rule, ("sourceIps",))
    if sources is UNKNOWN:
        return UNKNOWN
    world = []
    for _, source in items(sources):
        source = unwrap(source)
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
            findings.append(unknown_finding(r_path, "the firewall rule"))
            continue
        direction, protocol = _lower(dig(rule, ("direction",))), _lower(dig(rule, ("protocol",)))
        if direction is UNKNOWN or protocol is UNKNOWN:
            findings.append(unknown_finding(r_path, "the rule's direction/protocol"))
            continue
        if direction != "in" or protocol != "tcp":
            continue
        port = dig(rule, ("port",))
        if port is UNKNOWN:
            findings.append(unknown_finding((*r_path, "port"), "the rule's port"))
            continue
        span = _port_range(port)
        hits = [p for p in admin_ports if span and span[0] <= p <= span[1]]
        if not hits:
            continue
        world = _world_sources(rule)
        if world is UNKNOWN:
            findings.append(unknown_finding((*r_path, "sourceIps"), "the rule's sourceIps"))
        elif world:
            findings.append(
                Finding(
                    fmt_path((*r_path, "sourceIps")),
                    f"tcp {show(port)} (admin port {show_all(hits)}) is open to {', '.join(world)}; "
                    "restrict sourceIps to the operator/CI addresses or a bastion",
                )
            )
    return findings
