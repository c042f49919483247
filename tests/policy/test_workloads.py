"""Pod-spec policies on every workload kind: no-host-network, no-host-port, no-app-daemonset, no-hardcoded-ips."""

from __future__ import annotations

import pytest

from .helpers import WORKLOAD_TYPES, of_policy, pod_path, violations_for, workload

ALL_WORKLOADS = sorted(WORKLOAD_TYPES)


def run(type_token, pod_spec, namespace=None, config=None):
    return violations_for([(type_token, "app", workload(type_token, pod_spec, namespace))], config)


# --- no-host-network ------------------------------------------------------------------------------


@pytest.mark.parametrize("type_token", ALL_WORKLOADS)
@pytest.mark.parametrize("flag", ["hostNetwork", "hostPID", "hostIPC"])
def test_host_namespace_flag_is_refused_on_every_workload_kind(type_token, flag):
    found = of_policy(run(type_token, {flag: True, "containers": []}), "no-host-network")
    assert [(v.resource, v.path, v.enforcement_level) for v in found] == [
        ("app", f"{pod_path(type_token)}.{flag}", "mandatory")
    ]
    assert "remove it" in found[0].message


@pytest.mark.parametrize("type_token", ALL_WORKLOADS)
def test_workload_without_host_flags_passes(type_token):
    spec = {"hostNetwork": False, "hostPID": False, "containers": [{"name": "c", "image": "nginx"}]}
    assert of_policy(run(type_token, spec), "no-host-network") == []


def test_host_network_message_names_the_fix():
    (found,) = of_policy(run("kubernetes:apps/v1:Deployment", {"hostNetwork": True}), "no-host-network")
    assert "ClusterIP Service + Ingress" in found.message


def test_all_three_host_flags_are_reported_separately():
    found = of_policy(
        run("kubernetes:core/v1:Pod", {"hostNetwork": True, "hostPID": True, "hostIPC": True}), "no-host-network"
    )
    assert [v.path for v in found] == ["spec.hostNetwork", "spec.hostPID", "spec.hostIPC"]


@pytest.mark.parametrize(
    "namespace", ["kube-system", "calico-system", "tigera-operator", "ingress-nginx", "traefik", "overlay-probe"]
)
def test_default_exempt_namespaces_may_use_host_network(namespace):
    assert of_policy(run("kubernetes:apps/v1:DaemonSet", {"hostNetwork": True}, namespace), "no-host-network") == []


def test_missing_namespace_means_default_which_is_not_exempt():
    found = of_policy(run("kubernetes:apps/v1:Deployment", {"hostNetwork": True}, namespace=""), "no-host-network")
    assert len(found) == 1


def test_non_workload_kinds_are_ignored():
    props = {"metadata": {"name": "x"}, "spec": {"template": {"spec": {"hostNetwork": True}}}}
    assert violations_for([("kubernetes:core/v1:ConfigMap", "x", props)]) == []
    assert violations_for([("kubernetes:apps/v1:DeploymentList", "x", props)]) == []
    assert violations_for([("aws:ec2/instance:Instance", "x", props)]) == []


def test_workload_rendered_by_a_helm_chart_is_checked_like_any_other():
    # Chart v4 / ConfigGroup children reach the pack as ordinary typed resources.
    props = workload("kubernetes:apps/v1:Deployment", {"hostNetwork": True}, namespace="apps")
    found = violations_for([("kubernetes:apps/v1:Deployment", "chart-web:apps/web", props)])
    assert [(v.policy, v.resource) for v in found] == [("no-host-network", "chart-web:apps/web")]


# --- no-host-port ---------------------------------------------------------------------------------


@pytest.mark.parametrize("type_token", ALL_WORKLOADS)
@pytest.mark.parametrize("container_list", ["containers", "initContainers", "ephemeralContainers"])
def test_host_port_is_refused_in_every_container_list(type_token, container_list):
    spec = {container_list: [{"name": "a"}, {"name": "b", "ports": [{"containerPort": 80}, {"hostPort": 8080}]}]}
    found = of_policy(run(type_token, spec), "no-host-port")
    assert [v.path for v in found] == [f"{pod_path(type_token)}.{container_list}[1].ports[1].hostPort"]
    assert "hostPort 8080" in found[0].message and "ClusterIP Service + Ingress" in found[0].message


