"""Malformed inputs and preview unknowns never crash a check; unknowns become advisory, not silence."""

from __future__ import annotations

import itertools

import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs
from pulumi_policy.proxy import (
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
    unknown_checking_proxy,
)

from .helpers import WORKLOAD_TYPES, firewall, guardrails_module, of_policy, pod_path, rule, violations_for, workload

g = guardrails_module()

JUNK = [None, True, 0, 1.5, "", "text", [], {}, [None], [1, "a"], {"x": None}, UNKNOWN_STRING_VALUE]
TYPES = [
    *WORKLOAD_TYPES,
    "kubernetes:core/v1:Service",
    "kubernetes:crd.projectcalico.org/v1:IPPool",
    "kubernetes:operator.tigera.io/v1:Installation",
    "kubernetes:apiextensions.k8s.io:CustomResource",
    "kubernetes:apiextensions.k8s.io:CustomResourcePatch",
    "hcloud:index/firewall:Firewall",
    "kubernetes",
    "",
]


def shapes(junk):
    """Props with ``junk`` at every level a check walks through."""
    yield junk
    yield {"metadata": junk, "spec": junk, "rules": junk, "template": junk, "apiVersion": junk, "kind": junk}
    yield {"spec": {"template": junk, "type": junk, "ipipMode": junk, "vxlanMode": junk, "calicoNetwork": junk}}
    yield {"spec": {"template": {"spec": junk}, "jobTemplate": {"spec": {"template": {"spec": junk}}}}}
    pod = {"containers": junk, "initContainers": [junk], "ephemeralContainers": [{"ports": junk, "env": junk}]}
    yield {"spec": {"template": {"spec": pod}}, "rules": [junk, {"port": junk, "protocol": "udp"}]}
    container = {"ports": [junk, {"hostPort": junk}], "env": [junk, {"name": junk, "value": junk}]}
    yield {"spec": {"containers": [container], "hostNetwork": junk}, "metadata": {"namespace": junk}}
    yield {"spec": {"calicoNetwork": {"ipPools": [junk, {"encapsulation": junk, "cidr": junk}]}}}
    yield {"rules": [{"direction": "in", "protocol": "tcp", "port": junk, "sourceIps": junk}]}
    yield {"rules": [{"direction": "in", "protocol": "tcp", "port": "22", "sourceIps": [junk, "not-a-cidr"]}]}


@pytest.mark.parametrize("type_token", TYPES)
def test_no_check_raises_on_malformed_props(type_token):
    for junk in JUNK:
        for props in shapes(junk):
            for spec in g.POLICIES:
                settings = g.resolve_config(None)[spec.name].properties
                findings = spec.check(type_token, props, settings)
                assert all(isinstance(f, g.Finding) for f in findings), (spec.name, props)


def test_non_string_type_token_is_ignored():
    assert violations_for([(None, "x", {"spec": {}})]) == []  # type: ignore[list-item]


def test_wrong_types_are_treated_as_absent():
    spec = {"hostNetwork": "yes", "containers": [{"ports": [{"hostPort": [80]}, {"hostPort": True}]}]}
    assert violations_for([("kubernetes:core/v1:Pod", "p", workload("kubernetes:core/v1:Pod", spec))]) == []


# --- unknowns (preview) ---------------------------------------------------------------------------


@pytest.mark.parametrize("type_token", sorted(WORKLOAD_TYPES))
def test_unknown_host_network_is_advisory_and_names_the_field(type_token):
    props = workload(type_token, {"hostNetwork": UNKNOWN_BOOLEAN_VALUE})
    (found,) = of_policy(violations_for([(type_token, "app", props)]), "no-host-network")
    assert (found.policy, found.path, found.enforcement_level, found.unknown) == (
        "no-host-network",
        f"{pod_path(type_token)}.hostNetwork",
        "advisory",
        True,
    )
    assert "not known yet" in found.message


def test_unknown_pod_spec_is_advisory_for_every_pod_policy():
    props = workload("kubernetes:apps/v1:Deployment", UNKNOWN_STRING_VALUE)
    found = violations_for([("kubernetes:apps/v1:Deployment", "app", props)])
    assert sorted((v.policy, v.enforcement_level) for v in found) == [
        ("no-hardcoded-ips", "advisory"),
        ("no-host-network", "advisory"),
        ("no-host-port", "advisory"),
    ]


def test_unknown_namespace_turns_a_violation_into_an_advisory_one():
    # Typical first deploy: namespace=ns.metadata.name is unknown until the Namespace exists.
    props = workload("kubernetes:apps/v1:Deployment", {"hostNetwork": True}, namespace=UNKNOWN_STRING_VALUE)
    (found,) = violations_for([("kubernetes:apps/v1:Deployment", "app", props)])
    assert (found.path, found.enforcement_level, found.unknown) == ("spec.template.spec.hostNetwork", "advisory", True)
    assert "exemption cannot be decided" in found.message


def test_unknown_namespace_with_nothing_to_report_reports_nothing():
    props = workload("kubernetes:apps/v1:Deployment", {"containers": []}, namespace=UNKNOWN_STRING_VALUE)
    assert violations_for([("kubernetes:apps/v1:Deployment", "app", props)]) == []


