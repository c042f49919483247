"""Day-2 rollout as data: which node changes when, after what, and what runs around it.

Every change that touches a node's K3s (a new ``k3sVersion``, a changed ``config.yaml``, a new
server type) goes through the same chain on that node, and nodes go through it in a fixed order:

    drain -> resize -> install -> ready (Node Ready, uncordoned) -> labels, taints

- servers first, one at a time, each back to /readyz and Ready before the next (etcd quorum, and
  K3s wants servers upgraded before agents);
- then agents: one alone first (the canary), then ``agentUpgradeBatchSize`` at a time, each batch
  after the previous one is back (and, with ``verify.betweenBatches``, its overlay check passed).

Removing a node is the reverse chain, on ``pulumi up`` deletes: every node has a "retire" step
whose delete drains the node and deletes its Node (for a server, K3s then removes its etcd member,
and the step waits until the member list no longer has it) before the server itself is deleted.
Retire steps of one role are chained so that Pulumi deletes them one at a time, last node first:
shrinking the control plane removes one etcd member at a time.

Pure: ``plan_rollout`` returns the plan; components/k3s.py turns it into resources and options.
"""

from __future__ import annotations

from dataclasses import dataclass

from keybuzz.config import ClusterConfig, Node

# The steps of one node's chain, in order.
DRAIN, RESIZE, INSTALL, READY, LABELS, TAINTS = "drain", "resize", "install", "ready", "labels", "taints"
NODE_STEPS = (DRAIN, RESIZE, INSTALL, READY, LABELS, TAINTS)
SERVERS_WAVE, AGENTS_WAVE = "servers", "agents"


@dataclass(frozen=True)
class NodeRollout:
    """One node's place in the rollout.

    ``after``: nodes whose chain (up to ready) must be done before this node's drain starts.
    ``ops_host``: the server whose ``k3s kubectl`` drains, waits for and uncordons this node (agents
    have no admin kubeconfig). It is only where the command connects: the scripts talk to the first
    ready API from there (its own, the LB's, another server's; keybuzz/node_ops.py), so its K3s
    being down does not stop another node's drain. ``retire_host``: the server that retires it on removal (itself for a
    lone server: nothing to do then). ``retire_after``: the node whose retire step this one's depends
    on, so deletes run one at a time (this one first).
    """

    node: Node
    wave: str
    batch: int
    after: tuple[str, ...]
    ops_host: str
    retire_host: str
    retire_after: str | None
    steps: tuple[str, ...] = NODE_STEPS


def agent_batches(agents: tuple[Node, ...], size: int) -> tuple[tuple[Node, ...], ...]:
    """Agents in plan order: a canary of one, then batches of ``size`` (the last one may be smaller).

    The canary: whatever the batch size, the first agent goes alone, so a change that breaks the pod
    network is caught (keybuzz/verify/rollout_check.py) with one agent drained, not a whole batch.
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, not {size}")
    canary, rest = agents[:1], agents[1:]
    return ((canary,) if canary else ()) + tuple(rest[i : i + size] for i in range(0, len(rest), size))


def plan_rollout(cfg: ClusterConfig) -> tuple[NodeRollout, ...]:
    """The ordered rollout of every node: servers one per batch, then agents in batches."""
    servers, agents = cfg.servers, cfg.agents
    first = servers[0].name
    plan: list[NodeRollout] = []
    previous: tuple[str, ...] = ()
    for i, server in enumerate(servers):
        # The first server is retired from the second one; a lone server only from itself, and then
        # its retire does nothing (there is no cluster left to remove it from).
        retire_host = first if i > 0 else (servers[1].name if len(servers) > 1 else first)
        plan.append(
            NodeRollout(
                node=server,
                wave=SERVERS_WAVE,
                batch=i,
                after=previous,
                ops_host=first,
                retire_host=retire_host,
                retire_after=servers[i - 1].name if i > 0 else None,
            )
        )
        previous = (server.name,)
    for b, batch in enumerate(agent_batches(agents, cfg.agent_upgrade_batch_size)):
        for agent in batch:
            index = agents.index(agent)
            plan.append(
                NodeRollout(
                    node=agent,
                    wave=AGENTS_WAVE,
                    batch=len(servers) + b,
                    after=previous,
                    ops_host=first,
                    retire_host=first,
                    retire_after=agents[index - 1].name if index > 0 else None,
                )
            )
        previous = tuple(a.name for a in batch)
    return tuple(plan)


def rollout_of(plan: tuple[NodeRollout, ...], node_name: str) -> NodeRollout:
    """The plan entry of one node (KeyError naming it when absent)."""
    for entry in plan:
        if entry.node.name == node_name:
            return entry
    raise KeyError(node_name)