@pytest.mark.parametrize("type_token", ALL_WORKLOADS)
def test_container_ports_without_host_port_pass(type_token):
    spec = {"containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443, "hostPort": 0}]}]}
    assert of_policy(run(type_token, spec), "no-host-port") == []


def test_host_port_given_as_float_by_the_grpc_struct_is_reported_as_an_integer():
    (found,) = of_policy(
        run("kubernetes:core/v1:Pod", {"containers": [{"ports": [{"hostPort": 80.0}]}]}), "no-host-port"
    )
    assert "hostPort 80 " in found.message


def test_host_port_in_exempt_namespace_passes():
    spec = {"containers": [{"ports": [{"hostPort": 80}]}]}
    assert of_policy(run("kubernetes:apps/v1:DaemonSet", spec, "ingress-nginx"), "no-host-port") == []


# --- no-app-daemonset -----------------------------------------------------------------------------


@pytest.mark.parametrize("type_token", ["kubernetes:apps/v1:DaemonSet", "kubernetes:extensions/v1beta1:DaemonSet"])
def test_daemonset_outside_system_namespaces_is_refused(type_token):
    found = of_policy(run(type_token, {"containers": []}, "shop"), "no-app-daemonset")
    assert [(v.path, v.enforcement_level) for v in found] == [("kind", "mandatory")]
    assert "Deployment + HorizontalPodAutoscaler" in found[0].message


def test_daemonset_in_system_namespace_passes():
    assert of_policy(run("kubernetes:apps/v1:DaemonSet", {}, "calico-system"), "no-app-daemonset") == []


def test_daemonset_patch_is_not_an_app_daemonset():
    # A patch adjusts a DaemonSet someone else owns; it does not create one.
    assert of_policy(run("kubernetes:apps/v1:DaemonSetPatch", {}, "shop"), "no-app-daemonset") == []


@pytest.mark.parametrize("type_token", sorted(set(ALL_WORKLOADS) - {t for t in ALL_WORKLOADS if "DaemonSet" in t}))
def test_other_workload_kinds_are_not_daemonsets(type_token):
    assert of_policy(run(type_token, {}, "shop"), "no-app-daemonset") == []


# --- no-hardcoded-ips -----------------------------------------------------------------------------


def env_spec(value, name="TARGET", container_list="containers"):
    return {container_list: [{"name": "c", "env": [{"name": "OTHER", "value": "x"}, {"name": name, "value": value}]}]}


@pytest.mark.parametrize("type_token", ALL_WORKLOADS)
@pytest.mark.parametrize("container_list", ["containers", "initContainers"])
def test_literal_ip_in_env_is_refused_on_every_workload_kind(type_token, container_list):
    found = of_policy(run(type_token, env_spec("10.0.1.5", container_list=container_list)), "no-hardcoded-ips")
    assert [v.path for v in found] == [f"{pod_path(type_token)}.{container_list}[0].env[1].value"]
    assert "10.0.1.5" in found[0].message and "Service DNS name" in found[0].message


@pytest.mark.parametrize(
    "value",
    [
        "10.0.1.5",
        "postgres://app@10.0.1.5:5432/db",
        "http://192.168.1.10/api",
        "10.0.1.5:6443",
        "[10.0.1.5]",
        "hosts=db.svc,10.0.1.5",
    ],
)
def test_values_that_contain_an_ip_are_refused(value):
    found = of_policy(run("kubernetes:apps/v1:Deployment", env_spec(value)), "no-hardcoded-ips")
    assert len(found) == 1


@pytest.mark.parametrize(
    "value",
    [
        "db.shop.svc.cluster.local",
        "http://api.shop.svc.cluster.local:8080",
        "10.42.0.0/16",  # a CIDR is a range, not an address
        "10.42.0.0/16,10.43.0.0/16",
        "1.2.3.4-rc1",  # versions glued to a suffix
        "v1.2.3.4",
        "1.2.3.4.5",
        "300.1.2.3",  # not an IPv4 address
        "0.0.0.0",  # bind address (allowed by default)
        "127.0.0.1:8080",  # loopback (allowed by default)
        "",
    ],
)
def test_values_without_a_literal_ip_pass(value):
    assert of_policy(run("kubernetes:apps/v1:Deployment", env_spec(value)), "no-hardcoded-ips") == []


def test_version_variables_may_hold_four_part_versions():
    assert of_policy(run("kubernetes:core/v1:Pod", env_spec("1.2.3.4", name="APP_VERSION")), "no-hardcoded-ips") == []


def test_env_from_value_from_is_not_a_literal():
    spec = {"containers": [{"env": [{"name": "HOST", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "h"}}}]}]}
    assert of_policy(run("kubernetes:core/v1:Pod", spec), "no-hardcoded-ips") == []


def test_two_ips_in_one_value_are_two_violations():
    found = of_policy(run("kubernetes:core/v1:Pod", env_spec("10.0.0.1,10.0.0.2")), "no-hardcoded-ips")
    assert [v.message.split("literal IP ")[1].split(";")[0] for v in found] == ["10.0.0.1", "10.0.0.2"]


def test_allowed_addresses_can_be_configured():
    config = {"no-hardcoded-ips": {"allowedAddresses": ["10.0.0.1"]}}
    assert of_policy(run("kubernetes:core/v1:Pod", env_spec("10.0.0.1"), config=config), "no-hardcoded-ips") == []
    found = of_policy(run("kubernetes:core/v1:Pod", env_spec("127.0.0.1"), config=config), "no-hardcoded-ips")
    assert len(found) == 1


def test_hardcoded_ip_in_exempt_namespace_passes():
    assert (
        of_policy(run("kubernetes:apps/v1:Deployment", env_spec("10.0.0.2"), "kube-system"), "no-hardcoded-ips") == []
    )
