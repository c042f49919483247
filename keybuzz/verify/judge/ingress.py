"""Ingress: the ingress controller on every node answers the probe Host from an echo pod."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from keybuzz.verify.judge.common import CAUSE_EXEC, CAUSE_PROBE_POD, unfinished_failure
from keybuzz.verify.judge.parsers import describe_curl_failure, parse_curl
from keybuzz.verify.judge.verdict import Failure, Verdict, latency_summary, path
from keybuzz.verify.plan import INGRESS_PORT, RawOutput, probe_key, sources

DEFAULT_INGRESS_CONTROLLER = "ingress-nginx"


def judge_ingress(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    prober: Mapping[str, str],
    node_ips: Mapping[str, str],
    host: str,
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
    controller: str = DEFAULT_INGRESS_CONTROLLER,
    port: int = INGRESS_PORT,
    focus: Sequence[str] | None = None,
) -> Verdict:
    """The ingress controller on every node answers the probe Host with an echo backend: 200, never 503.

    ``controller`` (e.g. ingress-nginx, traefik) and the host ``port`` probed are what the causes name.
    ``focus``: only those nodes' controllers were probed (any echo pod may still answer).
    """
    failures: list[Failure] = []
    if not prober:
        failures.append(Failure("all nodes", "no ready client pod to probe from", CAUSE_PROBE_POD.format(ns=namespace)))
    times: list[float] = []
    valid = set(nodes)
    targets = sources(nodes, focus)
    for target in targets:
        if target not in node_ips:
            failures.append(Failure(target, "no private IP given", "program bug: node list without private IPs"))
            continue
        client = prober.get(target)
        if client is None:
            continue
        where = f"{path(client, target)}:{port}"
        if exec_errors and client in exec_errors:
            failures.append(Failure(where, f"exec failed: {exec_errors[client]}", CAUSE_EXEC.format(ns=namespace)))
            continue
        raw = outputs.get(client, {}).get(probe_key("ingress", target))
        if raw is None:
            failures.append(Failure(where, "no result", CAUSE_EXEC.format(ns=namespace)))
            continue
        if not raw.finished:
            failures.append(unfinished_failure(where, [f"ingress:{target}"]))
            continue
        calls = parse_curl(raw.text, raw.exit_code)
        codes = Counter(c.http_code for c in calls)
        bad = [c for c in calls if not (c.exit_code == 0 and c.http_code == 200 and c.body.strip() in valid)]
        times += [c.seconds * 1000 for c in calls if c not in bad]
        if not bad:
            continue
        first = bad[0]
        summary = ", ".join(f"{code:03d}×{n}" for code, n in sorted(codes.items()))
        if first.http_code == 503:
            failures.append(Failure(where, f"{controller} on {target} answered 503 ({summary})",
                                    f"{controller} has no reachable backend: the probe Service has no ready "
                                    "endpoints, or that node cannot reach the echo pods over the overlay "
                                    f"(see pod mesh); {controller} logs on that node name the failed upstream"))
        elif first.http_code in (502, 504):
            failures.append(Failure(where, f"{controller} on {target} answered {first.http_code} ({summary})",
                                    f"{controller} reached no echo pod in time: the overlay path from that "
                                    "node to the backends is broken (see pod mesh)"))
        elif first.http_code == 404:
            failures.append(Failure(where, f"404 for Host {host} ({summary})",
                                    f"the probe Ingress is not served by {controller}: its ingressClassName is "
                                    "not the class this controller watches, or the Ingress not admitted yet"))
        elif first.exit_code == 7:
            failures.append(Failure(where, f"nothing listens on {node_ips[target]}:{port} (connection refused)",
                                    f"{controller} not running on {target}: its pod missing there, or not "
                                    f"listening on the node's port {port} (hostNetwork / hostPort)"))
        elif first.stage == "no-connection":
            failures.append(Failure(where, f"{node_ips[target]}:{port}: {describe_curl_failure(first)}",
                                    f"{target}'s port {port} silently dropped for a pod on {client}: host firewall "
                                    f"on {target} (or the Hetzner Cloud Firewall) drops it"))
        elif first.stage in ("no-response", "stalled"):
            failures.append(Failure(where, f"{node_ips[target]}:{port}: {describe_curl_failure(first)}",
                                    f"{controller} on {target} accepts connections but does not answer: hung or "
                                    "overloaded; see its logs"))
        elif first.exit_code == 0 and first.http_code == 200:
            failures.append(Failure(where, f"answered 200 but not by an echo pod ({first.body.strip()[:60]!r})",
                                    "another Ingress or default backend claims the probe host"))
        else:
            failures.append(Failure(where, f"{describe_curl_failure(first)} ({summary})",
                                    f"{controller} answered with an error; see its logs"))
    return Verdict(
        check="ingress",
        tested=f"{controller} on {len(targets)} nodes (private IP :{port}, Host {host}) answers 200 from an echo pod",
        total=len(targets),
        failures=failures,
        unit="nodes",
        latency_ms=latency_summary(times),
    )
