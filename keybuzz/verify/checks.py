"""Each check = discover → plan → run (through ClusterAccess) → judge, under a hard deadline.

The deadline is enforced from outside the work: the check runs in a daemon thread and the caller
waits at most ``timeout_seconds``; whatever has not finished by then is reported by name and the
check fails. Daemon threads, not a ThreadPoolExecutor, because the executor's exit hook joins its
threads, so one exec stuck on a dead kubelet would hang the process at exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from keybuzz.calico import DEFAULT_POOL_NAME
from keybuzz.verify import fixture, judge, plan
from keybuzz.verify.cluster import ClusterAccess, ClusterAccessError
from keybuzz.verify.judge import Failure, Verdict

CHECK_NAMES = ("calico", "dns", "clusterip", "mesh", "mtu", "ingress", "external")
CHECK_TITLES = {
    "calico": "calico health",
    "dns": "DNS",
    "clusterip": "ClusterIP",
    "mesh": "pod mesh",
    "mtu": "MTU path",
    "ingress": "ingress",
    "external": "external URLs",
}
CALICO_GROUP, CALICO_VERSION = "crd.projectcalico.org", "v1"
IPPOOL_NAME = DEFAULT_POOL_NAME  # the pool the program declares (keybuzz/calico.py)
CALICO_NAMESPACES = ("calico-system", "kube-system")  # operator install, manifest install
CALICO_NODE_SELECTOR = "k8s-app=calico-node"
MAX_ATTEMPTS = 3
CAUSE_API = (
    "the Kubernetes API is unreachable from where `pulumi up` runs (kubeconfig server address, the "
    "firewall rule for 6443 from adminCidrs, or the control plane down)"
)


@dataclass(frozen=True)
class CheckInputs:
    """What every check needs, parsed once from the dynamic resource's inputs.

    ``nodes`` maps node name -> private IP. The kubeconfig is not part of it: it only ever reaches
    the function that builds the ClusterAccess.
    """

    nodes: Mapping[str, str]
    pod_cidr: str
    subnet_cidr: str
    pool_mtu: int
    timeout_seconds: float
    external_urls: tuple[str, ...] = ()
    # Per external URL, the IPv4s it is checked against instead of DNS (empty: DNS).
    external_resolve: tuple[tuple[str, ...], ...] = ()
    probe_namespace: str = fixture.NAMESPACE
    ingress_host: str = fixture.DEFAULT_INGRESS_HOST
    ingress_controller: str = fixture.DEFAULT_INGRESS_CONTROLLER
    # The probes' own time budget (curl, ping, dig); the lab shortens it to keep tests fast.
    timeouts: plan.Timeouts = plan.DEFAULT_TIMEOUTS
    # The host port the ingress check probes (a trial port while Traefik runs beside ingress-nginx).
    ingress_port: int = plan.INGRESS_PORT
    # ClusterIP calls per client pod; 0 = plan.clusterip_calls(node count). The lab raises it so a
    # backend unreachable from one node is hit with near certainty.
    clusterip_calls: int = 0
    # The nodes a rollout batch just changed: only the paths to or from them, and the per-node probes
    # (DNS, ClusterIP, ingress, external, Calico) on them; empty = every node (the full checks).
    focus: tuple[str, ...] = ()

    @property
    def node_names(self) -> list[str]:
        return sorted(self.nodes)

    @property
    def judged_nodes(self) -> list[str]:
        """The nodes whose own probes are judged: the focus, else every node."""
        return plan.sources(self.node_names, self.focus)

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> CheckInputs:
        """Parse the resource inputs (camelCase, as the component passes them)."""
        nodes = {str(n["name"]): str(n["privateIp"]) for n in props.get("nodes") or []}
        return cls(
            nodes=nodes,
            pod_cidr=str(props["podCidr"]),
            subnet_cidr=str(props["subnetCidr"]),
            pool_mtu=int(props["poolMtu"]),
            timeout_seconds=float(props["timeoutSeconds"]),
            external_urls=tuple(str(u) for u in props.get("externalUrls") or ()),
            external_resolve=tuple(tuple(str(ip) for ip in r or ()) for r in props.get("externalResolve") or ()),
            probe_namespace=str(props.get("probeNamespace") or fixture.NAMESPACE),
            ingress_host=str(props.get("ingressHost") or fixture.DEFAULT_INGRESS_HOST),
            ingress_controller=str(props.get("ingressController") or fixture.DEFAULT_INGRESS_CONTROLLER),
            ingress_port=int(props.get("ingressPort") or plan.INGRESS_PORT),
            focus=tuple(sorted(str(n) for n in props.get("focus") or ())),
        )


class Progress:
    """Which steps of a check are running, so a deadline can name what did not finish."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, str] = {}
        self._next = 0

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        with self._lock:
            token = self._next
            self._next += 1
            self._open[token] = name
        try:
            yield
        finally:
            with self._lock:
                self._open.pop(token, None)

    def unfinished(self) -> list[str]:
        with self._lock:
            return list(self._open.values())


