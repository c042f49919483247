"""What K3s runs with on each node: config files, node scripts and the operator's kubeconfig.

Pure functions only (strings and dicts in, strings and dicts out), so the exact file every node
gets is tested as data; components/k3s.py turns them into remote commands.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
from typing import Any
from urllib.parse import quote

import yaml

from keybuzz.config import CONTROL_PLANE_FIRST_OFFSET, CONTROL_PLANE_MAX, ClusterConfig, Node

CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
TOKEN_PATH = "/etc/rancher/k3s/cluster-token"
KUBECONFIG_PATH = "/etc/rancher/k3s/k3s.yaml"
API_PORT = 6443
ETCD_DATA_DIR = "/var/lib/rancher/k3s/server/db/etcd"
ETCD_WAL_DIR = f"{ETCD_DATA_DIR}/member/wal"
# The config and K3s version K3s last started with successfully (see install_script).
APPLIED_PATH = "/etc/rancher/k3s/keybuzz-applied"
READY_TIMEOUT_SECONDS = 300
INSTALL_TIMEOUT_SECONDS = 600
CLOUD_INIT_TIMEOUT_SECONDS = 600
_HEREDOC_OPEN = "<<'KEYBUZZ_EOF'\n"
_HEREDOC_CLOSE = "KEYBUZZ_EOF"
_BOOTSTRAP_OPEN = "<<'KEYBUZZ_BOOTSTRAP_EOF'\n"
_BOOTSTRAP_CLOSE = "KEYBUZZ_BOOTSTRAP_EOF"

# K3s refuses to start a server whose value for these differs from the cluster's
# ("critical configuration value mismatch"), and changing the CNI of a live cluster is unsupported:
# a change on an existing stack is refused at preview (keybuzz/guards.py), never half-applied.
CRITICAL_KEYS = ("cluster-cidr", "service-cidr", "flannel-backend", "disable-network-policy")


def critical_values(cfg: ClusterConfig) -> dict[str, str]:
    """The critical K3s values of this config, as strings, keyed by K3s flag name."""
    return {
        "cluster-cidr": cfg.pod_cidr,
        "service-cidr": cfg.service_cidr,
        # Calico owns the pod network and network policy from the first boot.
        "flannel-backend": "none",
        "disable-network-policy": "true",
    }


def render_server_config(
    cfg: ClusterConfig, node: Node, public_ip: str, api_host: str | None = None
) -> dict[str, Any]:
    """K3s server config: Flannel off, CIDRs explicit, everything bound to the private IP.

    Every server, the first included, names ``server: https://<join_ip>:6443``: a server that has
    etcd data ignores it (K3s: "bootstrap already complete"), a fresh one joins the running cluster.
    Only the server that creates the cluster may swap this for ``bootstrap_server_config`` (see
    ``install_script`` and keybuzz/cluster_origin.py), so a replaced first server never starts a
    second etcd cluster.
    """
    critical = critical_values(cfg)
    sans = [public_ip, node.private_ip]
    if cfg.api_lb_enabled:
        sans.append(cfg.api_lb_private_ip)
    if api_host and api_host not in sans:
        sans.append(api_host)
    return {
        "node-name": node.name,
        "token-file": TOKEN_PATH,
        "server": join_url(cfg),
        "flannel-backend": critical["flannel-backend"],
        "disable-network-policy": True,
        "cluster-cidr": critical["cluster-cidr"],
        "service-cidr": critical["service-cidr"],
        "node-ip": node.private_ip,
        "advertise-address": node.private_ip,
        # Ingress status (hostNetwork ingress-nginx, publishService off) shows node addresses.
        "node-external-ip": public_ip,
        "tls-san": sans,
        "disable": ["traefik", "servicelb"],
        "write-kubeconfig-mode": "0600",
    }


def bootstrap_server_config(config: dict[str, Any]) -> dict[str, Any]:
    """The first server's config for the one case it must start a new cluster: no ``server``, ``cluster-init``."""
    bootstrap = {k: v for k, v in config.items() if k != "server"}
    bootstrap["cluster-init"] = True
    return bootstrap


def bootstrap_server_yaml(config_yaml: str) -> str:
    """``bootstrap_server_config`` of a rendered server config.yaml, as config.yaml text."""
    return to_yaml(bootstrap_server_config(yaml.safe_load(config_yaml)))


