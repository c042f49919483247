"""K3s on the nodes through SSH: Flannel off from the first boot, and every later change rolled out safely.

The order of everything is decided in keybuzz/rollout.py (tested as data); this component turns
each node's entry into resources: drain -> resize -> install -> ready (+ labels, taints), batch
after batch through one boundary per batch (a barrier, then the batch's overlay check with
``verify.betweenBatches``), and a retire step whose delete removes the node from
the cluster before its server is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import batch_checks
from components.servers import ServerHandle
from keybuzz import etcd_backup, k3s, kubeconfig_renewal, node_ops
from keybuzz.cluster_origin import ClusterOrigin, may_initialise
from keybuzz.config import ClusterConfig, Secrets
from keybuzz.guards import CriticalConfigGuard
from keybuzz.resize import ServerTypeChange
from keybuzz.rollout import Batch, NodeRollout, plan_batches, plan_rollout

# Our field manager on Nodes: labels it applied and no longer applies are removed by the API server.
LABELS_FIELD_MANAGER = "keybuzz-node-labels"
SERVER_ID_ANNOTATION = "keybuzz.io/server-id"
# Seconds since the epoch, for the kubeconfig re-read decision; tests inject a fake clock here.
KUBECONFIG_CLOCK: Callable[[], float] = time.time


class K3sCluster(pulumi.ComponentResource):
    """Installs K3s on every server, exports the kubeconfig and a Kubernetes provider built from it.

    Order (keybuzz/rollout.py): servers one at a time, each back to /readyz (and, on a change, its
    node Ready and uncordoned) before the next; then agents, a canary of one, then batches of
    ``agentUpgradeBatchSize``. ``batches[k]`` is rollout batch k and ``batch_barriers[k]`` the
    resource that stands after it: for a batch of several nodes a barrier that depends on each
    ``ready`` of the batch; for a batch of one node (every server, the canary, agents at batch size 1)
    that node's ``ready``. With ``verify.betweenBatches`` the batch's overlay check
    (components/batch_checks.py, ``batch_checks[k]``) depends on that boundary; every drain of batch
    k+1 depends on the check, or on the boundary when there are no checks (``_after_batch``).
    """

    token: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    api_address: pulumi.Output[str]  # host of the kubeconfig's server URL (LB public IPv4 or cp-1's)
    provider: k8s.Provider
    api_ready: pulumi.Resource
    joined: list[pulumi.Resource]
    installs: dict[str, command.remote.Command]
    ready: dict[str, command.remote.Command]
    rendered_configs: dict[str, pulumi.Output[str]]
    fingerprints: dict[str, pulumi.Output[str]]
    batches: tuple[Batch, ...]
    batch_barriers: list[pulumi.Resource]
    batch_checks: dict[int, pulumi.Resource]  # batch index -> its overlay check (verify.betweenBatches)

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        secrets: Secrets,
        servers: list[ServerHandle],
        api_host: pulumi.Input[str] | None = None,
        join_through: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``api_host``: the public address of the API for the kubeconfig and the provider (the API load
        balancer's, when there is one); default: the first server's public IP. It is added to tls-san.
        ``join_through``: what must exist before a node joins through ``cfg.join_ip`` (the API load
        balancer); the first server bootstraps or rejoins without it.
        """
        super().__init__("keybuzz:k3s:K3sCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self._name, self._cfg, self._secrets = name, cfg, secrets
        self._handles = {h.node.name: h for h in servers}
        self._join_through = list(join_through)

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

        first = self._handles[cfg.servers[0].name]
        public_api = pulumi.Output.from_input(api_host) if api_host is not None else first.public_ip
        extra_san = pulumi.Output.from_input(api_host) if api_host is not None else pulumi.Output.from_input("")

        # Recorded once: the Hetzner id of the server that created the cluster (the only one that may
        # run cluster-init). On an existing stack, its first run records the first server of the moment.
        self._origin = ClusterOrigin(f"{name}-cluster-origin", server_id=first.server.id, opts=child)
        self.installs, self.ready, self.rendered_configs, self.fingerprints = {}, {}, {}, {}
        self._retires: dict[str, command.remote.Command] = {}
        self.batch_checks = {}
        self.batches, self.batch_barriers = plan_batches(cfg), []
        self._gates: list[pulumi.Resource] = []  # what the next batch's drains wait for, per batch
        plan = plan_rollout(cfg)
        # The checks need the kubeconfig, read below once the first server is up: handed over deferred.
        # Whatever produces it must depend only on the first server's steps (batch 0), or the checks
        # wait for the kubeconfig that waits for them.
        checks_kubeconfig, resolve_checks_kubeconfig = pulumi.deferred_output()
        self._checks = (
            batch_checks.BatchChecks(
                f"{cfg.cluster_name}-rollout-check", cfg, plan, checks_kubeconfig, self.fingerprints, self
            )
            if batch_checks.enabled(cfg)
            else None
        )
        by_batch: dict[int, list[NodeRollout]] = {}
        for entry in plan:
            by_batch.setdefault(entry.batch, []).append(entry)
        for batch in self.batches:
            for entry in by_batch[batch.index]:
                self._declare_node(entry, guard, extra_san)
            ready = [self.ready[n] for n in batch.names]
            barrier = ready[0] if len(ready) == 1 else _barrier(f"{name}-batch-{batch.index}", ready, self)
            self.batch_barriers.append(barrier)
            self._gates.append(self._after_batch(batch, barrier))
        self.api_ready = self.ready[first.node.name]
        # Everything that must have happened before the cluster has all its nodes (and passed its
        # checks): the last boundary stands after every node's ready (each batch after the previous
        # one) and after every check, one dependency not 2N.
        self.joined = [self._gates[-1]]

        # A replaced cp-1 (new public IP) must not re-run the first read: its output would be unknown at
        # preview, and pulumi-kubernetes plans a replacement of the provider (and every object on it) for
        # an unknown kubeconfig. The file read once stays valid on every server: its CA and the CA that
        # signed its admin client certificate are the cluster's (K3s keeps them in the datastore).
        raw_kubeconfig = self._read_kubeconfig(
            f"{name}-kubeconfig", first, [self.installs[first.node.name].id], after=self.api_ready
        )
        # Read again when the first read's admin certificate nears expiry, then once per 30 days
        # (keybuzz/kubeconfig_renewal.py): K3s renews the file on the node, never the copy in state. The
        # trigger is decided from known values (the first read, the clock), so the kubeconfig stays known
        # at preview except in a run that re-reads it; connection changes are ignored as above.
        now = kubeconfig_renewal.from_timestamp(KUBECONFIG_CLOCK())
        reread_key = pulumi.Output.secret(raw_kubeconfig.stdout).apply(
            lambda text: kubeconfig_renewal.reread_key(kubeconfig_renewal.client_cert_not_after(text), now)
        )
        reread = self._read_kubeconfig(
            f"{name}-kubeconfig-reread",
            first,
            # Not secret: a period label (e.g. "window 2027-09-07 period 2"), derived from a public date.
            [self.installs[first.node.name].id, pulumi.Output.unsecret(reread_key)],
            after=raw_kubeconfig,
        )
        pulumi.Output.secret(reread.stdout).apply(
            lambda text: _warn_expiry(kubeconfig_renewal.client_cert_not_after(text), now, first.node.name)
        )
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(reread.stdout, public_api).apply(
                lambda args: k3s.kubeconfig_for_operator(args[0], f"https://{args[1]}:{k3s.API_PORT}", cfg.cluster_name)
            )
        )
        resolve_checks_kubeconfig(self.kubeconfig)
        self.api_address = public_api
        # Through the load balancer, a request may reach any server: wait until every one of them
        # runs its current config (tls-san with that address included), and the LB is set up.
        provider_after = (
            [self.api_ready]
            if api_host is None
            else [*(self.ready[n.name] for n in cfg.servers), *self._join_through]
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # Server-side apply: the IPPool patch, node labels and other shared objects are merged.
            enable_server_side_apply=True,
            # Without it, any change of the kubeconfig's server address (cp-1 replaced, the API moved
            # to the load balancer) makes pulumi-kubernetes replace the provider, and with it every
            # Kubernetes object it manages (DiffConfig: "replacement iff the active cluster changes").
            # With a fixed identifier, only a change of the identifier replaces it.
            cluster_identifier=cfg.cluster_name,
            opts=pulumi.ResourceOptions(parent=self, depends_on=provider_after),
        )
        for entry in plan:
            self._declare_node_metadata(entry)
        self.register_outputs({"kubeconfig": self.kubeconfig})

    # --- one node's chain ------------------------------------------------------------------------

    def _declare_node(self, entry: NodeRollout, guard: pulumi.Resource, extra_san: pulumi.Output[str]) -> None:
        name, cfg, node = self._name, self._cfg, entry.node
        handle = self._handles[node.name]
        ops = _connection(self._handles[entry.ops_host], self._secrets)
        # The ops host's scripts use the first ready API: its own, else the LB's or another server's.
        apis = k3s.api_addresses(cfg)
        rendered = self._render(entry, extra_san)
        self.rendered_configs[node.name] = rendered
        # The server id is in the fingerprint and the install script: a replaced server (new machine,
        # same name) is installed, waited for and labelled again even if its address were reused.
        server_id = handle.server.id
        # A 64-bit digest, not the config: it stays readable in previews even when the config holds
        # etcdBackup's S3 keys (no key can be recovered from it).
        fingerprint = pulumi.Output.unsecret(
            pulumi.Output.all(rendered, server_id).apply(
                lambda args: k3s.content_hash(cfg.k3s_version, args[0], node.server_type, str(args[1]))
            )
        )
        self.fingerprints[node.name] = fingerprint

        previous = [self._retires[entry.retire_after]] if entry.retire_after in self._retires else []
        self._retires[node.name] = command.remote.Command(
            f"{name}-retire-{node.name}",
            connection=_connection(self._handles[entry.retire_host], self._secrets),
            create=node_ops.retire_create_script(node.name),
            delete=node_ops.retire_script(
                node.name,
                node.role,
                node.private_ip,
                alone=entry.retire_host == node.name,
                first=node.name == cfg.servers[0].name,
                api_fallbacks=apis,
            ),
            # A replaced server is a new machine under the same name: its old Node (and etcd member)
            # must go first, or the new one is refused (node password) or doubles the member.
            triggers=[handle.server.id],
            logging=command.remote.Logging.STDOUT_AND_STDERR,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Depends on the server: deleted (drain, Node, etcd member) before the server is.
                # Depends on the retire before it (keybuzz/rollout.py): servers one at a time, agents in lanes.
                depends_on=[handle.server, *previous],
                delete_before_replace=True,
            ),
        )
        after = [guard, *([self._gates[entry.after_batch]] if entry.after_batch is not None else [])]
        if node.name != cfg.servers[0].name:
            after += self._join_through
        # A replaced server: the retire step's replacement drains and deletes the old Node; this
        # drain must not run against that Node at the same time (it would fail on "not found").
        after.append(self._retires[node.name])
        drain = command.remote.Command(
            f"{name}-drain-{node.name}",
            connection=ops,
            create=fingerprint.apply(lambda fp: node_ops.new_node_script(node.name, fp)),
            update=fingerprint.apply(lambda fp: self._drain_update(entry, fp, apis)),
            logging=command.remote.Logging.STDOUT_AND_STDERR,
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )
        resize = ServerTypeChange(
            f"{name}-resize-{node.name}",
            server_id=handle.server.id,
            node_name=node.name,
            server_type=node.server_type,
            upgrade_disk=node.upgrade_disk,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[drain]),
        )
        if node.name == cfg.servers[0].name:
            script = pulumi.Output.all(rendered, server_id, self._origin.serverId).apply(
                lambda args: _first_server_install(cfg, node.name, args[0], str(args[1]), str(args[2]))
            )
        else:
            script = pulumi.Output.all(rendered, server_id).apply(
                lambda args: k3s.install_script(node.role, cfg.k3s_version, args[0], node.name, server_id=str(args[1]))
            )
        # No triggers: a changed script (config or version) is an in-place update that runs the same
        # script again on this node only, after its drain; nothing is replaced.
        self.installs[node.name] = command.remote.Command(
            f"{name}-install-{node.name}",
            connection=_connection(handle, self._secrets),
            create=script,
            stdin=self.token,
            logging=command.remote.Logging.STDERR,
            # After the retire step: when the server was replaced, that step's replacement removes the
            # old Node and etcd member; the new machine must not join under the same name before.
            # Its output is secret: the script carries the etcdBackup S3 keys, and a failure prints
            # the last lines of K3s's journal, which we cannot vouch for.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[handle.server, resize, self._retires[node.name]],
                additional_secret_outputs=["stdout", "stderr"],
            ),
        )
        self.ready[node.name] = command.remote.Command(
            f"{name}-ready-{node.name}",
            connection=ops,
            create=fingerprint.apply(lambda fp: node_ops.registered_script(node.name, fp, api_fallbacks=apis)),
            update=fingerprint.apply(lambda fp: node_ops.ready_script(node.name, fp, api_fallbacks=apis)),
            logging=command.remote.Logging.STDOUT_AND_STDERR,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.installs[node.name]]),
        )

    def _read_kubeconfig(
        self, name: str, first: ServerHandle, triggers: list[pulumi.Input[str]], after: pulumi.Resource
    ) -> command.remote.Command:
        """``cat`` of cp-1's admin kubeconfig, run again only when ``triggers`` change (never on a new address)."""
        return command.remote.Command(
            name,
            connection=_connection(first, self._secrets),
            create=f"cat {k3s.KUBECONFIG_PATH}",
            logging=command.remote.Logging.NONE,
            # Its stdout is the admin key: never re-sent through the SSH environment on the next run.
            add_previous_output_in_env=False,
            triggers=triggers,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[after],
                additional_secret_outputs=["stdout"],
                ignore_changes=["connection"],
            ),
        )

    def _drain_update(self, entry: NodeRollout, fingerprint: str, apis: tuple[str, ...]) -> str:
        """The drain; for a server, an etcd snapshot first (keybuzz/etcd_backup.py)."""
        on_node = entry.ops_host == entry.node.name
        drain = node_ops.drain_script(entry.node.name, fingerprint, on_node=on_node, api_fallbacks=apis)
        if entry.node.role != "server":
            return drain
        return etcd_backup.with_pre_upgrade_snapshot(drain, entry.node.name, fingerprint, on_node=on_node)

    # --- the boundary after each batch, and its overlay check (components/batch_checks.py) -------

    def _after_batch(self, batch: Batch, barrier: pulumi.Resource) -> pulumi.Resource:
        """What the next batch's drains wait for once ``batch`` is back: with ``verify.betweenBatches``
        its overlay check, which depends on the batch's barrier (one link per batch on the chain);
        without, the barrier itself."""
        if self._checks is None:
            return barrier
        check = self._checks.after_batch(batch.index, [barrier])
        self.batch_checks[batch.index] = check
        return check

    def _declare_node_metadata(self, entry: NodeRollout) -> None:
        """Labels by server-side apply under our field manager; taints by a command (atomic list)."""
        name, node = self._name, entry.node
        handle = self._handles[node.name]
        after = [self.ready[node.name], *([self._retires[node.name]] if node.name in self._retires else [])]
        k8s.core.v1.NodePatch(
            f"{name}-labels-{node.name}",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name=node.name,
                labels=dict(node.labels),
                annotations={
                    # A replaced server registers a new Node under the same name: apply again.
                    SERVER_ID_ANNOTATION: handle.server.id,
                    "pulumi.com/patchFieldManager": LABELS_FIELD_MANAGER,
                    # Take over a label someone set by hand to another value.
                    "pulumi.com/patchForce": "true",
                },
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=after),
        )
        command.remote.Command(
            f"{name}-taints-{node.name}",
            connection=_connection(self._handles[entry.ops_host], self._secrets),
            create=node_ops.taints_script(node.name, node.taints, api_fallbacks=k3s.api_addresses(self._cfg)),
            # A replaced server's new Node has none of them: set them again (no delete script: harmless).
            triggers=[handle.server.id],
            logging=command.remote.Logging.STDOUT_AND_STDERR,
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )

    def _render(self, entry: NodeRollout, extra_san: pulumi.Output[str]) -> pulumi.Output[str]:
        cfg, node = self._cfg, entry.node
        public_ip = self._handles[node.name].public_ip
        if node.role == "server":
            # With etcdBackup's S3 keys in it, the whole config (and every script carrying it) is a secret.
            keys = etcd_backup_keys(self._secrets)
            return pulumi.Output.all(public_ip, extra_san, keys).apply(
                lambda args: k3s.to_yaml(k3s.render_server_config(cfg, node, args[0], args[1] or None, args[2]))
            )
        return public_ip.apply(lambda ip: k3s.to_yaml(k3s.render_agent_config(cfg, node, ip)))


