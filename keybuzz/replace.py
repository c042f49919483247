"""Replacing a node: which server, under which URN, and what its new machine is created with.

Why a named operation: ``pulumi up --replace <server>`` alone does not work here. Servers ignore
``serverType`` and ``sshKeys`` after creation, and the engine creates a replacement with the inputs
recorded at first creation for ignored fields (pulumi PR 2657): the old type, and key ids that a
rotation may have deleted since (Hetzner refuses the creation). So ``bin/deploy <stack> replace
<node>`` runs ``pulumi up --replace <URN>`` with ``KEYBUZZ_REPLACE_NODES=<node>``; under it the
program stops ignoring those two fields for that node's server only, and the new machine is created
with the stack's current type and keys. Servers are always replaced delete-first (components/servers.py):
Hetzner refuses a second server with the same name or private IP.

The variable is read once, by ``keybuzz.config.load``; a name that is not a node of the stack is
refused before any resource, naming the nodes there are.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from keybuzz.config import PROJECT, ClusterConfig, ConfigError, Node

ENV_REPLACE_NODES = "KEYBUZZ_REPLACE_NODES"
# components/servers.py: NodeServers is a root component; each server is its child, named after the node.
SERVER_TYPE_CHAIN = "keybuzz:hetzner:NodeServers$hcloud:index/server:Server"
_NAMING_ONLY_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl naming-only"


class UnknownNodeError(ConfigError):
    """A node name that is not in this stack's plan; the message lists the ones that are."""

    def __init__(self, source: str, name: str, cfg: ClusterConfig) -> None:
        super().__init__(source, name, "")
        known = ", ".join(short_name(cfg, n) for n in cfg.nodes)
        ValueError.__init__(
            self,
            f"{source}: '{name}' is not a node of stack '{cfg.stack}'. Its nodes: {known} "
            f"(the short name, or with the cluster prefix '{cfg.cluster_name}-')",
        )


def short_name(cfg: ClusterConfig, node: Node) -> str:
    """cp-1 for keybuzz-dev-cp-1: what an operator types."""
    prefix = f"{cfg.cluster_name}-"
    return node.name[len(prefix):] if node.name.startswith(prefix) else node.name


def resolve_node(cfg: ClusterConfig, name: str, source: str = ENV_REPLACE_NODES) -> Node:
    """The planned node called ``name`` (short or full name); UnknownNodeError otherwise."""
    for node in cfg.nodes:
        if name in (node.name, short_name(cfg, node)):
            return node
    raise UnknownNodeError(source, name, cfg)


def replace_nodes_from_env(environ: Mapping[str, str], cfg: ClusterConfig) -> frozenset[str]:
    """Full names of the nodes being replaced in this run (comma-separated in the variable)."""
    raw = environ.get(ENV_REPLACE_NODES, "")
    names = [part.strip() for part in raw.split(",") if part.strip()]
    return frozenset(resolve_node(cfg, name).name for name in names)


def server_urn(stack: str, node_name: str, project: str = PROJECT) -> str:
    """The URN of a node's hcloud.Server, as ``pulumi up --replace`` takes it."""
    return f"urn:pulumi:{stack}::{project}::{SERVER_TYPE_CHAIN}::{node_name}"


def stack_file_config(stack: str, root: Path) -> ClusterConfig:
    """The stack's config as the CLI would hand it over (Pulumi.yaml defaults, then the stack file),
    parsed without the engine: enough to name the nodes. Secrets are not read."""
    from keybuzz.config import load_stack_yaml, parse_config, project_defaults

    doc = load_stack_yaml((root / f"Pulumi.{stack}.yaml").read_text()) or {}
    defaults = project_defaults()
    raw = dict(defaults)
    for key, value in (doc.get("config") or {}).items():
        namespace, _, name = str(key).partition(":")
        if namespace == PROJECT and not (isinstance(value, dict) and set(value) == {"secure"}):
            raw[name] = value
    # Node names and addresses do not depend on these two; bin/deploy checks the file has them.
    raw.setdefault("sshPublicKeys", [_NAMING_ONLY_KEY])
    raw.setdefault("adminCidrs", ["192.0.2.0/24"])
    return parse_config(raw, stack, defaults)


def main(argv: list[str]) -> int:
    """``python -m keybuzz.replace <stack> <node>``: prints the node's full name and its server's URN
    (one line, space-separated) for bin/deploy; a bad name: the message on stderr, exit 2."""
    if len(argv) != 2:
        print("usage: python -m keybuzz.replace <stack> <node>", file=sys.stderr)
        return 2
    stack, name = argv
    try:
        cfg = stack_file_config(stack, Path.cwd())
        node = resolve_node(cfg, name, source="bin/deploy replace")
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if cfg.deletion_protection:
        print(protected_message(stack, short_name(cfg, node)), file=sys.stderr)
        return 2
    print(node.name, server_urn(stack, node.name))
    return 0


def protected_message(stack: str, node: str) -> str:
    """Why a protected stack cannot replace a server, and the steps that can."""
    return (
        f"bin/deploy replace: deletionProtection is true in Pulumi.{stack}.yaml: Pulumi (`protect`) and Hetzner "
        "(delete protection) both refuse to delete the server, and a replacement deletes it first. "
        f"Set deletionProtection: false and commit, `bin/deploy {stack} up` (only the protection flags change, "
        f"in place), then `bin/deploy {stack} replace {node}`, then set it back to true, commit and `up`. "
        "A gated stack deploys only commits its previous stage verified: promote those commits as usual, "
        "or, in an emergency, prefix each command with KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION=1."
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