def rejoin_address(cfg: ClusterConfig) -> str | None:
    """Where a replaced first server joins: the join address, or the second server when that is itself.

    Without an API load balancer every node joins through the first server's own private IP, which a
    replacement of that server cannot join. None: it is the only server, there is nothing to join.
    """
    first = cfg.servers[0]
    if cfg.join_ip != first.private_ip:
        return cfg.join_ip
    return cfg.servers[1].private_ip if len(cfg.servers) > 1 else None


def rejoin_server_yaml(config_yaml: str, address: str) -> str:
    """A first server's rendered config.yaml, set to join the running cluster through ``address``."""
    config = yaml.safe_load(config_yaml)
    config["server"] = f"https://{address}:{API_PORT}"
    return to_yaml(config)


def render_agent_config(cfg: ClusterConfig, node: Node, public_ip: str) -> dict[str, Any]:
    """K3s agent config: join through ``cfg.join_ip`` over the private network.

    No ``node-label``/``node-taint``: K3s applies them only at registration and the kubelet then owns
    them, so they could never change or go away; labels and taints go through the Kubernetes API.
    """
    return {
        "node-name": node.name,
        "token-file": TOKEN_PATH,
        "server": join_url(cfg),
        "node-ip": node.private_ip,
        "node-external-ip": public_ip,
    }


def api_addresses(cfg: ClusterConfig) -> tuple[str, ...]:
    """Private addresses a server may reach another server's API on, in the order they are tried.

    The API load balancer first, then every address a server can ever have, not only today's: the
    node scripts (and so their commands) stay the same when the control plane grows or shrinks.
    Each is in every server's serving certificate (``tls-san`` above has the private IP and the
    LB's private IP).
    """
    subnet = ipaddress.ip_network(cfg.subnet_cidr)
    first = subnet.network_address + CONTROL_PLANE_FIRST_OFFSET
    return (cfg.api_lb_private_ip, *(str(first + i) for i in range(CONTROL_PLANE_MAX)))


def join_url(cfg: ClusterConfig) -> str:
    """Where joining nodes register: the API load balancer's private IP, else the first server."""
    return f"https://{cfg.join_ip}:{API_PORT}"


def to_yaml(config: dict[str, Any]) -> str:
    """Serialise deterministically: the same config always gives the same bytes (and hash)."""
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


