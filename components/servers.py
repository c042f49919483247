"""The Hetzner servers: SSH keys, spread placement groups and one server per planned node."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud

from keybuzz.config import ClusterConfig, Node
from keybuzz.hetzner import node_labels, placement_group_key, protection
from keybuzz.ssh_keys import key_resource_names


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
        # Named after the fingerprint: adding, removing or reordering keys touches only that key, and
        # a rotation never reuses a name (Hetzner: names and public keys are unique per project).
        keys = [
            hcloud.SshKey(
                resource_name,
                name=hetzner_name,
                public_key=key,
                opts=pulumi.ResourceOptions.merge(
                    child,
                    pulumi.ResourceOptions(
                        # Stacks deployed before keys were named by fingerprint: take over key N in place.
                        aliases=[pulumi.Alias(name=f"{name}-key-{i + 1}")],
                        # A public key is unique per project: never create the new object before the old is gone.
                        delete_before_replace=True,
                    ),
                ),
            )
            for i, (resource_name, hetzner_name, key) in enumerate(
                key_resource_names(cfg.cluster_name, name, cfg.ssh_public_keys)
            )
        ]
        shield = protection(cfg)
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
                delete_protection=shield.delete_protection,
                rebuild_protection=shield.rebuild_protection,
                # A removed node's server gets an ACPI shutdown (K3s and etcd stop cleanly) before deletion.
                shutdown_before_deletion=True,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # The subnet must exist before a server can be attached to it (hcloud API).
                    depends_on=[subnet, *after],
                    protect=shield.protect,
                    # Both are force-new or disruptive in the provider. serverType: a hard poweroff with
                    # upgrade_disk true; keybuzz.resize.ServerTypeChange does it gracefully, after a drain.
                    # sshKeys: force-new (every server replaced); running nodes get keys through SSH
                    # (components/authorized_keys.py). Not for a node being replaced (`bin/deploy <stack>
                    # replace`, keybuzz/replace.py): the engine would create it with the ignored fields'
                    # first recorded values (pulumi PR 2657), an old type and possibly deleted key ids.
                    ignore_changes=[] if node.name in cfg.replace_nodes else ["serverType", "sshKeys"],
                    # Hetzner refuses a second server with the same name or private IP, so a replacement
                    # can only be delete-first. The engine then first deletes every dependent that would be
                    # replaced with it (pulumi step_generator.go, calculateDependentReplacements), then the
                    # server, then creates it, one step after the other (deployment_executor.go,
                    # ExecuteSerial): the node's retire step (its triggers hold the server id) goes first,
                    # and its delete drains the node and removes its Node and etcd member.
                    delete_before_replace=True,
                ),
            )
            self.servers.append(ServerHandle(node=node, server=server, public_ip=server.ipv4_address))
        self.register_outputs({})
