"""The Hetzner servers: SSH keys, spread placement groups and one server per planned node."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud

from keybuzz.config import ClusterConfig, Node
from keybuzz.hetzner import node_labels, placement_group_key


@dataclass
class ServerHandle:
    """A created server with what later steps need: its planned node and its public address."""

    node: Node
    server: hcloud.Server
    public_ip: pulumi.Output[str]


class NodeServers(pulumi.ComponentResource):
    """Every node of the cluster, each with its fixed private IP, behind the firewall from creation."""

    servers: list[ServerHandle]

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        network_id: pulumi.Input[int],
        subnet: pulumi.Resource,
        firewall_id: pulumi.Input[int],
        after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``after``: what must pass before anything is created (the promotion gate)."""
        super().__init__("keybuzz:hetzner:NodeServers", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(after))
        keys = [
            hcloud.SshKey(f"{name}-key-{i + 1}", name=f"{cfg.cluster_name}-{i + 1}", public_key=key, opts=child)
            for i, key in enumerate(cfg.ssh_public_keys)
        ]
        groups: dict[str, hcloud.PlacementGroup] = {}
        self.servers = []
        for node in cfg.nodes:
            group_key = placement_group_key(node)
            if group_key not in groups:
                groups[group_key] = hcloud.PlacementGroup(
                    f"{name}-spread-{group_key}",
                    name=f"{cfg.cluster_name}-{group_key}",
                    type="spread",
                    labels={"cluster": cfg.cluster_name},
                    opts=child,
                )
            server = hcloud.Server(
                node.name,
                name=node.name,
                server_type=node.server_type,
                image=cfg.image,
                location=cfg.location,
                ssh_keys=[k.id for k in keys],
                placement_group_id=groups[group_key].id.apply(int),
                firewall_ids=[firewall_id],
                # alias_ips=[] stops the provider from detaching/re-attaching the network on every
                # update (terraform-provider-hcloud issue 650).
                networks=[hcloud.ServerNetworkArgs(network_id=network_id, ip=node.private_ip, alias_ips=[])],
                public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
                labels=node_labels(cfg, node),
                # The subnet must exist before a server can be attached to it (hcloud API).
                # serverType: the provider's in-place change is a hard poweroff with upgrade_disk true;
                # keybuzz.resize.ServerTypeChange does it gracefully, after a drain.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[subnet], ignore_changes=["serverType"]),
            )
            self.servers.append(ServerHandle(node=node, server=server, public_ip=server.ipv4_address))
        self.register_outputs({})
