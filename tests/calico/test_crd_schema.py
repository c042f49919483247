"""The schema helper itself: it must catch what the API server would silently prune or reject."""

import copy

import pytest

from keybuzz.calico import render_installation, render_ippool_patch

from .crd_schema import assert_conforms, load_crd, openapi_schema, require_crds, schema_errors, unknown_fields

INSTALLATION_CRD = "operator.tigera.io_installations.yaml"
IPPOOL_CRD = "crd.projectcalico.org_ippools.yaml"
NODE_STATUS_CRD = "crd.projectcalico.org_caliconodestatuses.yaml"


@pytest.fixture
def installation():
    return render_installation("10.42.0.0/16", "10.0.0.0/16", 1430)


def test_crds_are_found_beside_the_repo_or_in_the_cache():
    folder = require_crds()
    assert folder.name == "calico-crds"
    assert (folder / INSTALLATION_CRD).is_file()


def test_misspelled_field_passes_a_plain_validator_but_not_the_walker(installation):
    network = installation["spec"]["calicoNetwork"]
    network["nodeAddressAutoDetectionV4"] = network.pop("nodeAddressAutodetectionV4")
    schema = openapi_schema(installation, load_crd(INSTALLATION_CRD))

    assert schema_errors(installation, schema) == []
    spec_schema = schema["properties"]["spec"]
    assert unknown_fields(installation["spec"], spec_schema, "spec") == [
        "spec.calicoNetwork.nodeAddressAutoDetectionV4"
    ]
    with pytest.raises(AssertionError, match=r"spec\.calicoNetwork\.nodeAddressAutoDetectionV4"):
        assert_conforms(installation, INSTALLATION_CRD)


def test_unknown_field_inside_a_list_item_is_caught(installation):
    installation["spec"]["calicoNetwork"]["ipPools"][0]["ipipMode"] = "Always"
    with pytest.raises(AssertionError, match=r"spec\.calicoNetwork\.ipPools\[0\]\.ipipMode"):
        assert_conforms(installation, INSTALLATION_CRD)


def test_value_outside_an_enum_is_caught(installation):
    installation["spec"]["calicoNetwork"]["ipPools"][0]["encapsulation"] = "IPIPAlways"
    with pytest.raises(AssertionError, match=r"ipPools\.0\.encapsulation: 'IPIPAlways' is not one of"):
        assert_conforms(installation, INSTALLATION_CRD)


def test_wrong_type_is_caught(installation):
    installation["spec"]["calicoNetwork"]["mtu"] = "1430"
    with pytest.raises(AssertionError, match=r"calicoNetwork\.mtu: '1430' is not of type 'integer'"):
        assert_conforms(installation, INSTALLATION_CRD)


def test_int32_overflow_is_caught(installation):
    installation["spec"]["calicoNetwork"]["mtu"] = 2**31
    with pytest.raises(AssertionError, match=r"calicoNetwork\.mtu: 2147483648 is not a 'int32'"):
        assert_conforms(installation, INSTALLATION_CRD)


def test_missing_required_field_is_caught():
    patch = render_ippool_patch("10.42.0.0/16")
    del patch["spec"]["cidr"]
    with pytest.raises(AssertionError, match=r"spec: 'cidr' is a required property"):
        assert_conforms(patch, IPPOOL_CRD)


def test_unknown_metadata_field_is_caught():
    patch = render_ippool_patch("10.42.0.0/16")
    patch["metadata"]["nmae"] = "x"
    with pytest.raises(AssertionError, match=r"metadata\.nmae"):
        assert_conforms(patch, IPPOOL_CRD)


def test_manifest_for_another_kind_is_refused():
    with pytest.raises(AssertionError, match="CRD is operator.tigera.io Installation"):
        assert_conforms(render_ippool_patch("10.42.0.0/16"), INSTALLATION_CRD)


def test_unserved_version_is_refused():
    patch = copy.deepcopy(render_ippool_patch("10.42.0.0/16"))
    patch["apiVersion"] = "crd.projectcalico.org/v3"
    with pytest.raises(AssertionError, match="not served"):
        assert_conforms(patch, IPPOOL_CRD)


def test_free_form_maps_accept_any_key():
    # additionalProperties schemas (label maps, resource quantities) are walked, not refused.
    installation = render_installation("10.42.0.0/16", "10.0.0.0/16", 1430)
    installation["spec"]["controlPlaneNodeSelector"] = {"node-role.kubernetes.io/control-plane": "true"}
    assert_conforms(installation, INSTALLATION_CRD)


def test_calico_node_status_request_conforms():
    # The shape the verification fixture creates to read BGP peer state for one node.
    status_request = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "CalicoNodeStatus",
        "metadata": {"name": "keybuzz-node-1"},
        "spec": {"node": "node-1", "classes": ["Agent", "BGP", "Routes"], "updatePeriodSeconds": 10},
    }
    assert_conforms(status_request, NODE_STATUS_CRD)
    status_request["spec"]["updatePeriod"] = 10
    with pytest.raises(AssertionError, match=r"spec\.updatePeriod"):
        assert_conforms(status_request, NODE_STATUS_CRD)
