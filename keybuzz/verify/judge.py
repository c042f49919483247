"""Verdicts from raw probe output and API objects: pure functions, tested as data.

Parsers read the real output formats (iputils ping summary and error lines, curl ``-w`` fields and
exit codes, ``dig +short`` answers). Every failure names its path (``node-a→node-c``) and every
verdict names the likely cause class, so a failed ``pulumi up`` says where to look.
"""

from __future__ import annotations

import ipaddress
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keybuzz.calico import HETZNER_PRIVATE_NETWORK_MTU as NETWORK_MTU
from keybuzz.calico import IPIP_OVERHEAD_BYTES as IPIP_OVERHEAD
from keybuzz.verify.plan import (
    BULK_BYTES,
    BULK_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    CURL_MARK,
    ICMP_OVERHEAD,
    RawOutput,
    cross_node_pairs,
    probe_key,
)

ARROW = "→"

# ---------------------------------------------------------------------------------------------
# Verdict


@dataclass(frozen=True)
class Failure:
    """One broken thing: where (a path or a node), what was observed, and its cause class."""

    where: str
    what: str
    cause: str

    def line(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Verdict:
    """The result of one check; ``message()`` is what a failed ``pulumi up`` prints."""

    check: str
    tested: str
    total: int
    failures: list[Failure] = field(default_factory=list)
    unit: str = "checks"
    latency_ms: dict[str, float] | None = None
    skipped: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def causes(self) -> list[str]:
        """Distinct cause classes, most frequent first."""
        counts = Counter(f.cause for f in self.failures)
        return [cause for cause, _ in counts.most_common()]

    def by_node(self, nodes: Sequence[str]) -> dict[str, int]:
        """How many failures mention each node: a node in every failing path is the suspect."""
        counts = {n: sum(1 for f in self.failures if _mentions(f.where, n)) for n in nodes}
        return {n: c for n, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c}

    def message(self, nodes: Sequence[str] = ()) -> str:
        """One paragraph: counts, the failing paths, grouping by node, the likely causes."""
        if self.ok:
            state = "skipped" if self.skipped else "passed"
            return f"{self.check}: {state} ({self.total} {self.unit}: {self.tested})"
        shown = [f.line() for f in self.failures[:12]]
        more = len(self.failures) - len(shown)
        listing = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
        text = f"{self.check}: {len(self.failures)} of {self.total} {self.unit} failed ({listing})"
        grouped = self.by_node(nodes)
        if grouped and len(self.failures) > 1:
            text += ". By node: " + ", ".join(f"{n} in {c}" for n, c in grouped.items())
            suspects = [n for n, c in grouped.items() if c == len(self.failures)]
            if suspects:
                text += f" (every failure involves {', '.join(suspects)})"
        text += ". Likely cause: " + " | ".join(self.causes())
        for note in self.notes:
            text += f". {note}"
        return text

    def outputs(self) -> dict[str, Any]:
        """Stack outputs: what was tested, counts, failures, latency; never secrets."""
        return {
            "check": self.check,
            "tested": self.tested,
            "total": self.total,
            "failed": len(self.failures),
            "passed": self.ok,
            "skipped": self.skipped,
            "failures": [f.line() for f in self.failures],
            "causes": self.causes(),
            "latencyMs": self.latency_ms or {},
            "notes": list(self.notes),
        }


def _mentions(where: str, node: str) -> bool:
    return node in re.split(f"[{ARROW} ,()]+", where)


def path(src: str, dst: str) -> str:
    return f"{src}{ARROW}{dst}"


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float] | None:
    """min / median / max in milliseconds, rounded for humans."""
    if not samples_ms:
        return None
    return {
        "min": round(min(samples_ms), 3),
        "median": round(statistics.median(samples_ms), 3),
        "max": round(max(samples_ms), 3),
        "samples": len(samples_ms),
    }


# ---------------------------------------------------------------------------------------------
# Parsers of real tool output


@dataclass(frozen=True)
class CurlResult:
    exit_code: int | None
    http_code: int
    size: int
    seconds: float
    body: str
    error: str


_CURL_ERR = re.compile(r"curl: \((\d+)\) (.*)")


