"""K3s on the nodes through SSH: Flannel off from the first boot, servers joined one at a time."""

from __future__ import annotations

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.servers import ServerHandle
from keybuzz import k3s
from keybuzz.config import ClusterConfig, Node, Secrets
from keybuzz.guards import CriticalConfigGuard


class K3sCluster(pulumi.ComponentResource):
    """Installs K3s on every server, exports the kubeconfig and a Kubernetes provider built from it.

    Order: the first server (cluster-init) must answer /readyz; each further server joins after the
    previous one is ready (etcd adds members one at a time); agents join in parallel once the first
    server answers.
    """

    token: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    api_ready: pulumi.Resource
    joined: list[pulumi.Resource]
    installs: dict[str, command.remote.Command]
    ready: dict[str, command.remote.Command]
    rendered_configs: dict[str, pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        secrets: Secrets,
        servers: list[ServerHandle],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keybuzz:k3s:K3sCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Generated once and kept in state: stable across runs. Marked secret here too, not only by
        # the provider's schema, so no code path can turn it into plain text.
        password = random.RandomPassword(
            f"{name}-token",
            length=48,
            special=False,
            opts=pulumi.ResourceOptions(
                parent=self, additional_secret_outputs=["result"], protect=cfg.deletion_protection
            ),
        )
        self.token = pulumi.Output.secret(password.result)
        guard = CriticalConfigGuard(f"{name}-critical-config", k3s.critical_values(cfg), opts=child)

        first_server = cfg.servers[0]
        self.installs, self.ready, self.rendered_configs = {}, {}, {}
        previous_ready: pulumi.Resource | None = None
        for handle in (h for h in servers if h.node.role == "server"):
            after = [guard] if previous_ready is None else [guard, previous_ready]
            self._install(name, cfg, secrets, handle, first_server, after)
            previous_ready = self.ready[handle.node.name] = self._wait_ready(name, secrets, handle)
        self.api_ready = self.ready[first_server.name]
        for handle in (h for h in servers if h.node.role == "agent"):
            self._install(name, cfg, secrets, handle, first_server, [guard, self.api_ready])

        # Everything that must have happened before the cluster has all its nodes.
        self.joined = [*self.installs.values(), *self.ready.values()]

        first = next(h for h in servers if h.node.name == first_server.name)
        raw_kubeconfig = command.remote.Command(
            f"{name}-kubeconfig",
            connection=_connection(first, secrets),
            create=f"cat {k3s.KUBECONFIG_PATH}",
            logging=command.remote.Logging.NONE,
            triggers=[self.installs[first_server.name].id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.api_ready], additional_secret_outputs=["stdout"]),
        )
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(raw_kubeconfig.stdout, first.public_ip).apply(
                lambda args: k3s.kubeconfig_for_operator(args[0], f"https://{args[1]}:{k3s.API_PORT}", cfg.cluster_name)
            )
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # Server-side apply: the IPPool patch and other shared objects are merged, not overwritten.
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.api_ready]),
        )
        self.register_outputs({"kubeconfig": self.kubeconfig})

    def _install(
        self,
        name: str,
        cfg: ClusterConfig,
        secrets: Secrets,
        handle: ServerHandle,
        first_server: Node,
        after: list[pulumi.Resource],
    ) -> None:
        node = handle.node
        if node.role == "server":
            rendered = handle.public_ip.apply(
                lambda ip: k3s.to_yaml(k3s.render_server_config(cfg, node, first_server, ip))
            )
        else:
            rendered = pulumi.Output.from_input(k3s.to_yaml(k3s.render_agent_config(node, first_server)))
        self.rendered_configs[node.name] = rendered
        self.installs[node.name] = command.remote.Command(
            f"{name}-install-{node.name}",
            connection=_connection(handle, secrets),
            create=rendered.apply(lambda text: k3s.install_script(node.role, cfg.k3s_version, text)),
            stdin=self.token,
            logging=command.remote.Logging.STDERR,
            # A changed config or version re-applies on that node only.
            triggers=[rendered.apply(lambda text: k3s.content_hash(cfg.k3s_version, text))],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[handle.server, *after]),
        )

    def _wait_ready(self, name: str, secrets: Secrets, handle: ServerHandle) -> command.remote.Command:
        return command.remote.Command(
            f"{name}-ready-{handle.node.name}",
            connection=_connection(handle, secrets),
            create=k3s.wait_ready_script(),
            triggers=[self.installs[handle.node.name].id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.installs[handle.node.name]]),
        )


def _connection(handle: ServerHandle, secrets: Secrets) -> command.remote.ConnectionArgs:
    """SSH as root to the public IP; with no private key configured, the SSH agent is used."""
    return command.remote.ConnectionArgs(
        host=handle.public_ip,
        user="root",
        private_key=secrets.ssh_private_key,
        # A fresh server takes a while to accept SSH.
        dial_error_limit=30,
        per_dial_timeout=10,
    )
