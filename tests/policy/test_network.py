"""Network policies: no-node-port, no-vxlan-port, ipip-pool, admin-ports-not-world."""

from __future__ import annotations

import pytest

from .helpers import firewall, of_policy, rule, violations_for

FIREWALL = "hcloud:index/firewall:Firewall"
IPPOOL = "kubernetes:crd.projectcalico.org/v1:IPPool"
INSTALLATION = "kubernetes:operator.tigera.io/v1:Installation"
CUSTOM = "kubernetes:apiextensions.k8s.io:CustomResource"
CUSTOM_PATCH = "kubernetes:apiextensions.k8s.io:CustomResourcePatch"


def service(service_type, namespace="shop", name="web"):
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {"type": service_type, "ports": []}}


# --- no-node-port ---------------------------------------------------------------------------------


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
@pytest.mark.parametrize("type_token", ["kubernetes:core/v1:Service", "kubernetes:core/v1:ServicePatch"])
def test_node_port_and_load_balancer_services_are_refused(type_token, service_type):
    found = of_policy(violations_for([(type_token, "web", service(service_type))]), "no-node-port")
    assert [(v.path, v.enforcement_level) for v in found] == [("spec.type", "mandatory")]
    assert "shop/web" in found[0].message and "ClusterIP Service + Ingress" in found[0].message


@pytest.mark.parametrize("service_type", ["ClusterIP", None, "ExternalName"])
def test_cluster_internal_services_pass(service_type):
    assert violations_for([("kubernetes:core/v1:Service", "web", service(service_type))]) == []


def test_allow_list_lets_a_named_service_through():
    config = {"no-node-port": {"allowedServices": ["shop/web"]}}
    assert violations_for([("kubernetes:core/v1:Service", "web", service("LoadBalancer"))], config) == []
    other = service("LoadBalancer", name="admin")
    assert len(violations_for([("kubernetes:core/v1:Service", "admin", other)], config)) == 1


def test_ingress_controller_is_allowed_by_default():
    svc = service("LoadBalancer", "ingress-nginx", "ingress-nginx-controller")
    assert violations_for([("kubernetes:core/v1:Service", "ctrl", svc)]) == []


def test_allow_list_matches_default_namespace_when_metadata_has_none():
    config = {"no-node-port": {"allowedServices": ["default/web"]}}
    assert violations_for([("kubernetes:core/v1:Service", "web", service("NodePort", None))], config) == []


def test_exempt_namespaces_do_not_exempt_node_ports():
    found = violations_for([("kubernetes:core/v1:Service", "s", service("NodePort", "kube-system", "dns"))])
    assert [v.policy for v in found] == ["no-node-port"]


# --- no-vxlan-port: firewall ----------------------------------------------------------------------


@pytest.mark.parametrize("port", ["8472", "8000-9000", "any", "ANY", 8472, "8472-8472", "4789"])
@pytest.mark.parametrize("direction", ["in", "out"])
def test_firewall_rule_opening_vxlan_udp_is_refused(port, direction):
    fw = firewall(rule("in", "tcp", "22", ["198.51.100.0/24"]), rule(direction, "udp", port, ["10.0.0.0/16"]))
    found = of_policy(violations_for([(FIREWALL, "fw", fw)]), "no-vxlan-port")
    assert [(v.path, v.enforcement_level) for v in found] == [("rules[1].port", "mandatory")]
    assert "remove the rule" in found[0].message


@pytest.mark.parametrize(
    "protocol,port",
    [("tcp", "8472"), ("udp", "53"), ("udp", "8473-9000"), ("udp", "4790-8471"), ("udp", "1-4788"), ("icmp", None)],
)
def test_firewall_rules_not_covering_vxlan_udp_pass(protocol, port):
    fw = firewall(rule("in", protocol, port, ["0.0.0.0/0"]))
    assert of_policy(violations_for([(FIREWALL, "fw", fw)]), "no-vxlan-port") == []


def test_vxlan_ports_are_configurable():
    fw = firewall(rule("in", "udp", "4789", ["10.0.0.0/16"]))
    assert (
        of_policy(violations_for([(FIREWALL, "fw", fw)], {"no-vxlan-port": {"vxlanPorts": [8472]}}), "no-vxlan-port")
        == []
    )


