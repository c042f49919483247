"""Parsers and judges on output captured from the real tools in the lab; the check flow on fakes."""

import re
import sys
import threading
from pathlib import Path

import pytest
from fakes.clock import FakeClock
from verify_fakes import (
    CAPTURED,
    MTU,
    NODES,
    POD_CIDR,
    SUBNET_CIDR,
    FakeCluster,
    Faults,
    ReplayCluster,
    UnreachableCluster,
    captured,
    captured_probe,
)

from keybuzz.verify import judge, plan
from keybuzz.verify.checks import CHECK_NAMES, CheckInputs, run_check
from keybuzz.verify.cluster import ExecResult
from keybuzz.verify.plan import RawOutput, parse_script_output

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from scenarios import BY_NAME, EXPECTED, LAB_TIMEOUTS, check_verdict  # noqa: E402 - the lab's expectations

INPUTS = CheckInputs(nodes=NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU, timeout_seconds=30,
                     external_urls=("https://example.com/",))
NAMES = sorted(NODES)
LAB_NODES = {"node-a": "10.0.1.10", "node-b": "10.0.1.11", "node-c": "10.0.1.12"}


def run(name, faults=None, inputs=INPUTS):
    cluster = FakeCluster(faults)
    clock = FakeClock()
    verdict = run_check(name, inputs, lambda: cluster, clock=clock, sleep=clock.sleep)
    return verdict, verdict.message(NAMES)


# -- parsers, on real output ------------------------------------------------------------------


def test_parse_ping_reads_the_iputils_summary_and_rtt():
    res = judge.parse_ping(captured_probe("healthy", "mesh", "node-a", "ping:node-b").text)
    assert (res.transmitted, res.received, res.loss_pct) == (3, 3, 0.0)
    assert res.rtt_avg_ms is not None and res.rtt_avg_ms > 0
    assert judge.ping_ok(res) and res.measured and not res.tool_error


def test_parse_ping_reads_frag_needed_then_local_errors():
    raw = captured_probe("path_mtu_icmp", "mtu", "node-a", "dfping:node-b")
    res = judge.parse_ping(raw.text, raw.exit_code)
    assert (res.received, res.errors, res.loss_pct) == (0, 3, 100.0)
    assert (res.frag_needed_mtu, res.frag_needed_from, res.local_mtu) == (1400, "10.0.1.10", 1400)
    assert res.cached_mtu is None  # nothing was cached before this ping


def test_parse_ping_reads_a_path_mtu_cached_before_the_ping():
    raw = captured_probe("pmtu_cached", "mtu", "node-a", "dfping:node-b")
    res = judge.parse_ping(raw.text, raw.exit_code)
    assert (res.frag_needed_mtu, res.local_mtu, res.cached_mtu) == (None, 1400, 1400)
    assert res.cache_expires_s is not None and 0 < res.cache_expires_s <= 600


def test_parse_ping_tells_a_usage_error_from_loss():
    raw = captured_probe("ping_usage_error", "mtu", "node-a", "ping:node-b")
    res = judge.parse_ping(raw.text, raw.exit_code)
    assert raw.exit_code == 2
    assert res.tool_error == "/usr/bin/ping: invalid -M argument: probe"
    assert not res.measured


def test_parse_ping_tells_busybox_without_dash_m_from_loss():
    raw = captured_probe("busybox_ping", "mtu", "node-a", "dfping:node-b")
    res = judge.parse_ping(raw.text, raw.exit_code)
    assert res.tool_error == "ping: invalid option -- 'M'"
    # busybox's plain ping works, and its summary ("packets received", "round-trip") is read.
    plain = judge.parse_ping(captured_probe("busybox_ping", "mtu", "node-a", "ping:node-b").text)
    assert judge.ping_ok(plain) and plain.rtt_avg_ms is not None


def test_parse_ping_of_a_silent_black_hole_is_loss_without_frag_needed():
    res = judge.parse_ping(captured_probe("path_mtu_black_hole", "mtu", "node-a", "dfping:node-b").text)
    assert (res.transmitted, res.received, res.frag_needed_mtu, res.tool_error) == (3, 0, None, "")


