"""``bin/verify``: the overlay checks of ``pulumi up``, run from a terminal against any cluster.

The same checks (``keybuzz.verify.checks.run_check`` for each of ``CHECK_NAMES``, concurrently, each
under its own deadline) and the same fixture (``keybuzz.verify.fixture.render_fixture``), without
Pulumi: the fixture is applied with the Kubernetes client, the checks run, a verdict table and an
optional JSON report come out, and the fixture is removed again. Where the cluster comes from:

- ``--stack dev``: the stack's outputs (``kubeconfig``, ``nodes``, ``podMtu``) read with the Pulumi
  CLI on the backend ``bin/deploy`` uses, and the stack file's config (podCidr, subnetCidr, verify).
- ``--kubeconfig FILE``: any K3s/Kubernetes cluster, including one still on Flannel. Nodes and
  private IPs come from the API (InternalIP), the pod CIDR from the IPPool or the nodes' podCIDRs,
  the MTU from ``--mtu`` (default: keybuzz/calico.py's derivation). Without Calico the calico check
  is skipped, saying so, and the others run.

The kubeconfig is read into memory, handed to the access factory and never printed: every line
written and the JSON report go through ``redact.redact``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from keybuzz.calico import pool_mtu
from keybuzz.verify import checks, fixture, plan
from keybuzz.verify.checks import CHECK_NAMES, CHECK_TITLES, CheckInputs
from keybuzz.verify.cluster import ClusterAccessError, FixtureAccess
from keybuzz.verify.judge import Verdict

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT
EXIT_TERMINATED = 143  # the shell's code for SIGTERM (128 + 15)
REPO = Path(__file__).resolve().parents[2]
PROJECT = "keybuzz-k3s"
DEFAULT_TIMEOUT_S = 60
DEFAULT_READY_TIMEOUT_S = 180  # first run on a node pulls two images
DEFAULT_API_TIMEOUT_S = 15
PULUMI_TIMEOUT_S = 120
IPPOOL_CRD = "ippools.crd.projectcalico.org"
CAUSE_UNREACHABLE = (
    "the kubeconfig's server address, that 6443 is open from this machine (adminCidrs), and that "
    "the control plane is up"
)

AccessFactory = Callable[[str, float, float], FixtureAccess]


class UsageError(Exception):
    """Bad arguments or input (exit 2); the message says what to fix."""


class SourceError(UsageError):
    """Where the cluster comes from cannot be used (no kubeconfig output yet, no such file): exit 2, one
    line; the command line itself was fine, so no usage text buries the fix."""


class Unreachable(Exception):
    """The cluster could not be reached or used (exit 3)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, `timeout`, `kill`): unwinds like Ctrl-C so the fixture is removed.

    A KeyboardInterrupt, not an Exception: the client wraps every Exception of an API call into a
    ClusterAccessError, which would turn a stop request into "unreachable".
    """


def _raise_terminated(_signum: int, _frame: Any) -> None:
    raise Terminated


# ---------------------------------------------------------------------------------------------
# Arguments and where the cluster comes from


class _Parser(argparse.ArgumentParser):
    out: TextIO | None = None

    def error(self, message: str) -> None:  # argparse would exit(2) itself; keep main() in charge
        raise UsageError(message)

    def print_help(self, file: Any = None) -> None:
        super().print_help(file or self.out)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bin/verify", description=(
        "Run the overlay checks of `pulumi up` against a cluster: deploy the probe fixture, run the checks, "
        "print the verdicts, remove the fixture. Exit 0 all passed, 1 a check failed, 2 bad usage or input, "
        "3 the cluster cannot be reached."), add_help=True)
    # Not required=True: argparse would report a missing source before an unknown argument.
    src = p.add_mutually_exclusive_group()
    src.add_argument("--stack", help="a stack of this project (dev, staging, prod): kubeconfig, nodes and MTU "
                     "from its outputs (needs the Pulumi CLI and PULUMI_CONFIG_PASSPHRASE)")
    src.add_argument("--kubeconfig", metavar="FILE", help="any K3s/Kubernetes cluster")
    p.add_argument("--json", metavar="FILE", help="write a JSON report (each check's outputs, the cluster, the time)")
    p.add_argument("--keep", action="store_true", help="leave the probe fixture in the cluster afterwards")
    p.add_argument("--check", action="append", choices=CHECK_NAMES, metavar="NAME",
                   help=f"run only this check (repeatable): {', '.join(CHECK_NAMES)}")
    p.add_argument("--mtu", type=int, help="expected pod MTU (default: the stack's podMtu, else "
                   f"{pool_mtu()} = Hetzner private network MTU minus IPIP)")
    p.add_argument("--pod-cidr", help="expected pod CIDR (default: the stack's podCidr, else the IPPool's cidr "
                   "or the nodes' podCIDRs)")
    p.add_argument("--subnet-cidr", help="private subnet of the nodes (default: the stack's subnetCidr, else the "
                   "smallest network holding every node InternalIP, at least a /24)")
    p.add_argument("--timeout", type=int, help=f"deadline per check in seconds (default: the stack's "
                   f"verify.timeoutSeconds, else {DEFAULT_TIMEOUT_S})")
    p.add_argument("--ready-timeout", type=int, default=DEFAULT_READY_TIMEOUT_S,
                   help="how long to wait for the probe pods to become Ready (default %(default)s s)")
    p.add_argument("--api-timeout", type=float, default=DEFAULT_API_TIMEOUT_S,
                   help="how long the first API call may take before the cluster counts as unreachable "
                        "(default %(default)s s)")
    p.add_argument("--external-url", action="append", default=None, metavar="URL",
                   help="URL that must answer 200 from every node (repeatable; default: the stack's "
                        "verify.externalUrls)")
    p.add_argument("--namespace", default=fixture.NAMESPACE, help="probe namespace (default %(default)s)")
    p.add_argument("--ingress-host", help=f"Host header of the probe Ingress (default {fixture.DEFAULT_INGRESS_HOST})")
    p.add_argument("--ingress-class", default=fixture.INGRESS_CLASS,
                   help="ingressClassName of the probe Ingress (default %(default)s; a stock K3s serves traefik)")
    p.add_argument("--ingress-controller",
                   help="the controller's name in the ingress check's messages (default: the stack's "
                        f"ingress.controller, else {fixture.DEFAULT_INGRESS_CONTROLLER})")
    p.add_argument("--ingress-port", type=int,
                   help="the nodes' host port the ingress check probes (default: the stack's, e.g. Traefik's "
                        f"trial port during `ingress.migration: trial`, else {plan.INGRESS_PORT})")
    p.add_argument("--client-image", help="probe client image (needs iputils ping, curl, dig)")
    p.add_argument("--echo-image", help="probe echo image (official nginx)")
    return p


@dataclass(frozen=True)
class Target:
    """What to verify, as known before the cluster is asked anything. Stack values may be None."""

    source: str
    kubeconfig: str = field(repr=False)
    nodes: dict[str, str] | None = None
    pod_mtu: int | None = None
    pod_cidr: str | None = None
    subnet_cidr: str | None = None
    timeout_seconds: int | None = None
    external_urls: tuple[str, ...] = ()
    ingress_host: str | None = None
    # The edge the stack's config declares (keybuzz/ingress.py edge_plan): who serves the probe, on which port.
    ingress_controller: str | None = None
    ingress_port: int | None = None
    client_image: str | None = None
    echo_image: str | None = None


def target_from_kubeconfig_file(path: str) -> Target:
    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"--kubeconfig {path}: no such file")
    try:
        text = file.read_text()
    except OSError as exc:
        raise UsageError(f"--kubeconfig {path}: cannot read it ({exc.strerror})") from None
    if not text.strip():
        raise UsageError(f"--kubeconfig {path}: the file is empty")
    return Target(source=f"kubeconfig {path}", kubeconfig=text)


def target_from_stack(stack: str, run: Callable[..., subprocess.CompletedProcess], env: Mapping[str, str],
                      repo: Path = REPO) -> Target:
    """Read the stack's outputs with the Pulumi CLI (bin/deploy's backend) and its stack file's config."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", stack):
        raise UsageError(f"--stack {stack!r}: a stack name (letters, digits, '-', '_', '.')")
    stack_file = repo / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        raise UsageError(f"--stack {stack}: no {stack_file.name} in {repo}")
    if not (env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        raise UsageError("--stack needs PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) to read the "
                         "stack's secret kubeconfig output")
    pulumi = shutil.which("pulumi", path=env.get("PATH"))
    if not pulumi:
        raise UsageError("--stack needs the Pulumi CLI on PATH (https://www.pulumi.com/docs/install/); or run "
                         "with --kubeconfig FILE")
    # Same backend as bin/deploy: local state inside the project.
    child_env = {**env, "PULUMI_BACKEND_URL": f"file://{repo}/.pulumi-state"}
    command = [pulumi, "stack", "output", "--json", "--show-secrets", "--stack", stack]
    try:
        done = run(command, cwd=repo, env=child_env, capture_output=True, text=True, timeout=PULUMI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UsageError(f"`pulumi stack output --stack {stack}` did not answer within {PULUMI_TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = (done.stderr or "").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise UsageError(f"`pulumi stack output --stack {stack}` failed: {last[0][:300]}")
    try:
        outputs = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise UsageError(f"`pulumi stack output --json --stack {stack}` did not print JSON") from None
    kubeconfig = outputs.get("kubeconfig") if isinstance(outputs, dict) else None
    if not isinstance(kubeconfig, str) or not kubeconfig.strip():
        raise UsageError(f"stack {stack} has no kubeconfig output: run `bin/deploy {stack} up` first")
    nodes = None
    if isinstance(outputs.get("nodes"), list):
        nodes = {str(n["name"]): str(n["privateIp"]) for n in outputs["nodes"]
                 if isinstance(n, dict) and n.get("name") and n.get("privateIp")} or None
    cfg = stack_config(stack_file)
    from keybuzz.ingress import edge_plan

    edge = edge_plan(cfg.ingress.controller, cfg.ingress.migration)
    return Target(
        source=f"stack {stack}",
        kubeconfig=kubeconfig,
        nodes=nodes,
        pod_mtu=_positive_int(outputs.get("podMtu")),
        pod_cidr=str(cfg.pod_cidr),
        subnet_cidr=str(cfg.subnet_cidr),
        timeout_seconds=cfg.verify.timeout_seconds,
        external_urls=tuple(cfg.verify.external_urls),
        ingress_host=cfg.verify.ingress_host,
        ingress_controller=edge.probe_controller,
        ingress_port=edge.probe_port,
        client_image=cfg.verify.client_image,
        echo_image=cfg.verify.echo_image,
    )


def stack_config(stack_file: Path) -> Any:
    """The stack's parsed config (keybuzz/config.py), operator-only keys filled with placeholders."""
    import yaml

    from keybuzz.config import ConfigError, parse_config, project_defaults

    defaults = project_defaults()
    doc = yaml.safe_load(stack_file.read_text()) or {}
    raw: dict[str, Any] = {**defaults, "sshPublicKeys": [_PLACEHOLDER_KEY], "adminCidrs": ["198.51.100.0/24"]}
    for key, value in (doc.get("config") or {}).items():
        if str(key).startswith(f"{PROJECT}:") and not (isinstance(value, dict) and set(value) == {"secure"}):
            raw[str(key).split(":", 1)[1]] = value
    try:
        return parse_config(raw, stack_file.stem.split(".", 1)[1], defaults)
    except ConfigError as exc:
        raise UsageError(f"{stack_file.name}: {exc}") from None


_PLACEHOLDER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl placeholder"


# ---------------------------------------------------------------------------------------------
# What the cluster says about itself (pure functions over API objects)


def nodes_from_api(api_nodes: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Node name -> InternalIP (IPv4), the address K3s's node-ip sets."""
    out = {}
    for node in api_nodes:
        name = (node.get("metadata") or {}).get("name")
        for addr in (node.get("status") or {}).get("addresses") or []:
            if addr.get("type") == "InternalIP" and _is_ipv4(addr.get("address")) and name:
                out[str(name)] = str(addr["address"])
                break
    return out


def node_pod_cidrs(api_nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every IPv4 podCIDR the nodes were given (``spec.podCIDRs``, else ``spec.podCIDR``)."""
    out = []
    for node in api_nodes:
        spec = node.get("spec") or {}
        for cidr in spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []):
            if _is_ipv4_network(cidr):
                out.append(str(cidr))
    return out


def covering_network(cidrs: Sequence[str], max_prefix: int = 32) -> str | None:
    """The smallest IPv4 network holding every CIDR or address given, at most ``/max_prefix`` long."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    if not nets:
        return None
    prefix = min(max_prefix, *(n.prefixlen for n in nets))
    while prefix > 0:
        candidate = ipaddress.ip_network(f"{nets[0].network_address}/{prefix}", strict=False)
        if all(n.subnet_of(candidate) for n in nets):
            return str(candidate)
        prefix -= 1
    return "0.0.0.0/0"


def derive_pod_cidr(pool: Mapping[str, Any] | None, node_cidrs: Sequence[str]) -> str | None:
    """The pool's cidr when it holds every node podCIDR, else the network holding the node podCIDRs.

    A pool that does not hold the podCIDRs K3s hands out is itself a finding: the calico check then
    reports the pool against the nodes' range.
    """
    cidr = ((pool or {}).get("spec") or {}).get("cidr")
    if cidr and _is_ipv4_network(cidr):
        pool_net = ipaddress.ip_network(cidr, strict=False)
        if all(ipaddress.ip_network(c, strict=False).subnet_of(pool_net) for c in node_cidrs):
            return str(cidr)
    return covering_network(node_cidrs)


def _positive_int(value: Any) -> int | None:
    """An output that should be an integer (podMtu), or None when it is missing or not one."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _is_ipv4(value: Any) -> bool:
    try:
        ipaddress.IPv4Address(str(value))
    except ValueError:
        return False
    return True


def _is_ipv4_network(value: Any) -> bool:
    try:
        ipaddress.IPv4Network(str(value), strict=False)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ClusterFacts:
    """What the checks will be run with, and whether Calico is there to check."""

    server: str
    nodes: dict[str, str]
    pod_cidr: str | None  # None: no flag, stack, IPPool or node podCIDR says
    subnet_cidr: str
    pod_mtu: int
    calico_missing: tuple[str, ...]  # empty: Calico installed
    notes: tuple[str, ...] = ()

    @property
    def calico(self) -> bool:
        return not self.calico_missing

    def calico_skip_reason(self) -> str:
        return f"Calico not installed ({', '.join(self.calico_missing)})"


def gather_facts(access: FixtureAccess, target: Target, args: argparse.Namespace,
                 api_nodes: Sequence[Mapping[str, Any]]) -> ClusterFacts:
    """Nodes, CIDRs, MTU and Calico presence: flags first, then the stack, then the API."""
    notes = []
    api_map = nodes_from_api(api_nodes)
    nodes = dict(target.nodes) if target.nodes else api_map
    if target.nodes and set(target.nodes) != set(api_map):
        notes.append(f"the stack lists nodes {', '.join(sorted(target.nodes))}; the API has "
                     f"{', '.join(sorted(api_map)) or 'none'}")
    if not nodes:
        raise Unreachable("the API lists no node with an IPv4 InternalIP: nothing to verify")
    missing = []
    if not access.crd_exists(IPPOOL_CRD):
        missing.append("no IPPool CRD")
    calico_pods = [pod for ns in checks.CALICO_NAMESPACES for pod in access.list_pods(ns, checks.CALICO_NODE_SELECTOR)]
    if not calico_pods:
        missing.append("no calico-node pods")
    pool = None
    if not missing:
        pool = access.get_custom_object(checks.CALICO_GROUP, checks.CALICO_VERSION, "ippools", checks.IPPOOL_NAME)
    pod_cidr = args.pod_cidr or target.pod_cidr or derive_pod_cidr(pool, node_pod_cidrs(api_nodes))
    subnet = args.subnet_cidr or target.subnet_cidr or covering_network(list(nodes.values()), max_prefix=24)
    mtu = args.mtu or target.pod_mtu or pool_mtu()
    return ClusterFacts(server=getattr(access, "server", "") or "", nodes=nodes, pod_cidr=pod_cidr,
                        subnet_cidr=subnet or "0.0.0.0/0", pod_mtu=mtu, calico_missing=tuple(missing),
                        notes=tuple(notes))


# ---------------------------------------------------------------------------------------------
# Doing: reach, deploy, wait, run, clean up


def call_within(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """Run ``fn`` in a daemon thread; give up after ``seconds`` (a hung TCP connect must not hang us)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=work, name=f"verify-{what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise Unreachable(f"{what}: no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def wait_until_gone(access: FixtureAccess, namespace: dict[str, Any], bound: float, clock: Callable[[], float],
                    sleep: Callable[[float], None], say: Callable[[str], None]) -> float | None:
    """If the probe namespace is still terminating (an earlier run just removed it), wait for it.

    A terminating namespace refuses new objects, so applying into it would fail. Returns the
    seconds waited, or None when there was nothing to wait for. Raises ClusterAccessError when
    the namespace outlives ``bound``.
    """
    live = access.read_object(namespace)
    if not live or not (live.get("metadata") or {}).get("deletionTimestamp"):
        return None
    name = namespace["metadata"]["name"]
    say(f"namespace {name} is still terminating (an earlier run removed it); waiting up to {bound:g} s")
    start = clock()
    while access.read_object(namespace) is not None:
        if clock() - start + 2 > bound:
            raise ClusterAccessError(f"namespace {name} still terminating after {bound:g} s: see "
                                     f"`kubectl get namespace {name} -o yaml` (finalizers)")
        sleep(2)
    return clock() - start


def wait_for_probe_pods(access: FixtureAccess, namespace: str, nodes: Sequence[str], bound: float,
                        clock: Callable[[], float], sleep: Callable[[float], None]) -> tuple[int, int]:
    """Poll until a Ready client and echo pod run on every node, or ``bound`` seconds pass.

    Returns (nodes with both pods Ready, nodes). Not Ready in time is not fatal: the checks name
    each node whose probe pod is missing, which says more than a timeout here would.
    """
    start = clock()
    while True:
        clients = access.list_pods(namespace, fixture.label_selector(fixture.CLIENT_NAME))
        echoes = access.list_pods(namespace, fixture.label_selector(fixture.ECHO_NAME))
        pods = checks.probe_pods_from(nodes, clients, echoes)
        ready = len(set(pods.clients) & set(pods.echo_ips))
        if ready == len(nodes) or clock() - start + 2 > bound:
            return ready, len(nodes)
        sleep(2)


def calico_skipped(reason: str) -> Verdict:
    return Verdict(check=CHECK_TITLES["calico"], tested=reason, total=0, skipped=True,
                   notes=[f"skipped: {reason}"])


def run_checks(names: Sequence[str], inputs: CheckInputs, access: FixtureAccess, skipped: Mapping[str, Verdict],
               on_done: Callable[[str, Verdict, float], None], clock: Callable[[], float],
               sleep: Callable[[float], None]) -> dict[str, Verdict]:
    """Every check concurrently, each under its own deadline; ``on_done`` as each one finishes."""
    done: queue.Queue[tuple[str, Verdict, float]] = queue.Queue()
    start = clock()

    def one(name: str) -> None:
        verdict = checks.run_check(name, inputs, lambda: access, clock=clock, sleep=sleep)
        done.put((name, verdict, clock() - start))

    verdicts: dict[str, Verdict] = {}
    for name in names:
        if name in skipped:
            verdicts[name] = skipped[name]
            on_done(name, skipped[name], 0.0)
    running = [n for n in names if n not in skipped]
    for name in running:
        threading.Thread(target=one, args=(name,), name=f"check-{name}", daemon=True).start()
    # run_check never outlives its deadline; the margin covers judging and thread start-up.
    patience = inputs.timeout_seconds + 30
    for _ in running:
        try:
            name, verdict, took = done.get(timeout=patience)
        except queue.Empty:
            break
        verdicts[name] = verdict
        on_done(name, verdict, took)
    return verdicts


_PART_OF_SELECTOR = ",".join(f"{k}={v}" for k, v in fixture.PART_OF.items())


def remove_fixture(access: FixtureAccess, manifests: Sequence[dict[str, Any]]) -> None:
    """Cluster-scoped objects first, then the namespace, which takes everything in it along.

    Every delete is tried even when one is refused (a CalicoNodeStatus the account may not delete
    must not leave the probe pods running); the refusals are raised together at the end.
    """
    errors = []
    for manifest in [*(m for m in manifests if m["kind"] != "Namespace" and "namespace" not in m["metadata"]),
                     *(m for m in manifests if m["kind"] == "Namespace")]:
        try:
            access.delete_object(manifest)
        except ClusterAccessError as exc:
            errors.append(str(exc))
    if errors:
        raise ClusterAccessError("; ".join(errors))


# ---------------------------------------------------------------------------------------------
# Rendering


def summary(verdict: Verdict) -> str:
    """``3 nodes`` / ``2 of 6 paths failed`` / ``skipped: ...``: the short form of one verdict."""
    if verdict.skipped:
        return f"skipped: {verdict.tested}"
    if verdict.ok:
        return f"{verdict.total} {verdict.unit}: {verdict.tested}"
    return f"{len(verdict.failures)} of {verdict.total} {verdict.unit} failed"


def state(verdict: Verdict) -> str:
    return "skipped" if verdict.skipped and verdict.ok else ("passed" if verdict.ok else "FAILED")


def render_table(names: Sequence[str], verdicts: Mapping[str, Verdict]) -> list[str]:
    rows = [("check", "result", "failed/total", "causes")]
    for name in names:
        v = verdicts.get(name)
        if v is None:
            rows.append((CHECK_TITLES[name], "FAILED", "-", "did not report (internal error)"))
            continue
        cause = "; ".join(v.causes()) if not v.ok else (v.tested if v.skipped else "")
        rows.append((CHECK_TITLES[name], state(v), f"{len(v.failures)}/{v.total} {v.unit}", cause))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return ["  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip()
            for row in rows]


def check_outputs(verdict: Verdict, run_id: str) -> dict[str, Any]:
    """A check's outputs exactly as the provider exports them (providers.check_outputs)."""
    from keybuzz.verify.providers import check_outputs as provider_outputs

    return provider_outputs(verdict, run_id)


# ---------------------------------------------------------------------------------------------
# main


def default_access_factory(kubeconfig: str, connect: float, read: float) -> FixtureAccess:
    from keybuzz.verify.cluster import KubernetesClusterAccess

    return KubernetesClusterAccess(kubeconfig, connect_timeout=connect, read_timeout=read)


def main(
    argv: Sequence[str] | None = None,
    out: TextIO = sys.stdout,
    clock: Callable[[], float] = time.monotonic,
    access_factory: AccessFactory = default_access_factory,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    env: Mapping[str, str] | None = None,
    repo: Path = REPO,
) -> int:
    """Parse, verify, report; returns the exit status (0 passed, 1 failed, 2 usage, 3 unreachable)."""
    kubeconfig = ""

    def say(text: str = "") -> None:
        from keybuzz.verify.redact import redact

        out.write((redact(text, kubeconfig) if kubeconfig else text) + "\n")
        out.flush()

    parser = build_parser()
    if isinstance(parser, _Parser):
        parser.out = out
    argv = list(sys.argv[1:] if argv is None else argv)
    # Automation reads the --json report on every exit, so it is written even when no check ran.
    report_path, started_at = _json_argument(argv), now()
    try:
        args = parser.parse_args(argv)
        if not (args.stack or args.kubeconfig):
            raise UsageError("say which cluster: --stack STACK or --kubeconfig FILE")
        if args.timeout is not None and not 5 <= args.timeout <= 600:
            raise UsageError(f"--timeout {args.timeout}: 5..600 seconds")
        if args.ingress_port is not None and not 1 <= args.ingress_port <= 65535:
            raise UsageError(f"--ingress-port {args.ingress_port}: a port between 1 and 65535")
        if args.mtu is not None and not 576 <= args.mtu <= 9000:
            raise UsageError(f"--mtu {args.mtu}: an MTU between 576 and 9000")
        for flag in ("pod_cidr", "subnet_cidr"):
            if getattr(args, flag) and not _is_ipv4_network(getattr(args, flag)):
                raise UsageError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: not an IPv4 CIDR")
        for url in args.external_url or []:
            if not url.startswith(("http://", "https://")):
                raise UsageError(f"--external-url {url}: not an http(s) URL")
        if args.json:
            # Checked before the cluster is touched: a report that cannot be written after minutes of
            # checks would lose their result, and exit 2 would hide a failed check's exit 1.
            report = Path(args.json)
            if report.is_dir():
                raise UsageError(f"--json {args.json}: is a directory")
            if not report.parent.is_dir():
                raise UsageError(f"--json {args.json}: no directory {report.parent}")
            if not os.access(report.parent, os.W_OK) or (report.exists() and not os.access(report, os.W_OK)):
                raise UsageError(f"--json {args.json}: not writable")
        try:
            target = (target_from_stack(args.stack, run, os.environ if env is None else env, repo) if args.stack
                      else target_from_kubeconfig_file(args.kubeconfig))
        except UsageError as exc:
            raise SourceError(str(exc)) from None
    except SystemExit as exc:  # --help
        return EXIT_PASSED if not exc.code else EXIT_USAGE
    except UsageError as exc:
        usage = "" if isinstance(exc, SourceError) else parser.format_usage()
        out.write(f"{usage}bin/verify: error: {exc}\n")
        out.flush()
        write_failure_report(report_path, EXIT_USAGE, str(exc), started_at, None, say)
        return EXIT_USAGE
    kubeconfig = target.kubeconfig
    # SIGTERM's default action kills the process on the spot, leaving the probe fixture behind;
    # turned into an exception, it unwinds through _verify's cleanup like Ctrl-C does. Only the
    # main thread may set a handler (main() called from a thread keeps the default).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _verify(args, target, say, clock, sleep, now, access_factory)
    except UsageError as exc:
        say(f"bin/verify: error: {exc}")
        write_failure_report(report_path, EXIT_USAGE, str(exc), started_at, target, say)
        return EXIT_USAGE
    except Unreachable as exc:
        say(f"bin/verify: cannot reach the cluster: {exc}")
        write_failure_report(report_path, EXIT_UNREACHABLE, f"cannot reach the cluster: {exc}", started_at, target,
                             say)
        return EXIT_UNREACHABLE
    except Terminated:
        say("bin/verify: terminated (SIGTERM)")
        write_failure_report(report_path, EXIT_TERMINATED, "terminated (SIGTERM)", started_at, target, say)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        # The fixture was removed on the way out (unless --keep); say so instead of a traceback.
        say("bin/verify: interrupted")
        write_failure_report(report_path, EXIT_INTERRUPTED, "interrupted (SIGINT)", started_at, target, say)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _json_argument(argv: Sequence[str]) -> str | None:
    """The --json FILE of a command line, read before argparse (which may refuse the rest of it)."""
    for i, arg in enumerate(argv):
        if arg == "--json" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--json="):
            return arg.split("=", 1)[1]
    return None


def write_failure_report(path: str | None, code: int, reason: str, started_at: datetime, target: Target | None,
                         say: Callable[[str], None]) -> None:
    """The --json report of a run that ended before its verdicts: the same top-level keys, no checks, and
    why. Not when the --json path itself was refused; unwritable otherwise: said, not raised."""
    if not path or reason.startswith("--json "):
        return
    from keybuzz.verify.redact import redact

    report = {
        "passed": False,
        "exitCode": code,
        "error": reason,
        "startedAt": started_at.isoformat(timespec="seconds"),
        "cluster": {"source": target.source if target else None},
        "checks": {},
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    try:
        Path(path).write_text((redact(text, target.kubeconfig) if target else text) + "\n")
    except OSError as exc:
        say(f"bin/verify: no report written to {path}: {exc.strerror}")
        return
    say(f"report written to {path} (exit {code}: {reason.splitlines()[0][:200]})")


def _verify(args: argparse.Namespace, target: Target, say: Callable[[str], None], clock: Callable[[], float],
            sleep: Callable[[float], None], now: Callable[[], datetime], access_factory: AccessFactory) -> int:
    started_at, start = now(), clock()
    timeout = args.timeout or target.timeout_seconds or DEFAULT_TIMEOUT_S
    # The providers' split: connect fails fast, a read may take half a check's deadline.
    connect, read = min(3.0, max(0.5, timeout / 3)), min(10.0, max(1.0, timeout / 2))
    try:
        access = access_factory(target.kubeconfig, connect, read)
    except ClusterAccessError as exc:
        raise UsageError(f"{target.source}: {exc}") from None
    server = getattr(access, "server", "") or "(server unknown)"
    say(f"verifying {server} ({target.source})")
    try:
        api_nodes = call_within(access.list_nodes, args.api_timeout, "list nodes")
        facts = call_within(lambda: gather_facts(access, target, args, api_nodes), args.api_timeout,
                            "read the cluster's nodes and Calico objects")
    except (ClusterAccessError, Unreachable) as exc:
        raise Unreachable(f"{server}: {exc}. Check {CAUSE_UNREACHABLE}") from None
    names = tuple(n for n in CHECK_NAMES if not args.check or n in args.check)
    inputs = CheckInputs(
        # Only the calico check reads pod_cidr; with Calico there is a pool, so it is known.
        nodes=facts.nodes, pod_cidr=facts.pod_cidr or "0.0.0.0/0", subnet_cidr=facts.subnet_cidr,
        pool_mtu=facts.pod_mtu,
        timeout_seconds=float(timeout),
        external_urls=tuple(args.external_url) if args.external_url is not None else target.external_urls,
        probe_namespace=args.namespace,
        ingress_host=args.ingress_host or target.ingress_host or fixture.DEFAULT_INGRESS_HOST,
        ingress_controller=(args.ingress_controller or target.ingress_controller
                            or fixture.DEFAULT_INGRESS_CONTROLLER),
        ingress_port=args.ingress_port or target.ingress_port or plan.INGRESS_PORT,
    )
    node_list = ", ".join(f"{n} {ip}" for n, ip in sorted(facts.nodes.items()))
    say(f"nodes: {node_list}")
    pod_cidr = facts.pod_cidr or "unknown (no IPPool, no node podCIDR)"
    say(f"pod CIDR {pod_cidr}, subnet {facts.subnet_cidr}, pod MTU {facts.pod_mtu}, "
        f"Calico {'installed' if facts.calico else 'not installed (' + ', '.join(facts.calico_missing) + ')'}, "
        f"deadline {timeout} s per check")
    if "ingress" in names:
        say(f"ingress: {inputs.ingress_controller} probed on the nodes' port {inputs.ingress_port}")
    for note in facts.notes:
        say(f"note: {note}")
    manifests = fixture.render_fixture(
        namespace=args.namespace, nodes=sorted(facts.nodes) if facts.calico else (),
        client_image=args.client_image or target.client_image or fixture.DEFAULT_CLIENT_IMAGE,
        echo_image=args.echo_image or target.echo_image or fixture.DEFAULT_ECHO_IMAGE,
        ingress_host=inputs.ingress_host)
    for manifest in manifests:
        if manifest["kind"] == "Ingress":  # the class is the one thing that differs between clusters
            manifest["spec"]["ingressClassName"] = args.ingress_class
    verdicts: dict[str, Verdict] = {}
    removed: bool | str = False
    try:
        try:
            waited = wait_until_gone(access, manifests[0], args.ready_timeout, clock, sleep, say)
            if waited is not None:
                say(f"namespace {args.namespace} from an earlier run finished terminating after {waited:.0f} s")
            for manifest in manifests:
                access.apply_object(manifest)
        except ClusterAccessError as exc:
            raise Unreachable(f"could not deploy the probe fixture: {exc}") from None
        say(f"probe fixture applied in namespace {args.namespace}; waiting up to {args.ready_timeout} s for its pods")
        try:
            ready, total = wait_for_probe_pods(access, args.namespace, sorted(facts.nodes), args.ready_timeout,
                                               clock, sleep)
        except ClusterAccessError as exc:
            raise Unreachable(f"listing the probe pods: {exc}") from None
        say(f"probe pods Ready on {ready} of {total} nodes after {clock() - start:.0f} s"
            + ("" if ready == total else "; the checks name the nodes without them"))
        skipped = {} if facts.calico else {"calico": calico_skipped(facts.calico_skip_reason())}
        width = max(len(CHECK_TITLES[n]) for n in names)

        def progress(name: str, verdict: Verdict, took: float) -> None:
            say(f"  {CHECK_TITLES[name].ljust(width)}  {state(verdict).ljust(7)}  {took:5.1f} s  {summary(verdict)}")

        say(f"running {len(names)} checks:")
        verdicts = run_checks(names, inputs, access, skipped, progress, clock, sleep)
    finally:
        if not args.keep:
            try:
                remove_fixture(access, manifests)
                removed = True
            except ClusterAccessError as exc:
                removed = f"failed: {exc}"
            if sys.exc_info()[0] is not None:  # leaving early (unreachable, interrupted): say what was left
                say(f"probe fixture {'removed' if removed is True else 'NOT removed (' + str(removed) + ')'}")
    passed = all(name in verdicts and verdicts[name].ok for name in names)
    say("")
    for line in render_table(names, verdicts):
        say(line)
    for name in names:
        v = verdicts.get(name)
        if v is not None and not v.ok:
            say("")
            say(v.message(sorted(facts.nodes)))
    say("")
    # The CalicoNodeStatus objects are cluster-scoped: deleting the namespace leaves them.
    how = f"`kubectl delete namespace {args.namespace}`" + (
        f" and `kubectl delete caliconodestatuses -l {_PART_OF_SELECTOR}`"
        if any(m["kind"] == "CalicoNodeStatus" for m in manifests) else "")
    if args.keep:
        say(f"probe fixture kept in namespace {args.namespace} (--keep); remove it with {how}")
    elif removed is True:
        say(f"probe fixture removed (namespace {args.namespace} deleted)")
    else:
        say(f"probe fixture NOT removed ({removed}); remove it with {how}")
    code = EXIT_PASSED if passed else EXIT_FAILED
    if args.json:
        run_id = started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        report = {
            "passed": passed,
            "exitCode": code,
            "startedAt": started_at.isoformat(timespec="seconds"),
            "durationSeconds": round(clock() - start, 1),
            "cluster": {
                "source": target.source,
                "server": facts.server,
                "nodes": [{"name": n, "privateIp": ip} for n, ip in sorted(facts.nodes.items())],
                "podCidr": facts.pod_cidr,
                "subnetCidr": facts.subnet_cidr,
                "podMtu": facts.pod_mtu,
                "ingress": {"controller": inputs.ingress_controller, "port": inputs.ingress_port},
                "calico": {"installed": facts.calico, "missing": list(facts.calico_missing)},
                "notes": list(facts.notes),
            },
            "fixture": {"namespace": args.namespace,
                        "state": "kept" if args.keep else ("removed" if removed is True else str(removed))},
            "timeoutSeconds": timeout,
            "checks": {name: check_outputs(verdicts[name], run_id) for name in names if name in verdicts},
        }
        from keybuzz.verify.redact import redact

        text = redact(json.dumps(report, indent=2, ensure_ascii=False), target.kubeconfig)
        try:
            Path(args.json).write_text(text + "\n")
        except OSError as exc:
            say(f"bin/verify: cannot write --json {args.json}: {exc.strerror}")
            return EXIT_USAGE
        say(f"report written to {args.json}")
    say(f"{'PASSED' if passed else 'FAILED'}: {sum(1 for n in names if n in verdicts and verdicts[n].ok)} of "
        f"{len(names)} checks passed or skipped ({clock() - start:.0f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
