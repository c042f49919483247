"""DNS: every node's client pod resolves the API server's Service name to its ClusterIP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keybuzz.verify.judge.common import CAUSE_EXEC, exec_failures, missing_pod_failures, unfinished_failure
from keybuzz.verify.judge.parsers import parse_dig
from keybuzz.verify.judge.verdict import Failure, Verdict
from keybuzz.verify.plan import RawOutput, probe_key

CAUSE_REFUSED = (
    "the kube-dns Service has no ready endpoints (kube-proxy rejects queries to it: 'connection refused'), "
    "so CoreDNS pods are not Running or not Ready; see `kubectl -n kube-system get pods,endpoints -l "
    "k8s-app=kube-dns`"
)
CAUSE_TIMEOUT_ALL = (
    "CoreDNS does not answer from any node (queries time out): CoreDNS pods hung or overloaded, or the "
    "overlay path to them broken everywhere; see `kubectl -n kube-system logs -l k8s-app=kube-dns`"
)
CAUSE_TIMEOUT_SOME = (
    "CoreDNS unreachable from some nodes only: kube-proxy rules missing on those nodes, or the overlay "
    "path from them to the CoreDNS pods broken (see the pod mesh and ClusterIP checks)"
)


def judge_dns(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    expected_ip: str,
    clients: Mapping[str, str],
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
    name: str = "kubernetes.default.svc.cluster.local",
    focused: bool = False,
) -> Verdict:
    """Each node's client pod must resolve the name to the ``kubernetes`` Service ClusterIP.

    ``focused``: ``nodes`` are a rollout batch's nodes, not all of them; the others answered at the
    last full check, so timeouts from every one of these blame these nodes, not CoreDNS.
    """
    failures = missing_pod_failures(nodes, clients, "client", namespace)
    failures += exec_failures(exec_errors or {}, namespace)
    timeouts = 0
    judged = 0
    for node in sorted(nodes):
        raw = outputs.get(node, {}).get(probe_key("dns", "kubernetes"))
        if node not in clients or (exec_errors and node in exec_errors):
            continue
        where = f"from {node}"
        if raw is None:
            failures.append(Failure(where, "no result", CAUSE_EXEC.format(ns=namespace)))
            continue
        if not raw.finished:
            failures.append(unfinished_failure(where, ["dns:kubernetes"]))
            continue
        judged += 1
        res = parse_dig(raw.text, raw.exit_code)
        server = f" ({res.server})" if res.server else ""
        if res.status == "ok":
            if expected_ip not in res.answers:
                failures.append(Failure(where, f"resolves to {', '.join(res.answers)}, want {expected_ip}",
                                        "stale or foreign DNS answer: the pod's resolv.conf does not point at "
                                        "CoreDNS (cluster-dns / kubelet --cluster-dns mismatch)"))
        elif res.status == "refused":
            failures.append(Failure(where, f"DNS query refused{server}: nothing behind the DNS Service address",
                                    CAUSE_REFUSED))
        elif res.status == "timeout":
            timeouts += 1
            failures.append(Failure(where, f"DNS query timed out{server}, no server answered", "dns-timeout"))
        elif res.status == "nxdomain":
            failures.append(Failure(where, f"{name}: NXDOMAIN",
                                    "CoreDNS answers but does not know the name: cluster-domain mismatch (K3s "
                                    "cluster-domain vs the name), or CoreDNS's kubernetes plugin cannot read "
                                    "Services from the API"))
        elif res.status in ("noerror", "servfail"):
            failures.append(Failure(where, f"{name}: {res.status.upper()} with no A record",
                                    "CoreDNS answers but not with the Service address: its kubernetes plugin "
                                    "cannot reach the API (SERVFAIL) or the Service has no ClusterIP"))
        else:
            failures.append(Failure(where, f"dig failed (exit {raw.exit_code}): {res.detail}",
                                    "dig could not run in the probe pod (resolv.conf without a nameserver, or "
                                    "the image lacks dig)"))
    if timeouts:
        cause = CAUSE_TIMEOUT_ALL if timeouts == judged and not focused else CAUSE_TIMEOUT_SOME
        failures = [Failure(f.where, f.what, cause) if f.cause == "dns-timeout" else f for f in failures]
    return Verdict(
        check="DNS",
        tested=f"{name} resolves to {expected_ip} from a pod on every node",
        total=len(nodes),
        failures=failures,
        unit="nodes",
    )
