"""ClusterIP: from every node the echo Service answers, and pooled over all calls every backend does."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from keybuzz.verify.judge.common import CAUSE_EXEC, exec_failures, missing_pod_failures, unfinished_failure
from keybuzz.verify.judge.parsers import CurlResult, describe_curl_failure, parse_curl
from keybuzz.verify.judge.verdict import Failure, Verdict, latency_summary
from keybuzz.verify.plan import RawOutput


def judge_clusterip(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    service_ip: str,
    pods_clients: Mapping[str, str],
    echo_nodes: Sequence[str],
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
    focused: bool = False,
) -> Verdict:
    """From every node the Service answers; pooled over all calls every backend (one per node) answers.

    ``focused``: only ``nodes`` (a rollout batch's) called. A backend they never reached is then
    already said by their own failure ("from <node>"), as the full checks say it; it is named on
    its own only when their calls otherwise passed (a backend missing from the endpoints).

    Calls are the ``svc:*`` probes of each pod (one curl each, or one loop of curls). A call that
    answered but whose connect took >= 1 s lost its first SYN: counted as lost, not as passed
    (see ``_some_calls_lost``).
    """
    failures = missing_pod_failures(nodes, pods_clients, "client", namespace)
    failures += missing_pod_failures(nodes, {n: 1 for n in echo_nodes}, "echo", namespace)
    failures += exec_failures(exec_errors or {}, namespace)
    seen: Counter[str] = Counter()
    times: list[float] = []
    calls_total = 0
    for node in sorted(nodes):
        if node not in pods_clients or (exec_errors and node in exec_errors):
            continue
        raws = {k: r for k, r in outputs.get(node, {}).items() if k.startswith("svc:")}
        if not raws:
            failures.append(Failure(f"from {node}", "no result", CAUSE_EXEC.format(ns=namespace)))
            continue
        calls: list[CurlResult] = []
        unfinished = sorted(k for k, r in raws.items() if not r.finished)
        for raw in raws.values():
            if raw.finished:
                calls += parse_curl(raw.text, raw.exit_code)
        calls_total += len(calls)
        bad = [c for c in calls if not c.ok]
        for c in calls:
            if c.ok:
                seen[c.body.strip()] += 1
                times.append(c.seconds * 1000)
        if calls and len(bad) == len(calls):
            failures.append(Failure(f"from {node}", f"Service {service_ip}:80 never answered in {len(calls)} calls "
                                    f"({describe_curl_failure(bad[0])})",
                                    f"kube-proxy rules missing on {node} (the ClusterIP is not translated there), or "
                                    f"no path from {node} to any echo pod (see pod mesh)"))
        elif bad or any(c.syn_retried for c in calls):
            failures.append(_some_calls_lost(node, calls, bad))
        elif unfinished and not calls:
            failures.append(unfinished_failure(f"from {node}", unfinished[:3]))
    said_from = focused and any(f.where.startswith("from ") for f in failures)
    for node in sorted(echo_nodes):
        if calls_total and seen[node] == 0 and not said_from:
            failures.append(Failure(f"backend on {node}", f"never answered in {calls_total} calls",
                                    f"the echo pod on {node} is unreachable from the other nodes (overlay path "
                                    f"to {node}), or missing from the Service endpoints"))
    return Verdict(
        check="ClusterIP",
        tested=(f"Service {service_ip}:80 from every node, {calls_total} calls, backends seen: "
                + ", ".join(f"{n}×{c}" for n, c in sorted(seen.items()))),
        # Answers from each node judged, answered by each backend (every node's, also in a focused run).
        total=len(nodes) + len(set(nodes) | set(echo_nodes)),
        failures=failures,
        unit="node checks (answers from, answered by)",
        latency_ms=latency_summary(times),
    )


# Shared by failed and late calls: one cause per node whatever mix of the two it saw.
CAUSE_SOME_BACKENDS = ("some backends unreachable from that node: a cross-node overlay path is broken "
                       "(see pod mesh)")


def _some_calls_lost(node: str, calls: Sequence[CurlResult], bad: Sequence[CurlResult]) -> Failure:
    """Some calls from ``node`` failed, or connected only on a retransmitted SYN.

    When the first SYN to a dead backend is dropped before conntrack confirms its entry (a drop in
    the node's own forward path), the retransmitted SYN, 1 s later, is translated afresh and may
    pick a live backend: the call answers after ~1 s and would pass. Its ``time_connect`` gives
    it away: a handshake never takes the kernel's 1 s initial RTO on a healthy overlay.
    """
    late = [c for c in calls if c.ok and c.syn_retried]
    parts = []
    if bad:
        parts.append(f"{len(bad)} of {len(calls)} calls failed ({describe_curl_failure(bad[0])})")
    if late:
        slowest = max(c.connect_seconds or 0.0 for c in late)
        parts.append(f"{len(late)} of {len(calls)} calls answered late: connect took {slowest:.1f} s: the first "
                     f"SYN was lost, the retry reached another backend — a backend is unreachable from {node}")
    return Failure(f"from {node}", "; ".join(parts), CAUSE_SOME_BACKENDS)