def parse_curl(text: str, exit_code: int | None) -> list[CurlResult]:
    """One result per ``@@curl`` line (a probe may loop); the body is the text before each line.

    The loop in a ClusterIP probe reports only the last curl's exit code, so per-call failure is
    read from ``curl: (N)`` error lines and the ``000`` http code instead.
    """
    results: list[CurlResult] = []
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith(CURL_MARK + " "):
            fields = line.split()
            code = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
            size = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
            try:
                seconds = float(fields[3]) if len(fields) > 3 else 0.0
            except ValueError:
                seconds = 0.0
            errors = [m for m in (_CURL_ERR.match(b) for b in body) if m]
            rc = int(errors[-1].group(1)) if errors else 0
            error = errors[-1].group(2) if errors else ""
            text_body = "\n".join(b for b in body if not _CURL_ERR.match(b)).strip()
            results.append(CurlResult(rc, code, size, seconds, text_body, error))
            body = []
        else:
            body.append(line)
    if not results:
        errors = [m for m in (_CURL_ERR.match(b) for b in body) if m]
        error = errors[-1].group(2) if errors else "\n".join(body).strip()[:200]
        results.append(CurlResult(exit_code, 0, 0, 0.0, "", error or "no output"))
    elif exit_code not in (None, 0) and results[-1].exit_code == 0:
        last = results[-1]
        results[-1] = CurlResult(exit_code, last.http_code, last.size, last.seconds, last.body, last.error)
    return results


def describe_curl_failure(result: CurlResult, connect_timeout: int = CONNECT_TIMEOUT_S) -> str:
    """Human words for curl's exit code (6 resolve, 7 connect, 28 timeout, 52/56 broken reply)."""
    rc = result.exit_code
    if rc == 28:
        # "Connection timed out after 2001 milliseconds" vs "Operation timed out after 5001
        # milliseconds with 0 bytes received": no TCP connection vs a silent/stalled peer.
        if "Connection timed out" in result.error or "Failed to connect" in result.error:
            return f"timeout after {connect_timeout} s (no TCP connection)"
        if result.size == 0:
            return f"connected but no response, timed out after {result.seconds:.0f} s"
        return f"stalled after {result.size} bytes, timed out after {result.seconds:.0f} s"
    if rc == 7:
        return "connection refused or no route to host (curl 7)"
    if rc == 6:
        return "could not resolve host (curl 6)"
    if rc == 52:
        return "empty reply (curl 52)"
    if rc == 56:
        return "connection reset while receiving (curl 56)"
    if rc is None:
        return "no result (probe did not finish)"
    if rc != 0:
        return f"curl exit {rc}: {result.error}".strip(": ")
    return f"HTTP {result.http_code:03d}"


def curl_timed_out(result: CurlResult) -> bool:
    return result.exit_code == 28


@dataclass(frozen=True)
class PingResult:
    transmitted: int
    received: int
    errors: int
    loss_pct: float
    rtt_avg_ms: float | None
    frag_needed_mtu: int | None
    frag_needed_from: str | None
    local_mtu: int | None
    unreachable: bool
    raw_error: str


_PING_TX = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_ERR = re.compile(r"\+(\d+) errors")
_PING_LOSS = re.compile(r"([\d.]+)% packet loss")
_PING_RTT = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/mdev)? = ([\d.]+)/([\d.]+)/([\d.]+)")
_PING_FRAG = re.compile(r"From (\S+?):? icmp_seq=\d+ Frag needed and DF set \(mtu = (\d+)\)")
_PING_LOCAL = re.compile(r"local error: [Mm]essage too long, mtu[=:]\s*(\d+)")


def parse_ping(text: str) -> PingResult:
    """iputils ping output: the summary line, rtt line, and the DF / unreachable error lines."""
    tx = _PING_TX.search(text)
    err = _PING_ERR.search(text)
    loss = _PING_LOSS.search(text)
    rtt = _PING_RTT.search(text)
    frag = _PING_FRAG.search(text)
    local = _PING_LOCAL.search(text)
    transmitted = int(tx.group(1)) if tx else 0
    received = int(tx.group(2)) if tx else 0
    first_line = next((line for line in text.splitlines() if line.startswith("ping:")), "")
    return PingResult(
        transmitted=transmitted,
        received=received,
        errors=int(err.group(1)) if err else 0,
        loss_pct=float(loss.group(1)) if loss else 100.0,
        rtt_avg_ms=float(rtt.group(2)) if rtt else None,
        frag_needed_mtu=int(frag.group(2)) if frag else None,
        frag_needed_from=frag.group(1) if frag else None,
        local_mtu=int(local.group(1)) if local else None,
        unreachable="Unreachable" in text,
        raw_error=first_line,
    )


def ping_ok(result: PingResult) -> bool:
    return result.transmitted > 0 and result.received > 0 and result.received == result.transmitted


def parse_dig_short(text: str) -> list[str]:
    """``dig +short`` prints one answer per line (CNAME targets, then addresses); keep IPv4s."""
    answers = []
    for line in text.splitlines():
        line = line.strip()
        try:
            answers.append(str(ipaddress.IPv4Address(line)))
        except ValueError:
            continue
    return answers


