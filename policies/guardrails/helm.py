"""Helm releases judged on what they declare: the ``values`` of a ``kubernetes:helm.sh/v3:Release``.

A v3 Release reaches the pack as one object: the chart is rendered and installed by Helm inside the
provider, so the Deployments and DaemonSets it creates are never seen. What the pack can see is the
values the program gives the chart, and charts spell host networking and host ports the same few
ways at any depth: ``hostNetwork``/``hostPID``/``hostIPC: true``, a ``hostPort`` number,
``hostPort.enabled: true`` (ingress-nginx), a ``ports`` entry with ``hostPort`` (Traefik, most
charts). Those are refused by the matching pod-spec policy, with the values path.

The release namespace is the Release's ``namespace`` input; absent or empty means ``default``
(the namespace a provider without its own default installs into). Values from ``valueYamlFiles``
are files the pack cannot read; only the opaque-release note mentions them.

Unknowns: ``values`` unknown as a whole, or an unknown value under one of the keys above, make the
finding advisory (checked again on update). Other unknown leaves (an image tag computed from another
resource) are not reported: they cannot turn into a host flag.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .props import UNKNOWN, Finding, Path, dig, exempt_scope, fmt_path, items, namespace_at, show, unknown_finding

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
HOST_NAMESPACE_FLAGS = ("hostNetwork", "hostPID", "hostIPC")
CHECKABLE_ALTERNATIVE = "kubernetes.helm.v4.Chart"


def is_release(resource_type: str) -> bool:
    return resource_type == RELEASE_TYPE


def release_namespace(props: Any) -> Any:
    """The release's ``namespace`` input; ``default`` when absent or empty; ``UNKNOWN`` at preview."""
    return namespace_at(props, ("namespace",))


def walk_values(value: Any, path: Path = ("values",)) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) under ``values``, depth first; an unknown node is yielded and not entered."""
    value = dig(value, ())
    yield path, value
    if isinstance(value, Mapping):
        for key in value:
            if isinstance(key, str):
                yield from walk_values(value[key], (*path, key))
    else:
        for i, element in items(value):
            yield from walk_values(element, (*path, i))


def _is_true(value: Any) -> bool:
    # Go templates test truthiness; "true" written as a string in YAML values is still on.
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _is_set_port(value: Any) -> bool:
    # 0 and "" mean "not set"; True is how a few charts switch a host port on.
    if value is True:
        return True
    return isinstance(value, int | float | str) and not isinstance(value, bool) and value not in (0, "0", "")


def _scoped(props: Any, settings: Mapping[str, Any], findings: list[Finding]) -> list[Finding]:
    return exempt_scope(release_namespace(props), settings, findings, where="the release namespace")


def _values_unknown(props: Any) -> list[Finding] | None:
    values = dig(props, ("values",))
    if values is UNKNOWN:
        return [unknown_finding(("values",), "the release values")]
    return None


def host_namespace_findings(props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """``hostNetwork``/``hostPID``/``hostIPC: true`` anywhere in the release values."""
    findings = _values_unknown(props)
    if findings is None:
        findings = []
        for path, value in walk_values(dig(props, ("values",))):
            flag = path[-1] if len(path) > 1 else None
            if flag not in HOST_NAMESPACE_FLAGS:
                continue
            if value is UNKNOWN:
                findings.append(unknown_finding(path, f"the release value {fmt_path(path)}"))
            elif _is_true(value):
                findings.append(
                    Finding(
                        fmt_path(path),
                        f"the chart is asked for {flag}: true; remove it from the values and expose the app "
                        "through a ClusterIP Service + Ingress",
                    )
                )
    return _scoped(props, settings, findings)


def host_port_findings(props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """A ``hostPort`` anywhere in the release values: a number, ``true``, or a map with ``enabled: true``."""
    findings = _values_unknown(props)
    if findings is None:
        findings = []
        for path, value in walk_values(dig(props, ("values",))):
            if len(path) < 2 or path[-1] != "hostPort":
                continue
            if isinstance(value, Mapping):
                path, value = (*path, "enabled"), dig(value, ("enabled",))
                if value is UNKNOWN:
                    findings.append(unknown_finding(path, f"the release value {fmt_path(path)}"))
                elif _is_true(value):
                    findings.append(Finding(fmt_path(path), _host_port_message("hostPort.enabled: true")))
            elif value is UNKNOWN:
                findings.append(unknown_finding(path, f"the release value {fmt_path(path)}"))
            elif _is_set_port(value):
                findings.append(Finding(fmt_path(path), _host_port_message(f"hostPort {show(value)}")))
    return _scoped(props, settings, findings)


def _host_port_message(what: str) -> str:
    return f"the chart is asked for {what}; remove it from the values and expose the app through a ClusterIP " + (
        "Service + Ingress"
    )


def opaque_release_findings(props: Any, settings: Mapping[str, Any]) -> list[Finding]:
    """The note every (non-exempt) Release gets: its rendered objects are not checked, and how to make them so."""
    files = dig(props, ("valueYamlFiles",))
    extra = " Values from valueYamlFiles are not read either." if files is UNKNOWN or items(files) else ""
    finding = Finding(
        "chart",
        "a helm.sh/v3 Release is one opaque object: only its values are checked, not the Deployments, "
        f"DaemonSets and Services its chart renders.{extra} Declare the chart with {CHECKABLE_ALTERNATIVE}, "
        "which registers each rendered object, so the pack checks them like any other resource",
    )
    return _scoped(props, settings, [finding])
