"""One Pulumi dynamic resource per overlay check; a failing check fails ``pulumi up``.

Serialization: the engine pickles the provider with dill and runs it in another process
(``python -m pulumi.dynamic``, started in the project directory). ``CheckProvider`` is a module-level
class of an importable package, so dill pickles it *by reference* (``keybuzz.verify.providers.
CheckProvider`` plus the instance's one field, the check name) and the provider process imports it
from the project directory. That is deliberate: by-value pickling of a class that calls into
``keybuzz.verify`` would still need the package importable, and by-reference keeps the state small
and makes a code fix take effect without a state change. The provider holds no client, lock or
secret; it builds the cluster client inside ``create``/``update`` from the kubeconfig input.

``diff`` always reports a change so every ``pulumi up`` re-runs every check; a check that fails
raises, so the resource is not created/updated and the next ``pulumi up`` simply runs it again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.dynamic as dynamic

from keybuzz.verify import fixture
from keybuzz.verify.checks import CHECK_NAMES
from keybuzz.verify.redact import redact  # noqa: F401 - re-exported: ingress_guard and tests use it from here

DEFAULT_TIMEOUT_SECONDS = 60
# Python dynamic providers are known to stall past ~180 s (pulumi/pulumi#13841).
MAX_TIMEOUT_SECONDS = 170
OUTPUT_KEYS = ("check", "tested", "total", "failed", "passed", "skipped", "failures", "causes", "latencyMs",
               "notes", "runId")


class OverlayCheckFailed(Exception):
    """Raised by create/update: the message is the check's one-paragraph verdict, kubeconfig-free."""


