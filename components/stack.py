"""The whole cluster, wired in dependency order; returns the stack outputs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from components.authorized_keys import AuthorizedKeys
from components.calico import CalicoNetwork
from components.firewall import NodeFirewall
from components.ingress import Edge
from components.k3s import K3sCluster
from components.load_balancer import ApiLoadBalancer
from components.network import PrivateNetwork
from components.servers import NodeServers
from components.storage import ClusterStorage
from components.verification import OverlayVerification
from keybuzz import promotion, sdk_scale
from keybuzz.config import ClusterConfig, Secrets
from keybuzz.guards import DeployedStackGuard, deployed_stack_values
from keybuzz.hetzner import api_load_balancer_plan
from keybuzz.promotion import Commit


@dataclass
class Built:
    """The declared components (for tests and tools) and the stack outputs (for __main__)."""

    servers: NodeServers
    k3s: K3sCluster
    calico: CalicoNetwork
    ingress: Edge
    run_id: str
    gate: promotion.PromotionGate | None
    verification: OverlayVerification | None
    exports: dict[str, Any]
    stack_guard: DeployedStackGuard | None = None
    authorized_keys: AuthorizedKeys | None = None
    load_balancer: ApiLoadBalancer | None = None
    storage: ClusterStorage | None = None


def build(cfg: ClusterConfig, secrets: Secrets, commit: Commit) -> Built:
    """Declare every component for ``cfg``, in dependency order; ``commit`` is the program's source."""
    # Before the first resource: the SDK's cycle check, linear (keybuzz/sdk_scale.py; 500 nodes evaluate).
    sdk_scale.install()
    gate = _promotion_gate(cfg, commit)
    # Refuses, at preview, an image/location change, a K3s downgrade or a one-step key swap.
    stack_guard = DeployedStackGuard(f"{cfg.cluster_name}-deployed-stack", deployed_stack_values(cfg))
    after = [gate, stack_guard] if gate else [stack_guard]
    network = PrivateNetwork(cfg.cluster_name, cfg, after)
    firewall = NodeFirewall(f"{cfg.cluster_name}-firewall", cfg, after)
    servers = NodeServers(
        f"{cfg.cluster_name}-nodes", cfg, network.network_id, network.subnet, firewall.firewall_id, after
    )
    authorized_keys = AuthorizedKeys(f"{cfg.cluster_name}-authorized-keys", cfg, secrets, servers.servers)
    lb_plan = api_load_balancer_plan(cfg)
    load_balancer = (
        ApiLoadBalancer(f"{cfg.cluster_name}-api-lb", cfg, lb_plan, network.subnet, servers.servers, after)
        if lb_plan
        else None
    )
    cluster = K3sCluster(
        f"{cfg.cluster_name}-k3s",
        cfg,
        secrets,
        servers.servers,
        # apiLoadBalancer.public: the kubeconfig, the provider and apiServer use the LB's public IPv4.
        api_host=load_balancer.public_ip if load_balancer else None,
        join_through=[load_balancer] if load_balancer else [],
    )
    # New on every run: what is re-asserted or re-checked on every `pulumi up` keys on it.
    run_id = uuid.uuid4().hex
    calico = CalicoNetwork(f"{cfg.cluster_name}-calico", cfg, cluster.provider, cluster.joined, run_id)
    ingress = Edge(cfg, cluster.provider, calico.ready, secrets, servers.servers)
    storage = (
        ClusterStorage(f"{cfg.cluster_name}-storage", cfg, secrets, cluster.provider, [calico.ready])
        if cfg.storage is not None and cfg.storage.csi
        else None
    )
    verification = None
    if cfg.verify.enabled:
        verification = OverlayVerification(
            f"{cfg.cluster_name}-verify",
            cfg,
            cluster.provider,
            cluster.kubeconfig,
            calico.mtu,
            run_id,
            after=[calico.ready, calico.pool, *ingress.ready],
            ingress_controller=ingress.controller,
            ingress_port=ingress.probe_port,
            edge_ips=[h.public_ip for h in servers.servers],
        )
    # Set only when every check passed in this run, on a clean checkout: the promotion gate's input.
    checks_passed = verification.all_passed if verification else pulumi.Output.from_input(False)
    exports = {
        "kubeconfig": cluster.kubeconfig,
        "nodes": [
            {
                "name": h.node.name,
                "role": h.node.role,
                "pool": h.node.pool,
                "serverType": h.node.server_type,
                "privateIp": h.node.private_ip,
                "publicIp": h.public_ip,
            }
            for h in servers.servers
        ],
        "apiServer": pulumi.Output.concat("https://", cluster.api_address, ":6443"),
        "podMtu": calico.mtu,
        "verifiedCommit": checks_passed.apply(lambda ok: _verified_commit(commit, ok, cfg.verify.enabled)),
        # One object (components/verification.py): one line in a preview, not a field per check.
        "checks": verification.summary if verification else {},
    }
    return Built(
        servers=servers,
        k3s=cluster,
        calico=calico,
        ingress=ingress,
        run_id=run_id,
        gate=gate,
        verification=verification,
        exports=exports,
        stack_guard=stack_guard,
        authorized_keys=authorized_keys,
        load_balancer=load_balancer,
        storage=storage,
    )


