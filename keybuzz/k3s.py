"""What K3s runs with on each node: config files, node scripts and the operator's kubeconfig.

Pure functions only (strings and dicts in, strings and dicts out), so the exact file every node
gets is tested as data; components/k3s.py turns them into remote commands.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import Any
from urllib.parse import quote

import yaml

from keybuzz.config import ClusterConfig, Node

CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
TOKEN_PATH = "/etc/rancher/k3s/cluster-token"
KUBECONFIG_PATH = "/etc/rancher/k3s/k3s.yaml"
API_PORT = 6443
READY_TIMEOUT_SECONDS = 300
_HEREDOC_OPEN = "<<'KEYBUZZ_EOF'\n"
_HEREDOC_CLOSE = "KEYBUZZ_EOF"

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


def render_server_config(cfg: ClusterConfig, node: Node, first_server: Node, public_ip: str) -> dict[str, Any]:
    """K3s server config: Flannel off, CIDRs explicit, everything bound to the private IP."""
    critical = critical_values(cfg)
    config: dict[str, Any] = {
        "node-name": node.name,
        "token-file": TOKEN_PATH,
        "flannel-backend": critical["flannel-backend"],
        "disable-network-policy": True,
        "cluster-cidr": critical["cluster-cidr"],
        "service-cidr": critical["service-cidr"],
        "node-ip": node.private_ip,
        "advertise-address": node.private_ip,
        "tls-san": [public_ip, node.private_ip],
        "disable": ["traefik", "servicelb"],
        "write-kubeconfig-mode": "0600",
    }
    if node.name == first_server.name:
        config["cluster-init"] = True
    else:
        config["server"] = f"https://{first_server.private_ip}:{API_PORT}"
    _add_node_metadata(config, node)
    return config


def render_agent_config(node: Node, first_server: Node) -> dict[str, Any]:
    """K3s agent config: join the first server over the private network."""
    config: dict[str, Any] = {
        "node-name": node.name,
        "token-file": TOKEN_PATH,
        "server": f"https://{first_server.private_ip}:{API_PORT}",
        "node-ip": node.private_ip,
    }
    _add_node_metadata(config, node)
    return config


def _add_node_metadata(config: dict[str, Any], node: Node) -> None:
    if node.labels:
        config["node-label"] = [f"{k}={v}" for k, v in sorted(node.labels.items())]
    if node.taints:
        config["node-taint"] = list(node.taints)


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


def install_script(role: str, version: str, config_yaml: str) -> str:
    """Shell run on a node as root: write token and config atomically, then install pinned K3s.

    The cluster token arrives on stdin so it never appears in a command line, a log or the state's
    command text. Re-running yields the same files, and the installer is itself idempotent.
    """
    if role not in ("server", "agent"):
        raise ValueError(f"role must be 'server' or 'agent', not {role!r}")
    return "\n".join(
        [
            "set -eu",
            # Hetzner images run cloud-init on first boot; apt and networking must be settled first.
            "cloud-init status --wait >/dev/null 2>&1 || [ $? -eq 2 ]",
            "umask 077",
            "install -d -m 0755 /etc/rancher/k3s",
            f"cat > {TOKEN_PATH}.new && mv -f {TOKEN_PATH}.new {TOKEN_PATH}",
            f"cat > {CONFIG_PATH}.new {_HEREDOC_OPEN}{config_yaml}{_HEREDOC_CLOSE}",
            f"chmod 0600 {CONFIG_PATH}.new && mv -f {CONFIG_PATH}.new {CONFIG_PATH}",
            f"curl -sfL --retry 5 {shlex.quote(install_script_url(version))} -o /tmp/k3s-install.sh",
            f"INSTALL_K3S_VERSION={shlex.quote(version)} INSTALL_K3S_EXEC={role} sh /tmp/k3s-install.sh",
        ]
    )


def config_in_install_script(script: str) -> str:
    """The config.yaml text an install script writes (for plans and tests reading back what is declared)."""
    start = script.find(_HEREDOC_OPEN)
    end = script.find(_HEREDOC_CLOSE, start + len(_HEREDOC_OPEN))
    if start < 0 or end < 0:
        raise ValueError("not an install script from install_script(): no config heredoc")
    return script[start + len(_HEREDOC_OPEN) : end]


def wait_ready_script(timeout_seconds: int = READY_TIMEOUT_SECONDS) -> str:
    """Wait for the API server's /readyz, not node Ready: nodes stay NotReady until Calico exists."""
    return (
        f"for i in $(seq 1 {timeout_seconds // 2}); do "
        "k3s kubectl get --raw /readyz >/dev/null 2>&1 && exit 0; sleep 2; done; "
        f"echo 'K3s API server not ready after {timeout_seconds}s; see journalctl -u k3s' >&2; exit 1"
    )


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
