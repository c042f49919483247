"""The Hetzner Load Balancer in front of the K3s servers' API: private by default, public on request.

Why private by default: Cloud Firewalls do not apply to load balancers, so a public 6443 service
opens the API to the world past adminCidrs (see keybuzz/hetzner.py, ``api_load_balancer_plan``).
With ``apiLoadBalancer.public`` the public interface is switched on (an in-place update of the
network attachment); the same TCP 6443 service then answers on the LB's public IPv4 too.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_hcloud as hcloud

from components.servers import ServerHandle
from keybuzz.config import ClusterConfig
from keybuzz.hetzner import ApiLoadBalancerPlan, protection
from keybuzz.lb_public import LoadBalancerPublicInterface


class ApiLoadBalancer(pulumi.ComponentResource):
    """A TCP 6443 service, one private-IP target per K3s server, health-checked on the API port."""

    load_balancer: hcloud.LoadBalancer
    attachment: hcloud.LoadBalancerNetwork
    public_interface: LoadBalancerPublicInterface
    service: hcloud.LoadBalancerService
    targets: list[hcloud.LoadBalancerTarget]
    private_ip: str
    public_ip: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        plan: ApiLoadBalancerPlan,
        subnet: hcloud.NetworkSubnet,
        servers: Sequence[ServerHandle],
        after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``after``: what must pass before anything is created (the promotion gate, the stack guard)."""
        super().__init__("keybuzz:hetzner:ApiLoadBalancer", name, None, opts)
        shield = protection(cfg)
        self.load_balancer = hcloud.LoadBalancer(
            name,
            name=plan.name,
            load_balancer_type=plan.load_balancer_type,
            location=plan.location,
            algorithm=hcloud.LoadBalancerAlgorithmArgs(type=plan.algorithm),
            labels={"cluster": cfg.cluster_name, "role": "api", "stack": cfg.stack},
            delete_protection=shield.delete_protection,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after), protect=shield.protect),
        )
        lb_id = self.load_balancer.id
        self.attachment = hcloud.LoadBalancerNetwork(
            f"{name}-network",
            load_balancer_id=lb_id.apply(int),
            subnet_id=subnet.id,
            ip=plan.private_ip,
            enable_public_interface=plan.public_interface,
            # ForceNew in the provider: a change would replace (detach) the attachment. Creation
            # takes the configured value; later flips go through ``public_interface`` below.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["enablePublicInterface"]),
        )
        self.public_interface = LoadBalancerPublicInterface(
            f"{name}-public-interface",
            load_balancer_id=lb_id,
            enabled=plan.public_interface,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.attachment]),
        )
        self.service = hcloud.LoadBalancerService(
            f"{name}-service",
            load_balancer_id=lb_id,
            protocol="tcp",
            listen_port=plan.listen_port,
            destination_port=plan.destination_port,
            health_check=hcloud.LoadBalancerServiceHealthCheckArgs(**plan.health_check),
            opts=pulumi.ResourceOptions(parent=self),
        )
        by_name = {h.node.name: h for h in servers}
        self.targets = [
            hcloud.LoadBalancerTarget(
                f"{name}-target-{node_name}",
                load_balancer_id=lb_id.apply(int),
                type="server",
                server_id=by_name[node_name].server.id.apply(int),
                use_private_ip=True,
                # A private-IP target needs the load balancer on the network first (hcloud API).
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.attachment]),
            )
            for node_name in plan.targets
        ]
        self.private_ip = plan.private_ip
        self.public_ip = self.load_balancer.ipv4 if plan.public_interface else None
        self.register_outputs({"private_ip": self.private_ip, "public_ip": self.public_ip})