def test_curl_stages_no_connection_no_response_stalled():
    (dropped,) = judge.parse_curl(*_raw("tcp_to_echo_dropped", "mesh", "node-a", "http:node-c"))
    assert (dropped.exit_code, dropped.stage) == (28, "no-connection")
    assert judge.describe_curl_failure(dropped) == "no TCP connection within the 1 s connect timeout"
    (hung,) = judge.parse_curl(*_raw("echo_hung", "mesh", "node-a", "http:node-c"))
    assert (hung.stage, judge.describe_curl_failure(hung)) == ("no-response",
                                                               "connected, but no response header within 2 s")
    (stalled,) = judge.parse_curl(*_raw("path_mtu_black_hole", "mtu", "node-a", "bulk:node-b"))
    assert (stalled.http_code, stalled.size, stalled.stage) == (200, 0, "stalled")
    assert judge.describe_curl_failure(stalled, plan.BULK_BYTES) == (
        "HTTP 200 headers, then stalled after 0 of 1048576 bytes (gave up after 2 s)")


def test_curl_refused_is_curl_7_with_the_address():
    calls = judge.parse_curl(*_raw("ingress_absent", "ingress", "node-c", "ingress:node-b"))
    assert len(calls) == 1  # the loop stops at the first transport failure
    assert calls[0].exit_code == 7 and calls[0].stage == "no-connection"
    assert "Failed to connect to 10.0.1.11 port 80" in calls[0].error


def test_parse_curl_reads_the_body_and_write_out_fields():
    (res,) = judge.parse_curl(*_raw("healthy", "mesh", "node-a", "http:node-c"))
    assert (res.exit_code, res.http_code, res.body, res.ok) == (0, 200, "node-c", True)


def test_parse_curl_reads_the_connect_time():
    healthy = [c for i in range(9) for c in judge.parse_curl(*_raw("healthy", "clusterip", "node-a", f"svc:{i}"))]
    assert all(c.ok and c.connect_seconds is not None and 0 < c.connect_seconds < 1 for c in healthy)
    assert not any(c.syn_retried for c in healthy)
    # node-a's SYNs to node-c's echo pod are dropped: the calls that answered did so on the retry, >= 1 s.
    cut = [c for i in range(40) for c in judge.parse_curl(*_raw("backend_unreachable_one_way", "clusterip", "node-a",
                                                                 f"svc:{i}"))]
    late = [c for c in cut if c.ok and c.syn_retried]
    assert late and all(1.0 <= c.connect_seconds < 1.5 and c.body in ("node-a", "node-b") for c in late)
    assert [c.body for c in cut if c.ok and not c.syn_retried].count("node-c") == 0


def test_parse_curl_without_a_connect_time_does_not_guess_one():
    (old,) = judge.parse_curl("node-a\n@@curl 200 7 1.204000\n", 0)  # the write-out before time_connect
    assert (old.ok, old.connect_seconds, old.syn_retried) == (True, None, False)


