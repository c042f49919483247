"""Calico in IPIP mode on K3s over a Hetzner private network: the values, decided as plain data.

Nothing here talks to a cluster or to Pulumi. The component that installs Calico turns these dicts
into a tigera-operator Helm release, an ``Installation`` and an ``IPPool`` patch; the tests in
``tests/calico`` hold every dict to Calico's own CRD schemas (v3.31.7 / operator v1.40.15).
"""

from __future__ import annotations

import ipaddress
from typing import Any

# Hetzner Cloud Networks carry 1450-byte frames (docs.hetzner.com/cloud/networks, architecture).
HETZNER_PRIVATE_NETWORK_MTU = 1450

# Per-packet encapsulation overhead, from the Calico MTU guide (docs.tigera.io/calico/latest/networking/
# configuring/mtu). Only IPIP is used; the others are here so nobody re-derives them wrongly.
IPIP_OVERHEAD_BYTES = 20
VXLAN_OVERHEAD_BYTES = 50
WIREGUARD_OVERHEAD_BYTES = 60

# The smallest pod MTU we accept as an override: the IPv6 minimum link MTU (RFC 8200, section 5).
# Linux drops IPv6 from an interface below it, and nothing on this network needs less.
MIN_POD_MTU = 1280

# Calico's default per-node block for IPv4 (a /26 = 64 pod addresses per block).
BLOCK_SIZE = 26

# The name the operator gives the single IPv4 pool it creates from the Installation
# (tigera/operator pkg/controller/ippool/defaults.go: defaultPoolName). We set it explicitly anyway.
DEFAULT_POOL_NAME = "default-ipv4-ippool"

# What tigera-operator v1.40 fills into each IPv4 Installation pool when unset, in its order
# (pkg/controller/ippool/defaults.go: AllowedUses [Workload, Tunnel]; DisableNewAllocations false;
# AssignmentMode crdv1.Automatic = "Automatic").
POOL_DEFAULTS_FROM_OPERATOR: dict[str, Any] = {
    "allowedUses": ["Workload", "Tunnel"],
    "disableNewAllocations": False,
    "assignmentMode": "Automatic",
}

# Calico release, and the tigera-operator chart that installs it. The chart version is the Calico
# version with its leading "v" (projectcalico/calico release v3.31.7 ships tigera-operator-v3.31.7.tgz;
# operator v1.40.15 is the operator release for Calico v3.31.7). The CRD schemas the tests use come
# from that operator tag.
CALICO_VERSION = "v3.31.7"
TIGERA_OPERATOR_VERSION = "v1.40.15"
TIGERA_OPERATOR_CHART = "tigera-operator"
TIGERA_OPERATOR_CHART_REPO = "https://docs.tigera.io/calico/charts"
TIGERA_OPERATOR_CHART_VERSION = CALICO_VERSION
TIGERA_OPERATOR_NAMESPACE = "tigera-operator"


def pool_mtu(network_mtu: int | None = None, overhead: int | None = None) -> int:
    """The pod MTU that fits one IPIP header inside the private network's MTU.

    Defaults are read at call time, so a different network MTU flows through without a code change.
    """
    if network_mtu is None:
        network_mtu = HETZNER_PRIVATE_NETWORK_MTU
    if overhead is None:
        overhead = IPIP_OVERHEAD_BYTES
    return network_mtu - overhead


def validate_mtu_override(value: object, network_mtu: int | None = None, overhead: int | None = None) -> int:
    """Return ``value`` if it is a usable pod MTU, else raise ValueError saying what is allowed.

    An override may only go down: above ``network_mtu - overhead`` an IPIP packet no longer fits in
    one private-network frame, which shows up as a black hole for large packets, not as an error.
    """
    if network_mtu is None:
        network_mtu = HETZNER_PRIVATE_NETWORK_MTU
    if overhead is None:
        overhead = IPIP_OVERHEAD_BYTES
    ceiling = pool_mtu(network_mtu, overhead)
    allowed = (
        f"allowed: an integer from {MIN_POD_MTU} to {ceiling} "
        f"(network MTU {network_mtu} minus {overhead} bytes of IPIP header)"
    )
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"MTU override {value!r} is not an integer; {allowed}")
    if not MIN_POD_MTU <= value <= ceiling:
        raise ValueError(f"MTU override {value} is out of range; {allowed}")
    return value


def _ipv4_network(cidr: str, what: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as err:
        raise ValueError(f"{what} {cidr!r} is not a network CIDR: {err}") from err
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"{what} {cidr!r} is not IPv4; IPIP pools here are IPv4 only")
    return network


