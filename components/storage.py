"""Hetzner Volumes for the cluster's workloads: the hcloud-csi release, its token Secret, the StorageClass.

What is decided (chart values, class, which class is default) lives in keybuzz/storage.py.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from keybuzz import storage
from keybuzz.config import ClusterConfig, Secrets


class ClusterStorage(pulumi.ComponentResource):
    """hcloud-csi after Calico (its controller needs pod networking), with the token as a Kubernetes Secret.

    The token is the Pulumi secret the program holds (``Secrets.hcloud_token``, from HCLOUD_TOKEN):
    it is stored encrypted in the state and reaches the cluster only as Secret ``kube-system/hcloud``.
    """

    token_secret: k8s.core.v1.Secret
    release: k8s.helm.v3.Release
    storage_class: k8s.storage.v1.StorageClass

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        secrets: Secrets,
        provider: k8s.Provider,
        after: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keybuzz:storage:ClusterStorage", name, None, opts)
        if secrets.hcloud_token is None:
            raise pulumi.RunError(
                "HCLOUD_TOKEN is not set: the CSI driver's Secret needs the Hetzner token (bin/deploy asks for it)"
            )
        on_cluster = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=after)
        self.token_secret = k8s.core.v1.Secret(
            f"{name}-hcloud-token",
            metadata={"name": storage.TOKEN_SECRET_NAME, "namespace": storage.CSI_NAMESPACE},
            string_data={storage.TOKEN_SECRET_KEY: pulumi.Output.secret(secrets.hcloud_token)},
            opts=pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])
            ),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-hcloud-csi",
            name=storage.CSI_CHART,
            chart=storage.CSI_CHART,
            version=cfg.storage.csi_version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=storage.CSI_CHART_REPO),
            namespace=storage.CSI_NAMESPACE,
            values=storage.csi_values(cfg.location),
            opts=pulumi.ResourceOptions(
                parent=self, provider=provider, depends_on=[*after, self.token_secret]
            ),
        )
        sc = storage.storage_class(cfg.storage, cfg.location)
        self.storage_class = k8s.storage.v1.StorageClass(
            f"{name}-class",
            metadata=sc["metadata"],
            provisioner=sc["provisioner"],
            volume_binding_mode=sc["volume_binding_mode"],
            allow_volume_expansion=sc["allow_volume_expansion"],
            reclaim_policy=sc["reclaim_policy"],
            allowed_topologies=sc["allowed_topologies"],
            # A StorageClass's policy and topology are immutable: a change replaces it (existing volumes
            # keep the policy they were created with); its fixed name needs the old one gone first.
            opts=pulumi.ResourceOptions(
                parent=self, provider=provider, depends_on=[self.release], delete_before_replace=True
            ),
        )
        self.register_outputs({})
