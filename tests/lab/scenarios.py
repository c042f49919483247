"""The lab's fault matrix as data: a name, how to inject it, and the checks it is judged by.

Shared by the fault-matrix tests (tests/lab/test_lab_faults.py) and by the capture tool
(tests/lab/capture.py), which stores the real tool output of each scenario for the judges' unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab import Lab

from keybuzz.verify.checks import CheckInputs
from keybuzz.verify.judge import Verdict
from keybuzz.verify.plan import Timeouts

# Short probe budget so a scenario runs in a few seconds; the check deadline leaves no room for a
# second attempt when a probe times out (a retry would double the test's time and say nothing new).
LAB_TIMEOUTS = Timeouts(connect_s=1, request_s=2, bulk_s=2)
CHECK_TIMEOUT_S = 4.0
SMALLER_PATH_MTU = 1400


def inputs(lab: Lab, **overrides: object) -> CheckInputs:
    """The check inputs for this lab, with the lab's short probe budget and check deadline."""
    return lab.check_inputs(**{"timeout_seconds": CHECK_TIMEOUT_S, "timeouts": LAB_TIMEOUTS, **overrides})


# ClusterIP scenarios where some backend is unreachable from some node: calls per client pod such
# that the dead backend is picked (uniformly among 3, as kube-proxy does) with near certainty.
# With one node cut from one backend, P(no call of that node picks it) = (2/3)^40 = 9e-8: the
# chance of a false pass (for a pair cut both ways, of one node's failure going unseen). The
# default (plan.clusterip_calls: 9 per pod) would leave (2/3)^9 = 2.6 % for the one-way fault.
MANY_CALLS = 40


@dataclass(frozen=True)
class Scenario:
    name: str
    inject: Callable[[Lab], None]
    checks: tuple[str, ...]
    # CheckInputs fields this scenario sets beyond the lab's defaults (see inputs()).
    overrides: dict[str, Any] = field(default_factory=dict)


SCENARIOS = [
    Scenario("healthy", lambda lab: None, ("dns", "clusterip", "mesh", "mtu", "ingress")),
    Scenario("pair_blocked", lambda lab: lab.block_pair("node-a", "node-b"), ("mesh", "mtu", "clusterip"),
             {"clusterip_calls": MANY_CALLS}),
    # The production connect budget (2 s), so the retransmitted SYN (at 1 s) can still connect: the
    # call answers, late, from another backend; only its connect time shows the lost SYN.
    Scenario("backend_unreachable_one_way", lambda lab: lab.block_one_way("node-a", "node-c"), ("clusterip", "mesh"),
             {"clusterip_calls": MANY_CALLS, "timeouts": Timeouts(connect_s=2, request_s=3, bulk_s=3),
              "timeout_seconds": 6.0}),
    Scenario("path_mtu_icmp", lambda lab: lab.set_path_mtu(SMALLER_PATH_MTU, icmp=True), ("mtu",)),
    Scenario("path_mtu_black_hole", lambda lab: lab.set_path_mtu(SMALLER_PATH_MTU, icmp=False), ("mtu",)),
    Scenario("pmtu_cached", lambda lab: lab.prime_pmtu("node-a", "node-b", SMALLER_PATH_MTU), ("mtu",)),
    Scenario("icmp_filtered", lambda lab: lab.filter_icmp_echo(), ("mesh", "mtu")),
    Scenario("tcp_to_echo_dropped", lambda lab: lab.drop_tcp_to_echo("node-c"), ("mesh", "mtu")),
    Scenario("echo_hung", lambda lab: lab.hang_echo("node-c"), ("mesh", "mtu")),
    Scenario("echo_mtu_stale", lambda lab: lab.set_pod_mtu("node-c", 1480), ("mtu",)),
    Scenario("dns_down", lambda lab: lab.dns_down(), ("dns",)),
    Scenario("dns_no_endpoints", lambda lab: lab.dns_no_endpoints(), ("dns",)),
    Scenario("dns_nxdomain", lambda lab: lab.dns_nxdomain(), ("dns",)),
    Scenario("kube_proxy_missing", lambda lab: lab.remove_kube_proxy("node-b"), ("clusterip", "dns")),
    Scenario("routes_missing", lambda lab: lab.remove_routes("node-a", "node-c"), ("mesh",)),
    Scenario("ingress_absent", lambda lab: lab.stop_ingress("node-b"), ("ingress",)),
    Scenario("ingress_firewalled", lambda lab: lab.firewall_ingress("node-b"), ("ingress",)),
    Scenario("busybox_ping", lambda lab: lab.busybox_ping("node-a"), ("mesh", "mtu")),
    Scenario("ping_usage_error", lambda lab: lab.replace_tool(
        "node-a", "ping", '#!/bin/sh\nexec /usr/bin/ping -M probe "$@"\n'), ("mesh", "mtu")),
]
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass(frozen=True)
class Expect:
    """What a check must say in a scenario: pass or fail, where, and a fragment of the cause.

    ``cause`` is matched against the causes when the check fails, and against the notes when it
    passes (a pass that noticed something, e.g. ICMP echo filtered, says so in a note).
    """

    ok: bool
    cause: str = ""
    where: tuple[str, ...] | None = None
    what: str = ""  # a fragment one failure's "what" must contain


