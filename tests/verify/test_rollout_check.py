"""The overlay checks between rollout batches: the focus in the plan and the judges, and the batch
check's provider (skip on create, re-run while its batch changed or failed, stop with the verdict)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from verify_fakes import NODES, POD_CIDR, SUBNET_CIDR, FakeCluster, Faults

from keybuzz.verify import checks, plan
from keybuzz.verify.cluster import ClusterAccessError
from keybuzz.verify.rollout_check import (
    SKIP_CREATE,
    BatchCheckProvider,
    RolloutStopped,
    batch_positions,
    judge_batch,
    run_focused,
)

NAMES = sorted(NODES)
PODS = plan.ProbePods(clients={n: f"client-{n[-1]}" for n in NAMES},
                      echo_ips={n: f"10.42.{i + 1}.5" for i, n in enumerate(NAMES)})
KUBECONFIG = "apiVersion: v1\nusers: [{name: a, user: {token: kb-secret-token-123}}]\n"


# -- the focus in the plan --------------------------------------------------------------------


def test_a_focus_keeps_only_the_paths_to_or_from_the_focused_nodes():
    nodes = [f"n{i}" for i in range(13)]
    assert len(plan.cross_node_pairs(nodes)) == 13 * 12
    pairs = plan.cross_node_pairs(nodes, ["n0"])
    assert len(pairs) == 2 * 12  # to and from every other node
    assert all("n0" in pair for pair in pairs)
    assert len(plan.cross_node_pairs(nodes, ["n0", "n1"])) == 2 * 2 * 11 + 2
    assert plan.cross_node_pairs(nodes, []) == plan.cross_node_pairs(nodes)


def test_focused_mesh_probes_from_the_focused_pod_to_all_and_from_the_others_to_it_only():
    plans = {p.node: [probe.key for probe in p.probes] for p in plan.plan_mesh(NAMES, PODS, focus=["node-a"])}
    assert plans == {
        "node-a": ["http:node-b", "ping:node-b", "http:node-c", "ping:node-c"],
        "node-b": ["http:node-a", "ping:node-a"],
        "node-c": ["http:node-a", "ping:node-a"],
    }


def test_focused_mtu_reads_the_pod_mtu_of_the_focused_node_only():
    plans = {p.node: [probe.key for probe in p.probes] for p in plan.plan_mtu(NAMES, PODS, 1430, focus=["node-b"])}
    assert plans["node-b"][0] == "mtu:eth0" and "dfping:node-a" in plans["node-b"]
    assert plans["node-a"] == ["emtu:node-b", "ping:node-b", "dfping:node-b", "bulk:node-b"]


def test_focused_dns_clusterip_and_external_run_from_the_focused_nodes():
    assert [p.node for p in plan.plan_dns(NAMES, PODS, focus=["node-c"])] == ["node-c"]
    assert [p.node for p in plan.plan_clusterip(NAMES, PODS, "10.43.0.7", 6, focus=["node-c"])] == ["node-c"]
    assert [p.node for p in plan.plan_external(NAMES, PODS, ["https://x.invalid/"], focus=["node-c"])] == ["node-c"]


def test_focused_ingress_probes_the_focused_nodes_controller_from_the_next_node():
    assert plan.ingress_prober(NAMES, PODS, ["node-b"]) == {"node-b": "node-c"}
    plans = plan.plan_ingress(NAMES, PODS, NODES, "h.invalid", focus=["node-b"])
    assert [(p.node, [probe.key for probe in p.probes]) for p in plans] == [("node-c", ["ingress:node-b"])]


@pytest.mark.parametrize(("nodes", "sources", "calls"), [(3, 3, 9), (3, 1, 20), (13, 13, 39), (13, 1, 119),
                                                         (13, 3, 40)])
def test_clusterip_calls_from_fewer_pods_keep_the_pooled_chance_of_missing_a_backend_low(nodes, sources, calls):
    per_pod = plan.clusterip_calls(nodes, sources)
    assert per_pod == calls
    # Union bound over the backends: P(one never picked by any of the pooled calls) <= 1e-3.
    assert nodes * (1 - 1 / nodes) ** (per_pod * sources) <= 1e-3


# -- the focused checks on a fake cluster ------------------------------------------------------


def inputs(focus=("node-a",), **overrides):
    base = dict(nodes=NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=1430, timeout_seconds=30.0,
                focus=tuple(focus))
    return checks.CheckInputs(**{**base, **overrides})


def no_sleep(_s):
    return None


def test_focused_checks_pass_on_a_healthy_cluster_and_probe_only_the_focused_paths():
    cluster = FakeCluster()
    verdicts = run_focused(inputs(), lambda: cluster, sleep=no_sleep)
    assert [(v.check, v.ok) for v in verdicts] == [
        ("calico health", True), ("DNS", True), ("ClusterIP", True), ("pod mesh", True), ("MTU path", True),
        ("ingress", True), ("external URLs", True)]
    by_check = {v.check: v for v in verdicts}
    assert by_check["pod mesh"].total == 4  # a→b, a→c, b→a, c→a
    assert by_check["DNS"].total == 1 and by_check["ingress"].total == 1
    assert "only paths to or from node-a" in by_check["pod mesh"].tested


def test_a_fault_away_from_the_focused_node_does_not_stop_its_batch():
    cluster = FakeCluster(Faults(ipip_blocked={frozenset({"node-b", "node-c"})}))
    verdicts = run_focused(inputs(), lambda: cluster, sleep=no_sleep)
    assert all(v.ok for v in verdicts), [v.message() for v in verdicts if not v.ok]


def test_a_broken_path_of_the_focused_node_fails_with_the_full_checks_verdict_and_cause():
    faults = Faults(ipip_blocked={frozenset({"node-a", "node-c"})})
    focused = {v.check: v for v in run_focused(inputs(), lambda: FakeCluster(faults), sleep=no_sleep)}
    full = checks.run_check("mesh", inputs(focus=()), lambda: FakeCluster(faults), sleep=no_sleep)
    mesh = focused["pod mesh"]
    assert [f.where for f in mesh.failures] == [f.where for f in full.failures] == ["node-a→node-c", "node-c→node-a"]
    assert mesh.causes() == full.causes()
    assert "IP protocol 4 (IPIP)" in mesh.causes()[0]


def test_dns_timing_out_from_the_focused_node_blames_that_node_not_coredns_everywhere():
    verdict = {v.check: v for v in run_focused(inputs(), lambda: FakeCluster(Faults(coredns_down=True)),
                                               sleep=no_sleep)}["DNS"]
    assert [f.where for f in verdict.failures] == ["from node-a"]
    assert verdict.causes()[0].startswith("CoreDNS unreachable from some nodes only")


# -- the provider ------------------------------------------------------------------------------


def props(focus=("node-a",), fingerprints=None, **extra):
    base = {
        "kubeconfig": KUBECONFIG, "nodes": [{"name": n, "privateIp": ip} for n, ip in NODES.items()],
        "podCidr": POD_CIDR, "subnetCidr": SUBNET_CIDR, "poolMtu": 1430, "timeoutSeconds": 30,
        "externalUrls": [], "probeNamespace": "overlay-probe", "ingressHost": "overlay-probe.invalid",
        "ingressController": "ingress-nginx", "ingressPort": 80, "runId": "",
        "batch": "agent batch 1 of 2 (canary)", "focus": list(focus),
        "fingerprints": fingerprints or {n: "fp-new" for n in focus},
        "changed": ["node-a"], "untouched": ["node-b", "node-c"],
    }
    return {**base, **extra}


def provider_for(cluster, seen=None):
    def factory(kubeconfig, connect, read):
        if seen is not None:
            seen.append(kubeconfig)
        return cluster
    return BatchCheckProvider(factory)


@pytest.fixture
def one_attempt(monkeypatch):
    """A failing check is retried while the deadline allows; once is enough to judge, with no real pause."""
    monkeypatch.setattr(checks, "MAX_ATTEMPTS", 1)


def test_create_skips_on_a_first_deploy_without_touching_the_cluster():
    def unreachable(*_args):
        raise AssertionError("a first deploy must not reach the cluster")

    result = BatchCheckProvider(unreachable).create(props())
    assert result.outs["skipped"] is True and result.outs["passed"] is True
    assert result.outs["reason"] == SKIP_CREATE
    assert result.outs["fingerprints"] == {"node-a": "fp-new"}
    assert "kubeconfig" not in result.outs


def test_diff_runs_the_check_only_when_its_batch_was_rolled_to_something_new():
    provider = BatchCheckProvider()
    recorded = BatchCheckProvider(lambda *a: FakeCluster()).create(props(fingerprints={"node-a": "fp-old"})).outs
    assert provider.diff("id", recorded, props(fingerprints={"node-a": "fp-old"})).changes is False
    assert provider.diff("id", recorded, props(fingerprints={"node-a": "fp-new"})).changes is True
    assert provider.diff("id", recorded, props(focus=("node-a", "node-b"),
                                               fingerprints={"node-a": "fp-old", "node-b": "x"})).changes is True


def test_a_failed_run_is_checked_again_on_the_next_up_and_a_passed_one_is_not(one_attempt):
    """Pulumi keeps a resource's old state when its update fails: the old fingerprints stay recorded,
    so the next ``up`` diffs the batch again and re-runs its check before the next batch's drain."""
    state = BatchCheckProvider().create(props(fingerprints={"node-a": "fp-old"})).outs  # first deploy
    news = props(fingerprints={"node-a": "fp-new"})
    broken = provider_for(FakeCluster(Faults(ipip_blocked={frozenset({"node-a", "node-b"})})))
    assert broken.diff("id", state, news).changes is True
    with pytest.raises(RolloutStopped):
        broken.update("id", state, news)
    # The engine kept ``state``: the next run diffs again and runs it first.
    healthy = provider_for(FakeCluster())
    assert healthy.diff("id", state, news).changes is True
    state = healthy.update("id", state, news).outs
    assert (state["passed"], state["skipped"], state["fingerprints"]) == (True, False, {"node-a": "fp-new"})
    assert healthy.diff("id", state, news).changes is False