@dataclass
class Context:
    """One run of one check: the access, the deadline and the progress tracker."""

    access: ClusterAccess
    inputs: CheckInputs
    deadline: float
    progress: Progress
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    attempt: int = 0
    discovered: dict[str, Any] = field(default_factory=dict)

    def remaining(self) -> float:
        return self.deadline - self.clock()


# ---------------------------------------------------------------------------------------------
# Running


def run_check(
    name: str,
    inputs: CheckInputs,
    make_access: Callable[[], ClusterAccess],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Run one check to a verdict within ``inputs.timeout_seconds``; never raises, never hangs."""
    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r}; known: {', '.join(CHECK_NAMES)}")
    progress = Progress()
    start = clock()
    deadline = start + inputs.timeout_seconds
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["verdict"] = _attempts(name, inputs, make_access, deadline, progress, clock, sleep)
        except BaseException as exc:  # a bug must fail the check, not pass it
            box["error"] = exc

    thread = threading.Thread(target=work, name=f"verify-{name}", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - clock()))
    title = CHECK_TITLES[name]
    if thread.is_alive():
        pending = progress.unfinished() or ["(between steps)"]
        return Verdict(
            check=title, tested=f"deadline {inputs.timeout_seconds:g} s", total=1, unit="runs",
            failures=[Failure("deadline", f"did not finish within {inputs.timeout_seconds:g} s; still running: "
                              + "; ".join(pending),
                              "a step hung: the API server or a kubelet stopped answering (see the steps "
                              "named), or verify.timeoutSeconds is too short for this cluster")],
        )
    if "error" in box:
        exc = box["error"]
        return Verdict(check=title, tested="the check itself", total=1, unit="runs",
                       failures=[Failure("internal error", f"{type(exc).__name__}: {exc}"[:300],
                                         "a bug in keybuzz/verify; please report it with this message")])
    return box["verdict"]


def _attempts(name: str, inputs: CheckInputs, make_access: Callable[[], ClusterAccess], deadline: float,
              progress: Progress, clock: Callable[[], float], sleep: Callable[[float], None]) -> Verdict:
    """Retry a failing check while another full attempt still fits before the deadline."""
    title = CHECK_TITLES[name]
    pause = 5.0 if name == "calico" else 3.0  # CalicoNodeStatus refreshes every 10 s
    try:
        with progress.step("load kubeconfig"):
            access = make_access()
    except ClusterAccessError as exc:
        return _api_failure(title, str(exc))
    ctx = Context(access, inputs, deadline, progress, clock, sleep)
    verdict: Verdict | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        ctx.attempt = attempt
        started = clock()
        try:
            verdict = CHECKS[name](ctx)
        except ClusterAccessError as exc:
            verdict = _api_failure(title, str(exc))
        if verdict.ok or verdict.skipped:
            break
        took = clock() - started
        if ctx.remaining() < took + pause + 1 or attempt == MAX_ATTEMPTS:
            break
        with progress.step(f"pause before attempt {attempt + 1}"):
            sleep(pause)
    assert verdict is not None
    if not verdict.ok and ctx.attempt > 1:
        verdict.notes.append(f"Failed on all {ctx.attempt} attempts")
    return verdict


def _api_failure(title: str, error: str) -> Verdict:
    return Verdict(check=title, tested="Kubernetes API access", total=1, unit="API calls",
                   failures=[Failure("API server", error, CAUSE_API)])


def run_plans(ctx: Context, plans: Sequence[plan.PodPlan]) -> tuple[dict[str, dict[str, plan.RawOutput]],
                                                                       dict[str, str]]:
    """One exec per client pod, all in parallel; returns outputs and exec errors by node.

    An exec cut short by its deadline keeps the probes that finished (the script prints each as it
    ends); the others are ``plan.UNFINISHED``, so the judges blame only them.
    """
    ns = ctx.inputs.probe_namespace
    outputs: dict[str, dict[str, plan.RawOutput]] = {}
    errors: dict[str, str] = {}
    lock = threading.Lock()
    # Leave a little time for judging; each pod's script is bounded by its slowest probe.
    exec_timeout = max(1.0, ctx.remaining() - 1.0)

    def one(p: plan.PodPlan) -> None:
        with ctx.progress.step(f"exec in {ns}/{p.pod} (node {p.node})"):
            try:
                result = ctx.access.exec_in_pod(ns, p.pod, plan.CLIENT_CONTAINER,
                                                ["sh", "-c", p.script(give_up_s=exec_timeout)], exec_timeout)
            except ClusterAccessError as exc:
                with lock:
                    errors[p.node] = str(exc)
                return
            parsed = plan.parse_script_output(result.stdout)
            with lock:
                if not parsed and p.probes:
                    # Nothing streamed back: the exec itself failed or hung, not one slow probe.
                    errors[p.node] = (
                        f"exec did not finish within {exec_timeout:.0f} s and printed nothing"
                        if result.exit_code is None else
                        f"script produced no results (exit {result.exit_code}): "
                        + (result.stderr or result.stdout).strip()[:160])
                    return
                outputs[p.node] = {probe.key: parsed.get(probe.key, plan.UNFINISHED) for probe in p.probes}

    threads = [threading.Thread(target=one, args=(p,), daemon=True, name=f"exec-{p.node}") for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, ctx.remaining() - 0.3))
    with lock:
        for p, t in zip(plans, threads, strict=True):
            if t.is_alive() and p.node not in outputs and p.node not in errors:
                errors[p.node] = f"exec in {ns}/{p.pod} did not finish before the check deadline"
        return dict(outputs), dict(errors)


# ---------------------------------------------------------------------------------------------
# Discovery


def _ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def probe_pods_from(nodes: Sequence[str], clients: Sequence[Mapping[str, Any]],
                    echoes: Sequence[Mapping[str, Any]]) -> plan.ProbePods:
    """Ready probe pods by node (pure: the listing is done by ``discover``)."""
    wanted = set(nodes)
    client_map = {}
    for pod in clients:
        node = (pod.get("spec") or {}).get("nodeName")
        if node in wanted and _ready(pod):
            client_map[node] = pod["metadata"]["name"]
    echo_map = {}
    for pod in echoes:
        node = (pod.get("spec") or {}).get("nodeName")
        ip = (pod.get("status") or {}).get("podIP")
        if node in wanted and ip and _ready(pod):
            echo_map[node] = ip
    return plan.ProbePods(clients=client_map, echo_ips=echo_map)


def discover(ctx: Context, need_echo: bool = True, reserve: float = 15.0) -> plan.ProbePods:
    """List the probe pods, waiting (bounded) for a pod on every node to become Ready.

    Right after the fixture is applied pods may still be starting; waiting here is cheaper than a
    failed check. ``reserve`` keeps enough of the deadline for the probes themselves.
    """
    if "pods" in ctx.discovered:
        return ctx.discovered["pods"]
    ns = ctx.inputs.probe_namespace
    nodes = ctx.inputs.node_names
    wait_until = ctx.deadline - max(reserve, ctx.inputs.timeout_seconds * 0.5)
    while True:
        with ctx.progress.step(f"list probe pods in {ns}"):
            clients = ctx.access.list_pods(ns, fixture.label_selector(fixture.CLIENT_NAME))
            echoes = ctx.access.list_pods(ns, fixture.label_selector(fixture.ECHO_NAME)) if need_echo else []
        pods = probe_pods_from(nodes, clients, echoes)
        complete = len(pods.clients) == len(nodes) and (not need_echo or len(pods.echo_ips) == len(nodes))
        if complete or ctx.clock() + 2 > wait_until:
            if complete:
                ctx.discovered["pods"] = pods
            return pods
        with ctx.progress.step("wait for probe pods to become Ready"):
            ctx.sleep(2)


# ---------------------------------------------------------------------------------------------
# The checks


def check_calico(ctx: Context) -> Verdict:
    """calico-node Ready, the pool, node addresses and BGP sessions, from the API alone."""
    a, nodes = ctx.access, ctx.inputs.judged_nodes
    with ctx.progress.step("list nodes"):
        api_nodes = a.list_nodes()
    calico_pods: list[dict[str, Any]] = []
    for ns in CALICO_NAMESPACES:
        with ctx.progress.step(f"list calico-node pods in {ns}"):
            calico_pods += a.list_pods(ns, CALICO_NODE_SELECTOR)
    with ctx.progress.step(f"get IPPool {IPPOOL_NAME}"):
        pool = a.get_custom_object(CALICO_GROUP, CALICO_VERSION, "ippools", IPPOOL_NAME)
    statuses = {}
    for node in nodes:
        with ctx.progress.step(f"get CalicoNodeStatus {fixture.node_status_name(node)}"):
            statuses[node] = a.get_custom_object(CALICO_GROUP, CALICO_VERSION, "caliconodestatuses",
                                                 fixture.node_status_name(node))
    return judge.judge_calico(nodes, api_nodes, calico_pods, pool, statuses,
                              ctx.inputs.pod_cidr, ctx.inputs.subnet_cidr)


def check_dns(ctx: Context) -> Verdict:
    with ctx.progress.step("get service default/kubernetes"):
        svc = ctx.access.get_service("default", "kubernetes")
    expected = ((svc or {}).get("spec") or {}).get("clusterIP", "")
    pods = discover(ctx, need_echo=False)
    focus = ctx.inputs.focus
    outputs, errors = run_plans(ctx, plan.plan_dns(ctx.inputs.node_names, pods, timeouts=ctx.inputs.timeouts,
                                                   focus=focus))
    verdict = judge.judge_dns(ctx.inputs.judged_nodes, outputs, expected, pods.clients, errors,
                              ctx.inputs.probe_namespace, focused=bool(focus))
    if not expected:
        verdict.failures.insert(0, Failure("Service default/kubernetes", "has no ClusterIP",
                                           "the API server's Service is missing: K3s server not healthy"))
    return verdict


def check_clusterip(ctx: Context) -> Verdict:
    ns = ctx.inputs.probe_namespace
    with ctx.progress.step(f"get service {ns}/{fixture.ECHO_NAME}"):
        svc = ctx.access.get_service(ns, fixture.ECHO_NAME)
    ip = ((svc or {}).get("spec") or {}).get("clusterIP", "")
    pods = discover(ctx)
    if not ip or ip == "None":
        return Verdict(check="ClusterIP", tested=f"Service {ns}/{fixture.ECHO_NAME}", total=1, unit="services",
                       failures=[Failure(f"Service {ns}/{fixture.ECHO_NAME}", "missing or has no ClusterIP",
                                         "the probe fixture is not deployed (see the verification component)")])
    nodes, judged, focus = ctx.inputs.node_names, ctx.inputs.judged_nodes, ctx.inputs.focus
    calls = ctx.inputs.clusterip_calls or plan.clusterip_calls(len(nodes), len(judged))
    outputs, errors = run_plans(ctx, plan.plan_clusterip(nodes, pods, ip, calls, ctx.inputs.timeouts, focus))
    return judge.judge_clusterip(judged, outputs, ip, pods.clients, sorted(pods.echo_ips), errors, ns,
                                 focused=bool(focus))


def check_mesh(ctx: Context) -> Verdict:
    pods = discover(ctx)
    nodes = ctx.inputs.node_names
    focus = ctx.inputs.focus
    outputs, errors = run_plans(ctx, plan.plan_mesh(nodes, pods, ctx.inputs.timeouts, focus))
    return judge.judge_mesh(nodes, outputs, pods.clients, pods.echo_ips, errors, ctx.inputs.probe_namespace,
                            ctx.inputs.timeouts, focus)


def check_mtu(ctx: Context) -> Verdict:
    pods = discover(ctx, reserve=ctx.inputs.timeouts.bulk_s + 5)
    nodes, mtu = ctx.inputs.node_names, ctx.inputs.pool_mtu
    focus = ctx.inputs.focus
    outputs, errors = run_plans(ctx, plan.plan_mtu(nodes, pods, mtu, ctx.inputs.timeouts, focus))
    return judge.judge_mtu(nodes, outputs, pods.clients, pods.echo_ips, mtu, errors, ctx.inputs.probe_namespace,
                           ctx.inputs.timeouts, focus)


def check_ingress(ctx: Context) -> Verdict:
    pods = discover(ctx)
    nodes, host = ctx.inputs.node_names, ctx.inputs.ingress_host
    port, controller, focus = ctx.inputs.ingress_port, ctx.inputs.ingress_controller, ctx.inputs.focus
    outputs, errors = run_plans(ctx, plan.plan_ingress(nodes, pods, ctx.inputs.nodes, host, ctx.inputs.timeouts, port,
                                                       focus))
    return judge.judge_ingress(nodes, outputs, plan.ingress_prober(nodes, pods, focus), ctx.inputs.nodes, host, errors,
                               ctx.inputs.probe_namespace, controller, port=port, focus=focus)


def check_external(ctx: Context) -> Verdict:
    nodes, urls = ctx.inputs.node_names, ctx.inputs.external_urls
    if not urls:
        # Nothing to fetch, but still prove the API answers: a skipped check must not mask an
        # unreachable cluster.
        with ctx.progress.step("list nodes"):
            ctx.access.list_nodes()
        return judge.judge_external(nodes, {}, {}, urls)
    pods = discover(ctx, need_echo=False)
    resolve = ctx.inputs.external_resolve
    outputs, errors = run_plans(ctx, plan.plan_external(nodes, pods, urls, ctx.inputs.timeouts, ctx.inputs.focus,
                                                        resolve))
    return judge.judge_external(ctx.inputs.judged_nodes, outputs, pods.clients, urls, errors,
                                ctx.inputs.probe_namespace, resolve, resolve_order=nodes)


CHECKS: dict[str, Callable[[Context], Verdict]] = {
    "calico": check_calico,
    "dns": check_dns,
    "clusterip": check_clusterip,
    "mesh": check_mesh,
    "mtu": check_mtu,
    "ingress": check_ingress,
    "external": check_external,
}