def test_clusterip_calls_that_answer_only_on_a_retried_syn_fail_the_check():
    """The flaky pass: every call answered, some only after their first SYN was lost (the retry
    picked a live backend). The connect time says so; the check fails and names the node."""
    outputs = {node: parse_script_output(captured("backend_unreachable_one_way", "clusterip", node))
               for node in LAB_NODES}
    answered = {node: {k: r for k, r in raws.items() if r.exit_code == 0} for node, raws in outputs.items()}
    late = sum(c.syn_retried for r in answered["node-a"].values() for c in judge.parse_curl(r.text, r.exit_code))
    assert late >= 1
    clients = {n: f"client-{n}" for n in LAB_NODES}
    verdict = judge.judge_clusterip(sorted(LAB_NODES), answered, "10.43.100.7", clients, sorted(LAB_NODES))
    message = verdict.message(sorted(LAB_NODES))
    assert not verdict.ok, message
    (failure,) = verdict.failures
    assert failure.where == "from node-a"
    assert failure.what == (f"{late} of {len(answered['node-a'])} calls answered late: connect took 1.0 s: the "
                            "first SYN was lost, the retry reached another backend — a backend is unreachable "
                            "from node-a")
    assert verdict.causes() == ["some backends unreachable from that node: a cross-node overlay path is broken "
                                "(see pod mesh)"]
    # The same calls judged without their connect times (the 4-field write-out) passed: the old blind spot.
    blind = {node: {k: RawOutput(re.sub(r"^(@@curl \S+ \S+ \S+) \S+$", r"\1", r.text, flags=re.M), r.exit_code)
                    for k, r in raws.items()} for node, raws in answered.items()}
    assert judge.judge_clusterip(sorted(LAB_NODES), blind, "10.43.100.7", clients, sorted(LAB_NODES)).ok


def test_parse_dig_reads_answer_and_status():
    ok = judge.parse_dig(*_raw("healthy", "dns", "node-a", "dns:kubernetes"))
    assert (ok.status, ok.answers) == ("ok", ("10.43.0.1",))
    nx = judge.parse_dig(*_raw("dns_nxdomain", "dns", "node-a", "dns:kubernetes"))
    assert (nx.status, nx.answers) == ("nxdomain", ())


def test_parse_dig_tells_refused_from_timed_out():
    refused = judge.parse_dig(*_raw("dns_no_endpoints", "dns", "node-a", "dns:kubernetes"))
    assert (refused.status, refused.server, refused.detail) == ("refused", "10.43.0.10#53", "connection refused")
    timeout = judge.parse_dig(*_raw("dns_down", "dns", "node-a", "dns:kubernetes"))
    assert (timeout.status, timeout.detail) == ("timeout", "timed out")


def test_a_first_try_that_timed_out_does_not_hide_the_answer_that_followed():
    # Real dig 9.18 (+tries=2) against dnsmasq, its first query dropped by an nftables quota rule:
    # the server did answer, NXDOMAIN; "no server answered" would send on-call after CoreDNS's reachability.
    text = (CAPTURED / "dig_first_try_lost.nxdomain.txt").read_text()
    assert text.startswith(";; communications error to 127.0.0.1#53: timed out\n")
    res = judge.parse_dig(text, 0)
    assert (res.status, res.answers) == ("nxdomain", ())
    verdict = judge.judge_dns(["node-a"], {"node-a": {"dns:kubernetes": RawOutput(text, 0)}}, "10.43.0.1",
                              {"node-a": "client-a"})
    assert [f.what for f in verdict.failures] == ["kubernetes.default.svc.cluster.local: NXDOMAIN"]


def test_parse_dig_still_reads_plus_short_output():
    assert judge.parse_dig("kubernetes.default.svc.cluster.local.\n10.43.0.1\n", 0).answers == ("10.43.0.1",)


def _raw(scenario, check, node, key):
    raw = captured_probe(scenario, check, node, key)
    return raw.text, raw.exit_code


# -- judges, on every captured lab scenario ---------------------------------------------------

CASES = sorted(EXPECTED)


@pytest.mark.parametrize(("scenario", "check"), CASES, ids=[f"{s}-{c}" for s, c in CASES])
def test_judges_name_the_fault_from_captured_real_output(scenario, check):
    overrides = {"timeouts": LAB_TIMEOUTS, **BY_NAME[scenario].overrides, "timeout_seconds": 30}
    inputs = CheckInputs(nodes=LAB_NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU, **overrides)
    clock = FakeClock()
    cluster = ReplayCluster(scenario, check)
    verdict = run_check(check, inputs, lambda: cluster, clock=clock, sleep=clock.sleep)
    check_verdict(verdict, EXPECTED[(scenario, check)], sorted(LAB_NODES))