# ---------------------------------------------------------------------------------------------
# Cause classes (the words an operator acts on)

CAUSE_OVERLAY = (
    "IP protocol 4 (IPIP) or BGP TCP 179 blocked between the nodes' private IPs, or tunl0 routes "
    "missing (BIRD not exchanging routes); see calico-node logs on {nodes}"
)
CAUSE_TCP_ONLY = (
    "ICMP crosses the overlay but TCP does not: the echo pod on {dst} is not serving on the probe port, "
    "or a network policy drops TCP; see `kubectl -n {ns} logs` of the echo pod on {dst}"
)
CAUSE_PROBE_POD = (
    "probe pod missing or not Ready: the overlay-probe DaemonSet is not scheduled there (taints, "
    "image pull, node NotReady); see `kubectl -n {ns} get pods -o wide`"
)
CAUSE_EXEC = (
    "could not exec into the probe pod (API server, kubelet on that node, or the pod itself); "
    "see `kubectl -n {ns} describe pod`"
)


def missing_pod_failures(nodes: Sequence[str], present: Mapping[str, Any], role: str, ns: str) -> list[Failure]:
    """A node without its probe pod fails every check that needs it: say so once, per node."""
    return [
        Failure(node, f"no ready {role} pod", CAUSE_PROBE_POD.format(ns=ns))
        for node in sorted(nodes)
        if node not in present
    ]


def exec_failures(exec_errors: Mapping[str, str], ns: str) -> list[Failure]:
    return [
        Failure(f"exec on {node}", error, CAUSE_EXEC.format(ns=ns))
        for node, error in sorted(exec_errors.items())
    ]


# ---------------------------------------------------------------------------------------------
# 1. Calico health


def _condition(obj: Mapping[str, Any], kind: str) -> bool:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond.get("status") == "True"
    return False


def _same_network(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False) == ipaddress.ip_network(b, strict=False)
    except ValueError:
        return False


