"""The ingress check follows the controller: Traefik or ingress-nginx, on 80 or on a switch's trial port."""

from dataclasses import replace

from verify_fakes import MTU, NODES, POD_CIDR, SUBNET_CIDR, FakeCluster, Faults, curl_refused

from keybuzz.verify import judge, plan
from keybuzz.verify.checks import CheckInputs, run_check
from keybuzz.verify.plan import RawOutput, probe_key

INPUTS = CheckInputs(nodes=NODES, pod_cidr=POD_CIDR, subnet_cidr=SUBNET_CIDR, pool_mtu=MTU, timeout_seconds=30)
NAMES = sorted(NODES)
PODS = plan.ProbePods(clients={n: f"client-{n}" for n in NAMES}, echo_ips={n: "10.42.20.5" for n in NAMES})


def run(faults, inputs):
    cluster = FakeCluster(faults)
    verdict = run_check("ingress", inputs, lambda: cluster, sleep=lambda s: None)
    return verdict, verdict.message(NAMES), cluster


def test_traefik_on_its_trial_port_is_probed_there_and_named_in_every_cause():
    traefik = replace(INPUTS, ingress_controller="traefik", ingress_port=8000)
    verdict, message, _ = run(Faults(ingress_503=True), traefik)
    assert len(verdict.failures) == 3
    assert "node-b→node-a:8000: traefik on node-a answered 503 (503×3)" in message
    assert "traefik has no reachable backend" in message and "ingress-nginx" not in message
    assert verdict.tested.startswith("traefik on 3 nodes (private IP :8000")


def test_a_healthy_traefik_passes():
    verdict, _, _ = run(Faults(), replace(INPUTS, ingress_controller="traefik", ingress_port=80))
    assert verdict.ok and verdict.total == 3


def test_the_probe_goes_to_the_given_port():
    ips = {"node-a": "10.0.1.10", "node-b": "10.0.1.11", "node-c": "10.0.1.12"}
    command = next(p for p in plan.plan_ingress(NAMES, PODS, ips, "probe.invalid", port=8000) if p.node == "node-b")
    assert "http://10.0.1.10:8000/node" in command.probes[0].command


def test_nothing_listening_names_the_controller_and_the_port():
    ips = {"node-a": "10.0.1.10", "node-b": "10.0.1.11", "node-c": "10.0.1.12"}
    prober = plan.ingress_prober(NAMES, PODS)
    text, code = curl_refused("10.0.1.10", 8000)
    outputs = {prober[t]: {probe_key("ingress", t): RawOutput(text, code)} for t in NAMES}
    verdict = judge.judge_ingress(NAMES, outputs, prober, ips, "probe.invalid", controller="traefik", port=8000)
    first = next(f for f in verdict.failures if f.where.endswith("→node-a:8000"))
    assert first.what.startswith("nothing listens on 10.0.1.10:8000")
    assert first.cause.startswith("traefik not running on node-a") and "8000" in first.cause


def test_inputs_carry_the_controller_and_default_to_ingress_nginx_on_80():
    props = {"nodes": [{"name": "node-a", "privateIp": "10.0.1.10"}], "podCidr": POD_CIDR,
             "subnetCidr": SUBNET_CIDR, "poolMtu": MTU, "timeoutSeconds": 30}
    default = CheckInputs.from_props(props)
    assert (default.ingress_controller, default.ingress_port) == ("ingress-nginx", 80)
    given = CheckInputs.from_props(dict(props, ingressController="traefik", ingressPort=8000))
    assert (given.ingress_controller, given.ingress_port) == ("traefik", 8000)
