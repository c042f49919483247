"""The Cloud Firewall on every node's public interface (see keybuzz/hetzner.py for why no overlay port)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_hcloud as hcloud

from keybuzz.config import ClusterConfig
from keybuzz.hetzner import firewall_rules, protection


class NodeFirewall(pulumi.ComponentResource):
    """SSH and the API from adminCidrs only, HTTP(S) and ICMP from anywhere, nothing else."""

    firewall: hcloud.Firewall
    firewall_id: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``after``: what must pass before anything is created (the promotion gate)."""
        super().__init__("keybuzz:hetzner:NodeFirewall", name, None, opts)
        self.firewall = hcloud.Firewall(
            name,
            name=f"{cfg.cluster_name}-nodes",
            rules=[hcloud.FirewallRuleArgs(**rule) for rule in firewall_rules(cfg.admin_cidrs)],
            labels={"cluster": cfg.cluster_name},
            # Hetzner has no delete protection for firewalls: Pulumi's protect only.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after), protect=protection(cfg).protect),
        )
        self.firewall_id = self.firewall.id.apply(int)
        self.register_outputs({"firewall_id": self.firewall_id})