def judge_calico(
    expected_nodes: Sequence[str],
    api_nodes: Sequence[Mapping[str, Any]],
    calico_pods: Sequence[Mapping[str, Any]],
    ippool: Mapping[str, Any] | None,
    node_statuses: Mapping[str, Mapping[str, Any] | None],
    pod_cidr: str,
    subnet_cidr: str,
) -> Verdict:
    """calico-node Ready everywhere; the pool is IPIP Always / VXLAN Never on podCidr; every node's
    Calico address is in the private subnet; every BGP session Established."""
    failures: list[Failure] = []
    nodes = sorted(expected_nodes)
    by_name = {n.get("metadata", {}).get("name"): n for n in api_nodes}

    # Pool
    pool_name = "default-ipv4-ippool"
    if ippool is None:
        failures.append(Failure(f"IPPool {pool_name}", "not found",
                                "Calico not installed, or its default pool was renamed/deleted; "
                                "the Installation's calicoNetwork.ipPools creates it"))
    else:
        spec = ippool.get("spec", {})
        ipip = spec.get("ipipMode", "Never")
        vxlan = spec.get("vxlanMode", "Never")
        cidr = spec.get("cidr", "")
        if ipip != "Always":
            failures.append(Failure(f"IPPool {pool_name}", f"ipipMode is {ipip}, want Always",
                                    "pool not in IPIP mode: cross-node pod traffic is not encapsulated "
                                    "(Hetzner routes every private packet via the gateway, so "
                                    "CrossSubnet/Never break pod-to-pod)"))
        if vxlan not in ("Never", ""):
            failures.append(Failure(f"IPPool {pool_name}", f"vxlanMode is {vxlan}, want Never",
                                    "VXLAN enabled on the pool: a pool carries IPIP or VXLAN, not both; "
                                    "set vxlanMode: Never on the IPPool resource"))
        if not _same_network(cidr, pod_cidr):
            failures.append(Failure(f"IPPool {pool_name}", f"cidr {cidr or '(none)'} != podCidr {pod_cidr}",
                                    "pool CIDR differs from the K3s cluster-cidr: pods get addresses K3s "
                                    "and kube-proxy do not treat as pod addresses; a CIDR change is a pool "
                                    "migration (create the right pool, disable the wrong one)"))
        if spec.get("disabled"):
            failures.append(Failure(f"IPPool {pool_name}", "disabled", "pool disabled: new pods get no address"))

    # calico-node per node
    ready_pods = {}
    for pod in calico_pods:
        node = pod.get("spec", {}).get("nodeName")
        if node:
            ready_pods.setdefault(node, []).append(pod)
    ready_count = 0
    for node in nodes:
        if node not in by_name:
            failures.append(Failure(node, "Node object not found",
                                    "node never joined the cluster (K3s agent not running or wrong token)"))
            continue
        pods = ready_pods.get(node, [])
        if not pods:
            failures.append(Failure(node, "no calico-node pod",
                                    "calico-node DaemonSet not scheduled there (taints/tolerations, "
                                    "operator not reconciled); see `kubectl -n calico-system get pods -o wide`"))
        elif not any(_condition(p, "Ready") for p in pods):
            names = ", ".join(p.get("metadata", {}).get("name", "?") for p in pods)
            ns = pods[0].get("metadata", {}).get("namespace", "calico-system")
            failures.append(Failure(node, f"calico-node not Ready ({names})",
                                    "calico-node unhealthy (Felix or BIRD failing its readiness probe, "
                                    f"often no BGP peer reachable); see `kubectl -n {ns} logs {names.split(',')[0]} "
                                    "-c calico-node`"))
        else:
            ready_count += 1

    # Calico node addresses
    try:
        subnet = ipaddress.ip_network(subnet_cidr, strict=False)
    except ValueError:
        subnet = None
    ip_to_node: dict[str, str] = {}
    for node in nodes:
        api = by_name.get(node)
        if api is None:
            continue
        annotation = (api.get("metadata", {}).get("annotations") or {}).get("projectcalico.org/IPv4Address")
        if not annotation:
            failures.append(Failure(node, "no projectcalico.org/IPv4Address annotation",
                                    "calico-node has not registered this node's address (not started, or "
                                    "IP autodetection found nothing)"))
            continue
        try:
            addr = ipaddress.ip_interface(annotation).ip
        except ValueError:
            failures.append(Failure(node, f"unparsable Calico address {annotation!r}", "corrupt node annotation"))
            continue
        ip_to_node[str(addr)] = node
        if subnet is not None and addr not in subnet:
            failures.append(Failure(node, f"Calico address {addr} is outside the private subnet {subnet_cidr}",
                                    "IP autodetection picked the public NIC: BGP and IPIP then run over the "
                                    "public interface, where the Cloud Firewall drops them; pin "
                                    "nodeAddressAutodetectionV4 to the private subnet (cidrs)"))

    # BGP
    expected_peers = len(nodes) - 1
    established_total = 0
    for node in nodes:
        status = node_statuses.get(node)
        bgp = (status or {}).get("status", {}).get("bgp") if status else None
        if not bgp:
            failures.append(Failure(node, "no BGP status published",
                                    "calico-node has not filled its CalicoNodeStatus (not running on this "
                                    "node, or the object was created less than updatePeriodSeconds ago)"))
            continue
        bird = (status.get("status", {}).get("agent") or {}).get("birdV4") or {}
        if bird.get("state") and bird.get("state") != "Ready":
            failures.append(Failure(node, f"BIRD state {bird.get('state')}",
                                    "BIRD (Calico's BGP daemon) not running: calico_backend must be bird "
                                    "for IPIP"))
        established = int(bgp.get("numberEstablishedV4") or 0)
        established_total += established
        for peer in bgp.get("peersV4") or []:
            if peer.get("state") != "Established":
                peer_ip = peer.get("peerIP", "?")
                peer_node = ip_to_node.get(peer_ip, peer_ip)
                failures.append(Failure(path(node, peer_node), f"BGP session {peer.get('state', '?')}, "
                                        "not Established",
                                        "BGP TCP 179 blocked between those nodes' private IPs, or calico-node "
                                        "down on the peer; see calico-node logs on both ends"))
        not_established = int(bgp.get("numberNotEstablishedV4") or 0)
        listed = sum(1 for p in bgp.get("peersV4") or [] if p.get("state") != "Established")
        if not_established > listed:
            failures.append(Failure(node, f"{not_established} BGP sessions not Established",
                                    "BGP TCP 179 blocked between the private IPs"))
        if expected_peers > 0 and established < expected_peers and not_established == 0 and not listed:
            failures.append(Failure(node, f"{established} of {expected_peers} BGP peers Established",
                                    "node-to-node mesh incomplete: a peer's calico-node is missing or the "
                                    "BGP configuration disables the full mesh"))
    total = 4 + len(nodes) * 3
    return Verdict(
        check="calico health",
        tested=(f"calico-node Ready on {len(nodes)} nodes, IPPool {pool_name} (IPIP Always, VXLAN Never, "
                f"cidr {pod_cidr}), node addresses in {subnet_cidr}, BGP sessions Established"),
        total=total,
        failures=failures,
        unit="conditions",
        notes=[f"calico-node Ready on {ready_count}/{len(nodes)} nodes; "
               f"{established_total} BGP sessions Established (want {len(nodes) * expected_peers})"],
    )