def content_hash(*parts: str) -> str:
    """A short, stable digest used as a replacement trigger: changed content re-applies the node."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def install_script_url(version: str) -> str:
    """The installer from the K3s release tag itself, so the script is as pinned as the binary."""
    return f"https://raw.githubusercontent.com/k3s-io/k3s/{quote(version, safe='')}/install.sh"


def script_preamble(node_name: str, unit: str) -> list[str]:
    """Shell that every node script starts with: strict mode and a ``fail`` that says where and why.

    ``fail`` prints the node name and the last lines of the K3s unit's journal (never the token: it
    only ever travels on stdin into a 0600 file; no ``set -x``, no environment dump).
    """
    return [
        "set -eu",
        f"NODE={shlex.quote(node_name)}",
        f"UNIT={shlex.quote(unit)}",
        "fail() {",
        '  echo "keybuzz: node $NODE: $1" >&2',
        '  echo "keybuzz: last lines of journalctl -u $UNIT on $(hostname):" >&2',
        '  journalctl -u "$UNIT" -n 40 --no-pager >&2 || true',
        "  exit 1",
        "}",
    ]


def install_script(
    role: str,
    version: str,
    config_yaml: str,
    node_name: str,
    *,
    bootstrap_yaml: str | None = None,
    rejoin_url: str | None = None,
    refusal: str | None = None,
    timeout_seconds: int = INSTALL_TIMEOUT_SECONDS,
    server_id: str = "",
) -> str:
    """Shell run on a node as root: write token and config atomically, install pinned K3s, wait.

    The cluster token arrives on stdin so it never appears in a command line, a log or the state's
    command text. The same script runs on create and on update. install.sh restarts K3s only when
    its binary, unit or env changed, so the script forces the restart (``INSTALL_K3S_FORCE_RESTART``)
    whenever the config and version K3s last started with successfully (``APPLIED_PATH``, written
    only after the start and the readiness check passed) differ from the ones wanted now: a run that
    failed between writing config.yaml and a good start still restarts K3s on the next run. Every
    wait is bounded: the unit is ``Type=notify`` with ``TimeoutStartSec=0``, so the installer could
    wait forever.

    ``bootstrap_yaml`` (only the server that creates the cluster, decided from state: see
    keybuzz/cluster_origin.py): written instead of ``config_yaml`` while that server has no etcd
    data yet, and kept while it is what the server already runs. ``rejoin_url`` (a replaced first
    server): it joins there and never initialises; failures say so. ``refusal``: the node must not
    start at all (a replaced lone server: there is no cluster to join); the script fails with it.
    ``server_id`` (the Hetzner server's) is only written as a comment: a replaced server changes the
    script, so the new machine is installed even if it got the old one's address.
    """
    if role not in ("server", "agent"):
        raise ValueError(f"role must be 'server' or 'agent', not {role!r}")
    unit = "k3s" if role == "server" else "k3s-agent"
    lines = script_preamble(node_name, unit)
    if server_id:
        lines.append(f"# keybuzz: hetzner server id {server_id}")
    if refusal is not None:
        lines += [f"REFUSAL={shlex.quote(refusal)}", '[ -z "$REFUSAL" ] || fail "$REFUSAL"']
    lines += [
        # Hetzner images run cloud-init on first boot; apt and networking must be settled first
        # (exit 2: finished with recoverable errors).
        "rc=0",
        f"timeout {CLOUD_INIT_TIMEOUT_SECONDS} cloud-init status --wait >/dev/null 2>&1 || rc=$?",
        '[ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] '
        f'|| fail "cloud-init did not finish in {CLOUD_INIT_TIMEOUT_SECONDS} s (exit $rc)"',
        "umask 077",
        "install -d -m 0755 /etc/rancher/k3s",
        f"cat > {TOKEN_PATH}.new && mv -f {TOKEN_PATH}.new {TOKEN_PATH}",
        f"K3S_VERSION={shlex.quote(version)}",
        f"APPLIED={APPLIED_PATH}",
        # What K3s runs: the version and the exact config.yaml bytes it was started with.
        f'applied_key() {{ {{ printf \'%s\\n\' "$K3S_VERSION"; cat {CONFIG_PATH}; }} | sha256sum | cut -d" " -f1; }}',
        # A node set up before this marker existed, running: it runs what is on disk (no restart now).
        f'if [ ! -f "$APPLIED" ] && [ -f {CONFIG_PATH} ] && systemctl is-active --quiet "$UNIT"; then',
        '  applied_key > "$APPLIED.new" && mv -f "$APPLIED.new" "$APPLIED"',
        "fi",
        "write_config() {",
        f"  cat > {CONFIG_PATH}.new",
        f"  chmod 0600 {CONFIG_PATH}.new",
        f"  if cmp -s {CONFIG_PATH}.new {CONFIG_PATH}; then rm -f {CONFIG_PATH}.new; "
        f"else mv -f {CONFIG_PATH}.new {CONFIG_PATH}; fi",
        "}",
    ]
    join = f"write_config {_HEREDOC_OPEN}{config_yaml}{_HEREDOC_CLOSE}"
    if bootstrap_yaml is None:
        if rejoin_url is not None:
            lines.append(
                'echo "keybuzz: node $NODE replaces the server that created the cluster: it joins '
                f'{rejoin_url} and never initialises a new cluster" >&2'
            )
        lines.append(join)
    else:
        # K3s counts a server as initialised when its etcd WAL directory exists
        # (k3s pkg/etcd/etcd.go, IsInitialized: <data-dir>/server/db/etcd/member/wal).
        lines += [
            f"cat > {CONFIG_PATH}.bootstrap {_BOOTSTRAP_OPEN}{bootstrap_yaml}{_BOOTSTRAP_CLOSE}",
            f"if [ -d {ETCD_WAL_DIR} ] && ! cmp -s {CONFIG_PATH}.bootstrap {CONFIG_PATH}; then",
            join,
            "else",
            f"  [ -d {ETCD_WAL_DIR} ] || echo \"keybuzz: node $NODE created the cluster's first server and has "
            'no etcd data yet: initialising the cluster (cluster-init)" >&2',
            f"  write_config < {CONFIG_PATH}.bootstrap",
            "fi",
            f"rm -f {CONFIG_PATH}.bootstrap",
        ]
    never_init = (
        f" (it joins {rejoin_url} and never initialises a new cluster: is a server healthy there, "
        "and is the old Node of this server gone?)"
        if rejoin_url
        else ""
    )
    lines += [
        'wanted=$(applied_key)',
        'RESTART=false',
        '[ "$(cat "$APPLIED" 2>/dev/null || true)" = "$wanted" ] || RESTART=true',
        "installer=$(mktemp)",
        f'curl -sfL --retry 5 --max-time 120 {shlex.quote(install_script_url(version))} -o "$installer" '
        '|| fail "could not download the K3s installer"',
        f"INSTALL_K3S_FORCE_RESTART=$RESTART INSTALL_K3S_VERSION={shlex.quote(version)} INSTALL_K3S_EXEC={role} "
        f'timeout --kill-after=10 {timeout_seconds} sh "$installer" '
        f'|| fail {shlex.quote(f"K3s install or start did not finish within {timeout_seconds} s{never_init}")}',
        'rm -f "$installer"',
    ]
    if role == "server":
        # /readyz, not node Ready: on a first deploy nodes stay NotReady until Calico exists.
        lines += wait_loop(
            "timeout 10 k3s kubectl get --raw /readyz >/dev/null 2>&1",
            READY_TIMEOUT_SECONDS,
            f"K3s API server not ready (/readyz) after {READY_TIMEOUT_SECONDS} s{never_init}",
        )
    else:
        lines.append('systemctl is-active --quiet k3s-agent || fail "k3s-agent is not active after the install"')
    # Only now is this config what K3s runs: a failure above leaves the old marker, so the next run restarts.
    lines.append('printf \'%s\\n\' "$wanted" > "$APPLIED.new" && mv -f "$APPLIED.new" "$APPLIED"')
    return "\n".join(lines) + "\n"


def wait_loop(condition: str, timeout_seconds: int, message: str) -> list[str]:
    """Poll ``condition`` every 2 s until a deadline ``timeout_seconds`` from now, then ``fail`` with ``message``.

    Bounded by time, not by a count of tries (a try can itself take seconds): the deadline is computed
    once, and the failure adds how long the wait really took, so the number an operator reads is true.
    """
    quoted = message.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
    return [
        "started=$(date +%s)",
        f"deadline=$((started + {timeout_seconds}))",
        f"until {condition}; do",
        f'  [ "$(date +%s)" -lt "$deadline" ] || fail "{quoted} (waited $(($(date +%s) - started)) s)"',
        "  sleep 2",
        "done",
    ]


def config_in_install_script(script: str) -> str:
    """The config.yaml text an install script writes (for plans and tests reading back what is declared)."""
    return _between(script, _HEREDOC_OPEN, _HEREDOC_CLOSE)


def bootstrap_config_in_install_script(script: str) -> str | None:
    """The first server's bootstrap config inside its install script, or None for every other node."""
    return _between(script, _BOOTSTRAP_OPEN, _BOOTSTRAP_CLOSE) if _BOOTSTRAP_OPEN in script else None


def _between(script: str, opening: str, closing: str) -> str:
    start = script.find(opening)
    end = script.find(closing, start + len(opening))
    if start < 0 or end < 0:
        raise ValueError("not an install script from install_script(): no config heredoc")
    return script[start + len(opening) : end]


def kubeconfig_for_operator(raw: str, server_url: str, cluster_name: str) -> str:
    """Point K3s's admin kubeconfig (127.0.0.1) at an address the operator can reach.

    The names change from K3s's generic ``default`` to the cluster name so several stacks can be
    merged into one ~/.kube/config.
    """
    config = yaml.safe_load(raw)
    if not isinstance(config, dict) or not config.get("clusters"):
        raise ValueError("the node's kubeconfig has no clusters; is K3s installed?")
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = server_url
        cluster["name"] = cluster_name
    for user in config.get("users", []):
        user["name"] = cluster_name
    for context in config.get("contexts", []):
        context["name"] = cluster_name
        context["context"]["cluster"] = cluster_name
        context["context"]["user"] = cluster_name
    config["current-context"] = cluster_name
    return yaml.safe_dump(config, sort_keys=False)
