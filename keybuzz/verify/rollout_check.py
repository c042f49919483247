"""The overlay checks between rollout batches: a rollout stops at the first batch that broke a path.

After each batch of a day-2 rollout is back (servers: each server; agents: each batch), one
dynamic resource runs the same checks as the full verification (keybuzz/verify/checks.py, the
same probe scripts and judges), **focused** on the batch's nodes: their pods to and from pods on
every other node (HTTP, ping, DF-MTU, bulk), DNS, ClusterIP and external URLs from them, the
ingress controller on them, Calico on them. The next batch's drain depends on it, so a failure
fails ``pulumi up`` before any other node is touched; the message is each failing check's verdict
plus one line naming the nodes already changed and those left untouched.

When it runs (Pulumi semantics, which make a stopped rollout resume where it stopped):

- ``create`` (the check is new in state: a first deploy, a batch of new nodes, or
  ``verify.betweenBatches`` just turned on) skips without touching the cluster: the nodes were
  just created, there is no CNI yet and nothing rolled to compare. The full checks cover them.
- ``diff`` reports a change only when the batch's rollout fingerprints (or its nodes) differ from
  the ones recorded at its last successful run: a batch that did not change costs nothing.
- ``update`` runs the checks (skipped when the probe fixture is not in the cluster). A failing
  update raises, so the engine keeps the old state (the old fingerprints; pulumi/pulumi#2011: no
  new inputs or outputs are saved for a failed update without partial state, and a Python dynamic
  provider that raises returns none): the next ``pulumi up``
  diffs it again and re-runs it first, before the next batch's drain, while the nodes already
  rolled have nothing to do (their drain and ready steps are unchanged, and the fingerprint
  annotation makes a re-run drain a no-op).

Bounded: the checks run concurrently, each under ``timeoutSeconds`` (checks.run_check), so a
batch adds at most ``timeoutSeconds`` plus a few seconds (``BATCH_OVERHEAD_S``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic as dynamic

from keybuzz.verify import fixture
from keybuzz.verify.checks import CHECK_NAMES, CheckInputs, run_check
from keybuzz.verify.cluster import ClusterAccess, ClusterAccessError
from keybuzz.verify.judge import Failure, Verdict
from keybuzz.verify.redact import redact

# Beyond the checks' own deadline (they run at once): the probe for the fixture (at most
# FIXTURE_PROBE_S) and thread start-up.
BATCH_OVERHEAD_S = 10
FIXTURE_PROBE_S = 8.0
OUTPUT_KEYS = ("batch", "focus", "fingerprints", "changed", "untouched", "passed", "skipped", "reason", "verdicts")
SKIP_CREATE = (
    "first deploy of these nodes (the check is new in state): no CNI yet and nothing rolled to compare; "
    "the full checks after Calico and the ingress controller cover them"
)
SKIP_NO_FIXTURE = (
    "no probe fixture in the cluster (namespace {ns}): the full checks deploy it after the rollout "
    "(verify.enabled was off until this run?); nothing to probe with between batches"
)


class RolloutStopped(Exception):
    """Raised by update: the batch broke a path; the message is the verdicts and the rollout line."""


@dataclass(frozen=True)
class BatchPosition:
    """Where a batch sits in the rollout: its label, its nodes, those done before it, those after it."""

    label: str
    focus: tuple[str, ...]
    changed: tuple[str, ...]  # this batch and every earlier one: at this run's target
    untouched: tuple[str, ...]  # every later batch

    def rollout_line(self) -> str:
        """The line that tells the operator what to roll back or fix."""
        untouched = ", ".join(self.untouched) if self.untouched else "none (this was the last batch)"
        return (f"Rollout stopped after {self.label}: already changed (at this run's config): "
                f"{', '.join(self.changed)}; left untouched: {untouched}. Fix the cause or roll the change "
                "back, then `pulumi up` again: nodes already changed are not rolled again and this batch "
                "is checked again first (verify.betweenBatches: false skips these checks).")


def batch_positions(plan: Sequence[Any]) -> dict[int, BatchPosition]:
    """Each batch of a rollout plan (keybuzz.rollout.plan_rollout entries: ``node.name``, ``wave``,
    ``batch``), with its label, its nodes in plan order, those done by then and those after it."""
    order: list[int] = []
    nodes: dict[int, list[str]] = {}
    waves: dict[int, str] = {}
    for entry in plan:
        if entry.batch not in nodes:
            order.append(entry.batch)
            nodes[entry.batch] = []
            waves[entry.batch] = entry.wave
        nodes[entry.batch].append(entry.node.name)
    servers = [b for b in order if waves[b] == "servers"]
    agents = [b for b in order if waves[b] != "servers"]
    positions: dict[int, BatchPosition] = {}
    done: list[str] = []
    for i, batch in enumerate(order):
        done += nodes[batch]
        later = [n for b in order[i + 1:] for n in nodes[b]]
        if batch in servers:
            label = f"server {nodes[batch][0]} ({servers.index(batch) + 1} of {len(servers)})"
        else:
            k = agents.index(batch)
            label = f"agent batch {k + 1} of {len(agents)}" + (" (canary)" if k == 0 else "")
        positions[batch] = BatchPosition(label, tuple(nodes[batch]), tuple(done), tuple(later))
    return positions


def run_focused(inputs: CheckInputs, make_access: Callable[[], ClusterAccess],
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep,
                checks: Sequence[str] = CHECK_NAMES) -> list[Verdict]:
    """Every check at once, focused on ``inputs.focus``; one verdict each, in ``checks`` order.

    Each check keeps its own deadline (run_check never hangs), so the whole lasts at most
    ``inputs.timeout_seconds`` plus thread start-up.
    """
    verdicts: dict[str, Verdict] = {}
    lock = threading.Lock()

    def one(name: str) -> None:
        verdict = run_check(name, inputs, make_access, clock=clock, sleep=sleep)
        with lock:
            verdicts[name] = verdict

    threads = [threading.Thread(target=one, args=(n,), daemon=True, name=f"batch-{n}") for n in checks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()  # bounded: run_check returns by its deadline
    return [verdicts[n] for n in checks]


def fixture_present(access: ClusterAccess, namespace: str, limit_s: float = FIXTURE_PROBE_S) -> bool:
    """The probe fixture is deployed (its echo Service exists); API errors, and no answer within
    ``limit_s``, raise ClusterAccessError: never a skip."""
    box: dict[str, Any] = {}

    def probe() -> None:
        try:
            box["found"] = access.get_service(namespace, fixture.ECHO_NAME) is not None
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=probe, name="batch-fixture", daemon=True)
    thread.start()
    thread.join(limit_s)
    if "error" in box:
        raise box["error"]
    if "found" not in box:
        raise ClusterAccessError(f"get service {namespace}/{fixture.ECHO_NAME}: no answer within {limit_s:g} s")
    return bool(box["found"])


def judge_batch(inputs: CheckInputs, position: BatchPosition, make_access: Callable[[], ClusterAccess],
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> tuple[list[Verdict], str]:
    """The verdicts of one batch's check and a skip reason ("" when it ran), never raising."""
    try:
        access = make_access()
        if not fixture_present(access, inputs.probe_namespace):
            return [], SKIP_NO_FIXTURE.format(ns=inputs.probe_namespace)
    except ClusterAccessError as exc:
        api = Verdict(check="rollout check", tested="Kubernetes API access", total=1, unit="API calls",
                      failures=[Failure("API server", str(exc), "the Kubernetes API is unreachable from where "
                                        "`pulumi up` runs, or the control plane is down after this batch")])
        return [api], ""
    # A client per check, as the full checks have (each runs in its own provider call there).
    return run_focused(inputs, make_access, clock, sleep), ""