# ---------------------------------------------------------------------------------------------
# 2. DNS


def judge_dns(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    expected_ip: str,
    clients: Mapping[str, str],
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
    name: str = "kubernetes.default.svc.cluster.local",
) -> Verdict:
    """Each node's client pod must resolve the name to the ``kubernetes`` Service ClusterIP."""
    failures = missing_pod_failures(nodes, clients, "client", namespace)
    failures += exec_failures(exec_errors or {}, namespace)
    timeouts = 0
    judged = 0
    for node in sorted(nodes):
        raw = outputs.get(node, {}).get(probe_key("dns", "kubernetes"))
        if node not in clients or (exec_errors and node in exec_errors):
            continue
        if raw is None:
            failures.append(Failure(f"from {node}", "no result", CAUSE_EXEC.format(ns=namespace)))
            continue
        judged += 1
        answers = parse_dig_short(raw.text)
        if raw.exit_code == 9 or "no servers could be reached" in raw.text or "timed out" in raw.text:
            timeouts += 1
            failures.append(Failure(f"from {node}", "DNS query timed out, no server reached", "dns-timeout"))
        elif raw.exit_code not in (0, None) and not answers:
            failures.append(Failure(f"from {node}", f"dig exit {raw.exit_code}: {raw.text.strip()[:120]}",
                                    "dig failed in the probe pod (resolv.conf missing a nameserver?)"))
        elif not answers:
            failures.append(Failure(f"from {node}", f"{name} has no A record (empty answer)",
                                    "CoreDNS answers but does not serve the cluster domain "
                                    "(cluster-domain mismatch, or the kubernetes plugin cannot reach the API)"))
        elif expected_ip not in answers:
            failures.append(Failure(f"from {node}", f"resolves to {', '.join(answers)}, want {expected_ip}",
                                    "stale or foreign DNS answer: the pod's resolv.conf does not point at "
                                    "CoreDNS (cluster-dns / kubelet --cluster-dns mismatch)"))
    # Name the timeout cause by its spread: everywhere means CoreDNS itself, some nodes the overlay.
    if timeouts:
        if timeouts == judged and judged > 0:
            cause = ("CoreDNS down or unreachable from every node: CoreDNS pods not Running, or the kube-dns "
                     "Service has no endpoints; see `kubectl -n kube-system get pods -l k8s-app=kube-dns`")
        else:
            cause = ("CoreDNS unreachable from some nodes only: the overlay path from those nodes to the "
                     "CoreDNS pods is broken (see the pod mesh check) or kube-proxy rules are missing there")
        failures = [Failure(f.where, f.what, cause) if f.cause == "dns-timeout" else f for f in failures]
    return Verdict(
        check="DNS",
        tested=f"{name} resolves to {expected_ip} from a pod on every node",
        total=len(nodes),
        failures=failures,
        unit="nodes",
    )


# ---------------------------------------------------------------------------------------------
# 3. ClusterIP


def judge_clusterip(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    service_ip: str,
    pods_clients: Mapping[str, str],
    echo_nodes: Sequence[str],
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
) -> Verdict:
    """From every node the Service answers; pooled over all calls every backend (one per node) answers."""
    failures = missing_pod_failures(nodes, pods_clients, "client", namespace)
    failures += missing_pod_failures(nodes, {n: 1 for n in echo_nodes}, "echo", namespace)
    failures += exec_failures(exec_errors or {}, namespace)
    seen: Counter[str] = Counter()
    times: list[float] = []
    calls_total = 0
    key = probe_key("svc", service_ip)
    for node in sorted(nodes):
        if node not in pods_clients or (exec_errors and node in exec_errors):
            continue
        raw = outputs.get(node, {}).get(key)
        if raw is None:
            failures.append(Failure(f"from {node}", "no result", CAUSE_EXEC.format(ns=namespace)))
            continue
        calls = parse_curl(raw.text, raw.exit_code)
        calls_total += len(calls)
        bad = [c for c in calls if c.exit_code != 0 or c.http_code != 200]
        for c in calls:
            if c.exit_code == 0 and c.http_code == 200:
                seen[c.body.strip()] += 1
                times.append(c.seconds * 1000)
        if bad and len(bad) == len(calls):
            failures.append(Failure(f"from {node}", f"Service {service_ip}:80 never answered "
                                    f"({describe_curl_failure(bad[0])})",
                                    f"kube-proxy rules missing on {node}, or no path from {node} to any echo "
                                    "pod (see pod mesh)"))
        elif bad:
            failures.append(Failure(f"from {node}", f"{len(bad)} of {len(calls)} calls failed "
                                    f"({describe_curl_failure(bad[0])})",
                                    "some backends unreachable from that node: a cross-node overlay path is "
                                    "broken (see pod mesh)"))
    for node in sorted(echo_nodes):
        if calls_total and seen[node] == 0:
            failures.append(Failure(f"backend on {node}", f"never answered in {calls_total} calls",
                                    f"the echo pod on {node} is unreachable from the other nodes (overlay path "
                                    f"to {node}), or missing from the Service endpoints"))
    return Verdict(
        check="ClusterIP",
        tested=(f"Service {service_ip}:80 from every node, {calls_total} calls, backends seen: "
                + ", ".join(f"{n}×{c}" for n, c in sorted(seen.items()))),
        total=len(nodes) * 2,
        failures=failures,
        unit="node checks (answers from, answered by)",
        latency_ms=latency_summary(times),
    )


