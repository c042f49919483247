"""ingress-nginx on every node's host network: the one place hostNetwork is allowed."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from keybuzz import ingress
from keybuzz.config import ClusterConfig


class IngressNginx(pulumi.ComponentResource):
    """The ingress controller as a hostNetwork DaemonSet behind a ClusterIP Service.

    Declared only after Calico is ready: its admission webhook and backends need pod networking.
    """

    release: k8s.helm.v3.Release

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        provider: k8s.Provider,
        calico_ready: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keybuzz:ingress:IngressNginx", name, None, opts)
        self.release = k8s.helm.v3.Release(
            name,
            name="ingress-nginx",
            chart=ingress.INGRESS_NGINX_CHART,
            version=cfg.ingress_nginx_version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=ingress.INGRESS_NGINX_CHART_REPO),
            namespace=ingress.INGRESS_NGINX_NAMESPACE,
            create_namespace=True,
            values=ingress.ingress_nginx_values(),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[calico_ready]),
        )
        self.register_outputs({})
