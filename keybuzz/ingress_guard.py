"""A preview-time guard on the order of an ingress-nginx -> Traefik switch (see keybuzz.ingress.refuse_move).

Like keybuzz/guards.py: a dynamic resource that holds the deployed edge state; its ``check`` compares
it with the new one, and the engine runs ``check`` during `pulumi preview`, so a jump that would leave
nodes without a listener on :80 is refused before anything in the cluster changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from keybuzz.ingress import refuse_move

GUARD_ID = "ingress-edge"


class EdgeGuardProvider(ResourceProvider):
    """Holds ``{"edge": <state>}``; fails ``check`` for a move keybuzz.ingress does not allow."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        old = (_olds or {}).get("edge")
        reason = refuse_move(old, news.get("edge", ""))
        return CheckResult(news, [CheckFailure("edge", reason)] if reason else [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(GUARD_ID, props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=olds.get("edge") != news.get("edge"), replaces=[], stables=[],
                          delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(news)


class EdgeGuard(pulumi.dynamic.Resource):
    """Declare once per cluster; every ingress resource depends on it."""

    def __init__(self, name: str, edge: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(EdgeGuardProvider(), name, {"edge": edge}, opts)


# --- swap step: Traefik takes 80/443 only once ingress-nginx's pods have left them ------------------

# The controller pods of the ingress-nginx chart (its standard labels).
INGRESS_NGINX_CONTROLLER_PODS = "app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/component=controller"
DRAIN_TIMEOUT_S = 150.0  # under the ~180 s at which Python dynamic providers stall (pulumi/pulumi#13841)


def wait_until_drained(
    list_pods: Callable[[], list[dict[str, Any]]],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = DRAIN_TIMEOUT_S,
    interval: float = 1.0,
) -> list[str]:
    """Poll until no ingress-nginx controller pod is left; return the names still there at the deadline.

    Helm reports the retired DaemonSet ready as soon as it wants no pod, while the old pods may still be
    terminating and holding :80; Traefik would crash on a taken port and back off for tens of seconds.
    """
    deadline = clock() + timeout
    while True:
        left = sorted(p.get("metadata", {}).get("name", "?") for p in list_pods())
        if not left or clock() >= deadline:
            return left
        sleep(min(interval, max(0.0, deadline - clock())))


class DrainedProvider(ResourceProvider):
    """Waits on create and on every update (``diff`` always changes) for ingress-nginx's pods to be gone."""

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=True, replaces=[], stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("ingress-nginx-drained", self._wait(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._wait(news))

    def _wait(self, props: dict[str, Any]) -> dict[str, Any]:
        from keybuzz.verify.cluster import KubernetesClusterAccess
        from keybuzz.verify.providers import redact

        kubeconfig = str(props.get("kubeconfig") or "")
        access = KubernetesClusterAccess(kubeconfig)
        namespace = str(props["namespace"])
        left = wait_until_drained(lambda: access.list_pods(namespace, INGRESS_NGINX_CONTROLLER_PODS))
        if left:
            raise RuntimeError(redact(
                f"ingress-nginx controller pods still running after {DRAIN_TIMEOUT_S:.0f} s: {', '.join(left)}; "
                "Traefik was not moved to 80/443. Check why they do not terminate "
                f"(kubectl -n {namespace} get pods), then run `up` again.", kubeconfig))
        # Never the kubeconfig: outputs are stored as given (it stays a secret input only).
        return {"namespace": namespace, "runId": props.get("runId")}


class IngressNginxDrained(pulumi.dynamic.Resource):
    """Done once no ingress-nginx controller pod is left (the swap step); Traefik depends on it."""

    def __init__(self, name: str, kubeconfig: pulumi.Input[str], namespace: str, run_id: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"kubeconfig": pulumi.Output.secret(kubeconfig), "namespace": namespace, "runId": run_id}
        super().__init__(DrainedProvider(), name, props, opts)
