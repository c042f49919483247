"""The edge on every node's host network: ingress-nginx, Traefik, or both during a switch.

The one place hostNetwork is allowed. Which of them exist, on which ports, is decided in
keybuzz/ingress.py and keybuzz/traefik.py; the EdgeGuard refuses at preview a step that would skip
the switch's order. Traefik runs as uid 101 with no capability, so every node first gets
net.ipv4.ip_unprivileged_port_start=80 (EdgeNodeSysctl).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from components.k3s import _connection
from components.servers import ServerHandle
from keybuzz import ingress, traefik
from keybuzz.config import ClusterConfig, Secrets
from keybuzz.ingress_guard import EdgeGuard


class IngressNginx(pulumi.ComponentResource):
    """The ingress controller as a hostNetwork DaemonSet behind a ClusterIP Service.

    Declared only after Calico is ready: its admission webhook and backends need pod networking.
    ``retired``: scheduled on no node (the retire step of a switch to Traefik).
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
        guard: pulumi.Resource | None = None,
    ) -> None:
        super().__init__("keybuzz:ingress:IngressNginx", name, None, opts)
        # After the edge guard: in an `up` without a preview, a refused step must fail before the release
        # is upgraded (e.g. retired with no Traefik on :80). A new dependency is no diff on the release.
        after = [calico_ready, guard] if guard is not None else [calico_ready]
        self.release = k8s.helm.v3.Release(
            name,
            name="ingress-nginx",
            chart=ingress.INGRESS_NGINX_CHART,
            version=cfg.ingress_nginx_version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=ingress.INGRESS_NGINX_CHART_REPO),
            namespace=ingress.INGRESS_NGINX_NAMESPACE,
            create_namespace=True,
            values=ingress.ingress_nginx_values(retired=retired),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=after),
        )
        self.register_outputs({})


class TraefikIngress(pulumi.ComponentResource):
    """Traefik as a hostNetwork DaemonSet serving IngressClass `nginx`, behind a ClusterIP Service.

    ``plan`` says on which host ports, and whether the program declares IngressClass `nginx` (from the
    retire step on, after ingress-nginx's chart has dropped its own; Traefik matches the class by name
    too, so it keeps serving in between).
    """

    release: k8s.helm.v3.Release
    ingress_class: k8s.networking.v1.IngressClass | None

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        provider: k8s.Provider,
        after: Sequence[pulumi.Resource],
        plan: ingress.EdgePlan,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keybuzz:ingress:TraefikIngress", name, None, opts)
        self.ingress_class = None
        after = list(after)
        if plan.ingress_class:
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
            values=traefik.traefik_values(cfg.ingress.image_tag, plan.traefik_ports),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=after),
        )
        self.register_outputs({})


class EdgeNodeSysctl(pulumi.ComponentResource):
    """net.ipv4.ip_unprivileged_port_start=80 on every node (keybuzz.traefik.node_sysctl_script).

    Owned by the edge, not by the node install script: changing that script would re-run the K3s
    install on every node, and this setting matters only while Traefik is the controller. Re-run when a
    server is replaced (its id changes); the drop-in keeps it across reboots.
    """

    commands: dict[str, command.remote.Command]

    def __init__(
        self,
        name: str,
        secrets: Secrets,
        servers: Sequence[ServerHandle],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keybuzz:ingress:EdgeNodeSysctl", name, None, opts)
        script = traefik.node_sysctl_script()
        self.commands = {
            h.node.name: command.remote.Command(
                f"{name}-{h.node.name}",
                connection=_connection(h, secrets),
                create=script,
                triggers=[h.server.id],
                add_previous_output_in_env=False,
                logging=command.remote.Logging.STDOUT_AND_STDERR,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[h.server]),
            )
            for h in servers
        }
        self.register_outputs({})


class Edge:
    """What serves the nodes' ports (keybuzz.ingress.edge_plan); ``ready`` is what the checks wait for."""

    def __init__(
        self,
        cfg: ClusterConfig,
        provider: k8s.Provider,
        calico_ready: pulumi.Resource,
        secrets: Secrets,
        servers: Sequence[ServerHandle],
    ) -> None:
        plan = ingress.edge_plan(cfg.ingress.controller, cfg.ingress.migration)
        self.plan = plan
        self.guard = EdgeGuard(f"{cfg.cluster_name}-ingress-edge", plan.state)
        self.nginx: IngressNginx | None = None
        self.sysctl: EdgeNodeSysctl | None = None
        self.traefik: TraefikIngress | None = None
        if plan.nginx:
            # Same name and type as before the switch existed: an ingress-nginx stack is unchanged.
            self.nginx = IngressNginx(
                f"{cfg.cluster_name}-ingress-nginx", cfg, provider, calico_ready, retired=plan.nginx_retired,
                guard=self.guard,
            )
        if plan.traefik:
            self.sysctl = EdgeNodeSysctl(f"{cfg.cluster_name}-edge-sysctl", secrets, servers,
                                         opts=pulumi.ResourceOptions(depends_on=[self.guard]))
            # Traefik after every node allows it 80/443, and after ingress-nginx's release: in the retire
            # step the program's IngressClass `nginx` is declared only once the chart has dropped its own.
            after = [calico_ready, self.guard, *self.sysctl.commands.values()]
            after += [self.nginx.release] if self.nginx else []
            self.traefik = TraefikIngress(f"{cfg.cluster_name}-traefik", cfg, provider, after, plan)

    @property
    def controller(self) -> str:
        return self.plan.probe_controller

    @property
    def probe_port(self) -> int:
        return self.plan.probe_port

    @property
    def ready(self) -> list[pulumi.Resource]:
        """The releases and the program's IngressClass: the probe fixture and the checks wait for them."""
        ready: list[pulumi.Resource] = [c.release for c in (self.nginx, self.traefik) if c is not None]
        if self.traefik is not None and self.traefik.ingress_class is not None:
            ready.append(self.traefik.ingress_class)
        return ready