def failure_message(verdicts: Sequence[Verdict], position: BatchPosition, nodes: Sequence[str]) -> str:
    """What a stopped rollout prints: each failing check's verdict (as the full checks word it), then
    the rollout line."""
    lines = [f"overlay check after {position.label} ({', '.join(position.focus)}) failed:"]
    lines += [v.message(nodes) for v in verdicts if not v.ok]
    lines.append(position.rollout_line())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The dynamic provider and its resource


def _position(props: Mapping[str, Any]) -> BatchPosition:
    return BatchPosition(
        label=str(props.get("batch") or "this batch"),
        focus=tuple(str(n) for n in props.get("focus") or ()),
        changed=tuple(str(n) for n in props.get("changed") or ()),
        untouched=tuple(str(n) for n in props.get("untouched") or ()),
    )


def _outputs(props: Mapping[str, Any], verdicts: Sequence[Verdict], reason: str) -> dict[str, Any]:
    return {
        "batch": props.get("batch"),
        "focus": list(props.get("focus") or []),
        "fingerprints": dict(props.get("fingerprints") or {}),
        "changed": list(props.get("changed") or []),
        "untouched": list(props.get("untouched") or []),
        "passed": all(v.ok for v in verdicts),
        "skipped": bool(reason),
        "reason": reason,
        "verdicts": [v.message() for v in verdicts],
    }