class CheckProvider(dynamic.ResourceProvider):
    """Runs one named check (see keybuzz.verify.checks.CHECK_NAMES) on create and on every update."""

    def __init__(self, check_name: str) -> None:
        super().__init__()
        if check_name not in CHECK_NAMES:
            raise ValueError(f"unknown check {check_name!r}")
        self.check_name = check_name

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        """Reject malformed inputs before anything talks to the cluster (unknowns pass in preview)."""
        return dynamic.CheckResult(news, [dynamic.CheckFailure(k, r) for k, r in validate_props(news)])

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.DiffResult:
        """Always a change: a verification that ran once proves nothing about the next deploy."""
        return dynamic.DiffResult(changes=True, replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(f"overlay-check-{self.check_name}", self._run(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(self._run(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: a check leaves no trace in the cluster."""

    def _run(self, props: Mapping[str, Any]) -> dict[str, Any]:
        from keybuzz.verify.checks import CheckInputs, run_check
        from keybuzz.verify.cluster import KubernetesClusterAccess

        kubeconfig = str(props.get("kubeconfig") or "")
        inputs = CheckInputs.from_props(props)
        connect = min(3.0, max(0.5, inputs.timeout_seconds / 3))
        read = min(10.0, max(1.0, inputs.timeout_seconds / 2))
        verdict = run_check(self.check_name, inputs,
                            lambda: KubernetesClusterAccess(kubeconfig, connect_timeout=connect, read_timeout=read))
        if not verdict.ok:
            raise OverlayCheckFailed(redact(verdict.message(inputs.node_names), kubeconfig))
        return check_outputs(verdict, props.get("runId"))


def check_outputs(verdict: Any, run_id: Any) -> dict[str, Any]:
    """A check resource's outputs (also bin/verify's JSON report): the verdict's, plus the run id."""
    outs = verdict.outputs()
    outs["runId"] = run_id
    return {k: outs.get(k) for k in OUTPUT_KEYS}


def validate_props(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(property, reason) for each malformed input; values unknown during preview are skipped."""
    import ipaddress

    from pulumi.runtime import rpc

    def known(key: str) -> bool:
        value = props.get(key)
        return value is not None and value != rpc.UNKNOWN

    failures: list[tuple[str, str]] = []
    if known("kubeconfig") and not str(props["kubeconfig"]).strip():
        failures.append(("kubeconfig", "empty kubeconfig"))
    if known("nodes"):
        nodes = props["nodes"]
        if not isinstance(nodes, Sequence) or not nodes:
            failures.append(("nodes", "a non-empty list of {name, privateIp}"))
        else:
            names = []
            for i, node in enumerate(nodes):
                if node == rpc.UNKNOWN:
                    continue
                if not isinstance(node, Mapping) or not node.get("name"):
                    failures.append(("nodes", f"nodes[{i}] needs a name"))
                    continue
                names.append(node["name"])
                ip = node.get("privateIp")
                if ip not in (None, rpc.UNKNOWN):
                    try:
                        ipaddress.IPv4Address(str(ip))
                    except ValueError:
                        failures.append(("nodes", f"nodes[{i}].privateIp {ip!r} is not an IPv4 address"))
            if len(set(names)) != len(names):
                failures.append(("nodes", "node names must be unique"))
    for key in ("podCidr", "subnetCidr"):
        if known(key):
            try:
                ipaddress.ip_network(str(props[key]), strict=False)
            except ValueError:
                failures.append((key, f"{props[key]!r} is not a CIDR"))
    if known("poolMtu") and not (576 <= _int(props["poolMtu"]) <= 9000):
        failures.append(("poolMtu", "an MTU between 576 and 9000"))
    if known("timeoutSeconds") and not (1 <= _int(props["timeoutSeconds"]) <= MAX_TIMEOUT_SECONDS):
        failures.append(("timeoutSeconds", f"1..{MAX_TIMEOUT_SECONDS} seconds (dynamic providers stall near 180 s)"))
    if known("externalUrls"):
        for i, url in enumerate(props["externalUrls"] or []):
            if url != rpc.UNKNOWN and not str(url).startswith(("http://", "https://")):
                failures.append(("externalUrls", f"externalUrls[{i}] {url!r} is not an http(s) URL"))
    if known("externalResolve"):
        for i, ips in enumerate(props["externalResolve"] or []):
            for ip in ips if isinstance(ips, list) else []:
                if ip != rpc.UNKNOWN and not _is_ipv4(ip):
                    failures.append(("externalResolve", f"externalResolve[{i}] {ip!r} is not an IPv4 address"))
    return failures


def _is_ipv4(value: Any) -> bool:
    import ipaddress  # local, as above: the provider is pickled by value

    try:
        ipaddress.IPv4Address(str(value))
    except ValueError:
        return False
    return True


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1




# ---------------------------------------------------------------------------------------------
# Resources (what the verification component declares)


@dataclass(frozen=True)
class OverlayCheckArgs:
    """Inputs shared by every check resource.

    ``nodes``: ``[{"name": ..., "privateIp": ...}]`` (see ``nodes_input``). ``kubeconfig`` is made a
    secret by the resource, whatever the caller passes.
    """

    kubeconfig: pulumi.Input[str]
    nodes: pulumi.Input[Sequence[Mapping[str, str]]]
    pod_cidr: pulumi.Input[str]
    subnet_cidr: pulumi.Input[str]
    pool_mtu: pulumi.Input[int]
    timeout_seconds: pulumi.Input[int] = DEFAULT_TIMEOUT_SECONDS
    external_urls: pulumi.Input[Sequence[str]] = ()
    # Per external URL: IPv4s to check it against instead of DNS (verify.externalUrls[].resolve).
    external_resolve: pulumi.Input[Sequence[Sequence[str]]] = ()
    probe_namespace: pulumi.Input[str] = fixture.NAMESPACE
    ingress_host: pulumi.Input[str] = fixture.DEFAULT_INGRESS_HOST
    # Named in the ingress check's causes ("traefik" when that controller serves the probe Ingress).
    ingress_controller: pulumi.Input[str] = fixture.DEFAULT_INGRESS_CONTROLLER
    # The host port the ingress check probes it on (a trial port while Traefik runs beside ingress-nginx).
    ingress_port: pulumi.Input[int] = 80
    # Changes every program run by default: shows in the diff why each check runs again.
    run_id: pulumi.Input[str] = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def to_props(self) -> dict[str, Any]:
        return {
            "kubeconfig": pulumi.Output.secret(self.kubeconfig),
            "nodes": self.nodes,
            "podCidr": self.pod_cidr,
            "subnetCidr": self.subnet_cidr,
            "poolMtu": self.pool_mtu,
            "timeoutSeconds": self.timeout_seconds,
            "externalUrls": list(self.external_urls) if isinstance(self.external_urls, tuple) else self.external_urls,
            "externalResolve": (
                [list(r) for r in self.external_resolve] if isinstance(self.external_resolve, tuple)
                else self.external_resolve
            ),
            "probeNamespace": self.probe_namespace,
            "ingressHost": self.ingress_host,
            "ingressController": self.ingress_controller,
            "ingressPort": self.ingress_port,
            "runId": self.run_id,
        }


def nodes_input(nodes: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """``[(name, private_ip), ...]`` -> the ``nodes`` input (a list, not a map: names stay values)."""
    return [{"name": name, "privateIp": ip} for name, ip in nodes]


class OverlayCheck(dynamic.Resource):
    """Base of the check resources; outputs are what was tested, counts, failures and latency."""

    CHECK: str = ""
    check: pulumi.Output[str]
    tested: pulumi.Output[str]
    total: pulumi.Output[int]
    failed: pulumi.Output[int]
    passed: pulumi.Output[bool]
    skipped: pulumi.Output[bool]
    failures: pulumi.Output[list]
    causes: pulumi.Output[list]
    # Dynamic resources keep output names as given: camelCase attributes.
    latencyMs: pulumi.Output[dict]
    notes: pulumi.Output[list]
    runId: pulumi.Output[str]

    def __init__(self, name: str, args: OverlayCheckArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {key: None for key in OUTPUT_KEYS if key != "runId"}
        props.update(args.to_props())
        super().__init__(CheckProvider(self.CHECK), name, props, opts)


class CalicoHealthCheck(OverlayCheck, module="keybuzz", name="CalicoHealthCheck"):
    """calico-node Ready, IPPool IPIP Always / VXLAN Never on podCidr, private node addresses, BGP up."""

    CHECK = "calico"


class DnsCheck(OverlayCheck, module="keybuzz", name="DnsCheck"):
    """kubernetes.default.svc.cluster.local resolves to the API Service from a pod on every node."""

    CHECK = "dns"


class ClusterIpCheck(OverlayCheck, module="keybuzz", name="ClusterIpCheck"):
    """The echo Service answers from every node, and every backend answers."""

    CHECK = "clusterip"


class PodMeshCheck(OverlayCheck, module="keybuzz", name="PodMeshCheck"):
    """Every client pod reaches the echo pod on every other node: N×(N−1) paths."""

    CHECK = "mesh"


class MtuPathCheck(OverlayCheck, module="keybuzz", name="MtuPathCheck"):
    """Pod MTU == pool MTU; DF ping at full size and a 1 MiB transfer cross every path."""

    CHECK = "mtu"


class IngressCheck(OverlayCheck, module="keybuzz", name="IngressCheck"):
    """The ingress controller (ingress-nginx or Traefik) on every node answers the probe Host: 200, never 503."""

    CHECK = "ingress"


class ExternalUrlsCheck(OverlayCheck, module="keybuzz", name="ExternalUrlsCheck"):
    """Configured external URLs answer 200 from a pod on every node (skipped when none)."""

    CHECK = "external"


CHECKS: dict[str, type[OverlayCheck]] = {
    "calico": CalicoHealthCheck,
    "dns": DnsCheck,
    "clusterip": ClusterIpCheck,
    "mesh": PodMeshCheck,
    "mtu": MtuPathCheck,
    "ingress": IngressCheck,
    "external": ExternalUrlsCheck,
}


def create_checks(prefix: str, args: OverlayCheckArgs,
                  opts: pulumi.ResourceOptions | None = None) -> dict[str, OverlayCheck]:
    """Declare all seven check resources (``<prefix>-<check>``); they run concurrently."""
    return {name: cls(f"{prefix}-{name}", args, opts) for name, cls in CHECKS.items()}