def test_a_stopped_rollout_says_the_verdict_the_changed_and_the_untouched_nodes(one_attempt):
    seen: list[str] = []
    provider = provider_for(FakeCluster(Faults(ipip_blocked={frozenset({"node-a", "node-c"})})), seen)
    with pytest.raises(RolloutStopped) as stopped:
        provider.update("id", {}, props())
    message = str(stopped.value)
    lines = message.splitlines()
    assert lines[0] == "overlay check after agent batch 1 of 2 (canary) (node-a) failed:"
    assert any(line.startswith("pod mesh: 2 of 4 cross-node paths failed (node-a→node-c: ") for line in lines)
    assert "IP protocol 4 (IPIP) or BGP TCP 179 blocked" in message
    assert lines[-1].startswith("Rollout stopped after agent batch 1 of 2 (canary): already changed (at this run's "
                                "config): node-a; left untouched: node-b, node-c.")
    assert "this batch is checked again first" in lines[-1]
    assert seen and all(k == KUBECONFIG for k in seen)
    assert "kb-secret-token-123" not in message


def test_update_skips_when_the_probe_fixture_is_not_in_the_cluster():
    class NoFixture(FakeCluster):
        def get_service(self, namespace, name):
            return None if namespace == "overlay-probe" else super().get_service(namespace, name)

    cluster = NoFixture()
    outs = provider_for(cluster).update("id", {}, props()).outs
    assert outs["skipped"] is True and "no probe fixture in the cluster (namespace overlay-probe)" in outs["reason"]
    assert not [c for c in cluster.calls if c[0] == "exec"]


