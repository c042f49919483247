"""keybuzz/sdk_scale.py: the SDK's cycle check gives the same answers, in linear time, without recursion."""

from __future__ import annotations

import random

import pytest
from pulumi.runtime import resource_cycle_breaker as breaker

from keybuzz import sdk_scale


class Node:
    """Stands for a Resource: the cycle breaker only sets and reads attributes on it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def sdk_answer(start: Node, target: Node) -> bool:
    """The SDK's own walk (its recursive generator), which sdk_scale leaves in place."""
    return any(x is target for x in breaker._with_transitive_deps(start, set()))


@pytest.fixture(autouse=True)
def installed():
    assert sdk_scale.install() is True  # idempotent: the program's build() installs it too
    assert sdk_scale.install() is True


def test_a_new_edge_that_closes_a_cycle_is_still_refused():
    a, b, c = Node("a"), Node("b"), Node("c")
    assert breaker.declare_dependency(a, b) and breaker.declare_dependency(b, c)
    assert breaker.declare_dependency(c, a) is False  # a -> b -> c -> a
    assert breaker.declare_dependency(a, a) is False
    assert breaker._deps(c) == set()


def test_same_answers_as_the_sdk_on_random_graphs():
    rng = random.Random(7)
    for _ in range(30):
        nodes = [Node(str(i)) for i in range(25)]
        for _ in range(60):
            x, y = rng.sample(nodes, 2)
            expected = not sdk_answer(y, x)  # the SDK adds x -> y unless x is reachable from y
            assert breaker.declare_dependency(x, y) is expected
        for x in nodes:
            for y in nodes:
                assert sdk_scale.reachable(x, y, breaker._deps) == sdk_answer(x, y)


def test_a_chain_of_5000_links_needs_no_recursion_and_nothing_to_walk_for_new_resources():
    chain = [Node(f"n{i}") for i in range(5000)]
    for dependent, dependency in zip(chain[1:], chain[:-1], strict=True):
        assert breaker.declare_dependency(dependent, dependency)
    # The SDK's recursive walk cannot even go down this chain...
    with pytest.raises(RecursionError):
        sdk_answer(chain[-1], chain[0])
    # ...the replacement answers, and refuses the edge that would close the loop.
    assert sdk_scale.reachable(chain[-1], chain[0], breaker._deps) is True
    assert breaker.declare_dependency(chain[0], chain[-1]) is False


def test_a_resource_nothing_depends_on_is_found_without_walking():
    walked = []
    head = Node("head")
    assert sdk_scale.reachable(Node("big"), head, lambda r: walked.append(r) or set()) is False
    assert walked == []


class _Provider:
    """Stands for a dynamic provider: the SDK pickles it (dill) with its attributes."""

    def __init__(self) -> None:
        self.settings = {"b": 1, "a": {"d": 2, "c": 3}}


def test_serializing_many_providers_leaves_pickle_as_it_found_it():
    """pulumi 3.272 wraps pickle's _batch_setitems once more per dynamic resource: 1,500 of them
    (500 nodes at batch size 1: a resize and a check per node) were a RecursionError."""
    import pickle

    from pulumi.dynamic import dynamic

    assert sdk_scale.install_pickle_unwrap() is True
    before = pickle._Pickler._batch_setitems
    first = dynamic.serialize_provider(_Provider())
    assert all(dynamic.serialize_provider(_Provider()) == first for _ in range(1500))
    assert pickle._Pickler._batch_setitems is before
