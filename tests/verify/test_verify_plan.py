"""Planning: who probes what, in how many execs, and the script's output contract."""

import subprocess

import pytest

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
    assert "-Mdo -s 1402 10.42.20.5" in by_key["dfping:node-b"]
    assert "http://10.42.20.5:8080/bulk" in by_key["bulk:node-b"] and "-o /dev/null" in by_key["bulk:node-b"]


def test_mtu_plan_reads_echo_pods_mtu_and_the_route_cache_before_the_df_ping():
    by_key = {p.key: p.command for p in plan.plan_mtu(NODES, PODS, 1430)[0].probes}
    assert "http://10.42.20.5:8080/mtu" in by_key["emtu:node-b"]
    assert by_key["dfping:node-b"].startswith("ip -o route get 10.42.20.5 2>&1; ping ")


def test_probe_commands_carry_the_configured_timeouts():
    t = plan.Timeouts(connect_s=1, request_s=3, bulk_s=7)
    mtu = {p.key: p.command for p in plan.plan_mtu(NODES, PODS, 1430, t)[0].probes}
    assert "--connect-timeout 1 -m 7" in mtu["bulk:node-b"]
    assert "-W 1" in mtu["dfping:node-b"]
    mesh = {p.key: p.command for p in plan.plan_mesh(NODES, PODS, t)[0].probes}
    assert "--connect-timeout 1 -m 3" in mesh["http:node-b"]
    assert "+time=1" in plan.plan_dns(NODES, PODS, timeouts=t)[0].probes[0].command


def test_dns_probe_prints_the_status_not_just_short_answers():
    command = plan.plan_dns(NODES, PODS)[0].probes[0].command
    assert command.startswith("dig +nocmd +noall +comments +answer")


def test_clusterip_calls_are_parallel_probes_of_one_call_each():
    (a, *_rest) = plan.plan_clusterip(NODES, PODS, "10.43.100.7", 9)
    assert [p.key for p in a.probes] == [f"svc:{i}" for i in range(9)]
    assert all("http://10.43.100.7:80/node" in p.command and "for " not in p.command for p in a.probes)


def test_ingress_loop_stops_at_the_first_transport_failure():
    plans = plan.plan_ingress(NODES, PODS, {"node-a": "10.0.1.10", "node-b": "10.0.1.11", "node-c": "10.0.1.12"},
                              "probe.invalid")
    assert plans[0].probes[0].command.endswith("|| break; done")


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


def test_each_probe_is_printed_as_it_finishes_so_a_deadline_keeps_the_finished_ones():
    probes = [plan.Probe("fast:a", "echo one"), plan.Probe("slow:b", "sleep 30; echo never"),
              plan.Probe("fast:c", "echo two")]
    proc = subprocess.Popen(["sh", "-c", plan.render_script(probes)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        lines = []
        while len(lines) < 6:  # the two fast probes' blocks, each begin/body/end
            line = proc.stdout.readline()
            assert line, "the script ended before printing the finished probes"
            if line.strip():
                lines.append(line)
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    parsed = plan.parse_script_output("".join(lines))
    assert parsed == {"fast:a": plan.RawOutput("one", 0), "fast:c": plan.RawOutput("two", 0)}


def test_the_script_stops_polling_at_its_deadline_when_a_probe_never_reports(tmp_path):
    """Closing an exec does not stop the shell in the pod: its loop must end on its own."""
    probes = [plan.Probe("stuck:a", "sleep 30"), plan.Probe("fast:b", "echo one")]
    out = tmp_path / "out"
    with out.open("w") as sink:
        proc = subprocess.Popen(["sh", "-c", plan.render_script(probes, give_up_s=0.3)], stdout=sink,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=20)  # the stuck probe alone would hold it for 30 s
        finally:
            import os
            import signal

            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned `sleep 30`
            proc.wait()
    assert code == 0
    assert plan.parse_script_output(out.read_text()) == {"fast:b": plan.RawOutput("one", 0)}


def test_the_scripts_polling_rounds_follow_the_deadline():
    probes = [plan.Probe("a:x", "true")]
    assert '[ "$round" -lt 1200 ]' in plan.render_script(probes, give_up_s=60)
    assert '[ "$round" -lt 12000 ]' in plan.PodPlan("n", "p", tuple(probes)).script()  # bin/verify's longest


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_rendered_scripts_parse_in_posix_sh_and_bash(shell):
    pods = plan.ProbePods(clients={n: f"c-{n}" for n in NODES}, echo_ips=PODS.echo_ips)
    scripts = [p.script() for p in plan.plan_mtu(NODES, pods, 1430) + plan.plan_clusterip(NODES, pods, "10.43.0.9", 9)
               + plan.plan_ingress(NODES, pods, {n: "10.0.1.10" for n in NODES}, "h.invalid")]
    for script in scripts:
        assert subprocess.run([shell, "-n", "-c", script], capture_output=True).returncode == 0


def test_unterminated_probe_output_is_dropped():
    assert plan.parse_script_output("@@begin a:x\nhalf") == {}
