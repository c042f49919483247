"""verify.externalUrls[].resolve: the public names checked against the new edge's IPs before DNS moves."""

from __future__ import annotations

import shlex

import pytest
from harness import run_program
from test_config import error_for, raw_config

from keybuzz.config import parse_config, project_defaults
from keybuzz.verify import judge, plan
from keybuzz.verify.cli import UsageError, stack_external_resolve
from keybuzz.verify.plan import RawOutput

NODES = ["kb-cp-1", "kb-workers-1", "kb-workers-2"]
PODS = plan.ProbePods(clients={n: f"client-{n}" for n in NODES}, echo_ips={})
EDGE = ("203.0.113.10", "203.0.113.20", "203.0.113.21")


def verify_cfg(*urls):
    raw = raw_config()
    raw["verify"] = {**project_defaults()["verify"], "externalUrls": list(urls)}
    return parse_config(raw, "dev", project_defaults()).verify


def test_urls_may_name_edge_or_ips_to_resolve_to_and_plain_urls_stay_dns():
    cfg = verify_cfg("https://a.example/", {"url": "https://b.example/health", "resolve": "edge"},
                     {"url": "http://c.example/", "resolve": ["198.51.100.7", "198.51.100.8"]},
                     {"url": "https://d.example/", "resolve": ""})
    assert cfg.external_urls == ("https://a.example/", "https://b.example/health", "http://c.example/",
                                 "https://d.example/")
    assert cfg.external_resolve == ((), ("edge",), ("198.51.100.7", "198.51.100.8"), ())


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ({"url": "https://b.example/", "resolve": "somewhere"}, "verify.externalUrls[0].resolve"),
        ({"url": "https://b.example/", "resolve": ["198.51.100.7", "not-an-ip"]}, "verify.externalUrls[0].resolve[1]"),
        ({"url": "ftp://b.example/", "resolve": "edge"}, "verify.externalUrls[0].url"),
        ({"url": "https://b.example/", "resolv": "edge"}, "verify.externalUrls[0]"),
    ],
)
def test_a_bad_resolve_item_is_refused_with_its_key(item, key):
    raw = {**project_defaults()["verify"], "externalUrls": [item]}
    err = error_for(verify=raw)
    assert err.key == key


def test_each_client_checks_the_next_nodes_address_on_80_and_443_keeping_the_name_for_tls():
    plans = plan.plan_external(NODES, PODS, ["https://platform.keybuzz.io/health"], resolve=[EDGE])
    commands = {p.node: shlex.split(p.probes[0].command) for p in plans}
    for k, node in enumerate(NODES):
        args = commands[node]
        target = EDGE[(k + 1) % len(EDGE)]
        resolves = [args[i + 1] for i, a in enumerate(args) if a == "--resolve"]
        assert resolves == [f"platform.keybuzz.io:80:{target}", f"platform.keybuzz.io:443:{target}"]
        assert args[-1] == "https://platform.keybuzz.io/health"
    # Every edge address is checked once, from another node.
    assert sorted(plan.external_address([EDGE], 0, k) for k in range(3)) == sorted(EDGE)


def test_a_url_with_its_own_port_resolves_that_port_too_and_plain_urls_get_no_resolve():
    plans = plan.plan_external(NODES, PODS, ["http://a.example:8080/x", "https://b.example/"],
                               resolve=[("198.51.100.7",), ()])
    first, second = (shlex.split(p.command) for p in plans[0].probes)
    assert [first[i + 1] for i, a in enumerate(first) if a == "--resolve"] == [
        "a.example:80:198.51.100.7", "a.example:443:198.51.100.7", "a.example:8080:198.51.100.7"]
    assert "--resolve" not in second


def test_the_verdict_names_the_address_a_failure_was_resolved_to():
    outputs = {n: {"ext:0": RawOutput("curl: (7) Failed to connect\n@@curl 000 0 0.002", 7)} for n in NODES}
    verdict = judge.judge_external(NODES, outputs, PODS.clients, ["https://b.example/"], resolve=[EDGE])
    assert not verdict.ok
    wheres = sorted(f.where for f in verdict.failures)
    assert wheres[0].endswith("https://b.example/ (resolved to 203.0.113.20)")
    assert any("the new edge is not serving it yet" in c for c in verdict.causes())


def test_bin_verify_turns_edge_into_the_stacks_node_public_ips():
    nodes = [{"name": "kb-cp-1", "publicIp": "203.0.113.10"}, {"name": "kb-workers-1", "publicIp": "203.0.113.20"}]
    assert stack_external_resolve([(), ("edge",), ("198.51.100.7",)], nodes) == (
        (), ("203.0.113.10", "203.0.113.20"), ("198.51.100.7",))
    with pytest.raises(UsageError, match="no publicIp"):
        stack_external_resolve([("edge",)], [])


def test_the_program_hands_the_external_check_this_stacks_public_ips_for_edge():
    verify = {**project_defaults()["verify"],
              "externalUrls": [{"url": "https://platform.keybuzz.io/", "resolve": "edge"}, "https://x.example/"]}
    run = run_program("dev", overrides={"keybuzz-k3s:verify": verify})
    check = run.named("keybuzz-dev-verify-check-external")
    public = sorted(r.inputs["networks"][0]["ip"].rsplit(".", 1)[1] for r in run.of_type("hcloud:index/server:Server"))
    assert check.inputs["externalUrls"] == ["https://platform.keybuzz.io/", "https://x.example/"]
    edge, plain = check.inputs["externalResolve"]
    assert sorted(ip.rsplit(".", 1)[1] for ip in edge) == public and plain == []
    assert all(ip.startswith("203.0.113.") for ip in check.inputs["externalResolve"][0])


def test_a_focused_batch_check_uses_and_names_each_clients_address_from_the_full_order():
    everyone = plan.plan_external(NODES, PODS, ["https://b.example/"], resolve=[EDGE])
    full = {p.node: p.probes[0].command for p in everyone}
    focused = plan.plan_external(NODES, PODS, ["https://b.example/"], focus=["kb-workers-2"], resolve=[EDGE])
    assert [(p.node, p.probes[0].command) for p in focused] == [("kb-workers-2", full["kb-workers-2"])]
    outputs = {"kb-workers-2": {"ext:0": RawOutput("curl: (7) Failed to connect\n@@curl 000 0 0.002", 7)}}
    verdict = judge.judge_external(["kb-workers-2"], outputs, PODS.clients, ["https://b.example/"], resolve=[EDGE],
                                   resolve_order=NODES)
    assert [f.where for f in verdict.failures] == ["kb-workers-2→https://b.example/ (resolved to 203.0.113.10)"]