def _verified_commit(commit: Commit, checks_passed: bool, verify_enabled: bool) -> str:
    """The export, and on an `up` that withholds it, a warning that says why (the next stage will refuse)."""
    reason = promotion.withheld_reason(commit, checks_passed, verify_enabled)
    if reason and not pulumi.runtime.is_dry_run():
        pulumi.log.warn(reason.upper().split(":", 1)[0] + ":" + reason.split(":", 1)[1])
    return promotion.verified_commit(commit, checks_passed)


def _promotion_gate(
    cfg: ClusterConfig, commit: Commit, environ: Mapping[str, str] | None = None
) -> promotion.PromotionGate | None:
    """For a stack with ``promotesFrom``: refuse (at preview) a commit the previous stage did not verify.

    The previous stage comes from bin/deploy through the environment when it is there (any backend,
    and a missing stack is the gate's own refusal), else from a StackReference.
    """
    if not cfg.promotes_from:
        return None
    environ = os.environ if environ is None else environ
    handed_over = promotion.previous_from_env(environ)
    env_override = promotion.override_from_env(environ)
    allow = cfg.allow_unverified_promotion or env_override
    # What was actually set: the variable for this run, the stack config, or both.
    source = " and ".join(
        [f"{promotion.ENV_OVERRIDE}=1 for this run"] * env_override
        + ["allowUnverifiedPromotion: true in the stack config"] * cfg.allow_unverified_promotion
    )
    if handed_over is not None:
        # Known now: refuse before any resource exists (keybuzz/promotion.py, PromotionRefused).
        decision = promotion.decide(
            cfg.stack, cfg.promotes_from, handed_over.verified, commit, allow, handed_over.missing
        )
        if not decision.allowed:
            raise promotion.PromotionRefused(decision.message)
    if handed_over is None:
        previous = pulumi.StackReference(promotion.stack_reference_name(cfg.promotes_from))
        previous_verified = previous.get_output("verifiedCommit")
        missing = False
    else:
        previous_verified = pulumi.Output.from_input(handed_over.verified)
        missing = handed_over.missing

    def warn_if_overridden(verified: str | None) -> None:
        decision = promotion.decide(cfg.stack, cfg.promotes_from, verified, commit, allow, missing)
        if decision.overridden:
            pulumi.log.warn(f"PROMOTION GATE OVERRIDDEN ({source}): {decision.message}")

    previous_verified.apply(warn_if_overridden)
    return promotion.PromotionGate(
        f"{cfg.cluster_name}-promotion-gate",
        cfg.stack,
        cfg.promotes_from,
        previous_verified,
        commit,
        allow,
        previous_missing=missing,
    )
