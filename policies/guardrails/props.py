"""Safe reading of untrusted props: unknowns, secrets, missing fields, paths, resource identity.

Every check reads props through ``dig``: it never raises on malformed input and turns Pulumi's
preview placeholders into ``UNKNOWN`` so that a check can decide per field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
)

_UNKNOWN_SENTINELS = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)
# How Pulumi serializes secrets when a caller hands us wire-format props (e.g. from mocks).
_SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_GENERIC_CUSTOM_RESOURCES = ("CustomResource", "CustomResourcePatch")


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


MISSING: Any = _Marker("MISSING")
UNKNOWN: Any = _Marker("UNKNOWN")

PathKey = str | int
Path = tuple[PathKey, ...]


@dataclass(frozen=True)
class Finding:
    """One thing a check objects to: the field path and what to do about it."""

    path: str
    message: str
    unknown: bool = False  # the decision depends on a value not known yet (preview)


def is_unknown(value: Any) -> bool:
    """True for Pulumi's preview placeholders (any of the pulumi-policy sentinels)."""
    return value is UNKNOWN or (isinstance(value, str) and value in _UNKNOWN_SENTINELS)


def unwrap(value: Any) -> Any:
    """A secret's plain value; ``UNKNOWN`` for a preview placeholder; anything else as is."""
    if isinstance(value, Mapping) and value.get(_SECRET_SIG_KEY) == _SECRET_SIG:
        value = value.get("value")
    return UNKNOWN if is_unknown(value) else value


def is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def dig(root: Any, path: Iterable[PathKey]) -> Any:
    """The value at ``path``, or ``MISSING`` (absent, null, wrong type) or ``UNKNOWN``."""
    value = unwrap(root)
    for key in path:
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(key, int):
            if not is_list(value) or not 0 <= key < len(value):
                return MISSING
            value = value[key]
        else:
            if not isinstance(value, Mapping) or key not in value:
                return MISSING
            value = value[key]
        value = unwrap(value)
        if value is None:
            return MISSING
    return value


def items(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if is_list(value) else []


def fmt_path(path: Iterable[PathKey]) -> str:
    """``("spec", "containers", 0, "ports")`` -> ``spec.containers[0].ports``."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def show_number(value: Any) -> Any:
    """A whole float as the int the user wrote: the engine's protobuf Struct turns every number into a float."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def show(value: Any) -> str:
    """A value for a message: numbers as written (``8080``, not ``8080.0``), strings quoted."""
    value = show_number(value)
    return repr(value) if isinstance(value, str) else str(value)


def show_all(values: Iterable[Any]) -> str:
    return ", ".join(str(show_number(v)) for v in values)


def unknown_finding(path: Iterable[PathKey], what: str) -> Finding:
    return Finding(fmt_path(path), f"{what} is not known yet (preview); it is checked again on update", unknown=True)


@dataclass(frozen=True)
class K8sKind:
    """What a Kubernetes resource is, independent of API version and of typed vs generic form."""

    group: str  # "core" for the legacy group
    kind: str  # without the Patch suffix
    patch: bool


def k8s_kind(resource_type: str, props: Any) -> K8sKind | None:
    """Identify a Kubernetes resource from its type token, or its apiVersion/kind for generic CRs."""
    if not isinstance(resource_type, str):
        return None
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes":
        return None
    module, type_name = parts[1], parts[2]
    if type_name in _GENERIC_CUSTOM_RESOURCES:
        api_version, kind = dig(props, ("apiVersion",)), dig(props, ("kind",))
        if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
            return None
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else "core"
        return K8sKind(group, kind.removesuffix("Patch"), type_name.endswith("Patch"))
    group = module.rsplit("/", 1)[0] if "/" in module else module
    patch = type_name.endswith("Patch")
    return K8sKind(group, type_name.removesuffix("Patch") if patch else type_name, patch)


def namespace_at(props: Any, path: Path) -> Any:
    """The namespace at ``path``; ``default`` when absent or empty; ``UNKNOWN`` when not known yet."""
    ns = dig(props, path)
    if ns is UNKNOWN:
        return UNKNOWN
    return ns if isinstance(ns, str) and ns else "default"


def namespace_of(props: Any) -> Any:
    """``metadata.namespace`` of a Kubernetes object (``default`` when absent)."""
    return namespace_at(props, ("metadata", "namespace"))


def exempt_scope(
    namespace: Any, settings: Mapping[str, Any], findings: list[Finding], where: str = "metadata.namespace"
) -> list[Finding]:
    """Drop findings in exempt namespaces (exact, case-sensitive match); undecidable when it is unknown."""
    if not findings:
        return findings
    if namespace is UNKNOWN:
        return [
            Finding(f.path, f"{where} is not known yet, so exemption cannot be decided: {f.message}", True)
            for f in findings
        ]
    return [] if namespace in settings.get("exemptNamespaces", ()) else findings
