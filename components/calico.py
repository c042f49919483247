"""Calico as the pod network: tigera-operator, the Installation (IPIP pool) and the pool kept in line."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from keybuzz import calico
from keybuzz.config import ClusterConfig

# Calico pulls its images and rolls calico-node out to every node before the Installation is Ready.
READY_TIMEOUT_SECONDS = 600


def pod_mtu(cfg: ClusterConfig) -> int:
    """The pool MTU: derived from the private network MTU, or the validated override."""
    return cfg.calico_mtu or calico.pool_mtu()


class CalicoNetwork(pulumi.ComponentResource):
    """Installs Calico with one IPIP pool matching K3s's cluster-cidr; ``ready`` gates pod networking.

    ``ready`` is the Installation, which Pulumi waits on until its ``Ready`` condition is True
    (the operator sets it once calico-node is Ready on every node), for at most 10 minutes.
    """

    operator: k8s.helm.v3.Release
    installation: k8s.apiextensions.CustomResource
    pool: k8s.apiextensions.CustomResourcePatch
    ready: pulumi.Resource
    mtu: int

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        provider: k8s.Provider,
        cluster_ready: list[pulumi.Resource],
        run_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keybuzz:calico:CalicoNetwork", name, None, opts)
        self.mtu = pod_mtu(cfg)
        installation = calico.render_installation(cfg.pod_cidr, cfg.subnet_cidr, self.mtu)
        pool = calico.render_ippool_patch(cfg.pod_cidr)

        self.operator = k8s.helm.v3.Release(
            f"{name}-tigera-operator",
            name="tigera-operator",
            chart=calico.TIGERA_OPERATOR_CHART,
            version=cfg.calico_version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=calico.TIGERA_OPERATOR_CHART_REPO),
            namespace=calico.TIGERA_OPERATOR_NAMESPACE,
            create_namespace=True,
            values=calico.tigera_operator_values(),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=cluster_ready),
        )
        self.installation = k8s.apiextensions.CustomResource(
            f"{name}-installation",
            api_version=installation["apiVersion"],
            kind=installation["kind"],
            metadata={
                **installation["metadata"],
                "annotations": {
                    "pulumi.com/waitFor": "condition=Ready",
                    "pulumi.com/timeoutSeconds": str(READY_TIMEOUT_SECONDS),
                },
            },
            spec=installation["spec"],
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.operator, *cluster_ready]),
        )
        self.ready = self.installation
        # The operator never edits a pool after creating it (API server off), so the program keeps
        # ipipMode/vxlanMode/natOutgoing asserted: server-side apply with force, re-applied on every
        # `pulumi up` (the run id changes), which puts back whatever someone changed by hand.
        self.pool = k8s.apiextensions.CustomResourcePatch(
            f"{name}-ippool",
            api_version=pool["apiVersion"],
            kind=pool["kind"],
            metadata={
                **pool["metadata"],
                "annotations": {"pulumi.com/patchForce": "true", "keybuzz.io/asserted-by-run": run_id},
            },
            spec=pool["spec"],
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.installation]),
        )
        self.register_outputs({"mtu": self.mtu})
