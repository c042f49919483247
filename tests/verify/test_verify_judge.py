"""Parsers of real tool output, and the fault matrix judged through the fake cluster."""

import pytest
from verify_fakes import (
    MTU,
    NODES,
    POD_CIDR,
    SUBNET_CIDR,
    FakeCluster,
    Faults,
    UnreachableCluster,
    curl_connect_timeout,
    curl_stalled,
    dig_timeout,
    ping_frag_needed,
    ping_ok,
)

from keybuzz.verify import judge
from keybuzz.verify.checks import CHECK_NAMES, CheckInputs, run_check

INPUTS = CheckInputs(nodes=NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU, timeout_seconds=30,
                     external_urls=("https://example.com/",))
NAMES = sorted(NODES)


def run(name, faults=None, inputs=INPUTS):
    cluster = FakeCluster(faults)
    verdict = run_check(name, inputs, lambda: cluster, sleep=lambda s: None)
    return verdict, verdict.message(NAMES)


# -- parsers ----------------------------------------------------------------------------------


def test_parse_ping_reads_the_iputils_summary_and_rtt():
    text, _ = ping_ok("10.42.20.5")
    res = judge.parse_ping(text)
    assert (res.transmitted, res.received, res.loss_pct, res.rtt_avg_ms) == (3, 3, 0.0, 0.502)
    assert judge.ping_ok(res)


def test_parse_ping_reads_frag_needed_and_local_mtu_errors():
    res = judge.parse_ping(ping_frag_needed("10.42.20.5", 1452, 1430)[0])
    assert (res.received, res.errors, res.loss_pct) == (0, 3, 100.0)
    assert (res.frag_needed_mtu, res.frag_needed_from, res.local_mtu) == (1430, "10.42.10.1", 1430)


def test_parse_ping_without_summary_counts_as_total_loss():
    res = judge.parse_ping("ping: connect: Network is unreachable")
    assert not judge.ping_ok(res) and res.loss_pct == 100.0


def test_parse_curl_reads_write_out_fields_and_error_line():
    (res,) = judge.parse_curl(*curl_connect_timeout())
    assert (res.exit_code, res.http_code, res.size) == (28, 0, 0)
    assert judge.describe_curl_failure(res) == "timeout after 2 s (no TCP connection)"
    (stalled,) = judge.parse_curl(*curl_stalled(2896))
    assert judge.describe_curl_failure(stalled) == "stalled after 2896 bytes, timed out after 10 s"


def test_parse_curl_splits_a_loop_into_calls_with_bodies():
    text = "node-a\n@@curl 200 7 0.002\n" + curl_connect_timeout()[0] + "\nnode-c\n@@curl 200 7 0.003"
    calls = judge.parse_curl(text, 0)
    assert [(c.exit_code, c.http_code, c.body) for c in calls] == [(0, 200, "node-a"), (28, 0, ""),
                                                                    (0, 200, "node-c")]


def test_describe_curl_failure_names_refused_and_resolve():
    refused = judge.CurlResult(7, 0, 0, 0.0, "", "Failed to connect to 10.0.1.10 port 80: Couldn't connect")
    assert "refused" in judge.describe_curl_failure(refused)
    assert "resolve" in judge.describe_curl_failure(judge.CurlResult(6, 0, 0, 0.0, "", ""))


def test_parse_dig_short_keeps_addresses_only():
    assert judge.parse_dig_short("kubernetes.default.svc.cluster.local.\n10.43.0.1\n") == ["10.43.0.1"]
    assert judge.parse_dig_short(dig_timeout()[0]) == []


# -- fault matrix -----------------------------------------------------------------------------


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


def test_ipip_blocked_between_two_nodes_fails_the_mesh_naming_both_paths_and_the_overlay_cause():
    verdict, message = run("mesh", Faults(ipip_blocked={frozenset({"node-a", "node-c"})}))
    assert [f.where for f in verdict.failures] == ["node-a→node-c", "node-c→node-a"]
    assert message.startswith("pod mesh: 2 of 6 cross-node paths failed (node-a→node-c: timeout after 2 s")
    assert "IP protocol 4 (IPIP) or BGP TCP 179 blocked" in message
    assert "see calico-node logs on node-a, node-c" in message