def test_an_unreachable_api_after_a_batch_stops_the_rollout_naming_it():
    def refused(*_args):
        raise ClusterAccessError("list nodes: MaxRetryError: Connection refused")

    with pytest.raises(RolloutStopped, match="Connection refused") as stopped:
        BatchCheckProvider(refused).update("id", {}, props())
    assert "left untouched: node-b, node-c" in str(stopped.value)


def test_check_refuses_a_focus_outside_the_nodes():
    failures = BatchCheckProvider().check({}, props(focus=("node-z",))).failures
    assert [(f.property, f.reason) for f in failures] == [("focus", "every focused node must be one of `nodes`")]


def test_judge_batch_never_raises_on_an_api_error():
    def refused():
        raise ClusterAccessError("get service: timed out")

    from keybuzz.verify.rollout_check import BatchPosition

    verdicts, reason = judge_batch(inputs(), BatchPosition("x", ("node-a",), ("node-a",), ()), refused)
    assert reason == "" and [v.ok for v in verdicts] == [False]


# -- positions in the rollout ------------------------------------------------------------------


def entry(name, wave, batch):
    return SimpleNamespace(node=SimpleNamespace(name=name), wave=wave, batch=batch)


def test_batch_positions_label_each_batch_and_split_changed_from_untouched():
    plan_ = [entry("cp-1", "servers", 0), entry("cp-2", "servers", 1), entry("w-1", "agents", 2),
             entry("w-2", "agents", 3), entry("w-3", "agents", 3)]
    positions = batch_positions(plan_)
    assert [(p.label, p.focus, p.changed, p.untouched) for p in positions.values()] == [
        ("server cp-1 (1 of 2)", ("cp-1",), ("cp-1",), ("cp-2", "w-1", "w-2", "w-3")),
        ("server cp-2 (2 of 2)", ("cp-2",), ("cp-1", "cp-2"), ("w-1", "w-2", "w-3")),
        ("agent batch 1 of 2 (canary)", ("w-1",), ("cp-1", "cp-2", "w-1"), ("w-2", "w-3")),
        ("agent batch 2 of 2", ("w-2", "w-3"), ("cp-1", "cp-2", "w-1", "w-2", "w-3"), ()),
    ]
    assert "left untouched: none (this was the last batch)" in positions[3].rollout_line()


