"""The edge on every node's host network: ingress-nginx, Traefik, or both during a switch.

The one place hostNetwork is allowed. Which of them exist, on which ports, is decided in
keybuzz/ingress.py and keybuzz/traefik.py; the EdgeGuard refuses at preview a step that would skip
the switch's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from keybuzz import ingress, traefik
from keybuzz.config import ClusterConfig
from keybuzz.ingress_guard import EdgeGuard, IngressNginxDrained


class IngressNginx(pulumi.ComponentResource):
    """The ingress controller as a hostNetwork DaemonSet behind a ClusterIP Service.

    Declared only after Calico is ready: its admission webhook and backends need pod networking.
    ``retired``: scheduled on no node (the swap step of a switch to Traefik).
    """

    release: k8s.helm.v3.Release

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        provider: k8s.Provider,
        calico_ready: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
        retired: bool = False,
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
            values=ingress.ingress_nginx_values(retired=retired),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[calico_ready]),
        )
        self.register_outputs({})


class TraefikIngress(pulumi.ComponentResource):
    """Traefik as a hostNetwork DaemonSet serving IngressClass `nginx`, behind a ClusterIP Service.

    ``trial``: on the trial ports beside ingress-nginx. ``ingress_class``: declare IngressClass `nginx`
    (from the swap step on, after ingress-nginx's chart has dropped its own; Traefik matches the class
    by name too, so it keeps serving in between).
    """

    release: k8s.helm.v3.Release
    ingress_class: k8s.networking.v1.IngressClass | None

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        provider: k8s.Provider,
        after: Sequence[pulumi.Resource],
        trial: bool = False,
        ingress_class: bool = True,
        opts: pulumi.ResourceOptions | None = None,
        swap: bool = False,
    ) -> None:
        super().__init__("keybuzz:ingress:TraefikIngress", name, None, opts)
        self.ingress_class = None
        after = list(after)
        if ingress_class:
            manifest = traefik.nginx_ingress_class()
            self.ingress_class = k8s.networking.v1.IngressClass(
                f"{name}-class-{ingress.INGRESS_CLASS}",
                metadata=manifest["metadata"],
                spec=manifest["spec"],
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=after),
            )
        self.release = k8s.helm.v3.Release(
            name,
            name=traefik.TRAEFIK_RELEASE,
            chart=traefik.TRAEFIK_CHART,
            version=cfg.ingress.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=traefik.TRAEFIK_CHART_REPO),
            namespace=traefik.TRAEFIK_NAMESPACE,
            create_namespace=True,
            values=traefik.traefik_values(cfg.ingress.image_tag, trial=trial, swap=swap),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=after),
        )
        self.register_outputs({})


class Edge:
    """What serves the nodes' ports for this stack; ``ready`` is what the ingress check waits for."""

    def __init__(
        self,
        cfg: ClusterConfig,
        provider: k8s.Provider,
        calico_ready: pulumi.Resource,
        kubeconfig: pulumi.Input[str] = "",
        run_id: str = "",
    ) -> None:
        state = ingress.edge_state(cfg.ingress.controller, cfg.ingress.migration)
        self.state = state
        self.guard = EdgeGuard(f"{cfg.cluster_name}-ingress-edge", state)
        self.nginx: IngressNginx | None = None
        self.traefik: TraefikIngress | None = None
        if state in (ingress.INGRESS_NGINX, "traefik-trial", "traefik-swap"):
            # Same name and type as before the switch existed: an ingress-nginx stack is unchanged.
            self.nginx = IngressNginx(
                f"{cfg.cluster_name}-ingress-nginx", cfg, provider, calico_ready, retired=state == "traefik-swap"
            )
        self.drained: IngressNginxDrained | None = None
        if state == "traefik-swap" and self.nginx is not None:
            # Helm calls the retired DaemonSet ready while its pods may still hold :80: wait for them.
            self.drained = IngressNginxDrained(
                f"{cfg.cluster_name}-ingress-nginx-drained", kubeconfig, ingress.INGRESS_NGINX_NAMESPACE, run_id,
                opts=pulumi.ResourceOptions(depends_on=[self.nginx.release]),
            )
        if state != ingress.INGRESS_NGINX:
            # Swap: Traefik moves to 80/443 only after ingress-nginx's pods are gone from them.
            after = [calico_ready, self.guard] + ([self.nginx.release] if self.nginx else [])
            after += [self.drained] if self.drained else []
            self.traefik = TraefikIngress(
                f"{cfg.cluster_name}-traefik", cfg, provider, after,
                trial=state == "traefik-trial", ingress_class=state in ("traefik-swap", ingress.TRAEFIK),
                swap=state == "traefik-swap",
            )

    @property
    def controller(self) -> str:
        """The controller the ingress check probes: the one being proven (Traefik from its trial on)."""
        return ingress.INGRESS_NGINX if self.state == ingress.INGRESS_NGINX else ingress.TRAEFIK

    @property
    def probe_port(self) -> int:
        return ingress.TRIAL_PORTS["web"] if self.state == "traefik-trial" else ingress.EDGE_PORTS["web"]

    @property
    def ready(self) -> list[pulumi.Resource]:
        """The releases and the program's IngressClass: the probe fixture and the checks wait for them."""
        ready: list[pulumi.Resource] = [c.release for c in (self.nginx, self.traefik) if c is not None]
        if self.traefik is not None and self.traefik.ingress_class is not None:
            ready.append(self.traefik.ingress_class)
        return ready