# ---------------------------------------------------------------------------------------------
# 4. Pod mesh


def judge_mesh(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    clients: Mapping[str, str],
    echo_ips: Mapping[str, str],
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
) -> Verdict:
    """Every client pod reaches the echo pod on every other node (HTTP, answered by the right node)."""
    pairs = cross_node_pairs(nodes)
    failures: list[Failure] = []
    rtts: list[float] = []
    failing_pairs: list[tuple[str, str]] = []
    for src, dst in pairs:
        where = path(src, dst)
        if src not in clients:
            failures.append(Failure(where, f"no ready client pod on {src}", CAUSE_PROBE_POD.format(ns=namespace)))
            continue
        if dst not in echo_ips:
            failures.append(Failure(where, f"no ready echo pod on {dst}", CAUSE_PROBE_POD.format(ns=namespace)))
            continue
        if exec_errors and src in exec_errors:
            failures.append(Failure(where, f"exec failed: {exec_errors[src]}", CAUSE_EXEC.format(ns=namespace)))
            continue
        got = outputs.get(src, {})
        http_raw = got.get(probe_key("http", dst))
        ping_raw = got.get(probe_key("ping", dst))
        ping_res = parse_ping(ping_raw.text) if ping_raw else None
        if ping_res and ping_res.rtt_avg_ms is not None:
            rtts.append(ping_res.rtt_avg_ms)
        if http_raw is None:
            failures.append(Failure(where, "no result", CAUSE_EXEC.format(ns=namespace)))
            continue
        http = parse_curl(http_raw.text, http_raw.exit_code)[-1]
        if http.exit_code == 0 and http.http_code == 200 and http.body.strip() == dst:
            continue
        if http.exit_code == 0 and http.http_code == 200:
            failures.append(Failure(where, f"answered by {http.body.strip()!r}, not {dst}",
                                    f"pod IP {echo_ips[dst]} is routed to the wrong node: stale routes or "
                                    "overlapping IPAM blocks"))
            continue
        what = describe_curl_failure(http)
        failing_pairs.append((src, dst))
        if ping_res and ping_ok(ping_res):
            failures.append(Failure(where, f"{what}, ping OK", CAUSE_TCP_ONLY.format(dst=dst, ns=namespace)))
        else:
            failures.append(Failure(where, what, "overlay"))
    # Name the nodes to look at: those on every overlay failure, else all the nodes involved.
    if failing_pairs:
        involved = Counter(n for pair in failing_pairs for n in pair)
        suspects = [n for n, c in involved.items() if c == len(failing_pairs)]
        look_at = sorted(suspects or involved)
        cause = CAUSE_OVERLAY.format(nodes=", ".join(look_at))
        failures = [Failure(f.where, f.what, cause) if f.cause == "overlay" else f for f in failures]
    return Verdict(
        check="pod mesh",
        tested=f"HTTP and ping from a pod on each node to the echo pod on every other node ({len(nodes)} nodes)",
        total=len(pairs),
        failures=failures,
        unit="cross-node paths",
        latency_ms=latency_summary(rtts),
    )


# ---------------------------------------------------------------------------------------------
# 5. MTU path


