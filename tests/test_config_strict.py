"""Typos and wrong shapes are refused, each with a message that says what was meant."""

from __future__ import annotations

import pytest
from test_config import error_for, raw_config

from keybuzz.config import ConfigError, check_keys, known_keys, load_stack_yaml, parse_config, project_defaults
from keybuzz.offline import run_program
from keybuzz.server_types import SERVER_TYPE_LOCATIONS, server_type_problem


def keys_error(namespaced):
    with pytest.raises(ConfigError) as caught:
        check_keys(namespaced)
    return caught.value


def test_unknown_project_key_is_refused_with_did_you_mean():
    err = keys_error({"keybuzz-k3s:podCIDR": "10.42.0.0/16"})
    assert err.key == "keybuzz-k3s:podCIDR"
    assert "did you mean 'keybuzz-k3s:podCidr'?" in str(err)


def test_a_boolean_typo_is_refused_with_what_to_write():
    with pytest.raises(ConfigError) as caught:
        parse_config(raw_config(deletionProtection="yes"), "dev", project_defaults())
    assert str(caught.value).startswith(
        "config 'keybuzz-k3s:deletionProtection' = 'yes' is invalid: true or false (yes/no/on/1/0 are refused"
    )


def test_an_unknown_key_is_said_to_be_unknown_not_known():
    err = keys_error({"keybuzz-k3s:podCIDR": "10.42.0.0/16"})
    assert str(err).startswith(
        "config 'keybuzz-k3s:podCIDR' = '10.42.0.0/16' is not a key of this project: "
        "did you mean 'keybuzz-k3s:podCidr'? this project's keys are clusterName, "
    )
    assert "a known key" not in str(err)


def test_a_near_miss_namespace_is_said_to_be_outside_the_projects_namespace():
    err = keys_error({"keybuzz:podCidr": "10.0.0.0/8"})
    assert str(err) == (
        "config 'keybuzz:podCidr' = '10.0.0.0/8' is not under this project's namespace 'keybuzz-k3s:': "
        "did you mean 'keybuzz-k3s:podCidr'? (this project's keys are under 'keybuzz-k3s:')"
    )


def test_a_nested_key_is_named_with_the_projects_namespace():
    err = ConfigError("nodePools[0].serverType", "cx99", "a type sold in fsn1")
    assert str(err) == "config 'keybuzz-k3s:nodePools[0].serverType' = 'cx99' is invalid: a type sold in fsn1"
    assert err.key == "nodePools[0].serverType"


def test_unknown_key_without_a_close_match_lists_the_known_keys():
    err = keys_error({"keybuzz-k3s:flavour": "x"})
    assert "did you mean" not in str(err)
    assert "keys are clusterName, location" in str(err)


@pytest.mark.parametrize("namespace", ["keybuzz", "keybuzz-k3", "keybuz-k3s", "keybuzz_k3s"])
def test_near_miss_namespace_is_refused(namespace):
    err = keys_error({f"{namespace}:podCidr": "10.0.0.0/8"})
    assert err.key == f"{namespace}:podCidr"
    assert "did you mean 'keybuzz-k3s:podCidr'?" in str(err)


def test_other_providers_namespaces_and_known_keys_pass():
    check_keys({"hcloud:token": "x", "kubernetes:context": "y", "keybuzz-k3s:podCidr": "10.42.0.0/16"})


def test_known_keys_come_from_pulumi_yaml():
    import yaml

    declared = yaml.safe_load(open("Pulumi.yaml"))["config"]
    assert set(declared) <= set(known_keys())


def test_a_typo_in_a_stack_file_fails_the_offline_run():
    with pytest.raises(ConfigError, match="did you mean 'keybuzz-k3s:podCidr'"):
        run_program("dev", overrides={"keybuzz:podCidr": "10.0.0.0/8"})


@pytest.mark.parametrize("value", ["yes", "1", "on", "True ", 1])
def test_booleans_are_true_or_false_only(value):
    err = error_for(allowUnverifiedPromotion=value)
    assert err.key == "allowUnverifiedPromotion" and err.value == value
    assert "true or false" in str(err)


def test_the_cli_strings_true_and_false_are_booleans():
    from test_config import raw_config

    from keybuzz.config import parse_config, project_defaults

    cfg = parse_config(raw_config(deletionProtection="true", allowUnverifiedPromotion="false"), "dev",
                       project_defaults())  # fmt: skip
    assert cfg.deletion_protection is True and cfg.allow_unverified_promotion is False


def test_stack_files_are_read_as_the_cli_reads_them_yes_is_a_string():
    doc = load_stack_yaml("config:\n  keybuzz-k3s:allowUnverifiedPromotion: yes\n  keybuzz-k3s:x: true\n")
    assert doc["config"] == {"keybuzz-k3s:allowUnverifiedPromotion": "yes", "keybuzz-k3s:x": True}


