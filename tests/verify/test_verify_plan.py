"""Planning: who probes what, in how many execs, and the script's output contract."""

import subprocess

from keybuzz.verify import plan

NODES = ["node-a", "node-b", "node-c"]
PODS = plan.ProbePods(
    clients={n: f"client-{n[-1]}" for n in NODES},
    echo_ips={"node-a": "10.42.10.5", "node-b": "10.42.20.5", "node-c": "10.42.30.5"},
)


def test_cross_node_pairs_are_n_times_n_minus_one_and_never_same_node():
    pairs = plan.cross_node_pairs(NODES + ["node-d"])
    assert len(pairs) == 12
    assert all(a != b for a, b in pairs)


def test_mesh_costs_one_exec_per_node_each_probing_every_other_node():
    plans = plan.plan_mesh(NODES, PODS)
    assert [p.node for p in plans] == NODES
    a = plans[0]
    assert a.pod == "client-a"
    assert [p.key for p in a.probes] == ["http:node-b", "ping:node-b", "http:node-c", "ping:node-c"]
    assert "http://10.42.20.5:8080/node" in a.probes[0].command
    assert "10.42.10.5" not in a.script()  # never probes its own node


def test_mtu_plan_uses_full_size_df_ping_and_bulk_get():
    probes = plan.plan_mtu(NODES, PODS, 1430)[0].probes
    by_key = {p.key: p.command for p in probes}
    assert by_key["mtu:eth0"] == "cat /sys/class/net/eth0/mtu"
    assert "-M do -s 1402 10.42.20.5" in by_key["dfping:node-b"]
    assert "http://10.42.20.5:8080/bulk" in by_key["bulk:node-b"] and "-o /dev/null" in by_key["bulk:node-b"]


def test_ingress_probe_of_each_node_comes_from_the_next_node():
    assert plan.ingress_prober(NODES, PODS) == {"node-a": "node-b", "node-b": "node-c", "node-c": "node-a"}
    plans = plan.plan_ingress(NODES, PODS, {"node-a": "10.0.1.10", "node-b": "10.0.1.11", "node-c": "10.0.1.12"},
                              "probe.invalid")
    b = next(p for p in plans if p.node == "node-b")
    assert b.probes[0].key == "ingress:node-a"
    assert "'Host: probe.invalid'" in b.probes[0].command and "http://10.0.1.10:80/node" in b.probes[0].command


def test_nodes_without_a_client_pod_get_no_plan_and_targets_without_echo_are_skipped():
    pods = plan.ProbePods(clients={"node-a": "client-a"}, echo_ips={"node-b": "10.42.20.5"})
    plans = plan.plan_mesh(NODES, pods)
    assert [p.node for p in plans] == ["node-a"]
    assert [p.key for p in plans[0].probes] == ["http:node-b", "ping:node-b"]


def test_external_plan_is_empty_without_urls():
    assert plan.plan_external(NODES, PODS, []) == []


def test_clusterip_calls_make_a_missed_backend_unlikely():
    assert plan.clusterip_calls(3) == 9
    assert plan.clusterip_calls(1) == 6


def test_script_runs_in_a_real_shell_and_parses_back_per_probe():
    probes = [plan.Probe("a:x", "echo hello; echo oops >&2; exit 3"),
              plan.Probe("b:y", "printf no-newline"),
              plan.Probe("c:z", "sleep 0.2; echo late")]
    out = subprocess.run(["sh", "-c", plan.render_script(probes)], capture_output=True, text=True,
                         timeout=10).stdout
    parsed = plan.parse_script_output(out)
    assert parsed == {
        "a:x": plan.RawOutput("hello\noops", 3),
        "b:y": plan.RawOutput("no-newline", 0),
        "c:z": plan.RawOutput("late", 0),
    }


def test_unterminated_probe_output_is_dropped():
    assert plan.parse_script_output("@@begin a:x\nhalf") == {}