def test_many_clusterip_calls_from_one_pod_run_as_at_most_forty_parallel_loops():
    (one,) = plan.plan_clusterip(NAMES, PODS, "10.43.0.7", 119, focus=["node-a"])
    assert len(one.probes) == plan.MAX_PARALLEL_CALLS
    loops = [p.command.count("curl -sS") * len(p.command.split("; do ")[0].split()[3:]) for p in one.probes]
    assert sum(loops) == 119 and set(loops) == {2, 3}
    assert one.probes[0].command.startswith("for _ in 0 1 2; do curl -sS ")
    # Up to forty calls stay one curl per probe, as before.
    (one,) = plan.plan_clusterip(NAMES, PODS, "10.43.0.7", 39, focus=["node-a"])
    assert len(one.probes) == 39 and not any(p.command.startswith("for ") for p in one.probes)


def test_an_api_that_never_answers_the_fixture_probe_stops_the_rollout_within_its_bound():
    import threading

    release = threading.Event()

    class Hung(FakeCluster):
        def get_service(self, namespace, name):
            release.wait()  # released at the end of the test, never by the wall clock
            return None

    from keybuzz.verify.rollout_check import fixture_present

    try:
        with pytest.raises(ClusterAccessError, match="no answer within 0.05 s"):
            fixture_present(Hung(), "overlay-probe", limit_s=0.05)
    finally:
        release.set()


def test_a_focused_node_cut_from_every_other_node_fails_clusterip_once_as_the_full_check_does():
    faults = Faults(ipip_blocked={frozenset({"node-a", "node-b"}), frozenset({"node-a", "node-c"})})
    focused = {v.check: v for v in run_focused(inputs(), lambda: FakeCluster(faults), sleep=no_sleep)}["ClusterIP"]
    full = checks.run_check("clusterip", inputs(focus=()), lambda: FakeCluster(faults), sleep=no_sleep)
    # The full check also fails from node-b and node-c (their calls to node-a's backend); the focused
    # one judges node-a's calls only, and says about them what the full one says.
    assert [f.where for f in full.failures] == ["from node-a", "from node-b", "from node-c"]
    assert [f.where for f in focused.failures] == ["from node-a"]
    assert focused.failures[0].cause == full.failures[0].cause
    # More calls from the one focused pod (plan.clusterip_calls), the same observation.
    assert focused.failures[0].what == "14 of 20 calls failed (no TCP connection within the 2 s connect timeout)"
    assert full.failures[0].what == "6 of 9 calls failed (no TCP connection within the 2 s connect timeout)"
    assert (focused.total, full.total) == (4, 6)  # answers from node-a; answered by each of the 3 backends
