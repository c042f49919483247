"""Fake clusters implementing ClusterAccess, and a fake clock.

``ReplayCluster`` answers each client pod's exec with the stdout captured from the real tools in
the lab (tests/verify/captured/, written by tests/lab/capture.py): the judges are tested on what
iputils ping, curl and dig really print. ``FakeCluster`` is for what the lab does not emulate
(Calico's API objects, an exec that hangs, egress): it reads each probe's key and command out of
the rendered script and answers in the real tools' formats, wrapped in the script's own markers.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keybuzz.verify import fixture
from keybuzz.verify.cluster import ClusterAccessError, ExecResult
from keybuzz.verify.plan import BULK_BYTES, RawOutput, parse_script_output

NODES = {"node-a": "10.0.1.10", "node-b": "10.0.1.11", "node-c": "10.0.1.12"}
POD_IPS = {"node-a": "10.42.10.5", "node-b": "10.42.20.5", "node-c": "10.42.30.5"}
KUBERNETES_SVC_IP = "10.43.0.1"
ECHO_SVC_IP = "10.43.100.7"
POD_CIDR = "10.42.0.0/16"
SUBNET_CIDR = "10.0.1.0/24"
MTU = 1430


# -- real tool output -------------------------------------------------------------------------


def ping_ok(ip: str, size: int = 56, count: int = 3) -> tuple[str, int]:
    lines = [f"PING {ip} ({ip}) {size}({size + 28}) bytes of data."]
    lines += [f"{size + 8} bytes from {ip}: icmp_seq={i} ttl=62 time=0.{500 + i} ms" for i in range(1, count + 1)]
    lines += ["", f"--- {ip} ping statistics ---",
              f"{count} packets transmitted, {count} received, 0% packet loss, time {200 * (count - 1) + 2}ms",
              "rtt min/avg/max/mdev = 0.501/0.502/0.503/0.001 ms"]
    return "\n".join(lines), 0


def ping_lost(ip: str, size: int = 56, count: int = 3) -> tuple[str, int]:
    return (f"PING {ip} ({ip}) {size}({size + 28}) bytes of data.\n\n--- {ip} ping statistics ---\n"
            f"{count} packets transmitted, 0 received, 100% packet loss, time {200 * (count - 1) + 21}ms\n"), 1


def ping_frag_needed(ip: str, size: int, mtu: int, router: str = "10.42.10.1") -> tuple[str, int]:
    return (f"PING {ip} ({ip}) {size}({size + 28}) bytes of data.\n"
            f"From {router} icmp_seq=1 Frag needed and DF set (mtu = {mtu})\n"
            f"ping: local error: message too long, mtu={mtu}\n"
            f"ping: local error: message too long, mtu={mtu}\n\n--- {ip} ping statistics ---\n"
            "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 410ms\n"), 1


def curl_ok(body: str, size: int | None = None, seconds: float = 0.0021) -> tuple[str, int]:
    n = len(body.encode()) if size is None else size
    return f"{body}\n@@curl 200 {n} {seconds:.6f}", 0


def curl_status(code: int, body: str) -> tuple[str, int]:
    return f"{body}\n@@curl {code} {len(body)} 0.001900", 0


def curl_connect_timeout(ip: str = "10.42.20.5", port: int = 8080) -> tuple[str, int]:
    # curl 7.88's wording (captured in the lab: tests/verify/captured/tcp_to_echo_dropped.mesh.node-a.txt)
    return (f"curl: (28) Failed to connect to {ip} port {port} after 2001 ms: Timeout was reached\n\n"
            "@@curl 000 0 2.001419", 28)


def curl_stalled(received: int, seconds: int = 10) -> tuple[str, int]:
    """Headers came (HTTP 200, length known), then the body stalled: as a real black hole shows it."""
    return (f"curl: (28) Operation timed out after {seconds}001 milliseconds with {received} out of "
            f"{BULK_BYTES} bytes received\n\n@@curl 200 {received} {seconds}.001", 28)


def curl_refused(ip: str, port: int) -> tuple[str, int]:
    return (f"curl: (7) Failed to connect to {ip} port {port} after 1 ms: Couldn't connect to server\n\n"
            "@@curl 000 0 0.001200", 7)


def dig_timeout() -> tuple[str, int]:
    return (";; communications error to 10.43.0.10#53: timed out\n"
            ";; communications error to 10.43.0.10#53: timed out\n"
            ";; no servers could be reached\n"), 9


NGINX_503 = ("<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
             "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
             "</body>\r\n</html>")


# -- the fake cluster -------------------------------------------------------------------------


@dataclass
class Faults:
    ipip_blocked: set[frozenset[str]] = field(default_factory=set)
    calico_not_ready: set[str] = field(default_factory=set)
    mtu_black_hole: bool = False
    path_mtu: int | None = None  # a router answers Frag needed with this MTU
    coredns_down: bool = False
    vxlan: bool = False
    pool_cidr: str = POD_CIDR
    public_calico_ip: dict[str, str] = field(default_factory=dict)
    ingress_503: bool = False
    echo_missing: set[str] = field(default_factory=set)
    bgp_down: set[frozenset[str]] = field(default_factory=set)
    pod_mtu: int = MTU
    hang_exec: bool = False
    no_egress: bool = False


def _pod(name: str, node: str, ip: str, ready: bool = True, ns: str = fixture.NAMESPACE) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


class FakeCluster:
    """ClusterAccess over an in-memory 3-node cluster; ``calls`` records what the checks did."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.calls: list[tuple[str, ...]] = []
        self._rr: dict[str, int] = {}
        self.release = threading.Event()

    # -- API objects --
    def list_nodes(self) -> list[dict[str, Any]]:
        self.calls.append(("list_nodes",))
        out = []
        for name, ip in NODES.items():
            calico_ip = self.faults.public_calico_ip.get(name, f"{ip}/32")
            out.append({"metadata": {"name": name, "annotations": {"projectcalico.org/IPv4Address": calico_ip}},
                        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
        return out

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.calls.append(("list_pods", namespace, label_selector))
        if namespace == "calico-system" and label_selector == "k8s-app=calico-node":
            return [_pod(f"calico-node-{n[-1]}", n, NODES[n], n not in self.faults.calico_not_ready, namespace)
                    for n in NODES]
        if namespace != fixture.NAMESPACE:
            return []
        if label_selector == fixture.label_selector(fixture.CLIENT_NAME):
            return [_pod(f"overlay-probe-client-{n[-1]}", n, f"10.42.{i + 1}0.9") for i, n in enumerate(NODES)]
        if label_selector == fixture.label_selector(fixture.ECHO_NAME):
            return [_pod(f"overlay-probe-echo-{n[-1]}", n, POD_IPS[n]) for n in NODES
                    if n not in self.faults.echo_missing]
        return []

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_service", namespace, name))
        if (namespace, name) == ("default", "kubernetes"):
            return {"spec": {"clusterIP": KUBERNETES_SVC_IP}}
        if (namespace, name) == (fixture.NAMESPACE, fixture.ECHO_NAME):
            return {"spec": {"clusterIP": ECHO_SVC_IP}}
        return None

    def get_custom_object(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_custom_object", plural, name))
        if plural == "ippools" and name == "default-ipv4-ippool":
            return {"spec": {"cidr": self.faults.pool_cidr, "ipipMode": "Always",
                             "vxlanMode": "Always" if self.faults.vxlan else "Never", "natOutgoing": True}}
        if plural == "caliconodestatuses":
            node = name.removeprefix(fixture.NODE_STATUS_PREFIX)
            if node not in NODES:
                return None
            peers = []
            for other in NODES:
                if other == node:
                    continue
                down = frozenset((node, other)) in self.faults.bgp_down or other in self.faults.calico_not_ready
                peers.append({"peerIP": NODES[other], "state": "Active" if down else "Established",
                              "type": "NodeMesh", "since": "2025-11-24T10:00:00Z"})
            est = sum(1 for p in peers if p["state"] == "Established")
            return {"spec": {"node": node, "classes": ["Agent", "BGP"]},
                    "status": {"agent": {"birdV4": {"state": "Ready"}},
                               "bgp": {"numberEstablishedV4": est, "numberNotEstablishedV4": len(peers) - est,
                                       "numberEstablishedV6": 0, "numberNotEstablishedV6": 0, "peersV4": peers}}}
        return None

    # -- exec --
    def exec_in_pod(self, namespace: str, pod: str, container: str, command: list[str],
                    timeout: float) -> ExecResult:
        self.calls.append(("exec", pod))
        if self.faults.hang_exec:
            # Hangs until the test releases it (never on the wall clock).
            self.release.wait()
            return ExecResult("", "", None)
        src = next(n for n in NODES if pod.endswith("-" + n[-1]))
        script = command[-1]
        commands = {idx: cmd for cmd, idx in re.findall(r'^\( \( (.*) \) >"\$d/(\d+)"', script, re.M)}
        keys = [k for _, k in sorted(re.findall(r"then show (\d+) (\S+);", script, re.M), key=lambda m: int(m[0]))]
        out = []
        for i, key in enumerate(keys):
            cmd = commands[str(i)]
            text, rc = self._probe(src, key, cmd)
            out.append(f"@@begin {key}\n{text}\n@@end {key} {rc}")
        return ExecResult("\n".join(out) + "\n", "", 0)

    def _blocked(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.faults.ipip_blocked

    def _probe(self, src: str, key: str, cmd: str) -> tuple[str, int]:
        kind, _, target = key.partition(":")
        f = self.faults
        if kind == "dns":
            return dig_timeout() if f.coredns_down else (
                ";; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n\n"
                f"kubernetes.default.svc.cluster.local. 5 IN\tA\t{KUBERNETES_SVC_IP}\n", 0)
        if kind == "mtu":
            return str(f.pod_mtu), 0
        if kind == "emtu":
            return curl_ok(f"{f.pod_mtu}\n")
        if kind in ("http", "ping", "dfping", "bulk"):
            dst = target
            ip = POD_IPS[dst]
            if self._blocked(src, dst):
                return ping_lost(ip) if kind in ("ping", "dfping") else curl_connect_timeout()
            if kind == "http":
                return curl_ok(dst)
            if kind == "ping":
                return ping_ok(ip, count=int(re.search(r"-c (\d+)", cmd).group(1)))
            size = int(re.search(r"-s (\d+)", cmd).group(1)) if kind == "dfping" else 0
            if kind == "dfping":
                if f.path_mtu is not None:
                    return ping_frag_needed(ip, size, f.path_mtu)
                return ping_lost(ip, size) if f.mtu_black_hole else ping_ok(ip, size)
            return curl_stalled(2896) if f.mtu_black_hole else curl_ok("", size=BULK_BYTES, seconds=0.0123)
        if kind == "svc":  # one call per probe; round robin over the backends, per client
            backends = [n for n in NODES if n not in f.echo_missing]
            n = self._rr.get(src, 0)
            self._rr[src] = n + 1
            dst = backends[(n + len(src)) % len(backends)]
            return curl_connect_timeout() if self._blocked(src, dst) else curl_ok(dst)
        if kind == "ingress":
            calls = len(re.search(r"for _ in ([\d ]+);", cmd).group(1).split())
            if f.ingress_503:
                return "\n".join([curl_status(503, NGINX_503)[0]] * calls), 0
            backends = [n for n in NODES if n not in f.echo_missing]
            return "\n".join(curl_ok(backends[i % len(backends)])[0] for i in range(calls)), 0
        if kind == "ext":
            if f.no_egress:
                return curl_connect_timeout()
            return curl_ok("", size=1256, seconds=0.12)
        raise AssertionError(f"unexpected probe {key}")


# -- captured real output -----------------------------------------------------------------------

CAPTURED = Path(__file__).resolve().parent / "captured"
LAB_NODES = {"node-a": "10.0.1.10", "node-b": "10.0.1.11", "node-c": "10.0.1.12"}


def captured(scenario: str, check: str, node: str) -> str:
    """One client pod's exec stdout in a lab scenario (markers included)."""
    return (CAPTURED / f"{scenario}.{check}.{node}.txt").read_text()


def captured_probe(scenario: str, check: str, node: str, key: str) -> RawOutput:
    """One probe's raw output in a lab scenario."""
    return parse_script_output(captured(scenario, check, node))[key]


class ReplayCluster:
    """The lab's cluster (same names and addresses), each exec answered with a captured stdout."""

    def __init__(self, scenario: str, check: str) -> None:
        self.scenario, self.check = scenario, check
        self.calls: list[tuple[str, ...]] = []

    @staticmethod
    def _pod(kind: str, node: str) -> dict[str, Any]:
        i = sorted(LAB_NODES).index(node)
        ip = f"10.42.{i + 1}.{9 if kind == fixture.CLIENT_NAME else 5}"
        return _pod(f"{kind}-{node}", node, ip)

    def list_nodes(self) -> list[dict[str, Any]]:
        return [{"metadata": {"name": n}} for n in LAB_NODES]

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        for kind in (fixture.CLIENT_NAME, fixture.ECHO_NAME):
            if namespace == fixture.NAMESPACE and label_selector == fixture.label_selector(kind):
                return [self._pod(kind, n) for n in LAB_NODES]
        return []

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        ips = {("default", "kubernetes"): "10.43.0.1", (fixture.NAMESPACE, fixture.ECHO_NAME): "10.43.100.7"}
        ip = ips.get((namespace, name))
        return {"spec": {"clusterIP": ip}} if ip else None

    def get_custom_object(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        return None

    def exec_in_pod(self, namespace: str, pod: str, container: str, command: list[str],
                    timeout: float) -> ExecResult:
        self.calls.append(("exec", pod))
        node = pod.removeprefix(fixture.CLIENT_NAME + "-")
        return ExecResult(captured(self.scenario, self.check, node), "", 0)


class UnreachableCluster:
    """Every call fails the way KubernetesClusterAccess fails against a closed port."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise ClusterAccessError(f"{name}: MaxRetryError: Failed to establish a new connection: "
                                     "[Errno 111] Connection refused")
        return fail


# A credential that must never reach a message, an output or a report.
TOKEN = "kb-test-token-3f9a0c1d2e4b5a69788796a5b4c3d2e1"


def closed_port() -> int:
    """A loopback port that was bound and closed again: connections are refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kubeconfig_text(server: str) -> str:
    """A token kubeconfig for ``server`` (TLS not verified): what K3s writes, with ``TOKEN``."""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: probe
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: {TOKEN}
contexts:
- name: probe
  context: {{cluster: probe, user: admin}}
current-context: probe
"""
