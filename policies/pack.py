"""Thin pulumi-policy wrappers around the pure checks in ``guardrails``.

Why a separate module: ``guardrails`` decides and is tested as data; this module only adapts
pulumi-policy's calling convention (proxied props, per-policy config, report callback).
"""

from __future__ import annotations

from typing import Any

import guardrails
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.deserialize import serialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError


def plain_props(props: Any) -> Any:
    """Unwrap pulumi-policy's unknown-checking proxies into plain dicts/lists, sentinels kept.

    The proxies raise ``UnknownValueError`` on first touch of an unknown, which would abort the
    whole policy for the resource; the pure checks prefer to see the sentinel and decide per field.
    """
    return serialize_properties(props)


def _validator(spec: guardrails.PolicySpec) -> Any:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        try:
            settings = guardrails.policy_properties(spec, args.get_config())
            findings = spec.check(args.resource_type, plain_props(args.props), settings)
        except Exception as exc:  # noqa: BLE001 - fail closed: a guardrail that cannot decide reports it
            report_violation(f"{args.name}: {spec.name} could not evaluate this resource: {exc!r}", None)
            return
        unknown = []
        for finding in findings:
            if finding.unknown:
                unknown.append(finding)
            else:
                report_violation(f"{args.name}: {finding.path}: {finding.message}", None)
        if unknown:
            # pulumi-policy turns this into its standard advisory "can't run policy during preview"
            # diagnostic, after the violations already reported above.
            raise UnknownValueError(UNKNOWN_STRING_VALUE, [args.name, *unknown[0].path.split(".")])

    return validate


def build_policies() -> list[ResourceValidationPolicy]:
    """One ResourceValidationPolicy per guardrail, with its default level and config schema."""
    return [
        ResourceValidationPolicy(
            name=spec.name,
            description=spec.description,
            enforcement_level=EnforcementLevel(spec.default_level),
            config_schema=PolicyConfigSchema(properties={k: dict(v) for k, v in spec.config_properties.items()})
            if spec.config_properties
            else None,
            validate=_validator(spec),
        )
        for spec in guardrails.POLICIES
    ]