def judge_mtu(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    clients: Mapping[str, str],
    echo_ips: Mapping[str, str],
    mtu: int,
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
) -> Verdict:
    """Pod eth0 MTU == pool MTU; a DF ping of MTU−28 bytes and a 1 MiB transfer cross every path."""
    failures = missing_pod_failures(nodes, clients, "client", namespace)
    failures += missing_pod_failures(nodes, echo_ips, "echo", namespace)
    failures += exec_failures(exec_errors or {}, namespace)
    size = mtu - ICMP_OVERHEAD
    bulk_ms: list[float] = []
    for node in sorted(nodes):
        if node not in clients or (exec_errors and node in exec_errors):
            continue
        got = outputs.get(node, {})
        raw = got.get(probe_key("mtu", "eth0"))
        value = raw.text.strip() if raw else ""
        if not value.isdigit():
            failures.append(Failure(node, f"could not read eth0 MTU ({value[:80] or 'no output'})",
                                    CAUSE_EXEC.format(ns=namespace)))
        elif int(value) != mtu:
            failures.append(Failure(node, f"pod eth0 MTU {value}, want {mtu}",
                                    "Calico's veth MTU differs from the pool MTU: the Installation's "
                                    "calicoNetwork.mtu was changed after these pods started (recreate them) or "
                                    "is not applied"))
    for src, dst in cross_node_pairs(nodes):
        if src not in clients or dst not in echo_ips or (exec_errors and src in exec_errors):
            continue
        where = path(src, dst)
        got = outputs.get(src, {})
        small = parse_ping(got[probe_key("ping", dst)].text) if probe_key("ping", dst) in got else None
        df_raw = got.get(probe_key("dfping", dst))
        bulk_raw = got.get(probe_key("bulk", dst))
        if small is None or df_raw is None or bulk_raw is None:
            failures.append(Failure(where, "no result", CAUSE_EXEC.format(ns=namespace)))
            continue
        if not ping_ok(small):
            failures.append(Failure(where, "even small pings fail: path down, MTU not judged",
                                    "path down altogether (see the pod mesh check for its cause)"))
            continue
        df = parse_ping(df_raw.text)
        bulk = parse_curl(bulk_raw.text, bulk_raw.exit_code)[-1]
        bulk_ok = bulk.exit_code == 0 and bulk.http_code == 200 and bulk.size == BULK_BYTES
        if bulk_ok:
            bulk_ms.append(bulk.seconds * 1000)
        whats: list[str] = []
        cause = ""
        # After a "Frag needed" the kernel caches the PMTU and later sends fail locally with
        # "message too long": the remote answer is the informative one, so it wins.
        if df.frag_needed_mtu is not None:
            whats.append(f"DF ping of {size} bytes: Frag needed (mtu = {df.frag_needed_mtu}) from "
                         f"{df.frag_needed_from}")
            cause = (f"the path MTU ({df.frag_needed_mtu}) is smaller than the pool MTU ({mtu}): lower the pool "
                     f"MTU (Hetzner private network {NETWORK_MTU} − IPIP {IPIP_OVERHEAD} = "
                     f"{NETWORK_MTU - IPIP_OVERHEAD})")
        elif df.local_mtu is not None:
            whats.append(f"DF ping of {size} bytes refused locally (mtu={df.local_mtu})")
            cause = ("the pod's own interface or route MTU is below the pool MTU: Calico's veth MTU is not the "
                     "configured one")
        elif not ping_ok(df):
            whats.append(f"DF ping of {size} bytes lost ({df.loss_pct:g}% loss) while small pings pass")
            cause = "mtu-black-hole"
        if not bulk_ok:
            if bulk.exit_code == 28 or (bulk.exit_code == 0 and bulk.size < BULK_BYTES):
                whats.append(f"bulk transfer stalled after {bulk.size} of {BULK_BYTES} bytes "
                             f"(timeout after {BULK_TIMEOUT_S} s)")
                cause = cause or "mtu-black-hole"
            else:
                whats.append(f"bulk transfer failed: {describe_curl_failure(bulk)}")
                cause = cause or "echo pod not serving the bulk body (fixture broken), see its logs"
        if whats:
            failures.append(Failure(where, "; ".join(whats), cause))
    black_hole = (f"MTU black hole: full-size packets are silently dropped while small ones pass (PMTU "
                  f"discovery broken); the pool MTU {mtu} is too large for the path: Hetzner private "
                  f"networks carry {NETWORK_MTU}, IPIP needs {IPIP_OVERHEAD} of it, so the pool MTU must be <= "
                  f"{NETWORK_MTU - IPIP_OVERHEAD}")
    failures = [Failure(f.where, f.what, black_hole) if f.cause == "mtu-black-hole" else f for f in failures]
    pairs = cross_node_pairs(nodes)
    return Verdict(
        check="MTU path",
        tested=(f"pod eth0 MTU == {mtu} on {len(nodes)} nodes; DF ping of {size} bytes and a {BULK_BYTES}-byte "
                f"transfer on {len(pairs)} cross-node paths"),
        total=len(nodes) + len(pairs),
        failures=failures,
        unit="nodes and paths",
        latency_ms=latency_summary(bulk_ms),
    )


