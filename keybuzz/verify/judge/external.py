"""External URLs: every configured URL answers 200 from a pod on every node (egress, NAT, DNS)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keybuzz.verify.judge.common import CAUSE_EXEC, exec_failures, missing_pod_failures, unfinished_failure
from keybuzz.verify.judge.parsers import describe_curl_failure, parse_curl
from keybuzz.verify.judge.verdict import ARROW, Failure, Verdict, latency_summary
from keybuzz.verify.plan import RawOutput, external_address, probe_key


def judge_external(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    clients: Mapping[str, str],
    urls: Sequence[str],
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
    resolve: Sequence[Sequence[str]] = (),
    resolve_order: Sequence[str] | None = None,
) -> Verdict:
    """Every configured URL answers 200 (after redirects) from a pod on every node; none = skipped."""
    if not urls:
        return Verdict(check="external URLs", tested="no verify.externalUrls configured", total=0,
                       unit="URLs", skipped=True)
    failures = missing_pod_failures(nodes, clients, "client", namespace)
    failures += exec_failures(exec_errors or {}, namespace)
    times: list[float] = []
    # The client's place in the full node order picks its address (plan_external): a focused run
    # judges a subset of ``nodes`` with the addresses they used.
    order = {n: k for k, n in enumerate(sorted(resolve_order if resolve_order is not None else nodes))}
    for node in sorted(nodes):
        if node not in clients or (exec_errors and node in exec_errors):
            continue
        for i, url in enumerate(urls):
            raw = outputs.get(node, {}).get(probe_key("ext", str(i)))
            address = external_address(resolve, i, order.get(node, 0))
            where = f"{node}{ARROW}{url}" + (f" (resolved to {address})" if address else "")
            if raw is None:
                failures.append(Failure(where, "no result", CAUSE_EXEC.format(ns=namespace)))
                continue
            if not raw.finished:
                failures.append(unfinished_failure(where, [f"ext:{i}"]))
                continue
            res = parse_curl(raw.text, raw.exit_code)[-1]
            if res.exit_code == 0 and res.http_code == 200:
                times.append(res.seconds * 1000)
                continue
            what = describe_curl_failure(res)
            if res.exit_code == 6:
                cause = ("external names do not resolve: CoreDNS cannot reach its upstream (forward . "
                         "/etc/resolv.conf on the node) or CoreDNS is down")
            elif res.exit_code in (7, 28) and address:
                cause = (f"{address} does not answer on the URL's port: the new edge is not serving it yet "
                         "(ingress controller, Cloud Firewall 80/443), or the pod has no egress")
            elif res.exit_code in (7, 28):
                cause = ("no egress from pods: natOutgoing off on the IPPool, the node's default route missing "
                         "(Hetzner DHCP on the private NIC), or outbound firewall rules")
            elif res.exit_code == 0:
                cause = "the URL answers, but not 200: list the final URL, or the service is down"
            else:
                cause = "TLS or transfer error talking to the URL"
            failures.append(Failure(where, what, cause))
    return Verdict(
        check="external URLs",
        tested=f"{len(urls)} URLs answer 200 from a pod on each of {len(nodes)} nodes",
        total=len(urls) * len(nodes),
        failures=failures,
        unit="fetches",
        latency_ms=latency_summary(times),
    )
