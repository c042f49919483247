"""Helm v3 Releases judged on the values they declare: host flags and host ports at any depth."""

from __future__ import annotations

import pytest
from pulumi_policy.proxy import UNKNOWN_OBJECT_VALUE, UNKNOWN_STRING_VALUE

from .helpers import of_policy, violations_for

RELEASE = "kubernetes:helm.sh/v3:Release"


def release(values, namespace="shop", **extra):
    props = {"chart": "some-chart", "version": "1.2.3", "values": values, **extra}
    if namespace is not None:
        props["namespace"] = namespace
    return props


def run(props, config=None):
    return violations_for([(RELEASE, "web", props)], config)


def found(props, policy, config=None):
    return [(v.path, v.enforcement_level) for v in of_policy(run(props, config), policy)]


# --- no-host-network -------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["hostNetwork", "hostPID", "hostIPC"])
def test_a_host_flag_at_the_top_of_the_values_is_refused(flag):
    assert found(release({flag: True}), "no-host-network") == [(f"values.{flag}", "mandatory")]


def test_a_host_flag_deep_in_the_values_is_refused_with_its_values_path():
    values = {"controller": {"image": {"tag": "v1"}, "hostNetwork": True}}
    (v,) = of_policy(run(release(values)), "no-host-network")
    assert (v.path, v.enforcement_level, v.resource) == ("values.controller.hostNetwork", "mandatory", "web")
    assert "hostNetwork: true" in v.message and "ClusterIP Service + Ingress" in v.message


def test_a_host_flag_inside_a_list_is_found():
    values = {"workers": [{"name": "a"}, {"podSpec": {"hostPID": True}}]}
    assert found(release(values), "no-host-network") == [("values.workers[1].podSpec.hostPID", "mandatory")]


def test_a_host_flag_written_as_the_string_true_is_refused():
    # Go templates test truthiness: the quoted "true" switches it on just the same.
    assert found(release({"hostNetwork": "true"}), "no-host-network") == [("values.hostNetwork", "mandatory")]


def test_host_flags_that_are_false_pass():
    values = {"hostNetwork": False, "controller": {"hostPID": False, "hostIPC": None}}
    assert found(release(values), "no-host-network") == []


def test_a_host_flag_under_an_unrelated_name_is_not_taken_for_one():
    assert found(release({"controller": {"useHostNetworkDns": True}}), "no-host-network") == []


# --- no-host-port ----------------------------------------------------------------------------------


def test_a_host_port_number_is_refused_and_printed_as_written():
    (v,) = of_policy(run(release({"controller": {"hostPort": 8080.0}})), "no-host-port")
    assert (v.path, v.enforcement_level) == ("values.controller.hostPort", "mandatory")
    assert "hostPort 8080;" in v.message


def test_host_port_enabled_is_refused():
    # ingress-nginx spells it controller.hostPort.enabled.
    values = {"controller": {"hostPort": {"enabled": True, "ports": {"http": 80, "https": 443}}}}
    assert found(release(values), "no-host-port") == [("values.controller.hostPort.enabled", "mandatory")]


def test_host_port_disabled_passes():
    values = {"controller": {"hostPort": {"enabled": False, "ports": {"http": 80}}}}
    assert found(release(values), "no-host-port") == []


def test_a_ports_list_entry_with_a_host_port_is_refused():
    values = {"ports": [{"containerPort": 80}, {"containerPort": 443, "hostPort": 443}]}
    assert found(release(values), "no-host-port") == [("values.ports[1].hostPort", "mandatory")]


def test_a_named_ports_map_with_a_host_port_is_refused():
    # Traefik's chart: ports.<name>.hostPort.
    values = {"ports": {"web": {"port": 8000, "hostPort": 80}, "websecure": {"port": 8443}}}
    assert found(release(values), "no-host-port") == [("values.ports.web.hostPort", "mandatory")]


@pytest.mark.parametrize("unset", [0, "", None, False])
def test_an_unset_host_port_passes(unset):
    assert found(release({"ports": [{"hostPort": unset}]}), "no-host-port") == []


def test_one_release_can_break_both_rules_and_each_is_reported_once():
    values = {"daemonset": {"hostNetwork": True, "ports": [{"hostPort": 53}]}, "hostPort": {"enabled": True}}
    violations = run(release(values))
    assert sorted((v.policy, v.path) for v in violations if v.blocking) == [
        ("no-host-network", "values.daemonset.hostNetwork"),
        ("no-host-port", "values.daemonset.ports[0].hostPort"),
        ("no-host-port", "values.hostPort.enabled"),
    ]


def test_compliant_values_pass_every_mandatory_policy():
    values = {"replicaCount": 2, "service": {"type": "ClusterIP", "port": 80}, "ingress": {"enabled": True}}
    assert [v for v in run(release(values)) if v.blocking] == []


