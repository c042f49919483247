"""Dependency depth grows with the rollout's batches, not with its nodes (issue 18); no timing here:
bin/bench measures seconds, this holds the shape of the graph the Pulumi SDK walks."""

from __future__ import annotations

import pytest
from bench.bench import longest_chain, overrides_for
from harness import run_program
from pulumi.runtime import resource_cycle_breaker as breaker

from keybuzz import sdk_scale


@pytest.fixture
def chain_of(monkeypatch):
    """Longest chain of the SDK's dependency graph for prod with ``nodes`` nodes (3 servers)."""
    sdk_scale.install()  # first, so that the recorder below wraps it and is undone cleanly

    def measure(nodes: int, batch: str) -> int:
        edges: list[tuple[str, str]] = []
        add_dep = breaker._add_dep

        def recording(from_resource, to_resource):
            edges.append((from_resource._name, to_resource._name))
            return add_dep(from_resource, to_resource)

        monkeypatch.setattr(breaker, "_add_dep", recording)
        run_program("prod", preview=True, overrides=overrides_for(nodes, batch, servers=3))
        monkeypatch.setattr(breaker, "_add_dep", add_dep)
        assert edges, "nothing recorded: the measure would pass vacuously"
        return longest_chain(edges)

    return measure


def test_twice_the_agents_in_as_many_batches_make_no_longer_chain(chain_of):
    # 10% of 20 agents: 10 batches of 2; of 40: 10 batches of 4.
    assert chain_of(23, "10%") == chain_of(43, "10%")


def test_the_chain_grows_by_batch_not_by_node(chain_of):
    ten_batches = chain_of(43, "4")
    twenty_batches = chain_of(43, "2")
    per_batch = (twenty_batches - ten_batches) / 10
    assert 4 <= per_batch <= 7  # drain, resize, install, ready, barrier (+ what sits between batches)
    assert ten_batches < 200


def test_longest_chain_of_a_graph():
    assert longest_chain([]) == 0
    assert longest_chain([("b", "a"), ("c", "b"), ("c", "a"), ("d", "a")]) == 2
    assert longest_chain((str(i + 1), str(i)) for i in range(3000)) == 3000  # no recursion