def test_ipip_blocked_also_fails_clusterip_from_the_cut_off_nodes():
    verdict, message = run("clusterip", Faults(ipip_blocked={frozenset({"node-a", "node-c"})}))
    assert [f.where for f in verdict.failures] == ["from node-a", "from node-c"]
    assert "cross-node overlay path is broken" in message


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


def test_mtu_black_hole_passes_small_probes_and_fails_df_ping_and_bulk():
    faults = Faults(mtu_black_hole=True)
    assert run("mesh", faults)[0].ok
    verdict, message = run("mtu", faults)
    assert len(verdict.failures) == 6
    assert ("node-a→node-b: DF ping of 1402 bytes lost (100% loss) while small pings pass; bulk transfer "
            "stalled after 2896 of 1048576 bytes") in message
    assert "MTU black hole" in message


def test_path_mtu_smaller_than_pool_is_reported_with_the_routers_mtu():
    verdict, message = run("mtu", Faults(path_mtu=1400))
    assert "Frag needed (mtu = 1400)" in message
    assert "path MTU (1400) is smaller than the pool MTU (1430)" in message


def test_pod_mtu_differing_from_pool_mtu_fails_per_node():
    verdict, message = run("mtu", Faults(pod_mtu=1480))
    assert [f.where for f in verdict.failures] == NAMES
    assert "pod eth0 MTU 1480, want 1430" in message


def test_coredns_down_fails_dns_from_every_node_naming_coredns():
    verdict, message = run("dns", Faults(coredns_down=True))
    assert [f.where for f in verdict.failures] == ["from node-a", "from node-b", "from node-c"]
    assert "DNS: 3 of 3 nodes failed" in message
    assert "CoreDNS down or unreachable from every node" in message


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


def test_ingress_answering_503_fails_every_node_with_the_backend_cause():
    verdict, message = run("ingress", Faults(ingress_503=True))
    assert len(verdict.failures) == 3
    assert "node-b→node-a:80: ingress-nginx on node-a answered 503 (503×3)" in message
    assert "ingress-nginx has no reachable backend" in message


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
    assert "node-a→https://example.com/: timeout after 2 s" in message
    assert "natOutgoing off on the IPPool" in message


def test_no_external_urls_is_reported_as_skipped():
    inputs = CheckInputs(nodes=NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU, timeout_seconds=5)
    verdict, message = run("external", inputs=inputs)
    assert verdict.ok and verdict.skipped and verdict.outputs()["skipped"] is True
    assert message.startswith("external URLs: skipped")


def test_failed_checks_retry_before_giving_up():
    cluster = FakeCluster(Faults(coredns_down=True))
    verdict = run_check("dns", INPUTS, lambda: cluster, sleep=lambda s: None)
    assert sum(1 for c in cluster.calls if c[0] == "exec") == 9  # 3 attempts x 3 pods: N execs each
    assert "Failed on all 3 attempts" in verdict.message(NAMES)


def test_an_unreachable_api_fails_every_check_naming_the_api_server():
    for name in CHECK_NAMES:
        verdict = run_check(name, INPUTS, UnreachableCluster, sleep=lambda s: None)
        assert not verdict.ok, name
        assert verdict.failures[0].where == "API server"
        assert "Kubernetes API is unreachable" in verdict.message(NAMES)


def test_a_hung_exec_is_cut_at_the_deadline_and_named():
    import time

    inputs = CheckInputs(nodes=NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU, timeout_seconds=2)
    started = time.monotonic()
    verdict = run_check("mesh", inputs, lambda: FakeCluster(Faults(hang_exec=True)))
    assert time.monotonic() - started < 3
    assert not verdict.ok
    assert "exec in overlay-probe/overlay-probe-client-a did not finish before the check deadline" in (
        verdict.message(NAMES))


def test_outputs_carry_counts_failures_and_latency():
    verdict, _ = run("mesh", Faults(ipip_blocked={frozenset({"node-a", "node-c"})}))
    out = verdict.outputs()
    assert (out["total"], out["failed"], out["passed"]) == (6, 2, False)
    assert out["failures"][0] == "node-a→node-c: timeout after 2 s (no TCP connection)"
    assert out["latencyMs"]["samples"] == 4
