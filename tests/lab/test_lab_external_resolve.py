"""externalUrls resolve on the lab: a name no DNS knows is checked against given addresses, like curl --resolve."""

from scenarios import inputs

from keybuzz.verify.checks import run_check

URL = "http://edge.keybuzz.invalid:8080/node"  # .invalid never resolves: only --resolve can reach it


def test_a_url_resolved_to_each_nodes_address_passes_without_dns(clean_lab):
    nodes = sorted(clean_lab.nodes)
    edge = tuple(clean_lab.node(n).echo_ip for n in nodes)
    access = clean_lab.access()
    verdict = run_check("external", inputs(clean_lab, external_urls=(URL,), external_resolve=(edge,)),
                        lambda: access, sleep=lambda s: None)
    assert verdict.ok, verdict.message(nodes)
    assert verdict.total == len(nodes)


def test_the_same_url_without_resolve_fails_on_dns_and_a_dead_address_is_named(clean_lab):
    access = clean_lab.access()
    plain = run_check("external", inputs(clean_lab, external_urls=(URL,)), lambda: access, sleep=lambda s: None)
    assert not plain.ok and all("do not resolve" in c for c in plain.causes())
    dead = "10.42.250.1"  # in the pod range, on no node
    resolved = run_check("external", inputs(clean_lab, external_urls=(URL,), external_resolve=((dead,),)),
                         lambda: access, sleep=lambda s: None)
    assert not resolved.ok
    assert all(f.where.endswith(f"(resolved to {dead})") for f in resolved.failures)
