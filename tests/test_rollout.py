"""The day-2 rollout plan as data: order, batches, dependencies, hosts (keybuzz/rollout.py)."""

from __future__ import annotations

import pytest
from test_config import raw_config

from keybuzz.config import ConfigError, parse_config, project_defaults
from keybuzz.rollout import (
    AGENTS_WAVE,
    NODE_STEPS,
    SERVERS_WAVE,
    BatchSize,
    agent_batches,
    parse_batch_size,
    plan_batches,
    plan_rollout,
    rollout_of,
)


def cluster(servers=3, workers=5, batch=2, subnet="10.0.1.0/24"):
    raw = raw_config(
        controlPlane={"count": servers, "serverType": "cx23"},
        nodePools=[{"name": "w", "count": workers, "serverType": "cx33"}],
        agentUpgradeBatchSize=batch,
        subnetCidr=subnet,
    )
    return parse_config(raw, "dev", project_defaults())


def test_servers_go_one_at_a_time_then_agents_in_batches_after_the_last_server():
    plan = plan_rollout(cluster())
    assert [(e.node.name, e.wave, e.batch, e.after_batch) for e in plan] == [
        ("keybuzz-cp-1", SERVERS_WAVE, 0, None),
        ("keybuzz-cp-2", SERVERS_WAVE, 1, 0),
        ("keybuzz-cp-3", SERVERS_WAVE, 2, 1),
        # The canary goes alone, whatever the batch size.
        ("keybuzz-w-1", AGENTS_WAVE, 3, 2),
        ("keybuzz-w-2", AGENTS_WAVE, 4, 3),
        ("keybuzz-w-3", AGENTS_WAVE, 4, 3),
        ("keybuzz-w-4", AGENTS_WAVE, 5, 4),
        ("keybuzz-w-5", AGENTS_WAVE, 5, 4),
    ]


def test_batches_are_data_one_per_server_then_the_canary_then_agents_cut_by_the_batch_size():
    batches = plan_batches(cluster())
    assert [(b.index, b.wave, b.names) for b in batches] == [
        (0, SERVERS_WAVE, ("keybuzz-cp-1",)),
        (1, SERVERS_WAVE, ("keybuzz-cp-2",)),
        (2, SERVERS_WAVE, ("keybuzz-cp-3",)),
        (3, AGENTS_WAVE, ("keybuzz-w-1",)),  # the canary
        (4, AGENTS_WAVE, ("keybuzz-w-2", "keybuzz-w-3")),
        (5, AGENTS_WAVE, ("keybuzz-w-4", "keybuzz-w-5")),
    ]
    # The plan's entries point at these batches.
    assert {e.node.name: e.batch for e in plan_rollout(cluster())} == {
        n: b.index for b in batches for n in b.names
    }


def test_3_servers_and_20_agents_at_10_percent_keep_every_guarantee():
    plan = plan_rollout(cluster(servers=3, workers=20, batch="10%"))
    batches = plan_batches(cluster(servers=3, workers=20, batch="10%"))
    # Servers first, each alone in its batch, each after the previous server.
    assert [b.names for b in batches[:3]] == [("keybuzz-cp-1",), ("keybuzz-cp-2",), ("keybuzz-cp-3",)]
    assert all(b.wave == SERVERS_WAVE for b in batches[:3])
    # Then the canary alone, then 10% of 20 agents = 2 per batch, in pool order, each batch after the
    # previous one.
    agents = batches[3:]
    assert [len(b.nodes) for b in agents] == [1] + [2] * 9 + [1] and all(b.wave == AGENTS_WAVE for b in agents)
    assert [n for b in agents for n in b.names] == [f"keybuzz-w-{i}" for i in range(1, 21)]
    assert [e.after_batch for e in plan] == [None, 0, 1, *(b.index - 1 for b in agents for _ in b.nodes)]
    # No agent before the last server; within a node, drain before every change.
    first_agent = min(e.batch for e in plan if e.wave == AGENTS_WAVE)
    assert first_agent > max(e.batch for e in plan if e.wave == SERVERS_WAVE)
    assert {e.steps for e in plan} == {NODE_STEPS} and NODE_STEPS[0] == "drain"


def test_every_node_goes_drain_resize_install_ready_then_labels_and_taints():
    assert NODE_STEPS == ("drain", "resize", "install", "ready", "labels", "taints")
    assert {e.steps for e in plan_rollout(cluster())} == {NODE_STEPS}