EXPECTED: dict[tuple[str, str], Expect] = {
    **{("healthy", c): Expect(True) for c in ("dns", "clusterip", "mesh", "mtu", "ingress")},
    ("pair_blocked", "mesh"): Expect(False, "IP protocol 4 (IPIP) or BGP TCP 179 blocked",
                                     ("node-a→node-b", "node-b→node-a")),
    ("pair_blocked", "mtu"): Expect(False, "path down altogether", ("node-a→node-b", "node-b→node-a")),
    ("pair_blocked", "clusterip"): Expect(False, "a cross-node overlay path is broken", ("from node-a", "from node-b")),
    ("backend_unreachable_one_way", "clusterip"): Expect(False, "a cross-node overlay path is broken", ("from node-a",),
                                                         "a backend is unreachable from node-a"),
    # The pod mesh probes that path directly, whatever the Service's random picks: a deterministic second witness.
    ("backend_unreachable_one_way", "mesh"): Expect(False, "IP protocol 4 (IPIP) or BGP TCP 179 blocked",
                                                    ("node-a→node-c",)),
    ("path_mtu_icmp", "mtu"): Expect(False, f"a hop on the path carries only {SMALLER_PATH_MTU} bytes, less than "
                                     "the pool MTU 1430"),
    ("path_mtu_black_hole", "mtu"): Expect(False, "MTU black hole: 1430-byte packets vanish"),
    ("pmtu_cached", "mtu"): Expect(False, f"kernel learnt path MTU {SMALLER_PATH_MTU} to this echo pod from an "
                                   "ICMP Frag needed", ("node-a→node-b",)),
    ("icmp_filtered", "mesh"): Expect(True, "ICMP echo is filtered on 6 paths where HTTP passes"),
    ("icmp_filtered", "mtu"): Expect(True, "ICMP echo is filtered on 6 paths"),
    ("tcp_to_echo_dropped", "mesh"): Expect(False, "ICMP crosses the overlay but TCP does not",
                                            ("node-a→node-c", "node-b→node-c")),
    ("tcp_to_echo_dropped", "mtu"): Expect(False, "no TCP connection to the echo pod on node-c although ping "
                                           "passes (full-size DF pings pass: not an MTU problem)",
                                           ("node-a→node-c", "node-b→node-c")),
    ("echo_hung", "mesh"): Expect(False, "the echo pod on node-c accepts TCP connections but does not answer",
                                  ("node-a→node-c", "node-b→node-c")),
    ("echo_hung", "mtu"): Expect(False, "the echo pod on node-c accepts connections but sends nothing",
                                 ("node-a→node-c", "node-b→node-c")),
    ("echo_mtu_stale", "mtu"): Expect(False, "a pod's eth0 MTU differs from the pool MTU 1430",
                                      ("echo pod on node-c",)),
    ("dns_down", "dns"): Expect(False, "CoreDNS does not answer from any node (queries time out)"),
    ("dns_no_endpoints", "dns"): Expect(False, "the kube-dns Service has no ready endpoints"),
    ("dns_nxdomain", "dns"): Expect(False, "CoreDNS answers but does not know the name"),
    ("kube_proxy_missing", "clusterip"): Expect(False, "kube-proxy rules missing on node-b", ("from node-b",)),
    ("kube_proxy_missing", "dns"): Expect(False, "CoreDNS unreachable from some nodes only", ("from node-b",)),
    ("routes_missing", "mesh"): Expect(False, "tunl0 routes missing", ("node-a→node-c", "node-c→node-a")),
    ("ingress_absent", "ingress"): Expect(False, "ingress-nginx not running on node-b", ("node-c→node-b:80",)),
    ("ingress_firewalled", "ingress"): Expect(False, "node-b's port 80 silently dropped", ("node-c→node-b:80",)),
    ("busybox_ping", "mesh"): Expect(True),  # busybox ping does plain pings: the mesh is judged as usual
    ("ping_usage_error", "mesh"): Expect(True, "ping could not run in the client pod on node-a"),
    ("busybox_ping", "mtu"): Expect(False, "ping cannot run as the check needs it", ("client pod on node-a",)),
    ("ping_usage_error", "mtu"): Expect(False, "ping cannot run as the check needs it", ("client pod on node-a",)),
}


def check_verdict(verdict: Verdict, expect: Expect, nodes: list[str]) -> None:
    """Assert the verdict, where it failed, and the named cause (or the note, for a pass)."""
    message = verdict.message(nodes)
    assert verdict.ok is expect.ok, message
    if expect.where is not None:
        assert tuple(f.where for f in verdict.failures) == expect.where, message
    if expect.what:
        assert any(expect.what in f.what for f in verdict.failures), message
    if expect.cause:
        said = verdict.causes() if not expect.ok else verdict.notes
        assert any(expect.cause in text for text in said), f"{expect.cause!r} not in {said}"
    if not expect.ok:
        # One diagnosis per scenario: the cause names the fault, nothing else is blamed.
        assert len(verdict.causes()) == 1, verdict.causes()