def test_unknown_env_value_and_known_bad_value_are_both_reported():
    env = [{"name": "A", "value": UNKNOWN_STRING_VALUE}, {"name": "B", "value": "10.0.0.9"}]
    props = workload("kubernetes:core/v1:Pod", {"containers": [{"env": env}]})
    found = of_policy(violations_for([("kubernetes:core/v1:Pod", "p", props)]), "no-hardcoded-ips")
    assert [(v.path, v.enforcement_level) for v in found] == [
        ("spec.containers[0].env[0].value", "advisory"),
        ("spec.containers[0].env[1].value", "mandatory"),
    ]


def test_unknown_firewall_rules_are_advisory():
    found = violations_for([("hcloud:index/firewall:Firewall", "fw", {"rules": UNKNOWN_ARRAY_VALUE})])
    assert sorted((v.policy, v.path, v.enforcement_level) for v in found) == [
        ("admin-ports-not-world", "rules", "advisory"),
        ("no-vxlan-port", "rules", "advisory"),
    ]


def test_unknown_source_ips_on_an_admin_port_are_advisory():
    fw = firewall(rule("in", "tcp", "22", None) | {"sourceIps": [UNKNOWN_STRING_VALUE]})
    (found,) = violations_for([("hcloud:index/firewall:Firewall", "fw", fw)])
    assert (found.policy, found.path, found.unknown) == ("admin-ports-not-world", "rules[0].sourceIps", True)


def test_unknown_service_type_is_advisory():
    props = {"metadata": {"name": "s"}, "spec": {"type": UNKNOWN_STRING_VALUE}}
    (found,) = violations_for([("kubernetes:core/v1:Service", "s", props)])
    assert (found.policy, found.enforcement_level) == ("no-node-port", "advisory")


def test_secret_wrapped_values_are_seen_through():
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "10.0.0.7"}
    props = workload("kubernetes:core/v1:Pod", {"containers": [{"env": [{"name": "DB", "value": secret}]}]})
    (found,) = violations_for([("kubernetes:core/v1:Pod", "p", props)])
    assert "10.0.0.7" in found.message


# --- the pulumi-policy wrappers, in-process -------------------------------------------------------


def wrapped(name):
    import pack

    return next(p for p in pack.build_policies() if p.name == name)


def validate(policy_name, type_token, props, config=None):
    """Call a wrapper the way pulumi-policy's Analyze does: proxied props, per-policy config."""
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    args = ResourceValidationArgs(type_token, unknown_checking_proxy(props), "urn:x", "res", opts, None, config)
    messages = []
    policy = wrapped(policy_name)
    try:
        policy.validate(args, lambda message, urn=None: messages.append(message))
    except UnknownValueError as err:
        return messages, err
    return messages, None


def test_wrapper_reports_path_and_fix():
    props = workload("kubernetes:apps/v1:Deployment", {"initContainers": [{"ports": [{}, {"hostPort": 9}]}]})
    messages, unknown = validate("no-host-port", "kubernetes:apps/v1:Deployment", props)
    assert unknown is None
    assert messages == [
        "res: spec.template.spec.initContainers[0].ports[1].hostPort: hostPort 9 is set; remove it and expose the app "
        "through a ClusterIP Service + Ingress instead"
    ]


def test_wrapper_reports_decided_violations_then_raises_for_unknowns():
    spec = {"hostNetwork": True, "hostPID": UNKNOWN_BOOLEAN_VALUE}
    messages, unknown = validate("no-host-network", "kubernetes:core/v1:Pod", workload("kubernetes:core/v1:Pod", spec))
    assert [m.split(": ")[1] for m in messages] == ["spec.hostNetwork"]
    assert unknown is not None and unknown.message == "string value at .res.spec.hostPID can't be known during preview"


def test_wrapper_applies_policy_config_from_the_cli():
    props = workload("kubernetes:apps/v1:Deployment", {"hostNetwork": True}, "shop")
    messages, _ = validate("no-host-network", "kubernetes:apps/v1:Deployment", props, {"exemptNamespaces": ["shop"]})
    assert messages == []


def test_wrapper_fails_closed_on_bad_config():
    props = workload("kubernetes:apps/v1:Deployment", {}, "shop")
    messages, _ = validate("no-host-network", "kubernetes:apps/v1:Deployment", props, {"exemptNamespaces": "shop"})
    assert len(messages) == 1 and "could not evaluate" in messages[0]


@pytest.mark.parametrize("name,junk", list(itertools.product(["no-host-port", "ipip-pool", "no-vxlan-port"], JUNK)))
def test_wrapper_never_raises_anything_but_unknown(name, junk):
    for props in shapes(junk):
        if not isinstance(props, dict):
            continue
        for type_token in ("kubernetes:apps/v1:Deployment", "kubernetes:crd.projectcalico.org/v1:IPPool"):
            messages, _ = validate(name, type_token, props)
            assert all("could not evaluate" not in m for m in messages)
