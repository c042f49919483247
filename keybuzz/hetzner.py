"""Hetzner-side decisions: firewall rules and placement, as data.

Why there is no rule for UDP 8472 (Flannel VXLAN) or any overlay port: node-to-node traffic
(Calico IPIP = IP protocol 4, BGP = TCP 179, K3s supervisor/etcd) runs over the private Cloud
Network, which Cloud Firewalls do not filter; and a Cloud Firewall rule can only name tcp, udp,
icmp, esp and gre, so it could not allow protocol 4 anyway. The firewall guards the public NIC.
"""

from __future__ import annotations

from dataclasses import dataclass
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


# --- protection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protection:
    """What ``deletionProtection`` turns on.

    ``protect``: Pulumi refuses to delete the resource (``up`` that would remove or replace it, and
    ``destroy``). The Hetzner flags also stop deletion from the console, the CLI or another tool.
    Hetzner has delete protection on servers, networks, load balancers (and volumes, IPs), not on
    firewalls or subnets: those get Pulumi's ``protect`` only. Servers take ``rebuild_protection``
    too (Hetzner requires it equal to ``delete_protection``). All flags change in place, so turning
    the key off is an update, never a replacement.
    """

    protect: bool
    delete_protection: bool
    rebuild_protection: bool


def protection(cfg: ClusterConfig) -> Protection:
    on = cfg.deletion_protection
    return Protection(protect=on, delete_protection=on, rebuild_protection=on)


# --- the API load balancer -----------------------------------------------------------------------
#
# Hetzner Cloud Firewalls do not apply to load balancers (Hetzner firewall FAQ, "Can Firewalls be
# applied to my Hetzner Cloud Load Balancers?"; quoted in hcloud-cloud-controller-manager issue 286
# and kube-hetzner PR 1097). A public 6443 service would therefore open the Kubernetes API to the
# world, bypassing adminCidrs. So by default the load balancer has no public interface: it is the
# joining nodes' registration address on the private network, and operators and Pulumi keep reaching
# the API through the first server's public IP, where the firewall admits adminCidrs only.
# ``apiLoadBalancer.public: true`` is the operator's explicit choice of the other trade-off: the
# public interface on (the one TCP 6443 service then listens on it too), and the kubeconfig, the
# provider and ``apiServer`` use its public IPv4, so no single server is the API address; the API is
# then reachable from anywhere, protected by K3s TLS and client authentication only.


@dataclass(frozen=True)
class ApiLoadBalancerPlan:
    name: str
    load_balancer_type: str
    location: str
    private_ip: str
    public_interface: bool
    listen_port: int
    destination_port: int
    health_check: dict[str, Any]
    targets: tuple[str, ...]  # node names of the K3s servers, targeted by their private IPs
    algorithm: str = "round_robin"


def api_load_balancer_plan(cfg: ClusterConfig) -> ApiLoadBalancerPlan | None:
    """The load balancer in front of the K3s servers' API, or None when ``apiLoadBalancer`` is off."""
    if not cfg.api_lb_enabled:
        return None
    port = int(KUBE_API_PORT)
    return ApiLoadBalancerPlan(
        name=f"{cfg.cluster_name}-api",
        load_balancer_type=cfg.api_load_balancer.type,
        location=cfg.location,
        private_ip=cfg.api_lb_private_ip,
        public_interface=cfg.api_lb_public,
        listen_port=port,
        destination_port=port,
        # TCP: the LB passes TLS through (each server presents its own certificate with the LB IP in
        # its SANs); a server whose port stops answering leaves the pool within ~30 s.
        health_check={"protocol": "tcp", "port": port, "interval": 10, "timeout": 5, "retries": 3},
        targets=tuple(n.name for n in cfg.servers),
    )
