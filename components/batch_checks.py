"""The overlay checks between rollout batches, as resources: barrier(batch i) -> check(batch i) -> drains of batch i+1.

What runs and when is decided in keybuzz/verify/rollout_check.py; where each batch sits in the
rollout comes from keybuzz/rollout.py. K3sCluster calls ``after_batch`` with the batch's barrier
once the batch's nodes are declared (``K3sCluster._after_batch``) and puts the returned check in the
next batch's drain ``depends_on``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from components.calico import pod_mtu
from keybuzz import ingress
from keybuzz.config import ClusterConfig
from keybuzz.verify import fixture, providers
from keybuzz.verify.rollout_check import BatchOverlayCheck, BatchPosition, batch_positions


def enabled(cfg: ClusterConfig) -> bool:
    """Checks between batches need the probe fixture, which only the full verification deploys."""
    return cfg.verify.enabled and cfg.verify.between_batches


class BatchChecks:
    """Declares one ``BatchOverlayCheck`` per rollout batch, children of the K3s component.

    ``kubeconfig``: the admin kubeconfig (a secret Output; K3sCluster hands over a deferred one,
    since it reads the file only after the first server is up). ``fingerprints``: each node's
    rollout fingerprint, the check's diff key.
    """

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        plan: Sequence[object],
        kubeconfig: pulumi.Input[str],
        fingerprints: Mapping[str, pulumi.Output[str]],
        parent: pulumi.Resource,
    ) -> None:
        self._name, self._cfg, self._parent = name, cfg, parent
        self._fingerprints = fingerprints
        self.positions: dict[int, BatchPosition] = batch_positions(plan)
        edge = ingress.edge_plan(cfg.ingress.controller, cfg.ingress.migration)
        self._args = providers.OverlayCheckArgs(
            kubeconfig=kubeconfig,
            nodes=providers.nodes_input((n.name, n.private_ip) for n in cfg.nodes),
            pod_cidr=cfg.pod_cidr,
            subnet_cidr=cfg.subnet_cidr,
            pool_mtu=pod_mtu(cfg),
            timeout_seconds=cfg.verify.timeout_seconds,
            external_urls=cfg.verify.external_urls,
            probe_namespace=fixture.NAMESPACE,
            ingress_host=cfg.verify.ingress_host,
            ingress_controller=edge.probe_controller,
            ingress_port=edge.probe_port,
            # Not the run id of the full checks: this check runs when its batch changed, not every run.
            run_id="",
        )
        self.checks: dict[int, BatchOverlayCheck] = {}

    def after_batch(self, batch: int, done: Sequence[pulumi.Resource]) -> BatchOverlayCheck:
        """The check of ``batch``, after ``done`` (the batch's barrier: its one node's ready, or the
        barrier command that waits for each ready of the batch)."""
        position = self.positions[batch]
        props = {
            **self._args.to_props(),
            "batch": position.label,
            "focus": list(position.focus),
            "fingerprints": {n: self._fingerprints[n] for n in position.focus},
            "changed": list(position.changed),
            "untouched": list(position.untouched),
        }
        check = BatchOverlayCheck(
            f"{self._name}-batch-{batch}",
            props,
            opts=pulumi.ResourceOptions(parent=self._parent, depends_on=list(done)),
        )
        self.checks[batch] = check
        return check
