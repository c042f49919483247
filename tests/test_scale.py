"""Dependency depth grows with the rollout's batches, not with its nodes (issue 18); no timing here:
bin/bench measures seconds, this holds the shape of the graph the Pulumi SDK walks."""

from __future__ import annotations

from bench.bench import longest_chain, overrides_for
from harness import run_program
from pulumi.runtime import resource_cycle_breaker as breaker

from keybuzz import sdk_scale

_CHAINS: dict[tuple[int, str, bool], int] = {}


def chain_of(nodes: int, batch: str, checks: bool = True) -> int:
    """Longest chain of the SDK's dependency graph for prod with ``nodes`` nodes (3 servers), with
    the overlay checks between batches (verify.betweenBatches, the default) or without; runs are
    shared by the tests of this module."""
    if (nodes, batch, checks) not in _CHAINS:
        sdk_scale.install()  # first, so that the recorder below wraps it and is undone cleanly
        edges: list[tuple[str, str]] = []
        add_dep = breaker._add_dep

        def recording(from_resource, to_resource):
            edges.append((from_resource._name, to_resource._name))
            return add_dep(from_resource, to_resource)

        breaker._add_dep = recording
        try:
            off = {} if checks else {"keybuzz-k3s:verify": {"betweenBatches": False}}
            run_program("prod", preview=True, overrides={**overrides_for(nodes, batch, servers=3), **off})
        finally:
            breaker._add_dep = add_dep
        assert edges, "nothing recorded: the measure would pass vacuously"
        _CHAINS[nodes, batch, checks] = longest_chain(edges)
    return _CHAINS[nodes, batch, checks]


def test_twice_the_agents_in_as_many_batches_make_no_longer_chain():
    # 20% of 11 agents: the canary, then 5 batches of 2; of 21 agents: the canary, then 5 batches of 4.
    assert chain_of(14, "20%") == chain_of(24, "20%")


def test_the_chain_grows_by_batch_not_by_node():
    # 21 agents: the canary, then 10 batches of 2 (10%) or 5 batches of 4 (20%).
    ten_batches = chain_of(24, "10%")
    five_batches = chain_of(24, "20%")
    per_batch = (ten_batches - five_batches) / 5
    assert per_batch == 6  # drain, resize, install, ready, barrier, the batch's overlay check
    assert ten_batches < 200


def test_without_checks_between_batches_a_batch_is_one_link_shorter():
    ten_batches = chain_of(24, "10%", checks=False)
    per_batch = (ten_batches - chain_of(24, "20%", checks=False)) / 5
    assert per_batch == 5  # drain, resize, install, ready, barrier
    # With checks, each of the 3 + 11 batches has one link more, and the first batch's check also
    # takes the kubeconfig, read from cp-1 after its ready (read, re-read: two links more).
    assert chain_of(24, "10%") - ten_batches == 14 + 2


def test_longest_chain_of_a_graph():
    assert longest_chain([]) == 0
    assert longest_chain([("b", "a"), ("c", "b"), ("c", "a"), ("d", "a")]) == 2
    assert longest_chain((str(i + 1), str(i)) for i in range(3000)) == 3000  # no recursion
