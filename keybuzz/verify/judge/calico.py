"""Calico health from the API alone: calico-node Ready, the IPPool, node addresses, BGP sessions."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from keybuzz.verify.judge.verdict import Failure, Verdict, path


def _condition(obj: Mapping[str, Any], kind: str) -> bool:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond.get("status") == "True"
    return False


def _same_network(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False) == ipaddress.ip_network(b, strict=False)
    except ValueError:
        return False


def judge_calico(
    expected_nodes: Sequence[str],
    api_nodes: Sequence[Mapping[str, Any]],
    calico_pods: Sequence[Mapping[str, Any]],
    ippool: Mapping[str, Any] | None,
    node_statuses: Mapping[str, Mapping[str, Any] | None],
    pod_cidr: str,
    subnet_cidr: str,
) -> Verdict:
    """calico-node Ready everywhere; the pool is IPIP Always / VXLAN Never on podCidr; every node's
    Calico address is in the private subnet; every BGP session Established."""
    failures: list[Failure] = []
    nodes = sorted(expected_nodes)
    by_name = {n.get("metadata", {}).get("name"): n for n in api_nodes}

    # Pool
    pool_name = "default-ipv4-ippool"
    if ippool is None:
        failures.append(Failure(f"IPPool {pool_name}", "not found",
                                "Calico not installed, or its default pool was renamed/deleted; "
                                "the Installation's calicoNetwork.ipPools creates it"))
    else:
        spec = ippool.get("spec", {})
        ipip = spec.get("ipipMode", "Never")
        vxlan = spec.get("vxlanMode", "Never")
        cidr = spec.get("cidr", "")
        if ipip != "Always":
            failures.append(Failure(f"IPPool {pool_name}", f"ipipMode is {ipip}, want Always",
                                    "pool not in IPIP mode: cross-node pod traffic is not encapsulated "
                                    "(Hetzner routes every private packet via the gateway, so "
                                    "CrossSubnet/Never break pod-to-pod)"))
        if vxlan not in ("Never", ""):
            failures.append(Failure(f"IPPool {pool_name}", f"vxlanMode is {vxlan}, want Never",
                                    "VXLAN enabled on the pool: a pool carries IPIP or VXLAN, not both; "
                                    "set vxlanMode: Never on the IPPool resource"))
        if not _same_network(cidr, pod_cidr):
            failures.append(Failure(f"IPPool {pool_name}", f"cidr {cidr or '(none)'} != podCidr {pod_cidr}",
                                    "pool CIDR differs from the K3s cluster-cidr: pods get addresses K3s "
                                    "and kube-proxy do not treat as pod addresses; a CIDR change is a pool "
                                    "migration (create the right pool, disable the wrong one)"))
        if spec.get("disabled"):
            failures.append(Failure(f"IPPool {pool_name}", "disabled", "pool disabled: new pods get no address"))

    # calico-node per node
    ready_pods = {}
    for pod in calico_pods:
        node = pod.get("spec", {}).get("nodeName")
        if node:
            ready_pods.setdefault(node, []).append(pod)
    ready_count = 0
    for node in nodes:
        if node not in by_name:
            failures.append(Failure(node, "Node object not found",
                                    "node never joined the cluster (K3s agent not running or wrong token)"))
            continue
        pods = ready_pods.get(node, [])
        if not pods:
            failures.append(Failure(node, "no calico-node pod",
                                    "calico-node DaemonSet not scheduled there (taints/tolerations, "
                                    "operator not reconciled); see `kubectl -n calico-system get pods -o wide`"))
        elif not any(_condition(p, "Ready") for p in pods):
            names = ", ".join(p.get("metadata", {}).get("name", "?") for p in pods)
            ns = pods[0].get("metadata", {}).get("namespace", "calico-system")
            failures.append(Failure(node, f"calico-node not Ready ({names})",
                                    "calico-node unhealthy (Felix or BIRD failing its readiness probe, "
                                    f"often no BGP peer reachable); see `kubectl -n {ns} logs {names.split(',')[0]} "
                                    "-c calico-node`"))
        else:
            ready_count += 1

    # Calico node addresses
    try:
        subnet = ipaddress.ip_network(subnet_cidr, strict=False)
    except ValueError:
        subnet = None
    ip_to_node: dict[str, str] = {}
    for node in nodes:
        api = by_name.get(node)
        if api is None:
            continue
        annotation = (api.get("metadata", {}).get("annotations") or {}).get("projectcalico.org/IPv4Address")
        if not annotation:
            failures.append(Failure(node, "no projectcalico.org/IPv4Address annotation",
                                    "calico-node has not registered this node's address (not started, or "
                                    "IP autodetection found nothing)"))
            continue
        try:
            addr = ipaddress.ip_interface(annotation).ip
        except ValueError:
            failures.append(Failure(node, f"unparsable Calico address {annotation!r}", "corrupt node annotation"))
            continue
        ip_to_node[str(addr)] = node
        if subnet is not None and addr not in subnet:
            failures.append(Failure(node, f"Calico address {addr} is outside the private subnet {subnet_cidr}",
                                    "IP autodetection picked the public NIC: BGP and IPIP then run over the "
                                    "public interface, where the Cloud Firewall drops them; pin "
                                    "nodeAddressAutodetectionV4 to the private subnet (cidrs)"))

    # BGP
    expected_peers = len(nodes) - 1
    established_total = 0
    for node in nodes:
        status = node_statuses.get(node)
        bgp = (status or {}).get("status", {}).get("bgp") if status else None
        if not bgp:
            failures.append(Failure(node, "no BGP status published",
                                    "calico-node has not filled its CalicoNodeStatus (not running on this "
                                    "node, or the object was created less than updatePeriodSeconds ago)"))
            continue
        bird = (status.get("status", {}).get("agent") or {}).get("birdV4") or {}
        if bird.get("state") and bird.get("state") != "Ready":
            failures.append(Failure(node, f"BIRD state {bird.get('state')}",
                                    "BIRD (Calico's BGP daemon) not running: calico_backend must be bird "
                                    "for IPIP"))
        established = int(bgp.get("numberEstablishedV4") or 0)
        established_total += established
        for peer in bgp.get("peersV4") or []:
            if peer.get("state") != "Established":
                peer_ip = peer.get("peerIP", "?")
                peer_node = ip_to_node.get(peer_ip, peer_ip)
                failures.append(Failure(path(node, peer_node), f"BGP session {peer.get('state', '?')}, "
                                        "not Established",
                                        "BGP TCP 179 blocked between those nodes' private IPs, or calico-node "
                                        "down on the peer; see calico-node logs on both ends"))
        not_established = int(bgp.get("numberNotEstablishedV4") or 0)
        listed = sum(1 for p in bgp.get("peersV4") or [] if p.get("state") != "Established")
        if not_established > listed:
            failures.append(Failure(node, f"{not_established} BGP sessions not Established",
                                    "BGP TCP 179 blocked between the private IPs"))
        if expected_peers > 0 and established < expected_peers and not_established == 0 and not listed:
            failures.append(Failure(node, f"{established} of {expected_peers} BGP peers Established",
                                    "node-to-node mesh incomplete: a peer's calico-node is missing or the "
                                    "BGP configuration disables the full mesh"))
    total = 4 + len(nodes) * 3
    return Verdict(
        check="calico health",
        tested=(f"calico-node Ready on {len(nodes)} nodes, IPPool {pool_name} (IPIP Always, VXLAN Never, "
                f"cidr {pod_cidr}), node addresses in {subnet_cidr}, BGP sessions Established"),
        total=total,
        failures=failures,
        unit="conditions",
        notes=[f"calico-node Ready on {ready_count}/{len(nodes)} nodes; "
               f"{established_total} BGP sessions Established (want {len(nodes) * expected_peers})"],
    )