def test_the_programs_own_firewall_shape_passes():
    # keybuzz/hetzner.py: admin-only SSH/API, world 80/443 and ICMP, no overlay ports.
    fw = firewall(
        rule("in", "tcp", "22", ["198.51.100.0/24"]),
        rule("in", "tcp", "6443", ["198.51.100.0/24"]),
        rule("in", "tcp", "80", ["0.0.0.0/0", "::/0"]),
        rule("in", "tcp", "443", ["0.0.0.0/0", "::/0"]),
        {"direction": "in", "protocol": "icmp", "sourceIps": ["0.0.0.0/0", "::/0"]},
    )
    assert violations_for([(FIREWALL, "fw", fw)]) == []


# --- no-vxlan-port / ipip-pool: Calico -------------------------------------------------------------


def ippool(spec, api_version="crd.projectcalico.org/v1"):
    return {"apiVersion": api_version, "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"}, "spec": spec}


def installation(pools):
    network = {} if pools is None else {"ipPools": pools}
    return {
        "apiVersion": "operator.tigera.io/v1",
        "kind": "Installation",
        "metadata": {"name": "default"},
        "spec": {"calicoNetwork": network},
    }


IPIP_POOL = {"cidr": "10.42.0.0/16", "ipipMode": "Always", "vxlanMode": "Never", "natOutgoing": True}


@pytest.mark.parametrize(
    "type_token", [IPPOOL, CUSTOM, CUSTOM_PATCH, "kubernetes:crd.projectcalico.org/v1:IPPoolPatch"]
)
def test_ipip_pool_passes_in_every_form(type_token):
    assert violations_for([(type_token, "pool", ippool(IPIP_POOL))]) == []


@pytest.mark.parametrize("mode", ["Always", "CrossSubnet"])
@pytest.mark.parametrize("type_token", [IPPOOL, CUSTOM, CUSTOM_PATCH])
def test_vxlan_pool_is_refused_by_both_policies(type_token, mode):
    found = violations_for([(type_token, "pool", ippool({**IPIP_POOL, "ipipMode": "Never", "vxlanMode": mode}))])
    assert sorted((v.policy, v.path) for v in found) == [
        ("ipip-pool", "spec.ipipMode"),
        ("ipip-pool", "spec.vxlanMode"),
        ("no-vxlan-port", "spec.vxlanMode"),
    ]


def test_pool_without_ipip_mode_is_refused_because_calico_defaults_to_never():
    (found,) = violations_for([(IPPOOL, "pool", ippool({"cidr": "10.42.0.0/16"}))])
    assert (found.policy, found.path) == ("ipip-pool", "spec.ipipMode")
    assert "defaults to Never" in found.message


def test_pool_patch_may_leave_fields_unchanged():
    assert violations_for([(CUSTOM_PATCH, "pool", ippool({"natOutgoing": True}))]) == []


def test_cross_subnet_ipip_is_refused():
    (found,) = violations_for([(IPPOOL, "pool", ippool({**IPIP_POOL, "ipipMode": "CrossSubnet"}))])
    assert (found.policy, found.path) == ("ipip-pool", "spec.ipipMode")


def test_ipv6_pool_needs_no_ipip_but_no_vxlan_either():
    assert violations_for([(IPPOOL, "v6", ippool({"cidr": "fd00:42::/48"}))]) == []
    found = violations_for([(IPPOOL, "v6", ippool({"cidr": "fd00:42::/48", "vxlanMode": "Always"}))])
    assert sorted(v.policy for v in found) == ["ipip-pool", "no-vxlan-port"]


def test_calico_v3_api_pool_is_recognised():
    found = violations_for(
        [(CUSTOM, "pool", ippool({"cidr": "10.42.0.0/16", "vxlanMode": "Always"}, "projectcalico.org/v3"))]
    )
    assert sorted(v.policy for v in found) == ["ipip-pool", "ipip-pool", "no-vxlan-port"]


@pytest.mark.parametrize("type_token", [INSTALLATION, CUSTOM, "kubernetes:operator.tigera.io/v1:InstallationPatch"])
def test_installation_with_ipip_pool_passes(type_token):
    assert (
        violations_for([(type_token, "calico", installation([{"cidr": "10.42.0.0/16", "encapsulation": "IPIP"}]))])
        == []
    )


@pytest.mark.parametrize("encapsulation", ["VXLAN", "VXLANCrossSubnet"])
@pytest.mark.parametrize("type_token", [INSTALLATION, CUSTOM])
def test_installation_with_vxlan_is_refused(type_token, encapsulation):
    pools = [
        {"cidr": "10.42.0.0/16", "encapsulation": "IPIP"},
        {"cidr": "10.44.0.0/16", "encapsulation": encapsulation},
    ]
    found = violations_for([(type_token, "calico", installation(pools))])
    assert sorted((v.policy, v.path) for v in found) == [
        ("ipip-pool", "spec.calicoNetwork.ipPools[1].encapsulation"),
        ("no-vxlan-port", "spec.calicoNetwork.ipPools[1].encapsulation"),
    ]