def _check_cidrs(pod_cidr: str, subnet_cidr: str) -> None:
    pods = _ipv4_network(pod_cidr, "pod CIDR")
    subnet = _ipv4_network(subnet_cidr, "subnet CIDR")
    if pods.prefixlen > BLOCK_SIZE:
        raise ValueError(f"pod CIDR {pod_cidr} is smaller than one /{BLOCK_SIZE} block")
    if pods.overlaps(subnet):
        raise ValueError(f"pod CIDR {pod_cidr} overlaps the node subnet {subnet_cidr}")


def render_installation(pod_cidr: str, subnet_cidr: str, mtu: int) -> dict[str, Any]:
    """The operator ``Installation`` for IPIP over the private network on K3s.

    ``pod_cidr`` must equal K3s's ``cluster-cidr``; ``subnet_cidr`` is the Hetzner private subnet the
    nodes' private NICs sit in; ``mtu`` is ``pool_mtu()`` or a validated override.
    """
    _check_cidrs(pod_cidr, subnet_cidr)
    mtu = validate_mtu_override(mtu)
    return {
        "apiVersion": "operator.tigera.io/v1",
        "kind": "Installation",
        # The operator only reconciles an Installation named "default".
        "metadata": {"name": "default"},
        "spec": {
            # No kubernetesProvider: the enum has no K3s and "" already means "detect"; naming
            # another provider (e.g. RKE2) would apply that provider's paths and settings.
            # Calico CNI and Calico IPAM, stated rather than auto-detected. No binDir/confDir: with
            # flannel-backend none, K3s's containerd uses /opt/cni/bin and /etc/cni/net.d, which are
            # the operator's defaults for a non-GKE, non-OpenShift provider.
            "cni": {"type": "Calico", "ipam": {"type": "Calico"}},
            # The tigera-operator chart (3.31) turns the CSI driver off by default; our own
            # Installation replaces the chart's, so say the same thing here. It only serves
            # application-layer policy, which this cluster does not use.
            "kubeletVolumePluginPath": "None",
            "calicoNetwork": {
                # IPIP routes are learned over BGP (BIRD); the operator rejects IPIP without it.
                "bgp": "Enabled",
                "ipPools": [
                    {
                        "name": DEFAULT_POOL_NAME,
                        "cidr": pod_cidr,
                        "encapsulation": "IPIP",
                        "natOutgoing": "Enabled",
                        "blockSize": BLOCK_SIZE,
                        "nodeSelector": "all()",
                        # The operator merge-patches these defaults into every pool it reconciles
                        # (tigera/operator pkg/controller/ippool/defaults.go, fillDefaults). ipPools has
                        # no list type, so the list is atomic: rendering the same values makes our
                        # server-side apply co-own it instead of conflicting with the operator.
                        **POOL_DEFAULTS_FROM_OPERATOR,
                    }
                ],
                "mtu": mtu,
                # first-found can pick the public NIC; the node address must be the private one.
                "nodeAddressAutodetectionV4": {"cidrs": [subnet_cidr]},
                # K3s docs ask for allow_ip_forwarding in Calico's CNI config; this is that setting.
                "containerIPForwarding": "Enabled",
            },
        },
    }


def render_ippool_patch(pod_cidr: str) -> dict[str, Any]:
    """The fields of the operator-created pool this program keeps asserting after install.

    With the Calico API server off (see ``tigera_operator_values``) the operator writes the pool
    once and never updates it, so later changes go through this patch. The values equal what the
    operator renders from the Installation's pool (IPIP -> ipipMode Always, vxlanMode Never;
    natOutgoing Enabled -> true), so the two never disagree. ``cidr`` is required by the CRD and
    cannot be changed on a live pool; sending it unchanged makes a mismatch a visible conflict.
    ``blockSize`` is left out on purpose: it is fixed at creation.
    """
    _ipv4_network(pod_cidr, "pod CIDR")
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "IPPool",
        "metadata": {"name": DEFAULT_POOL_NAME},
        "spec": {
            "cidr": pod_cidr,
            "ipipMode": "Always",
            "vxlanMode": "Never",
            "natOutgoing": True,
            "nodeSelector": "all()",
        },
    }


def tigera_operator_values() -> dict[str, Any]:
    """Helm values for the tigera-operator chart: the operator and its CRDs, nothing else.

    Keys are from projectcalico/calico charts/tigera-operator/values.yaml (3.31 line).
    """
    return {
        # The program declares the Installation itself (render_installation).
        "installation": {"enabled": False},
        # Off: the program edits pools through crd.projectcalico.org/v1, which needs no API server;
        # and with the API server up, the operator would re-apply the Installation's pools over any
        # out-of-band change (tigera/operator pool_controller.go).
        "apiServer": {"enabled": False},
        # Off: flow-log aggregator and UI added in 3.30, on by default; not needed to route pods.
        "goldmane": {"enabled": False},
        "whisker": {"enabled": False},
    }
