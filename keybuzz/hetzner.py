"""Hetzner-side decisions: firewall rules and placement, as data.

Why there is no rule for UDP 8472 (Flannel VXLAN) or any overlay port: node-to-node traffic
(Calico IPIP = IP protocol 4, BGP = TCP 179, K3s supervisor/etcd) runs over the private Cloud
Network, which Cloud Firewalls do not filter; and a Cloud Firewall rule can only name tcp, udp,
icmp, esp and gre, so it could not allow protocol 4 anyway. The firewall guards the public NIC.
"""

from __future__ import annotations

from typing import Any

from keybuzz.config import WORLD_CIDRS, ClusterConfig, Node

WORLD = list(WORLD_CIDRS)
SSH_PORT = "22"
KUBE_API_PORT = "6443"
# Hetzner spread placement groups hold at most 10 servers.
PLACEMENT_GROUP_SIZE = 10


def firewall_rules(admin_cidrs: tuple[str, ...]) -> list[dict[str, Any]]:
    """Inbound rules for the public interface; no outbound rule, so outbound stays open."""
    admin = list(admin_cidrs)
    rules = []
    if admin:
        rules += [
            _tcp(SSH_PORT, admin, "SSH for operators and Pulumi (remote commands)"),
            _tcp(KUBE_API_PORT, admin, "Kubernetes API for operators and Pulumi"),
        ]
    rules += [
        _tcp("80", WORLD, "HTTP to ingress-nginx (hostNetwork DaemonSet)"),
        _tcp("443", WORLD, "HTTPS to ingress-nginx (hostNetwork DaemonSet)"),
        {"direction": "in", "protocol": "icmp", "source_ips": WORLD, "description": "ICMP (ping, PMTU discovery)"},
    ]
    return rules


def _tcp(port: str, sources: list[str], description: str) -> dict[str, Any]:
    return {"direction": "in", "protocol": "tcp", "port": port, "source_ips": sources, "description": description}


def placement_group_key(node: Node) -> str:
    """Spread group of a node: one per pool, split in tens (Hetzner's limit per spread group)."""
    return f"{node.pool}-{node.index // PLACEMENT_GROUP_SIZE + 1}"


def node_labels(cfg: ClusterConfig, node: Node) -> dict[str, str]:
    """Hetzner labels: let operators and label selectors find a cluster's servers by role and pool."""
    return {"cluster": cfg.cluster_name, "role": node.role, "pool": node.pool, "stack": cfg.stack}