# (kubeconfig, connect timeout, read timeout) -> the cluster; the lab and the tests swap it.
AccessFactory = Callable[[str, float, float], ClusterAccess]


def kubernetes_access(kubeconfig: str, connect: float, read: float) -> ClusterAccess:
    from keybuzz.verify.cluster import KubernetesClusterAccess

    return KubernetesClusterAccess(kubeconfig, connect_timeout=connect, read_timeout=read)


class BatchCheckProvider(dynamic.ResourceProvider):
    """Skips on create, re-runs when the batch's fingerprints changed or its last run failed.

    Pickled by reference (a module-level class, as keybuzz.verify.providers explains); its one
    field is the access factory, None in the program (the real Kubernetes client).
    """

    def __init__(self, access_factory: AccessFactory | None = None) -> None:
        super().__init__()
        self.access_factory = access_factory

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        from keybuzz.verify.providers import validate_props

        failures = [dynamic.CheckFailure(k, r) for k, r in validate_props(news)]
        names = {n.get("name") for n in news.get("nodes") or [] if isinstance(n, Mapping)}
        focus = news.get("focus")
        if isinstance(focus, list) and names and not all(isinstance(f, str) and f in names for f in focus):
            failures.append(dynamic.CheckFailure("focus", "every focused node must be one of `nodes`"))
        return dynamic.CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        """A change only when the batch was rolled to something new since its last passing run."""
        changed = [k for k in ("fingerprints", "focus") if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(f"rollout-check-{props.get('batch', '')}", _outputs(props, [], SKIP_CREATE))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        """Run the focused checks; a failure raises RolloutStopped (the update fails, the old state stays)."""
        return dynamic.UpdateResult(self.run_batch(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: a check leaves no trace in the cluster."""

    def run_batch(self, props: Mapping[str, Any]) -> dict[str, Any]:
        """The outputs of a passing (or skipped) run; RolloutStopped with the verdicts otherwise."""
        kubeconfig = str(props.get("kubeconfig") or "")
        inputs = CheckInputs.from_props(props)
        connect = min(3.0, max(0.5, inputs.timeout_seconds / 3))
        read = min(10.0, max(1.0, inputs.timeout_seconds / 2))
        factory = self.access_factory or kubernetes_access
        position = _position(props)
        verdicts, reason = judge_batch(inputs, position, lambda: factory(kubeconfig, connect, read))
        if any(not v.ok for v in verdicts):
            raise RolloutStopped(redact(failure_message(verdicts, position, inputs.node_names), kubeconfig))
        return _outputs(props, verdicts, reason)


class BatchOverlayCheck(dynamic.Resource, module="rollout", name="BatchOverlayCheck"):
    """The overlay checks focused on one rollout batch; the next batch's drain waits for it."""

    batch: pulumi.Output[str]
    focus: pulumi.Output[list]
    fingerprints: pulumi.Output[dict]
    changed: pulumi.Output[list]
    untouched: pulumi.Output[list]
    passed: pulumi.Output[bool]
    skipped: pulumi.Output[bool]
    reason: pulumi.Output[str]
    verdicts: pulumi.Output[list]

    def __init__(self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        """``props``: the overlay checks' inputs (providers.OverlayCheckArgs.to_props) plus ``batch``,
        ``focus``, ``fingerprints`` ({node: rollout fingerprint}), ``changed`` and ``untouched``."""
        full: dict[str, Any] = {key: None for key in OUTPUT_KEYS}
        full.update(props)
        super().__init__(BatchCheckProvider(), name, full, opts)
