"""The day-2 rollout plan as data: order, batches, dependencies, hosts (keybuzz/rollout.py)."""

from __future__ import annotations

import pytest
from test_config import raw_config

from keybuzz.config import parse_config, project_defaults
from keybuzz.rollout import AGENTS_WAVE, NODE_STEPS, SERVERS_WAVE, agent_batches, plan_rollout, rollout_of


def cluster(servers=3, workers=5, batch=2):
    raw = raw_config(
        controlPlane={"count": servers, "serverType": "cx23"},
        nodePools=[{"name": "w", "count": workers, "serverType": "cx33"}],
        agentUpgradeBatchSize=batch,
    )
    return parse_config(raw, "dev", project_defaults())


def test_servers_go_one_at_a_time_then_agents_in_batches_after_the_last_server():
    plan = plan_rollout(cluster())
    assert [(e.node.name, e.wave, e.batch, e.after) for e in plan] == [
        ("keybuzz-cp-1", SERVERS_WAVE, 0, ()),
        ("keybuzz-cp-2", SERVERS_WAVE, 1, ("keybuzz-cp-1",)),
        ("keybuzz-cp-3", SERVERS_WAVE, 2, ("keybuzz-cp-2",)),
        # The canary goes alone, whatever the batch size.
        ("keybuzz-w-1", AGENTS_WAVE, 3, ("keybuzz-cp-3",)),
        ("keybuzz-w-2", AGENTS_WAVE, 4, ("keybuzz-w-1",)),
        ("keybuzz-w-3", AGENTS_WAVE, 4, ("keybuzz-w-1",)),
        ("keybuzz-w-4", AGENTS_WAVE, 5, ("keybuzz-w-2", "keybuzz-w-3")),
        ("keybuzz-w-5", AGENTS_WAVE, 5, ("keybuzz-w-2", "keybuzz-w-3")),
    ]


def test_every_node_goes_drain_resize_install_ready_then_labels_and_taints():
    assert NODE_STEPS == ("drain", "resize", "install", "ready", "labels", "taints")
    assert {e.steps for e in plan_rollout(cluster())} == {NODE_STEPS}


def test_kubectl_work_runs_on_the_first_server_and_retires_chain_per_role():
    plan = plan_rollout(cluster())
    assert {e.ops_host for e in plan} == {"keybuzz-cp-1"}
    retire = {e.node.name: (e.retire_host, e.retire_after) for e in plan}
    assert retire == {
        # The first server is retired from the second (it cannot drain and delete itself).
        "keybuzz-cp-1": ("keybuzz-cp-2", None),
        "keybuzz-cp-2": ("keybuzz-cp-1", "keybuzz-cp-1"),
        "keybuzz-cp-3": ("keybuzz-cp-1", "keybuzz-cp-2"),
        "keybuzz-w-1": ("keybuzz-cp-1", None),
        "keybuzz-w-2": ("keybuzz-cp-1", "keybuzz-w-1"),
        "keybuzz-w-3": ("keybuzz-cp-1", "keybuzz-w-2"),
        "keybuzz-w-4": ("keybuzz-cp-1", "keybuzz-w-3"),
        "keybuzz-w-5": ("keybuzz-cp-1", "keybuzz-w-4"),
    }


def test_a_lone_server_is_its_own_retire_host():
    (entry,) = plan_rollout(cluster(servers=1, workers=0))
    assert (entry.retire_host, entry.retire_after, entry.after) == ("keybuzz-cp-1", None, ())


def test_growing_a_pool_appends_without_moving_existing_nodes():
    before = plan_rollout(cluster(workers=2, batch=1))
    after = plan_rollout(cluster(workers=3, batch=1))
    assert after[: len(before)] == before
    assert rollout_of(after, "keybuzz-w-3").after == ("keybuzz-w-2",)


@pytest.mark.parametrize(("size", "expected"), [(1, [1, 1, 1]), (2, [1, 2]), (3, [1, 2]), (10, [1, 2])])
def test_agent_batches_cut_in_plan_order(size, expected):
    agents = cluster(workers=3).agents
    batches = agent_batches(agents, size)
    assert [len(b) for b in batches] == expected
    assert [n for b in batches for n in b] == list(agents)


@pytest.mark.parametrize(("workers", "size", "expected"), [(10, 4, [1, 4, 4, 1]), (1, 5, [1]), (0, 3, []),
                                                          (5, 1, [1, 1, 1, 1, 1])])
def test_the_first_agent_batch_is_a_canary_of_one_whatever_the_batch_size(workers, size, expected):
    batches = agent_batches(cluster(workers=workers).agents, size)
    assert [len(b) for b in batches] == expected
    assert [e.batch for e in plan_rollout(cluster(workers=workers, batch=size)) if e.wave == AGENTS_WAVE] == [
        3 + i for i, n in enumerate(expected) for _ in range(n)
    ]


def test_a_batch_size_below_one_is_a_programming_error():
    with pytest.raises(ValueError, match="batch size must be >= 1, not 0"):
        agent_batches((), 0)


def test_rollout_of_an_unknown_node_names_it():
    with pytest.raises(KeyError, match="nope"):
        rollout_of(plan_rollout(cluster()), "nope")