def test_messages_quote_the_observed_mtus_and_the_real_timeouts():
    cluster = ReplayCluster("path_mtu_icmp", "mtu")
    inputs = CheckInputs(nodes=LAB_NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU,
                         timeout_seconds=30, timeouts=LAB_TIMEOUTS)
    verdict = run_check("mtu", inputs, lambda: cluster, sleep=lambda s: None)
    (cause,) = verdict.causes()
    assert "carries only 1400 bytes" in cause and "pod eth0 MTU 1430 on every pod read" in cause
    assert "at most 1400" in cause
    assert "connect timeout 1 s, 2 s in all" in verdict.tested


# -- the check flow, on the fake cluster ------------------------------------------------------


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_healthy_cluster_passes_every_check(name):
    verdict, message = run(name)
    assert verdict.ok, message
    assert verdict.outputs()["failed"] == 0


def test_healthy_mesh_reports_paths_and_latency():
    verdict, _ = run("mesh")
    assert verdict.total == 6
    assert verdict.latency_ms == {"min": 0.502, "median": 0.502, "max": 0.502, "samples": 6}


def test_healthy_clusterip_sees_every_backend():
    verdict, _ = run("clusterip")
    assert "backends seen: node-a×9, node-b×9, node-c×9" in verdict.tested


def test_one_node_cut_off_is_named_as_the_common_node():
    verdict, message = run("mesh", Faults(ipip_blocked={frozenset({"node-a", "node-c"}),
                                                        frozenset({"node-b", "node-c"})}))
    assert len(verdict.failures) == 4
    assert "every failure involves node-c" in message
    assert "see calico-node logs on node-c" in message


def test_calico_node_not_ready_is_named_with_its_pod():
    verdict, message = run("calico", Faults(calico_not_ready={"node-c"}))
    assert "node-c: calico-node not Ready (calico-node-c)" in message
    assert "kubectl -n calico-system logs calico-node-c -c calico-node" in message
    assert "node-a→node-c: BGP session Active, not Established" in message


def test_pool_with_vxlan_on_fails_calico_health():
    verdict, message = run("calico", Faults(vxlan=True))
    assert [f.line() for f in verdict.failures] == ["IPPool default-ipv4-ippool: vxlanMode is Always, want Never"]
    assert "VXLAN enabled on the pool" in message


def test_pool_cidr_not_pod_cidr_fails_calico_health():
    verdict, message = run("calico", Faults(pool_cidr="192.168.0.0/16"))
    assert "cidr 192.168.0.0/16 != podCidr 10.42.0.0/16" in message
    assert "pool CIDR differs from the K3s cluster-cidr" in message


def test_calico_address_on_public_ip_fails_calico_health():
    verdict, message = run("calico", Faults(public_calico_ip={"node-b": "65.108.1.2/32"}))
    assert [f.where for f in verdict.failures] == ["node-b"]
    assert "Calico address 65.108.1.2 is outside the private subnet 10.0.1.0/24" in message
    assert "IP autodetection picked the public NIC" in message


def test_bgp_blocked_between_two_nodes_names_the_session():
    verdict, message = run("calico", Faults(bgp_down={frozenset({"node-a", "node-b"})}))
    assert {f.where for f in verdict.failures} == {"node-a→node-b", "node-b→node-a"}
    assert "BGP TCP 179 blocked" in message


def test_ingress_answering_503_names_the_configured_controller():
    inputs = CheckInputs(nodes=NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU, timeout_seconds=30,
                         ingress_controller="traefik")
    verdict, message = run("ingress", Faults(ingress_503=True), inputs=inputs)
    assert len(verdict.failures) == 3
    assert "node-b→node-a:80: traefik on node-a answered 503 (503×3)" in message
    assert "traefik has no reachable backend" in message and "ingress-nginx" not in message


def test_ingress_controller_input_defaults_to_ingress_nginx():
    props = {"nodes": [], "podCidr": POD_CIDR, "subnetCidr": SUBNET_CIDR, "poolMtu": MTU, "timeoutSeconds": 5}
    assert CheckInputs.from_props(props).ingress_controller == "ingress-nginx"
    assert CheckInputs.from_props({**props, "ingressController": "traefik"}).ingress_controller == "traefik"


