"""keybuzz.calico as a specification: the values it renders, held to Calico's own API."""

import re
from pathlib import Path

import pytest

import keybuzz.calico as calico
from keybuzz.calico import (
    BLOCK_SIZE,
    CALICO_VERSION,
    DEFAULT_POOL_NAME,
    TIGERA_OPERATOR_CHART,
    TIGERA_OPERATOR_CHART_REPO,
    TIGERA_OPERATOR_CHART_VERSION,
    TIGERA_OPERATOR_VERSION,
    pool_mtu,
    render_installation,
    render_ippool_patch,
    tigera_operator_values,
    validate_mtu_override,
)

from .crd_schema import assert_conforms, require_crds

POD_CIDR = "10.42.0.0/16"
SUBNET_CIDR = "10.0.1.0/24"
SEMVER = re.compile(r"^v\d+\.\d+\.\d+$")


@pytest.fixture
def installation():
    return render_installation(POD_CIDR, SUBNET_CIDR, pool_mtu())


def _pool(installation):
    (pool,) = installation["spec"]["calicoNetwork"]["ipPools"]
    return pool


def _walk(value, path=""):
    """Yield (path, key, value) for every entry of nested dicts and lists."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield f"{path}.{key}", key, child
            yield from _walk(child, f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield f"{path}[{index}]", None, child
            yield from _walk(child, f"{path}[{index}]")


# --- MTU -------------------------------------------------------------------------------------------


def test_pool_mtu_is_private_network_mtu_minus_ipip_header():
    assert pool_mtu() == 1450 - 20 == 1430


def test_pool_mtu_follows_the_network_mtu_constant_at_call_time(monkeypatch):
    monkeypatch.setattr(calico, "HETZNER_PRIVATE_NETWORK_MTU", 1400)
    assert pool_mtu() == 1380
    assert render_installation(POD_CIDR, SUBNET_CIDR, pool_mtu())["spec"]["calicoNetwork"]["mtu"] == 1380
    with pytest.raises(ValueError, match="1280 to 1380"):
        validate_mtu_override(1430)


def test_pool_mtu_takes_another_overhead():
    assert pool_mtu(overhead=calico.VXLAN_OVERHEAD_BYTES) == 1400
    assert pool_mtu(overhead=calico.WIREGUARD_OVERHEAD_BYTES) == 1390


@pytest.mark.parametrize("value", [1280, 1400, 1430])
def test_mtu_override_within_range_is_returned(value):
    assert validate_mtu_override(value) == value


@pytest.mark.parametrize("value", [1431, 1450, 1500, 1279, 576, 0, -1])
def test_mtu_override_out_of_range_names_value_and_range(value):
    with pytest.raises(ValueError) as err:
        validate_mtu_override(value)
    message = str(err.value)
    assert f"MTU override {value} " in message
    assert "1280 to 1430" in message
    assert "network MTU 1450 minus 20" in message


@pytest.mark.parametrize("value", ["1400", 1400.0, True, None])
def test_mtu_override_that_is_not_an_int_is_refused(value):
    with pytest.raises(ValueError, match=rf"MTU override {re.escape(repr(value))} is not an integer; .*1280 to 1430"):
        validate_mtu_override(value)


def test_installation_refuses_an_mtu_that_does_not_fit_ipip():
    with pytest.raises(ValueError, match="MTU override 1450"):
        render_installation(POD_CIDR, SUBNET_CIDR, 1450)


# --- Installation ----------------------------------------------------------------------------------


def test_installation_conforms_to_the_operator_crd(installation):
    assert_conforms(installation, "operator.tigera.io_installations.yaml")


def test_installation_is_the_one_the_operator_reconciles(installation):
    assert installation["apiVersion"] == "operator.tigera.io/v1"
    assert installation["kind"] == "Installation"
    assert installation["metadata"] == {"name": "default"}


def test_pool_is_the_k3s_cluster_cidr_with_ipip(installation):
    assert _pool(installation) == {
        "name": DEFAULT_POOL_NAME,
        "cidr": POD_CIDR,
        "encapsulation": "IPIP",
        "natOutgoing": "Enabled",
        "blockSize": 26,
        "nodeSelector": "all()",
        # The operator's own defaults (ippool/defaults.go), rendered so a later apply co-owns them.
        "allowedUses": ["Workload", "Tunnel"],
        "disableNewAllocations": False,
        "assignmentMode": "Automatic",
    }


def test_pool_renders_every_default_the_operator_would_merge_patch_in(installation):
    """An applied Installation whose pool equals what the operator writes back: no SSA conflict.

    The operator fills (fillDefaults, IPv4, Calico CNI) encapsulation IPIP, natOutgoing Enabled,
    nodeSelector all(), blockSize 26, disableNewAllocations false, a name, assignmentMode Automatic,
    and allowedUses [Workload, Tunnel] when empty. Our pool must already hold each, with that value.
    """
    operator_fills = {
        "encapsulation": "IPIP",
        "natOutgoing": "Enabled",
        "nodeSelector": "all()",
        "blockSize": 26,
        "disableNewAllocations": False,
        "name": DEFAULT_POOL_NAME,
        "assignmentMode": "Automatic",
        "allowedUses": ["Workload", "Tunnel"],
    }
    pool = _pool(installation)
    assert {key: pool.get(key) for key in operator_fills} == operator_fills


def test_node_address_is_detected_in_the_private_subnet(installation):
    assert installation["spec"]["calicoNetwork"]["nodeAddressAutodetectionV4"] == {"cidrs": [SUBNET_CIDR]}


def test_bgp_is_on_because_ipip_routes_come_from_bird(installation):
    assert installation["spec"]["calicoNetwork"]["bgp"] == "Enabled"


def test_mtu_and_ip_forwarding_are_set(installation):
    network = installation["spec"]["calicoNetwork"]
    assert network["mtu"] == 1430
    assert network["containerIPForwarding"] == "Enabled"


def test_cni_is_calico_with_operator_default_dirs(installation):
    # K3s with flannel-backend none uses /opt/cni/bin and /etc/cni/net.d, the operator's defaults.
    assert installation["spec"]["cni"] == {"type": "Calico", "ipam": {"type": "Calico"}}


def test_no_kubernetes_provider_is_claimed(installation):
    assert "kubernetesProvider" not in installation["spec"]


def test_csi_driver_is_off_like_the_chart_default(installation):
    assert installation["spec"]["kubeletVolumePluginPath"] == "None"


@pytest.mark.parametrize(
    ("pod_cidr", "subnet_cidr", "message"),
    [
        ("10.0.0.0/16", "10.0.1.0/24", "overlaps the node subnet"),
        ("10.42.0.1/16", SUBNET_CIDR, "is not a network CIDR"),
        ("fd00::/64", SUBNET_CIDR, "is not IPv4"),
        ("10.42.0.0/27", SUBNET_CIDR, "smaller than one /26 block"),
        (POD_CIDR, "not-a-cidr", "subnet CIDR 'not-a-cidr' is not a network CIDR"),
    ],
)
def test_installation_refuses_bad_cidrs(pod_cidr, subnet_cidr, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        render_installation(pod_cidr, subnet_cidr, 1430)


# --- IPPool patch ----------------------------------------------------------------------------------


def test_ippool_patch_conforms_to_the_ippool_crd():
    assert_conforms(render_ippool_patch(POD_CIDR), "crd.projectcalico.org_ippools.yaml")


def test_ippool_patch_targets_the_operator_pool_with_ipip_always():
    assert render_ippool_patch(POD_CIDR) == {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {
            "cidr": POD_CIDR,
            "ipipMode": "Always",
            "vxlanMode": "Never",
            "natOutgoing": True,
            "nodeSelector": "all()",
        },
    }


def test_ippool_patch_agrees_with_the_installation_pool(installation):
    # The operator renders encapsulation IPIP as ipipMode Always + vxlanMode Never (and Enabled as
    # true); if the two disagreed, the operator and the patch would fight over the pool.
    pool = _pool(installation)
    spec = render_ippool_patch(POD_CIDR)["spec"]
    assert spec["cidr"] == pool["cidr"]
    assert (pool["encapsulation"], spec["ipipMode"], spec["vxlanMode"]) == ("IPIP", "Always", "Never")
    assert spec["natOutgoing"] is (pool["natOutgoing"] == "Enabled")
    assert spec["nodeSelector"] == pool["nodeSelector"]
    assert render_ippool_patch(POD_CIDR)["metadata"]["name"] == pool["name"]


def test_ippool_patch_leaves_block_size_alone():
    # blockSize is fixed when the pool is created; the Installation sets it once.
    assert "blockSize" not in render_ippool_patch(POD_CIDR)["spec"]
    assert BLOCK_SIZE == 26


# --- nothing enables VXLAN -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rendered",
    [
        render_installation(POD_CIDR, SUBNET_CIDR, 1430),
        render_ippool_patch(POD_CIDR),
        tigera_operator_values(),
    ],
    ids=["installation", "ippool-patch", "operator-values"],
)
def test_nothing_enables_vxlan(rendered):
    for path, key, value in _walk(rendered):
        if key is not None and "vxlan" in key.lower():
            assert value == "Never", f"{path} = {value!r}"
        if isinstance(value, str):
            assert "vxlan" not in value.lower(), f"{path} = {value!r}"
        if key == "encapsulation":
            assert value in ("IPIP", "IPIPCrossSubnet"), f"{path} = {value!r}"


# --- versions and chart values ---------------------------------------------------------------------


def test_versions_are_pinned_and_semver_shaped():
    for version in (CALICO_VERSION, TIGERA_OPERATOR_VERSION, TIGERA_OPERATOR_CHART_VERSION):
        assert SEMVER.match(version), version
        assert "latest" not in version


def test_chart_version_is_the_calico_version():
    assert TIGERA_OPERATOR_CHART == "tigera-operator"
    assert TIGERA_OPERATOR_CHART_REPO == "https://docs.tigera.io/calico/charts"
    assert TIGERA_OPERATOR_CHART_VERSION == CALICO_VERSION == "v3.31.7"


def test_schemas_the_tests_use_are_from_the_pinned_release():
    readme = (require_crds() / "README.md").read_text()
    assert f"Calico {CALICO_VERSION}" in readme
    assert f"tag {TIGERA_OPERATOR_VERSION}" in readme


# Top-level keys of projectcalico/calico charts/tigera-operator/values.yaml (3.30/3.31 line).
TIGERA_OPERATOR_CHART_KEYS = {
    "imagePullSecrets", "installation", "apiServer", "goldmane", "whisker", "defaultFelixConfiguration",
    "certs", "manageCRDs", "resources", "additionalLabels", "tolerations", "nodeSelector", "affinity",
    "priorityClassName", "podAnnotations", "podLabels", "dnsConfig", "tigeraOperator", "calicoctl",
    "kubeletVolumePluginPath", "kubernetesServiceEndpoint",
}  # fmt: skip


def test_operator_chart_does_not_create_its_own_installation():
    assert tigera_operator_values()["installation"] == {"enabled": False}


def test_operator_chart_creates_no_optional_components():
    values = tigera_operator_values()
    assert values["apiServer"] == {"enabled": False}
    assert values["goldmane"] == {"enabled": False}
    assert values["whisker"] == {"enabled": False}


def test_operator_chart_values_use_only_chart_keys():
    values = tigera_operator_values()
    assert set(values) <= TIGERA_OPERATOR_CHART_KEYS
    assert all(set(section) == {"enabled"} for section in values.values())


def test_rendering_is_pure():
    assert render_installation(POD_CIDR, SUBNET_CIDR, 1430) == render_installation(POD_CIDR, SUBNET_CIDR, 1430)
    first = render_installation(POD_CIDR, SUBNET_CIDR, 1430)
    first["spec"]["calicoNetwork"]["ipPools"].clear()
    assert _pool(render_installation(POD_CIDR, SUBNET_CIDR, 1430))["cidr"] == POD_CIDR


def test_deciding_module_imports_no_pulumi():
    imports = re.findall(r"^(?:from|import) (\w+)", Path(calico.__file__).read_text(), re.M)
    assert "pulumi" not in imports and "pulumi_kubernetes" not in imports
