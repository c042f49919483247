"""Guardrail checks for keybuzz-k3s, as pure functions over planned resources.

Why pure: the same decisions run inside the Pulumi policy pack (``pack.py`` wraps them in
``ResourceValidationPolicy`` objects) and in-process, e.g. from tests, ``bin/plan`` or
``bin/check-app``, without a Pulumi engine.

Entry point for other code::

    import guardrails  # put the policies/ folder on sys.path first
    violations = guardrails.evaluate(
        [("kubernetes:apps/v1:Deployment", "web", {"metadata": {...}, "spec": {...}})],
        config=None,  # or the dict of a --policy-pack-config JSON file
    )
    blocking = [v for v in violations if v.blocking]

``evaluate(resources, config) -> list[Violation]`` takes ``(type token, resource name, props)``
tuples, where props are the resource inputs as plain data in the camelCase the Kubernetes API and
the Pulumi engine use (``hostNetwork``, ``sourceIps``). ``config`` has the format of the CLI's
``--policy-pack-config`` file: ``{"all": "advisory", "<policy>": "disabled" | {"enforcementLevel":
..., "<property>": ...}}``; unknown policy names, levels or property types raise ``ConfigError``
(the CLI silently ignores unknown keys, this does not).

Unknown values (preview placeholders, the ``UNKNOWN_*`` sentinels of ``pulumi_policy.proxy``) never
raise: a check that depends on one returns a finding with ``unknown=True``; ``evaluate`` reports it
as advisory, like pulumi-policy does for its own ``UnknownValueError``. The resource is checked
again with known values during ``pulumi up``.

Missing fields, ``None`` and wrong types are treated as absent: the API server rejects malformed
objects itself; these checks only look for what they forbid.

Layout: ``props`` (safe access, paths, identity), ``pods`` (the one pod-spec walker), ``helm``
(Release values), one module per family of policies (``workloads``, ``services``, ``network``),
and ``registry`` (the policy table, config, ``evaluate``).
"""

from .helm import RELEASE_TYPE
from .pods import WORKLOAD_KINDS
from .props import MISSING, UNKNOWN, Finding, K8sKind, dig, fmt_path, is_unknown, k8s_kind, namespace_of
from .registry import (
    DEFAULT_EXEMPT_NAMESPACES,
    ENFORCEMENT_LEVELS,
    PACK_NAME,
    POLICIES,
    POLICY_NAMES,
    Check,
    ConfigError,
    PolicySettings,
    PolicySpec,
    Violation,
    evaluate,
    policy_properties,
    resolve_config,
)
from .workloads import find_ipv4_literals

__all__ = [
    "DEFAULT_EXEMPT_NAMESPACES",
    "ENFORCEMENT_LEVELS",
    "MISSING",
    "PACK_NAME",
    "POLICIES",
    "POLICY_NAMES",
    "RELEASE_TYPE",
    "UNKNOWN",
    "WORKLOAD_KINDS",
    "Check",
    "ConfigError",
    "Finding",
    "K8sKind",
    "PolicySettings",
    "PolicySpec",
    "Violation",
    "dig",
    "evaluate",
    "find_ipv4_literals",
    "fmt_path",
    "is_unknown",
    "k8s_kind",
    "namespace_of",
    "policy_properties",
    "resolve_config",
]