def test_one_echo_pod_missing_fails_mesh_clusterip_and_mtu():
    faults = Faults(echo_missing={"node-c"})
    mesh, mesh_msg = run("mesh", faults)
    assert [f.where for f in mesh.failures] == ["node-a→node-c", "node-b→node-c"]
    assert "no ready echo pod on node-c" in mesh_msg and "every failure involves node-c" in mesh_msg
    clusterip, msg = run("clusterip", faults)
    assert clusterip.failures[0].line() == "node-c: no ready echo pod"
    assert "overlay-probe DaemonSet is not scheduled there" in msg
    assert not run("mtu", faults)[0].ok


def test_external_urls_without_egress_fail_with_the_egress_cause():
    verdict, message = run("external", Faults(no_egress=True))
    assert "node-a→https://example.com/: no TCP connection within the 2 s connect timeout" in message
    assert "natOutgoing off on the IPPool" in message


def test_no_external_urls_is_reported_as_skipped():
    inputs = CheckInputs(nodes=NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU, timeout_seconds=5)
    verdict, message = run("external", inputs=inputs)
    assert verdict.ok and verdict.skipped and verdict.outputs()["skipped"] is True
    assert message.startswith("external URLs: skipped")


def test_failed_checks_retry_before_giving_up():
    cluster = FakeCluster(Faults(coredns_down=True))
    clock = FakeClock()
    verdict = run_check("dns", INPUTS, lambda: cluster, clock=clock, sleep=clock.sleep)
    assert sum(1 for c in cluster.calls if c[0] == "exec") == 9  # 3 attempts x 3 pods: N execs each
    assert "Failed on all 3 attempts" in verdict.message(NAMES)


def test_an_unreachable_api_fails_every_check_naming_the_api_server():
    for name in CHECK_NAMES:
        clock = FakeClock()
        verdict = run_check(name, INPUTS, UnreachableCluster, clock=clock, sleep=clock.sleep)
        assert not verdict.ok, name
        assert verdict.failures[0].where == "API server"
        assert "Kubernetes API is unreachable" in verdict.message(NAMES)