def test_yes_in_a_stack_file_is_refused_offline_too():
    with pytest.raises(ConfigError, match="'keybuzz-k3s:allowUnverifiedPromotion' = 'yes' is invalid: true or false"):
        run_program("staging", stack_doc=load_stack_yaml(
            "config:\n  keybuzz-k3s:promotesFrom: dev\n  keybuzz-k3s:allowUnverifiedPromotion: yes\n"))  # fmt: skip


def test_a_string_for_the_key_list_says_the_shape_wanted():
    err = error_for(sshPublicKeys="ssh-ed25519 AAAA")
    assert err.key == "sshPublicKeys"
    assert "a list of OpenSSH public key lines" in str(err)
    assert "structured" not in str(err)


def test_a_string_for_the_key_list_says_the_shape_through_the_engine():
    # The CLI hands a YAML string over as plain text (not JSON): the same message, not a JSON error.
    with pytest.raises(ConfigError, match="a list of OpenSSH public key lines"):
        run_program("dev", overrides={"keybuzz-k3s:sshPublicKeys": "ssh-ed25519 AAAA"})


@pytest.mark.parametrize(
    ("key", "shape"),
    [("adminCidrs", "a list of CIDRs"), ("nodePools", "a list of pools {name, count")],
)
def test_other_lists_say_their_shape(key, shape):
    assert shape in str(error_for(**{key: "10.0.0.0/8"}))


def test_a_cidr_overlapping_two_ranges_names_both():
    err = error_for(podCidr="10.0.0.0/8")
    assert err.key == "podCidr" and err.value == "10.0.0.0/8"
    assert "serviceCidr 10.43.0.0/16" in str(err) and "networkCidr 10.0.0.0/16" in str(err)
    assert "(it overlaps both)" in str(err)


def test_a_misspelled_nested_field_gets_a_did_you_mean():
    err = error_for(controlPlane={"count": 1, "serverTyp": "cx23"})
    assert "did you mean serverType?" in str(err)


def test_unknown_server_type_is_refused_with_did_you_mean():
    err = error_for(controlPlane={"count": 1, "serverType": "cx9999"})
    assert err.key == "controlPlane.serverType" and err.value == "cx9999"
    assert "did you mean" in str(err) and "cx23" in str(err)


def test_eu_only_type_is_refused_in_the_us_naming_where_it_is_sold():
    err = error_for(location="ash", controlPlane={"count": 1, "serverType": "cx23"},
                    nodePools=[{"name": "w", "count": 1, "serverType": "cpx21"}])  # fmt: skip
    assert err.key == "controlPlane.serverType"
    assert "cx23 is sold only in fsn1, nbg1, hel1" in str(err) and "cpx21" in str(err)


def test_pool_server_type_is_checked_too():
    err = error_for(nodePools=[{"name": "w", "count": 1, "serverType": "cax99"}])
    assert err.key == "nodePools[0].serverType" and "did you mean" in str(err)


@pytest.mark.parametrize(("server_type", "location"), [("cx23", "fsn1"), ("cpx31", "sin"), ("ccx23", "hil"),
                                                       ("cax21", "hel1")])  # fmt: skip
def test_known_types_in_their_locations_pass(server_type, location):
    assert server_type_problem(server_type, location) is None


def test_arm_and_cost_optimized_types_are_eu_only():
    eu_only = {t for t, where in SERVER_TYPE_LOCATIONS.items() if "ash" not in where}
    assert {"cx23", "cx33", "cx43", "cax11", "cax41"} <= eu_only
    assert not any(t.startswith(("cpx", "ccx")) for t in eu_only)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])  # one program run per test
def test_committed_stacks_use_known_types(stack):
    run_program(stack)  # raises ConfigError on an unknown type


@pytest.mark.parametrize("key", ["keybuzz-k3s:sshPrivatekey", "keybuzz:sshPrivateKey"], ids=["typo", "namespace"])
def test_a_misspelt_secret_key_is_named_but_its_decrypted_value_is_not_printed(key):
    private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
    with pytest.raises(ConfigError) as caught:
        check_keys({key: private}, secret_keys=frozenset({key}))
    assert caught.value.key == key
    assert "did you mean 'keybuzz-k3s:sshPrivateKey'?" in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value) and "b3BlbnNz" not in str(caught.value)
    assert caught.value.value == "[secret, not shown]"


def test_the_program_hides_the_value_of_a_misspelt_secret_key():
    from keybuzz.offline import SECRET_PLACEHOLDER

    with pytest.raises(ConfigError) as caught:
        run_program("dev", overrides={"keybuzz-k3s:sshPrivatekey": {"secure": "v1:abc"}})
    assert caught.value.key == "keybuzz-k3s:sshPrivatekey"
    assert SECRET_PLACEHOLDER not in str(caught.value)
