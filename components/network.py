"""The private Cloud Network every node talks over (K3s, etcd, Calico IPIP and BGP)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_hcloud as hcloud

from keybuzz.config import ClusterConfig
from keybuzz.hetzner import protection


class PrivateNetwork(pulumi.ComponentResource):
    """A Hetzner Cloud Network and the one subnet the nodes live in."""

    network: hcloud.Network
    subnet: hcloud.NetworkSubnet
    network_id: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``after``: what must pass before anything is created (the promotion gate)."""
        super().__init__("keybuzz:hetzner:PrivateNetwork", name, None, opts)
        shield = protection(cfg)
        child = pulumi.ResourceOptions(parent=self, protect=shield.protect)
        self.network = hcloud.Network(
            f"{name}-network",
            name=cfg.cluster_name,
            ip_range=cfg.network_cidr,
            labels={"cluster": cfg.cluster_name},
            delete_protection=shield.delete_protection,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after), protect=shield.protect),
        )
        self.network_id = self.network.id.apply(int)
        self.subnet = hcloud.NetworkSubnet(
            f"{name}-subnet",
            network_id=self.network_id,
            type="cloud",
            network_zone=cfg.network_zone,
            ip_range=cfg.subnet_cidr,
            opts=child,
        )
        self.register_outputs({"network_id": self.network_id})