def test_values_absent_or_malformed_pass():
    assert [v for v in run({"chart": "c", "namespace": "shop"}) if v.blocking] == []
    assert [v for v in run(release("hostNetwork: true")) if v.blocking] == []


# --- namespaces ------------------------------------------------------------------------------------

BAD = {"controller": {"hostNetwork": True, "hostPort": {"enabled": True}}}


@pytest.mark.parametrize(
    "namespace", ["kube-system", "calico-system", "tigera-operator", "ingress-nginx", "traefik", "overlay-probe"]
)
def test_a_release_in_an_exempt_namespace_may_ask_for_host_networking(namespace):
    assert [v for v in run(release(BAD, namespace))] == []


@pytest.mark.parametrize("namespace", ["kube-system-evil", "Kube-System", "kube-system ", "traefik2", "ingress"])
def test_look_alike_namespaces_are_not_exempt(namespace):
    assert sorted(v.policy for v in run(release(BAD, namespace)) if v.blocking) == ["no-host-network", "no-host-port"]


@pytest.mark.parametrize("namespace", [None, ""])
def test_a_release_without_a_namespace_is_in_default_which_is_not_exempt(namespace):
    assert len([v for v in run(release(BAD, namespace)) if v.blocking]) == 2


def test_the_release_namespace_is_its_namespace_input_not_a_values_key():
    props = release({**BAD, "namespace": "kube-system", "metadata": {"namespace": "kube-system"}}, "shop")
    assert len([v for v in run(props) if v.blocking]) == 2


def test_exemptions_are_configurable_per_policy():
    config = {"no-host-network": {"exemptNamespaces": ["shop"]}}
    assert sorted(v.policy for v in run(release(BAD), config) if v.blocking) == ["no-host-port"]


# --- unknowns --------------------------------------------------------------------------------------


def test_values_unknown_at_preview_are_advisory_for_both_rules():
    violations = run(release(UNKNOWN_OBJECT_VALUE))
    assert sorted((v.policy, v.path, v.enforcement_level, v.unknown) for v in violations if v.unknown) == [
        ("no-host-network", "values", "advisory", True),
        ("no-host-port", "values", "advisory", True),
    ]
    assert all(not v.blocking for v in violations)


def test_an_unknown_host_flag_or_host_port_is_advisory_with_its_path():
    values = {"controller": {"hostNetwork": UNKNOWN_STRING_VALUE, "hostPort": {"enabled": UNKNOWN_STRING_VALUE}}}
    violations = run(release(values))
    assert sorted((v.policy, v.path, v.enforcement_level) for v in violations if v.unknown) == [
        ("no-host-network", "values.controller.hostNetwork", "advisory"),
        ("no-host-port", "values.controller.hostPort.enabled", "advisory"),
    ]


def test_an_unknown_unrelated_value_is_not_reported():
    values = {"image": {"tag": UNKNOWN_STRING_VALUE}, "hostNetwork": False}
    assert [v for v in run(release(values)) if v.unknown] == []


def test_an_unknown_namespace_makes_a_violation_undecidable_hence_advisory():
    violations = run(release({"hostNetwork": True}, UNKNOWN_STRING_VALUE))
    (v,) = of_policy(violations, "no-host-network")
    assert (v.enforcement_level, v.unknown) == ("advisory", True)
    assert "the release namespace is not known yet" in v.message


def test_a_secret_value_is_read_through():
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": True}
    assert found(release({"hostNetwork": secret}), "no-host-network") == [("values.hostNetwork", "mandatory")]


# --- the opaque-release note -----------------------------------------------------------------------


def test_every_release_outside_exempt_namespaces_gets_the_advisory_note_naming_the_v4_chart():
    (v,) = of_policy(run(release({"replicaCount": 1})), "helm-release-opaque")
    assert (v.enforcement_level, v.path, v.blocking) == ("advisory", "chart", False)
    assert "kubernetes.helm.v4.Chart" in v.message and "not the Deployments" in v.message


def test_the_note_says_value_files_are_not_read_when_there_are_some():
    (v,) = of_policy(run(release({}, valueYamlFiles=[{"path": "values.yaml"}])), "helm-release-opaque")
    assert "valueYamlFiles are not read" in v.message
    (v,) = of_policy(run(release({})), "helm-release-opaque")
    assert "valueYamlFiles" not in v.message


def test_system_releases_get_no_note():
    assert of_policy(run(release({}, "ingress-nginx")), "helm-release-opaque") == []


def test_other_resource_types_get_no_note_and_their_values_key_is_not_read():
    props = {"values": {"hostNetwork": True}, "namespace": "shop"}
    others = [("kubernetes:helm.sh/v4:Chart", "c", props), ("kubernetes:core/v1:ConfigMap", "m", props)]
    assert violations_for(others) == []