class _JumpingClock:
    """The caller reads the start time once, then is already past any deadline: it must give up at once.

    The check's own threads keep reading the start time, so they wait on the hung exec instead of
    giving up themselves: were they to see the jump too, they could finish (blaming each path) before
    the caller looked, and the test would depend on thread scheduling.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.caller = threading.current_thread()

    def __call__(self) -> float:
        if threading.current_thread() is not self.caller:
            return 0.0
        self.calls += 1
        return 0.0 if self.calls == 1 else 10_000.0


def test_a_hung_exec_is_cut_at_the_deadline_and_named():
    cluster = FakeCluster(Faults(hang_exec=True))
    try:
        verdict = run_check("mesh", INPUTS, lambda: cluster, clock=_JumpingClock(), sleep=lambda s: None)
    finally:
        cluster.release.set()
    assert not verdict.ok
    assert verdict.failures[0].where == "deadline"
    assert "did not finish within 30 s" in verdict.message(NAMES)


def test_an_exec_cut_by_its_deadline_keeps_the_probes_that_finished():
    """The script streamed two blocks before the exec ended: only the third probe is blamed."""
    partial = "\n".join(
        f"@@begin {key}\n{captured_probe('healthy', 'mesh', 'node-a', key).text}\n@@end {key} 0"
        for key in ("http:node-b", "ping:node-b")) + "\n@@begin http:node-c\n"

    class Partial(ReplayCluster):
        def exec_in_pod(self, namespace, pod, container, command, timeout):
            if pod.endswith("node-a"):
                return ExecResult(partial, "", None)
            return super().exec_in_pod(namespace, pod, container, command, timeout)

    inputs = CheckInputs(nodes=LAB_NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU,
                         timeout_seconds=4)
    clock = FakeClock()
    verdict = run_check("mesh", inputs, lambda: Partial("healthy", "mesh"), clock=clock, sleep=clock.sleep)
    assert [f.line() for f in verdict.failures] == [
        "node-a→node-c: probe http, ping did not finish before the deadline"]
    assert verdict.causes() == [judge.CAUSE_UNFINISHED]


def test_outputs_carry_counts_failures_and_latency():
    verdict, _ = run("mesh", Faults(ipip_blocked={frozenset({"node-a", "node-c"})}))
    out = verdict.outputs()
    assert (out["total"], out["failed"], out["passed"]) == (6, 2, False)
    assert out["failures"][0] == "node-a→node-c: no TCP connection within the 2 s connect timeout, ping 100% loss"
    assert out["latencyMs"]["samples"] == 4


def test_an_exec_that_printed_nothing_before_its_deadline_is_an_exec_failure():
    class Silent(ReplayCluster):
        def exec_in_pod(self, namespace, pod, container, command, timeout):
            if pod.endswith("node-b"):
                return ExecResult("", "", None)
            return super().exec_in_pod(namespace, pod, container, command, timeout)

    inputs = CheckInputs(nodes=LAB_NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU,
                         timeout_seconds=4)
    clock = FakeClock()
    verdict = run_check("mesh", inputs, lambda: Silent("healthy", "mesh"), clock=clock, sleep=clock.sleep)
    assert [f.where for f in verdict.failures] == ["node-b→node-a", "node-b→node-c"]
    assert all("exec did not finish within" in f.what and "printed nothing" in f.what for f in verdict.failures)
    assert verdict.causes() == [judge.CAUSE_EXEC.format(ns="overlay-probe")]


def test_by_node_counts_the_target_of_an_ingress_path_that_carries_a_port():
    # Controller down on node-b and node-c, probed from the next node (node-a→node-b, node-b→node-c).
    verdict = judge.Verdict(check="ingress", tested="t", total=3, unit="nodes", failures=[
        judge.Failure("node-a→node-b:80", "nothing listens", "c"),
        judge.Failure("node-b→node-c:80", "nothing listens", "c"),
    ])
    assert verdict.by_node(["node-a", "node-b", "node-c"]) == {"node-b": 2, "node-a": 1, "node-c": 1}
    assert "By node: node-b in 2, node-a in 1, node-c in 1 (every failure involves node-b)." in verdict.message(
        ["node-a", "node-b", "node-c"])


def test_a_pool_mtu_too_large_for_hetzner_names_the_value_to_set():
    # The lab's black hole (full-size packets vanish, no Frag needed) judged against a pool MTU of 1450:
    # on Hetzner's 1450-byte private network IPIP fits 1430, and the verdict says to set that.
    cluster = ReplayCluster("path_mtu_black_hole", "mtu")
    inputs = CheckInputs(nodes=LAB_NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=1450,
                         timeout_seconds=30, timeouts=LAB_TIMEOUTS)
    verdict = run_check("mtu", inputs, lambda: cluster, sleep=lambda s: None)
    hole = [c for c in verdict.causes() if c.startswith("MTU black hole")]
    assert hole and all(
        "the pool MTU 1450 is above 1430, the most IPIP (20 bytes) fits in Hetzner's 1450-byte private network: "
        "set keybuzz-k3s:calicoMtu to 1430 (or 0, which derives it)" in c for c in hole
    )


def test_a_pool_mtu_that_fits_gets_no_hetzner_value():
    cluster = ReplayCluster("path_mtu_black_hole", "mtu")
    inputs = CheckInputs(nodes=LAB_NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU,
                         timeout_seconds=30, timeouts=LAB_TIMEOUTS)
    causes = run_check("mtu", inputs, lambda: cluster, sleep=lambda s: None).causes()
    assert any(c.startswith("MTU black hole") for c in causes)
    assert not any("calicoMtu to 1430" in c for c in causes)
