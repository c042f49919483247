"""Pod mesh: every client pod reaches the echo pod on every other node, answered by that node."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from keybuzz.verify.judge.common import CAUSE_PING_TOOL, walk_paths
from keybuzz.verify.judge.parsers import describe_curl_failure, parse_curl, parse_ping, ping_ok
from keybuzz.verify.judge.verdict import Failure, Verdict, latency_summary
from keybuzz.verify.plan import DEFAULT_TIMEOUTS, RawOutput, Timeouts, cross_node_pairs

CAUSE_OVERLAY = (
    "IP protocol 4 (IPIP) or BGP TCP 179 blocked between the nodes' private IPs, or tunl0 routes "
    "missing (BIRD not exchanging routes); see calico-node logs on {nodes}"
)
CAUSE_TCP_ONLY = (
    "ICMP crosses the overlay but TCP does not: the echo pod on {dst} is not listening on the probe port, "
    "or a network policy or firewall drops TCP to it; see `kubectl -n {ns} logs` of the echo pod on {dst}"
)
CAUSE_HUNG = (
    "the echo pod on {dst} accepts TCP connections but does not answer: the pod is hung or starved "
    "(not a network fault); see `kubectl -n {ns} describe pod` and its logs on {dst}"
)


def judge_mesh(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    clients: Mapping[str, str],
    echo_ips: Mapping[str, str],
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    focus: Sequence[str] | None = None,
) -> Verdict:
    """Every client pod reaches the echo pod on every other node (HTTP, answered by the right node).

    HTTP decides; ping only explains a failure (ICMP echo may be filtered on a healthy cluster).
    ``focus``: only the paths to or from those nodes were probed, and only they are judged.
    """
    pairs = cross_node_pairs(nodes, focus)
    failures: list[Failure] = []
    rtts: list[float] = []
    failing_pairs: list[tuple[str, str]] = []
    icmp_filtered: list[str] = []
    tool_broken: dict[str, str] = {}
    for p in walk_paths(nodes, outputs, clients, echo_ips, ("http", "ping"), failures, exec_errors, namespace,
                        focus=focus):
        ping_res = parse_ping(p.got["ping"].text, p.got["ping"].exit_code)
        if ping_res.rtt_avg_ms is not None:
            rtts.append(ping_res.rtt_avg_ms)
        if ping_res.tool_error:
            tool_broken.setdefault(p.src, ping_res.tool_error)
        http = parse_curl(p.got["http"].text, p.got["http"].exit_code)[-1]
        if http.ok and http.body.strip() == p.dst:
            if ping_res.measured and not ping_ok(ping_res):
                icmp_filtered.append(p.where)
            continue
        if http.ok:
            failures.append(Failure(p.where, f"answered by {http.body.strip()!r}, not {p.dst}",
                                    f"pod IP {echo_ips[p.dst]} is routed to the wrong node: stale routes or "
                                    "overlapping IPAM blocks"))
            continue
        what = describe_curl_failure(http)
        ping_says = ("ping could not run" if ping_res.tool_error
                     else "ping OK" if ping_ok(ping_res) else f"ping {ping_res.loss_pct:g}% loss")
        if http.stage == "no-response":
            failures.append(Failure(p.where, f"{what}, {ping_says}", CAUSE_HUNG.format(dst=p.dst, ns=namespace)))
        elif ping_ok(ping_res):
            failures.append(Failure(p.where, f"{what}, {ping_says}", CAUSE_TCP_ONLY.format(dst=p.dst, ns=namespace)))
        else:
            failing_pairs.append((p.src, p.dst))
            failures.append(Failure(p.where, f"{what}, {ping_says}", "overlay"))
    # Name the nodes to look at: those on every overlay failure, else all the nodes involved.
    if failing_pairs:
        involved = Counter(n for pair in failing_pairs for n in pair)
        suspects = [n for n, c in involved.items() if c == len(failing_pairs)]
        cause = CAUSE_OVERLAY.format(nodes=", ".join(sorted(suspects or involved)))
        failures = [Failure(f.where, f.what, cause) if f.cause == "overlay" else f for f in failures]
    notes = []
    if icmp_filtered:
        notes.append(f"ICMP echo is filtered on {len(icmp_filtered)} paths where HTTP passes "
                     f"({', '.join(icmp_filtered[:4])}): a policy or firewall drops ping, the overlay works")
    # HTTP alone decides this check; a ping that cannot run is the probe image's fault, said once.
    for node, error in sorted(tool_broken.items()):
        notes.append(f"ping could not run in the client pod on {node} ({error}): {CAUSE_PING_TOOL}")
    return Verdict(
        check="pod mesh",
        tested=(f"HTTP (connect timeout {timeouts.connect_s} s, {timeouts.request_s} s in all) and ping from a pod "
                f"on each node to the echo pod on every other node ({len(nodes)} nodes"
                + (f"; only paths to or from {', '.join(sorted(focus))})" if focus else ")")),
        total=len(pairs),
        failures=failures,
        unit="cross-node paths",
        latency_ms=latency_summary(rtts),
        notes=notes,
    )
