"""Overlay verification: the probe fixture and one check resource per path class; a failure fails `pulumi up`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from keybuzz.config import ClusterConfig
from keybuzz.verify import fixture, providers

# Fixture kinds and the typed resources that declare them (typed, so policies and tests see pod specs).
_TYPED: dict[str, Any] = {
    "Namespace": k8s.core.v1.Namespace,
    "ConfigMap": k8s.core.v1.ConfigMap,
    "DaemonSet": k8s.apps.v1.DaemonSet,
    "Service": k8s.core.v1.Service,
    "Ingress": k8s.networking.v1.Ingress,
}


SUMMARY_FIELDS = ("tested", "total", "failed", "skipped", "latencyMs")


def _summary(names: Sequence[str], values: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """The checks' outputs, flat in SUMMARY_FIELDS order per check, as {check: {field: value}}."""
    width = len(SUMMARY_FIELDS)
    return {n: dict(zip(SUMMARY_FIELDS, values[i * width : (i + 1) * width], strict=True)) for i, n in enumerate(names)}


class OverlayVerification(pulumi.ComponentResource):
    """Declares the probe fixture after Calico and the ingress controller, then the seven checks after the fixture.

    ``all_passed`` is True once every check passed in this run (a failing check fails the update).
    """

    checks: dict[str, providers.OverlayCheck]
    all_passed: pulumi.Output[bool]
    summary: pulumi.Output[dict]  # the stack's `checks` export: {check: {tested, total, failed, skipped, latencyMs}}

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        provider: k8s.Provider,
        kubeconfig: pulumi.Input[str],
        pool_mtu: int,
        run_id: str,
        after: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
        ingress_controller: str = "ingress-nginx",
        ingress_port: int = 80,
    ) -> None:
        super().__init__("keybuzz:verify:OverlayVerification", name, None, opts)
        manifests = fixture.render_fixture(
            namespace=fixture.NAMESPACE,
            nodes=[n.name for n in cfg.nodes],
            client_image=cfg.verify.client_image,
            echo_image=cfg.verify.echo_image,
            ingress_host=cfg.verify.ingress_host,
        )
        namespace, rest = manifests[0], manifests[1:]
        ns = self._declare(name, namespace, provider, list(after))
        declared = [ns] + [self._declare(name, m, provider, [ns, *after]) for m in rest]

        args = providers.OverlayCheckArgs(
            kubeconfig=kubeconfig,
            nodes=providers.nodes_input((n.name, n.private_ip) for n in cfg.nodes),
            pod_cidr=cfg.pod_cidr,
            subnet_cidr=cfg.subnet_cidr,
            pool_mtu=pool_mtu,
            timeout_seconds=cfg.verify.timeout_seconds,
            external_urls=cfg.verify.external_urls,
            probe_namespace=fixture.NAMESPACE,
            ingress_host=cfg.verify.ingress_host,
            ingress_controller=ingress_controller,
            ingress_port=ingress_port,
            run_id=run_id,
        )
        self.checks = providers.create_checks(
            f"{name}-check", args, pulumi.ResourceOptions(parent=self, depends_on=[*declared, *after])
        )
        self.all_passed = pulumi.Output.all(*[c.passed for c in self.checks.values()]).apply(
            lambda passed: bool(passed) and all(p is True for p in passed)
        )
        # One Output for the whole summary: at preview every check's outputs are unknown, and one unknown
        # object is one `[unknown]` line in the preview, where a field per check printed 35 of them.
        names = sorted(self.checks)
        self.summary = pulumi.Output.all(
            *[getattr(self.checks[n], f) for n in names for f in SUMMARY_FIELDS]
        ).apply(lambda values: _summary(names, values))
        self.register_outputs({"all_passed": self.all_passed, "summary": self.summary})

    def _declare(
        self, name: str, manifest: dict[str, Any], provider: k8s.Provider, after: list[pulumi.Resource]
    ) -> pulumi.Resource:
        kind, meta = manifest["kind"], manifest["metadata"]
        opts = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=after)
        resource_name = f"{name}-{kind.lower()}-{meta['name']}"
        body = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
        if kind in _TYPED:
            return _TYPED[kind](resource_name, opts=opts, **body)
        return k8s.apiextensions.CustomResource(
            resource_name, api_version=manifest["apiVersion"], kind=kind, opts=opts, **body
        )
