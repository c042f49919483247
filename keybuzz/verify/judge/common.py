"""What every judge shares: the probe-fixture causes and the walk over cross-node paths."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keybuzz.verify.judge.verdict import Failure, path
from keybuzz.verify.plan import RawOutput, cross_node_pairs

CAUSE_PROBE_POD = (
    "probe pod missing or not Ready: the overlay-probe DaemonSet is not scheduled there (taints, "
    "image pull, node NotReady); see `kubectl -n {ns} get pods -o wide`"
)
CAUSE_EXEC = (
    "could not exec into the probe pod (API server, kubelet on that node, or the pod itself); "
    "see `kubectl -n {ns} describe pod`"
)
CAUSE_UNFINISHED = (
    "the probe was still running when the check's deadline came (the other probes of the same pod "
    "finished): verify.timeoutSeconds is too short for the probes' own timeouts, or that pod is starved "
    "of CPU"
)
CAUSE_PING_TOOL = (
    "the probe pod's ping cannot run as the check needs it (an iputils ping with -M, and NET_RAW): "
    "not a network fault; use the fixture's client image (netshoot, iputils) or grant NET_RAW"
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


def unfinished_failure(where: str, keys: Sequence[str]) -> Failure:
    return Failure(where, f"probe {', '.join(keys)} did not finish before the deadline", CAUSE_UNFINISHED)


@dataclass(frozen=True)
class PathProbes:
    """One cross-node path's probe outputs (``got[kind]``), all present and finished."""

    src: str
    dst: str
    where: str
    got: Mapping[str, RawOutput]
    unfinished: tuple[str, ...] = ()


def walk_paths(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    clients: Mapping[str, Any],
    echo_ips: Mapping[str, Any],
    kinds: Sequence[str],
    failures: list[Failure],
    exec_errors: Mapping[str, str] | None,
    namespace: str,
    report_missing_pods: bool = True,
    optional: Sequence[str] = (),
    partial: Sequence[str] = (),
    focus: Sequence[str] | None = None,
) -> Iterator[PathProbes]:
    """Yield every judgeable cross-node path; append the failures of the others to ``failures``.

    A path is not judgeable when its client or echo pod is missing, the exec failed, or a probe
    has no result; each is reported with its own cause (the probe fixture, the exec, the deadline),
    never as a network fault. ``optional`` kinds may be absent (older fixtures). A path whose
    unfinished probes are all in ``partial`` is still yielded (``unfinished`` names them), so the
    judge can use what finished: the probes of an exec cut by its deadline are not all lost.
    ``focus``: only the paths to or from those nodes were probed (plan.cross_node_pairs).
    """
    for src, dst in cross_node_pairs(nodes, focus):
        where = path(src, dst)
        if src not in clients:
            if report_missing_pods:
                failures.append(Failure(where, f"no ready client pod on {src}", CAUSE_PROBE_POD.format(ns=namespace)))
            continue
        if dst not in echo_ips:
            if report_missing_pods:
                failures.append(Failure(where, f"no ready echo pod on {dst}", CAUSE_PROBE_POD.format(ns=namespace)))
            continue
        if exec_errors and src in exec_errors:
            if report_missing_pods:
                failures.append(Failure(where, f"exec failed: {exec_errors[src]}", CAUSE_EXEC.format(ns=namespace)))
            continue
        got_node = outputs.get(src, {})
        got: dict[str, RawOutput] = {}
        missing: list[str] = []
        unfinished: list[str] = []
        for kind in (*kinds, *optional):
            raw = got_node.get(f"{kind}:{dst}")
            if raw is None:
                if kind not in optional:
                    missing.append(kind)
            elif not raw.finished:
                unfinished.append(kind)
            else:
                got[kind] = raw
        if missing:
            failures.append(Failure(where, f"no result for {', '.join(missing)}", CAUSE_EXEC.format(ns=namespace)))
            continue
        if unfinished and not set(unfinished) <= set(partial):
            failures.append(unfinished_failure(where, unfinished))
            continue
        yield PathProbes(src, dst, where, got, tuple(unfinished))