# ---------------------------------------------------------------------------------------------
# 6. Ingress


def judge_ingress(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    prober: Mapping[str, str],
    node_ips: Mapping[str, str],
    host: str,
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
    controller: str = "ingress-nginx",
    port: int = 80,
) -> Verdict:
    """The ingress controller on every node answers the probe Host with an echo backend: 200, never 503.

    ``controller`` (ingress-nginx or traefik) and ``port`` name what was probed in every cause.
    """
    c = controller
    failures: list[Failure] = []
    if not prober:
        failures.append(Failure("all nodes", "no ready client pod to probe from", CAUSE_PROBE_POD.format(ns=namespace)))
    times: list[float] = []
    valid = set(nodes)
    for target in sorted(nodes):
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
        calls = parse_curl(raw.text, raw.exit_code)
        codes = Counter(c.http_code for c in calls)
        bad = [c for c in calls if not (c.exit_code == 0 and c.http_code == 200 and c.body.strip() in valid)]
        times += [c.seconds * 1000 for c in calls if c not in bad]
        if not bad:
            continue
        first = bad[0]
        summary = ", ".join(f"{code:03d}×{n}" for code, n in sorted(codes.items()))
        if first.http_code == 503:
            failures.append(Failure(where, f"{c} on {target} answered 503 ({summary})",
                                    f"{c} has no reachable backend: the probe Service has no ready "
                                    "endpoints, or that node cannot reach the echo pods over the overlay "
                                    f"(see pod mesh); {c} logs on that node name the failed upstream"))
        elif first.http_code in (502, 504):
            failures.append(Failure(where, f"{c} on {target} answered {first.http_code} ({summary})",
                                    f"{c} reached no echo pod in time: the overlay path from that "
                                    "node to the backends is broken (see pod mesh)"))
        elif first.http_code == 404:
            failures.append(Failure(where, f"404 for Host {host} ({summary})",
                                    f"the probe Ingress is not served by {c}: ingressClassName 'nginx' not "
                                    f"matched by {c}, or the Ingress not admitted yet"))
        elif first.exit_code == 7:
            failures.append(Failure(where, f"nothing listens on {node_ips[target]}:{port}",
                                    f"{c} not running on {target} (DaemonSet pod missing or not on "
                                    f"hostNetwork), or not bound to :{port}"))
        elif first.exit_code == 28:
            failures.append(Failure(where, f"{node_ips[target]}:{port} {describe_curl_failure(first)}",
                                    f"{target}'s port {port} unreachable from a pod on {client}: host firewall on "
                                    f"{target} or the private network route"))
        elif first.exit_code == 0 and first.http_code == 200:
            failures.append(Failure(where, f"answered 200 but not by an echo pod ({first.body.strip()[:60]!r})",
                                    "another Ingress or default backend claims the probe host"))
        else:
            failures.append(Failure(where, f"{describe_curl_failure(first)} ({summary})",
                                    f"{c} answered with an error; see its logs"))
    return Verdict(
        check="ingress",
        tested=f"{c} on {len(nodes)} nodes (private IP :{port}, Host {host}) answers 200 from an echo pod",
        total=len(nodes),
        failures=failures,
        unit="nodes",
        latency_ms=latency_summary(times),
    )


# ---------------------------------------------------------------------------------------------
# 7. External URLs


def judge_external(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    clients: Mapping[str, str],
    urls: Sequence[str],
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
) -> Verdict:
    """Every configured URL answers 200 (after redirects) from a pod on every node; none = skipped."""
    if not urls:
        return Verdict(check="external URLs", tested="no verify.externalUrls configured", total=0,
                       unit="URLs", skipped=True)
    failures = missing_pod_failures(nodes, clients, "client", namespace)
    failures += exec_failures(exec_errors or {}, namespace)
    times: list[float] = []
    for node in sorted(nodes):
        if node not in clients or (exec_errors and node in exec_errors):
            continue
        for i, url in enumerate(urls):
            raw = outputs.get(node, {}).get(probe_key("ext", str(i)))
            where = f"{node}{ARROW}{url}"
            if raw is None:
                failures.append(Failure(where, "no result", CAUSE_EXEC.format(ns=namespace)))
                continue
            res = parse_curl(raw.text, raw.exit_code)[-1]
            if res.exit_code == 0 and res.http_code == 200:
                times.append(res.seconds * 1000)
                continue
            what = describe_curl_failure(res)
            if res.exit_code == 6:
                cause = ("external names do not resolve: CoreDNS cannot reach its upstream (forward . "
                         "/etc/resolv.conf on the node) or CoreDNS is down")
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
