"""The overlay checks between rollout batches as the program declares them (mock engine).

barrier(batch i) -> check(batch i) -> drains of batch i+1: the check waits for exactly its batch's
ready steps (through the batch's barrier when the batch has several nodes, directly on the one ready
when it has one), and every drain of the next batch waits for it. Off with verify.betweenBatches false
(or verify.enabled false). Skipped on a first deploy: what the engine calls then is ``create``.
"""

from __future__ import annotations

import pytest
from harness import run_program, secret_value

from keybuzz.offline import unwrap_secret
from keybuzz.verify.rollout_check import SKIP_CREATE, BatchCheckProvider

P = "keybuzz-k3s"
C = "keybuzz-staging"
K = f"{C}-k3s"
BATCH_CHECK = "pulumi-python:dynamic/rollout:BatchOverlayCheck"
SERVERS = [f"{C}-cp-{i}" for i in (1, 2, 3)]


def staging(workers=5, batch=2, verify=None, **overrides):
    values = {
        f"{P}:nodePools": [{"name": "workers", "count": workers, "serverType": "cx33"}],
        f"{P}:agentUpgradeBatchSize": batch,
        **{f"{P}:{k}": v for k, v in overrides.items()},
    }
    if verify is not None:
        values[f"{P}:verify"] = verify
    return run_program("staging", overrides=values)


def readies(deps):
    return sorted(d.removeprefix(f"{K}-ready-") for d in deps if d.startswith(f"{K}-ready-"))


def through_barriers(run, deps):
    """``deps`` with each batch barrier (``<cluster>-k3s-batch-<n>``) replaced by what it waits for."""
    return [w for d in deps for w in (run.named(d).depends_on if d.startswith(f"{K}-batch-") else [d])]


def check_of(run, batch):
    return run.named(f"{C}-rollout-check-batch-{batch}")


@pytest.fixture(scope="module")
def run():
    return staging()


def test_one_check_per_batch_after_exactly_that_batchs_ready_steps(run):
    workers = [f"{C}-workers-{i}" for i in range(1, 6)]
    batches = [[s] for s in SERVERS] + [[workers[0]], workers[1:3], workers[3:5]]
    checks = sorted(run.of_type(BATCH_CHECK), key=lambda r: r.name)
    assert len(checks) == len(batches) == 6
    for i, nodes in enumerate(batches):
        check = check_of(run, i)
        # A batch of one: its ready; of several: the batch's barrier, which waits for each ready.
        assert check.depends_on == ([f"{K}-ready-{nodes[0]}"] if len(nodes) == 1 else [f"{K}-batch-{i}"])
        assert through_barriers(run, check.depends_on) == [f"{K}-ready-{n}" for n in nodes]
        assert check.inputs["focus"] == nodes
        assert sorted(check.inputs["fingerprints"]) == nodes
        assert check.parent == K


def test_the_next_batchs_drains_wait_for_the_previous_batchs_check(run):
    workers = [f"{C}-workers-{i}" for i in range(1, 6)]
    order = [*SERVERS, *workers]
    batch_of = {SERVERS[0]: 0, SERVERS[1]: 1, SERVERS[2]: 2, workers[0]: 3, workers[1]: 4, workers[2]: 4,
                workers[3]: 5, workers[4]: 5}
    assert f"{C}-rollout-check" not in " ".join(run.named(f"{K}-drain-{SERVERS[0]}").depends_on)
    for node in order[1:]:
        deps = run.named(f"{K}-drain-{node}").depends_on
        checks = [d for d in deps if "-rollout-check-batch-" in d]
        assert checks == [f"{C}-rollout-check-batch-{batch_of[node] - 1}"], node
        # ... and only for it: the previous batch's ready steps come before the check.
        assert [d for d in deps if d.startswith((f"{K}-ready-", f"{K}-batch-"))] == [], node
        previous = [n for n, b in batch_of.items() if b == batch_of[node] - 1]
        assert readies(through_barriers(run, check_of(run, batch_of[node] - 1).depends_on)) == sorted(previous), node
    # The cluster-wide components (Calico first) wait for the last batch's check too.
    operator = next(r for r in run.resources if r.name.endswith("-calico-tigera-operator"))
    assert f"{C}-rollout-check-batch-5" in operator.depends_on


def test_the_first_agent_batch_is_a_canary_of_one_whatever_the_batch_size():
    run = staging(workers=7, batch=5)
    agent_checks = [check_of(run, i).inputs["focus"] for i in (3, 4)]
    assert agent_checks == [[f"{C}-workers-1"], [f"{C}-workers-{i}" for i in range(2, 7)]]
    assert check_of(run, 3).inputs["batch"] == "agent batch 1 of 3 (canary)"


def test_the_check_knows_what_was_changed_and_what_is_left_untouched(run):
    check = check_of(run, 3)
    assert check.inputs["changed"] == [*SERVERS, f"{C}-workers-1"]
    assert check.inputs["untouched"] == [f"{C}-workers-{i}" for i in range(2, 6)]
    assert check.inputs["batch"] == "agent batch 1 of 3 (canary)"
    assert check_of(run, 1).inputs["batch"] == f"server {C}-cp-2 (2 of 3)"


def test_the_check_talks_to_the_cluster_through_the_secret_kubeconfig_with_the_full_checks_settings(run):
    check, full = check_of(run, 0), run.named(f"{C}-verify-check-mesh")
    kubeconfig = secret_value(check.inputs["kubeconfig"])
    assert kubeconfig == unwrap_secret(full.inputs["kubeconfig"]) and "server: https://" in kubeconfig
    same = ("nodes", "podCidr", "subnetCidr", "poolMtu", "timeoutSeconds", "probeNamespace", "ingressHost",
            "ingressController", "ingressPort", "externalUrls")
    assert {k: check.inputs[k] for k in same} == {k: full.inputs[k] for k in same}


@pytest.mark.parametrize("verify", [{"betweenBatches": False}, {"enabled": False}])
def test_off_when_between_batches_or_verify_is_off(verify):
    run = staging(verify=verify)
    assert run.of_type(BATCH_CHECK) == []
    for node in [*SERVERS[1:], f"{C}-workers-1"]:
        assert not [d for d in run.named(f"{K}-drain-{node}").depends_on if "rollout-check" in d]


def test_skipped_on_a_first_deploy(run):
    """A first deploy creates every resource: the engine calls the check's ``create``, which skips
    with the reason and never reaches the cluster (no CNI, no probe fixture yet)."""
    check = check_of(run, 3)
    props = {k: unwrap_secret(v) for k, v in check.inputs.items() if k != "__provider"}

    def unreachable(*_args):
        raise AssertionError("a first deploy must not reach the cluster")

    outs = BatchCheckProvider(unreachable).create(props).outs
    assert (outs["skipped"], outs["passed"], outs["reason"]) == (True, True, SKIP_CREATE)
    assert outs["focus"] == [f"{C}-workers-1"]


def test_a_k3s_bump_changes_every_batchs_fingerprints_and_a_label_change_none(run):
    """What makes each check run (its diff): a rolled batch runs its check; an unrolled one does not."""
    bumped = staging(k3sVersion="v1.34.2+k3s1")
    labelled = staging(nodePools=[{"name": "workers", "count": 5, "serverType": "cx33", "labels": {"a": "b"}}])
    provider = BatchCheckProvider()
    for i in range(6):
        before = check_of(run, i).inputs
        assert provider.diff("id", before, check_of(bumped, i).inputs).changes is True, i
        assert provider.diff("id", before, check_of(labelled, i).inputs).changes is False, i
