"""Day-2 rollout as data: which node changes when, after what, and what runs around it.

Every change that touches a node's K3s (a new ``k3sVersion``, a changed ``config.yaml``, a new
server type) goes through the same chain on that node, and nodes go through it in batches:

    drain -> resize -> install -> ready (Node Ready, uncordoned) -> labels, taints

- servers first, one per batch, each back to /readyz and Ready before the next (etcd quorum, and
  K3s wants servers upgraded before agents);
- then agents: one alone first (the canary), then ``agentUpgradeBatchSize`` per batch (a number, or
  a percentage of the agents like Kubernetes' ``maxUnavailable``), each batch after the previous one
  is back (and, with ``verify.betweenBatches``, its overlay check passed).

Between two batches stands one boundary (components/k3s.py): after a batch of several nodes a
barrier that waits for every ``ready`` of its batch, after a batch of one that node's ``ready``;
with ``verify.betweenBatches`` the batch's overlay check waits for that boundary and becomes it.
Every ``drain`` of the next batch waits for the boundary. So the longest dependency chain grows
with the number of batches, not of nodes (the Pulumi SDK walks every chain recursively at each
registration, pulumi/runtime/resource_cycle_breaker.py: a chain of ~1,000 links is a
RecursionError).

Removing a node is the reverse chain, on ``pulumi up`` deletes: every node has a "retire" step
whose delete drains the node and deletes its Node (for a server, K3s then removes its etcd member,
and the step waits until the member list no longer has it) before the server itself is deleted.
Retire steps are chained so that Pulumi deletes them last node first: servers one at a time
(one etcd member at a time); agents in lanes, as many lanes as agents per batch (an agent's retire
follows the agent a batch size before it in pool order), so at most a batch's worth of agents is
drained for removal at once and the chain is about as long as the number of batches.

Pure: ``plan_rollout``/``plan_batches`` return the plan; components/k3s.py turns it into resources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keybuzz.config imports BatchSize from here
    from keybuzz.config import ClusterConfig, Node

# The steps of one node's chain, in order.
DRAIN, RESIZE, INSTALL, READY, LABELS, TAINTS = "drain", "resize", "install", "ready", "labels", "taints"
NODE_STEPS = (DRAIN, RESIZE, INSTALL, READY, LABELS, TAINTS)
SERVERS_WAVE, AGENTS_WAVE = "servers", "agents"

BATCH_SIZE_KEY = "agentUpgradeBatchSize"
MAX_BATCH_COUNT = 100  # agents at once, as a number
MAX_BATCH_PERCENT = 50  # more than half of the agents cordoned at once leaves the rest to carry everything
_PERCENT_RE = re.compile(r"^(\d{1,3})%$")


@dataclass(frozen=True)
class BatchSize:
    """``agentUpgradeBatchSize`` as configured: ``count`` agents, or ``percent`` of the agents."""

    count: int = 1
    percent: int = 0  # 0: ``count`` is meant

    def agents_per_batch(self, agents: int) -> int:
        """Agents drained at once among ``agents``: a percentage rounds down, as ``maxUnavailable`` does,
        but never to 0 (a rollout must move)."""
        if not self.percent:
            return self.count
        return max(1, agents * self.percent // 100)

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent else str(self.count)


def parse_batch_size(value: object) -> BatchSize:
    """A whole number 1..100, or a percentage "1%".."50%" of the agents; ConfigError naming the key otherwise."""
    from keybuzz.config import ConfigError

    allowed = (
        f"a whole number of agents 1..{MAX_BATCH_COUNT}, or a percentage of the agents "
        f'"1%".."{MAX_BATCH_PERCENT}%" (e.g. "10%")'
    )
    if isinstance(value, str):
        text = value.strip()
        match = _PERCENT_RE.match(text)
        if match:
            percent = int(match.group(1))
            if not 1 <= percent <= MAX_BATCH_PERCENT:
                raise ConfigError(BATCH_SIZE_KEY, value, allowed)
            return BatchSize(percent=percent)
        if re.fullmatch(r"\d+", text):
            value = int(text)  # the CLI stores `pulumi config set` values as strings
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_COUNT:
        raise ConfigError(BATCH_SIZE_KEY, value, allowed)
    return BatchSize(count=value)


@dataclass(frozen=True)
class Batch:
    """Nodes that go through their chain at the same time; the next batch starts after all are back."""

    index: int  # position in the rollout, servers' batches first
    wave: str
    nodes: tuple[Node, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)


@dataclass(frozen=True)
class NodeRollout:
    """One node's place in the rollout.

    ``after_batch``: the batch whose barrier this node's drain waits for (None: the first batch).
    ``ops_host``: the server whose ``k3s kubectl`` drains, waits for and uncordons this node (agents
    have no admin kubeconfig). It is only where the command connects: the scripts talk to the first
    ready API from there (its own, the LB's, another server's; keybuzz/node_ops.py), so its K3s
    being down does not stop another node's drain. ``retire_host``: the server that retires it on removal (itself for a
    lone server: nothing to do then). ``retire_after``: the node whose retire step this one's depends
    on, so that deletes run last node first (this one before that one).
    """

    node: Node
    wave: str
    batch: int
    after_batch: int | None
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


def plan_batches(cfg: ClusterConfig) -> tuple[Batch, ...]:
    """Every batch in rollout order: one per server, then the agents: the canary alone
    (``agent_batches``), the rest cut by ``agentUpgradeBatchSize``."""
    servers = [Batch(i, SERVERS_WAVE, (server,)) for i, server in enumerate(cfg.servers)]
    size = cfg.agent_upgrade_batch.agents_per_batch(len(cfg.agents))
    agents = [
        Batch(len(servers) + b, AGENTS_WAVE, batch) for b, batch in enumerate(agent_batches(cfg.agents, size))
    ]
    return (*servers, *agents)


def plan_rollout(cfg: ClusterConfig) -> tuple[NodeRollout, ...]:
    """The ordered rollout of every node: servers one per batch, then agents in batches."""
    servers, agents = cfg.servers, cfg.agents
    first = servers[0].name
    lanes = cfg.agent_upgrade_batch.agents_per_batch(len(agents))
    position = {agent.name: i for i, agent in enumerate(agents)}
    plan: list[NodeRollout] = []
    for batch in plan_batches(cfg):
        after = batch.index - 1 if batch.index > 0 else None
        for node in batch.nodes:
            if batch.wave == SERVERS_WAVE:
                i = batch.index
                # The first server is retired from the second one; a lone server only from itself, and
                # then its retire does nothing (there is no cluster left to remove it from).
                retire_host = first if i > 0 else (servers[1].name if len(servers) > 1 else first)
                retire_after = servers[i - 1].name if i > 0 else None
            else:
                index = position[node.name]
                retire_host = first
                retire_after = agents[index - lanes].name if index >= lanes else None
            plan.append(
                NodeRollout(
                    node=node,
                    wave=batch.wave,
                    batch=batch.index,
                    after_batch=after,
                    ops_host=first,
                    retire_host=retire_host,
                    retire_after=retire_after,
                )
            )
    return tuple(plan)


def rollout_of(plan: tuple[NodeRollout, ...], node_name: str) -> NodeRollout:
    """The plan entry of one node (KeyError naming it when absent)."""
    for entry in plan:
        if entry.node.name == node_name:
            return entry
    raise KeyError(node_name)