def test_kubectl_work_runs_on_the_first_server_and_retires_chain_servers_one_by_one_agents_in_lanes():
    plan = plan_rollout(cluster())
    assert {e.ops_host for e in plan} == {"keybuzz-cp-1"}
    retire = {e.node.name: (e.retire_host, e.retire_after) for e in plan}
    assert retire == {
        # The first server is retired from the second (it cannot drain and delete itself).
        "keybuzz-cp-1": ("keybuzz-cp-2", None),
        "keybuzz-cp-2": ("keybuzz-cp-1", "keybuzz-cp-1"),
        "keybuzz-cp-3": ("keybuzz-cp-1", "keybuzz-cp-2"),
        # Batches of 2: two lanes; each agent after the one a batch size before it in pool order, so
        # removing agents deletes at most a batch's worth at a time, last first.
        "keybuzz-w-1": ("keybuzz-cp-1", None),
        "keybuzz-w-2": ("keybuzz-cp-1", None),
        "keybuzz-w-3": ("keybuzz-cp-1", "keybuzz-w-1"),
        "keybuzz-w-4": ("keybuzz-cp-1", "keybuzz-w-2"),
        "keybuzz-w-5": ("keybuzz-cp-1", "keybuzz-w-3"),
    }


def test_with_batches_of_one_agents_retire_one_at_a_time_as_before():
    plan = plan_rollout(cluster(workers=3, batch=1))
    assert [e.retire_after for e in plan if e.wave == AGENTS_WAVE] == [None, "keybuzz-w-1", "keybuzz-w-2"]


def test_a_lone_server_is_its_own_retire_host():
    (entry,) = plan_rollout(cluster(servers=1, workers=0))
    assert (entry.retire_host, entry.retire_after, entry.after_batch) == ("keybuzz-cp-1", None, None)


def test_growing_a_pool_appends_without_moving_existing_nodes():
    before = plan_rollout(cluster(workers=2, batch=1))
    after = plan_rollout(cluster(workers=3, batch=1))
    assert after[: len(before)] == before
    assert rollout_of(after, "keybuzz-w-3").after_batch == rollout_of(after, "keybuzz-w-2").batch


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


# --- agentUpgradeBatchSize as a number or a percentage ------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [(1, BatchSize(count=1)), ("3", BatchSize(count=3)), (100, BatchSize(count=100)),
     ("10%", BatchSize(percent=10)), (" 50% ", BatchSize(percent=50)), ("1%", BatchSize(percent=1))],
)
def test_batch_size_is_a_number_or_a_percentage(value, parsed):
    assert parse_batch_size(value) == parsed


@pytest.mark.parametrize(
    ("percent", "agents", "per_batch"),
    [(10, 497, 49), (10, 20, 2), (10, 9, 1), (10, 0, 1), (25, 10, 2), (50, 3, 1), (50, 4, 2)],
)
def test_a_percentage_rounds_down_like_max_unavailable_but_never_to_zero(percent, agents, per_batch):
    assert BatchSize(percent=percent).agents_per_batch(agents) == per_batch


def test_a_number_is_the_same_whatever_the_agent_count():
    assert BatchSize(count=3).agents_per_batch(2) == 3 and BatchSize(count=3).agents_per_batch(500) == 3


def test_500_nodes_at_10_percent_make_3_server_batches_and_12_agent_batches():
    plan = plan_batches(cluster(servers=3, workers=497, batch="10%", subnet="10.0.0.0/22"))
    assert len(plan) == 15
    agents = [b for b in plan if b.wave == AGENTS_WAVE]
    # The canary alone, then 10% of 497 = 49 per batch.
    assert [len(b.nodes) for b in agents] == [1] + [49] * 10 + [6]
    assert str(parse_batch_size("10%")) == "10%" and str(parse_batch_size(4)) == "4"


@pytest.mark.parametrize("value", [0, 101, -1, "0%", "51%", "100%", "10 %", "%", "ten", "1.5", 2.0, True, None, [2]])
def test_a_bad_batch_size_is_refused_naming_the_key_and_what_is_allowed(value):
    with pytest.raises(ConfigError) as error:
        cluster(batch=value)
    assert error.value.key == "agentUpgradeBatchSize"
    assert error.value.value == value
    assert '1..100, or a percentage of the agents "1%".."50%"' in str(error.value)