@pytest.mark.parametrize("encapsulation", ["IPIPCrossSubnet", "None", None])
def test_installation_pool_must_say_ipip(encapsulation):
    pool = (
        {"cidr": "10.42.0.0/16"} if encapsulation is None else {"cidr": "10.42.0.0/16", "encapsulation": encapsulation}
    )
    found = violations_for([(INSTALLATION, "calico", installation([pool]))])
    assert [(v.policy, v.path) for v in found] == [("ipip-pool", "spec.calicoNetwork.ipPools[0].encapsulation")]


def test_installation_without_pools_is_refused_as_operator_default_pool():
    (found,) = violations_for([(INSTALLATION, "calico", installation(None))])
    assert (found.policy, found.path) == ("ipip-pool", "spec.calicoNetwork.ipPools")


def test_felix_vxlan_is_refused():
    props = {"apiVersion": "crd.projectcalico.org/v1", "kind": "FelixConfiguration", "spec": {"vxlanEnabled": True}}
    found = violations_for([(CUSTOM, "felix", props)])
    assert [(v.policy, v.path) for v in found] == [("no-vxlan-port", "spec.vxlanEnabled")]


def test_generic_custom_resource_of_another_kind_is_ignored():
    props = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "spec": {"vxlanMode": "Always"}}
    assert violations_for([(CUSTOM, "cert", props)]) == []


# --- admin-ports-not-world ------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["22", "6443", "1-1024", "6000-7000", "any"])
@pytest.mark.parametrize("world", ["0.0.0.0/0", "::/0"])
def test_admin_port_open_to_the_world_is_advisory(port, world):
    fw = firewall(rule("in", "tcp", port, ["198.51.100.7/32", world]))
    found = of_policy(violations_for([(FIREWALL, "fw", fw)]), "admin-ports-not-world")
    assert [(v.path, v.enforcement_level, v.blocking) for v in found] == [("rules[0].sourceIps", "advisory", False)]
    assert world in found[0].message and "restrict sourceIps" in found[0].message


@pytest.mark.parametrize(
    "a_rule",
    [
        rule("in", "tcp", "22", ["198.51.100.0/24"]),
        rule("in", "tcp", "443", ["0.0.0.0/0"]),
        rule("in", "udp", "22", ["0.0.0.0/0"]),
        rule("out", "tcp", "22", ["0.0.0.0/0"]),
        rule("in", "tcp", "23-6442", ["0.0.0.0/0"]),
    ],
)
def test_admin_ports_restricted_or_other_rules_pass(a_rule):
    assert of_policy(violations_for([(FIREWALL, "fw", firewall(a_rule))]), "admin-ports-not-world") == []


def test_admin_ports_can_be_made_mandatory():
    fw = firewall(rule("in", "tcp", "22", ["0.0.0.0/0"]))
    (found,) = violations_for([(FIREWALL, "fw", fw)], {"admin-ports-not-world": "mandatory"})
    assert found.blocking


# --- numbers as the user wrote them (the engine hands config and props over as floats) ---------------


def test_admin_ports_from_float_config_are_printed_as_written():
    fw = firewall(rule("in", "tcp", 22.0, ["0.0.0.0/0"]))
    (found,) = violations_for([(FIREWALL, "fw", fw)], {"admin-ports-not-world": {"adminPorts": [22.0, 6443.0]}})
    assert "tcp 22 (admin port 22) is open to 0.0.0.0/0" in found.message


def test_vxlan_ports_from_float_config_are_printed_as_written():
    fw = firewall(rule("in", "udp", "4000-5000", ["10.0.0.0/8"]))
    (found,) = violations_for([(FIREWALL, "fw", fw)], {"no-vxlan-port": {"vxlanPorts": [4789.0]}})
    assert "udp '4000-5000' opens VXLAN port 4789;" in found.message


def test_float_config_resolves_to_the_integers_the_user_wrote():
    from .helpers import guardrails_module

    settings = guardrails_module().resolve_config({"admin-ports-not-world": {"adminPorts": [22.0]}})
    assert settings["admin-ports-not-world"].properties["adminPorts"] == [22]
    assert isinstance(settings["admin-ports-not-world"].properties["adminPorts"][0], int)