def etcd_backup_keys(secrets: Secrets) -> pulumi.Output[tuple[str, str] | None]:
    """The S3 keys of etcdBackup as one secret Output (None when no bucket is configured)."""
    if secrets.etcd_s3_access_key is None or secrets.etcd_s3_secret_key is None:
        return pulumi.Output.from_input(None)
    return pulumi.Output.secret(
        pulumi.Output.all(secrets.etcd_s3_access_key, secrets.etcd_s3_secret_key).apply(lambda k: (k[0], k[1]))
    )


def _barrier(name: str, batch_ready: list[pulumi.Resource], parent: pulumi.Resource) -> pulumi.Resource:
    """The boundary after a batch of several nodes: a local command with nothing to run, so it never
    does anything on any run; it exists to be depended on (2 x batch size dependencies per boundary
    instead of the square, and a chain as long as the number of batches)."""
    return command.local.Command(name, opts=pulumi.ResourceOptions(parent=parent, depends_on=batch_ready))


def _warn_expiry(not_after: datetime | None, now: datetime, node: str) -> None:
    """Every run while the certificate in use is inside K3s's renewal window: its date and the fix."""
    message = kubeconfig_renewal.expiry_warning(not_after, now, node)
    if message:
        pulumi.log.warn(message)


def _first_server_install(cfg: ClusterConfig, node_name: str, rendered: str, server_id: str, origin_id: str) -> str:
    """The first server's install: may initialise only as the server that created the cluster (state).

    Any other machine under its name (a replacement) joins the running cluster and never initialises;
    with no other server to join (a replaced lone server) it refuses to start at all.
    """
    if may_initialise(server_id, origin_id):
        return k3s.install_script(
            "server", cfg.k3s_version, rendered, node_name,
            bootstrap_yaml=k3s.bootstrap_server_yaml(rendered), server_id=server_id,
        )
    address = k3s.rejoin_address(cfg)
    if address is None:
        refusal = (
            f"this server (Hetzner id {server_id}) replaces the only server, which created the cluster "
            f"(id {origin_id}): there is no cluster left to join, and a replacement never initialises one. "
            "Restore the cluster from a snapshot, or create a new stack"
        )
        return k3s.install_script("server", cfg.k3s_version, rendered, node_name, refusal=refusal, server_id=server_id)
    return k3s.install_script(
        "server", cfg.k3s_version, k3s.rejoin_server_yaml(rendered, address), node_name,
        rejoin_url=f"https://{address}:{k3s.API_PORT}", server_id=server_id,
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
