"""Stack config validation: each rule refuses a bad value with one message naming key, value and rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from harness import STACK_FIXTURES, TEST_SSH_KEY

from keybuzz.config import ConfigError, parse_config, project_defaults


def raw_config(**overrides: Any) -> dict[str, Any]:
    """Pulumi.yaml defaults plus the per-operator values, as the CLI hands them over (parsed)."""
    raw = copy.deepcopy(project_defaults())
    raw.update(
        sshPublicKeys=[TEST_SSH_KEY],
        adminCidrs=["198.51.100.0/24"],
        nodePools=[{"name": "workers", "count": 2, "serverType": "cx33"}],
    )
    raw.update(overrides)
    return raw


def error_for(stack: str = "dev", **overrides: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw_config(**overrides), stack, project_defaults())
    return caught.value


def test_defaults_parse_into_typed_config():
    cfg = parse_config(raw_config(), "dev", project_defaults())
    assert cfg.pod_cidr == "10.42.0.0/16"
    assert cfg.service_cidr == "10.43.0.0/16"
    assert cfg.network_zone == "eu-central"
    assert cfg.control_plane.count == 1
    assert [n.name for n in cfg.nodes] == ["keybuzz-cp-1", "keybuzz-workers-1", "keybuzz-workers-2"]
    assert cfg.verify.enabled is True and cfg.verify.timeout_seconds == 60


@pytest.mark.parametrize("count", [2, 4])
def test_even_control_plane_count_is_refused_for_etcd_quorum(count):
    err = error_for(controlPlane={"count": count, "serverType": "cx23"})
    assert err.key == "controlPlane.count"
    assert err.value == count
    assert "odd number" in str(err) and "quorum" in str(err)


def test_unknown_location_is_refused_with_the_known_ones():
    err = error_for(location="fra1")
    assert err.key == "location" and err.value == "fra1"
    assert "fsn1" in str(err) and "hel1" in str(err)


def test_overlapping_pod_and_service_cidrs_are_refused():
    err = error_for(serviceCidr="10.42.128.0/17")
    assert err.key == "podCidr"
    assert "does not overlap serviceCidr 10.42.128.0/17" in str(err)


def test_pod_cidr_overlapping_the_private_network_is_refused():
    err = error_for(podCidr="10.0.0.0/15")
    assert err.key == "podCidr" and "networkCidr 10.0.0.0/16" in str(err)


def test_service_cidr_overlapping_the_private_network_is_refused():
    err = error_for(serviceCidr="10.0.128.0/17")
    assert err.key == "serviceCidr" and "networkCidr" in str(err)


def test_subnet_outside_the_network_is_refused():
    err = error_for(subnetCidr="10.1.0.0/24")
    assert err.key == "subnetCidr" and err.value == "10.1.0.0/24"
    assert "inside networkCidr 10.0.0.0/16" in str(err)


def test_cidr_with_host_bits_is_refused():
    err = error_for(podCidr="10.42.0.1/16")
    assert err.key == "podCidr" and "no host bits" in str(err)


def test_too_many_nodes_for_the_subnet_is_refused():
    err = error_for(subnetCidr="10.0.1.0/27", nodePools=[{"name": "workers", "count": 20, "serverType": "cx23"}])
    assert err.key == "subnetCidr" and err.value == "10.0.1.0/27"
    assert "room for 20 workers" in str(err)


def test_a_subnet_that_fits_exactly_is_accepted():
    # /26: 64 addresses, workers at offsets 20..62, broadcast at 63.
    pools = [{"name": "workers", "count": 43, "serverType": "cx23"}]
    cfg = parse_config(raw_config(subnetCidr="10.0.1.0/26", nodePools=pools), "dev", project_defaults())
    assert cfg.agents[-1].private_ip == "10.0.1.62"


@pytest.mark.parametrize("admin", [[], ["0.0.0.0/0"], ["198.51.100.0/24", "::/0"]])
def test_empty_or_world_open_admin_cidrs_are_refused_in_prod(admin):
    err = error_for("prod", adminCidrs=admin)
    assert err.key == "adminCidrs" and err.value == admin
    assert "in stack 'prod'" in str(err)


def test_world_open_admin_cidrs_are_allowed_outside_prod():
    cfg = parse_config(raw_config(adminCidrs=["0.0.0.0/0"]), "dev", project_defaults())
    assert cfg.admin_cidrs == ("0.0.0.0/0",)


def test_malformed_admin_cidr_is_refused():
    err = error_for(adminCidrs=["my-office"])
    assert err.key == "adminCidrs[0]" and err.value == "my-office"


@pytest.mark.parametrize(
    "key",
    [
        "ssh-ed25519",
        "ssh-ed25519 not-base64!",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        # Body of an ed25519 key declared as RSA: the type inside the blob does not match.
        TEST_SSH_KEY.replace("ssh-ed25519", "ssh-rsa", 1),
    ],
)
def test_malformed_ssh_keys_are_refused(key):
    err = error_for(sshPublicKeys=[key])
    assert err.key == "sshPublicKeys[0]"
    assert "OpenSSH public key" in err.allowed or "public key" in err.allowed


def test_no_ssh_key_is_refused():
    err = error_for(sshPublicKeys=[])
    assert err.key == "sshPublicKeys" and "at least one" in str(err)


def test_duplicate_pool_names_are_refused():
    pools = [
        {"name": "workers", "count": 1, "serverType": "cx23"},
        {"name": "workers", "count": 1, "serverType": "cx33"},
    ]
    err = error_for(nodePools=pools)
    assert err.key == "nodePools[1].name" and err.value == "workers"
    assert "used once" in str(err)


def test_negative_pool_count_is_refused():
    err = error_for(nodePools=[{"name": "workers", "count": -1, "serverType": "cx23"}])
    assert err.key == "nodePools[0].count" and err.value == -1 and ">= 0" in str(err)


def test_negative_control_plane_count_is_refused():
    err = error_for(controlPlane={"count": -3, "serverType": "cx23"})
    assert err.key == "controlPlane.count" and ">= 1" in str(err)


def test_unknown_pool_field_is_refused():
    err = error_for(nodePools=[{"name": "workers", "count": 1, "serverType": "cx23", "size": 3}])
    assert err.key == "nodePools[0]" and "size" in str(err)


def test_bad_taint_is_refused():
    err = error_for(nodePools=[{"name": "gpu", "count": 1, "serverType": "cx23", "taints": ["gpu=true"]}])
    assert err.key == "nodePools[0].taints[0]" and "NoSchedule" in str(err)


def test_unpinned_k3s_version_is_refused():
    err = error_for(k3sVersion="stable")
    assert err.key == "k3sVersion" and err.value == "stable" and "v1.34.1+k3s1" in str(err)


def test_unpinned_calico_version_is_refused():
    err = error_for(calicoVersion="latest")
    assert err.key == "calicoVersion" and err.value == "latest"


def test_unpinned_ingress_chart_version_is_refused():
    err = error_for(ingressNginxVersion="4.x")
    assert err.key == "ingressNginxVersion"


def test_probe_image_tagged_latest_is_refused():
    err = error_for(verify={"clientImage": "nicolaka/netshoot:latest"})
    assert err.key == "verify.clientImage" and "not 'latest'" in str(err)


def test_verify_timeout_beyond_dynamic_provider_limit_is_refused():
    err = error_for(verify={"timeoutSeconds": 300})
    assert err.key == "verify.timeoutSeconds" and err.value == 300 and "180" in str(err)


def test_verify_fields_default_individually():
    cfg = parse_config(raw_config(verify={"externalUrls": ["https://platform.keybuzz.io"]}), "dev", project_defaults())
    assert cfg.verify.external_urls == ("https://platform.keybuzz.io",)
    assert cfg.verify.timeout_seconds == 60


def test_external_url_must_be_http():
    err = error_for(verify={"externalUrls": ["platform.keybuzz.io"]})
    assert err.key == "verify.externalUrls[0]"


def test_bad_cluster_name_is_refused():
    err = error_for(clusterName="KeyBuzz_Prod")
    assert err.key == "clusterName" and "lowercase" in str(err)


def test_missing_required_key_names_the_key():
    raw = raw_config()
    del raw["adminCidrs"]
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "dev", project_defaults())
    assert caught.value.key == "adminCidrs"
    assert str(caught.value) == (
        "config 'keybuzz-k3s:adminCidrs' = None is invalid: required: add it to Pulumi.<stack>.yaml under "
        'config: (README, "First run")'
    )


def test_numbers_given_as_strings_by_the_cli_are_accepted():
    cfg = parse_config(raw_config(calicoMtu="1400"), "dev", project_defaults())
    assert cfg.calico_mtu == 1400


@pytest.mark.parametrize("mtu", [1450, 1500, 1000])
def test_mtu_override_outside_what_fits_ipip_is_refused(mtu):
    err = error_for(calicoMtu=mtu)
    assert err.key == "calicoMtu" and err.value == mtu
    assert "1280 to 1430" in str(err)


@pytest.mark.parametrize(("stack", "value"), [("prod", ""), ("prod", "dev"), ("staging", "")])
def test_gated_stacks_must_promote_from_the_previous_stage(stack, value):
    err = error_for(stack, promotesFrom=value)
    assert err.key == "promotesFrom" and err.value == value
    assert "never ungated" in str(err)


def test_a_stack_cannot_promote_from_itself():
    err = error_for("qa", promotesFrom="qa")
    assert err.key == "promotesFrom" and "another stack" in str(err)


@pytest.mark.parametrize(
    ("overrides", "key", "value"),
    [
        ({"image": ""}, "image", ""),
        ({"controlPlane": {"count": 1, "serverType": ""}}, "controlPlane.serverType", ""),
        ({"controlPlane": {"count": 1, "serverType": "cx23", "size": 2}}, "controlPlane", None),
        ({"nodePools": [{"name": "w", "count": 1, "serverType": " "}]}, "nodePools[0].serverType", " "),
        ({"nodePools": [{"name": "Workers", "count": 1, "serverType": "cx23"}]}, "nodePools[0].name", "Workers"),
        (
            {"nodePools": [{"name": "w", "count": 1, "serverType": "cx23", "labels": {"a b": "c"}}]},
            "nodePools[0].labels.a b",
            "c",
        ),
        ({"nodePools": "workers"}, "nodePools", "workers"),
        ({"networkCidr": "10.0.0.0/33"}, "networkCidr", "10.0.0.0/33"),
        ({"serviceCidr": "fd00::/108"}, "serviceCidr", "fd00::/108"),
        ({"calicoMtu": "auto"}, "calicoMtu", "auto"),
        ({"verify": {"enabled": "yes"}}, "verify.enabled", "yes"),
        ({"verify": {"timeoutSeconds": 2}}, "verify.timeoutSeconds", 2),
        ({"verify": {"ingressHost": ""}}, "verify.ingressHost", ""),
        ({"verify": {"echoImage": "nginx"}}, "verify.echoImage", "nginx"),
        ({"verify": {"retries": 3}}, "verify", None),
        ({"allowUnverifiedPromotion": "maybe"}, "allowUnverifiedPromotion", "maybe"),
    ],
)
def test_every_other_key_refuses_a_bad_value_by_name(overrides, key, value):
    err = error_for(**overrides)
    assert err.key == key
    if value is not None:
        assert err.value == value
    assert str(err).startswith(f"config 'keybuzz-k3s:{key}' = ")  # named as in the stack file


def test_api_load_balancer_public_is_off_by_default_and_needs_the_load_balancer():
    three = {"controlPlane": {"count": 3, "serverType": "cx23"}}
    private = parse_config(raw_config(**three), "dev", project_defaults())
    assert (private.api_load_balancer.public, private.api_lb_public) == (False, False)
    public = parse_config(raw_config(**three, apiLoadBalancer={"public": "true"}), "dev", project_defaults())
    assert (public.api_load_balancer.mode, public.api_lb_public) == ("auto", True)  # per-field merge
    one = parse_config(raw_config(apiLoadBalancer={"mode": "on", "public": True}), "dev", project_defaults())
    assert one.api_lb_public is True  # mode on keeps a public address with a single server


def test_api_load_balancer_defaults_to_auto_on_with_several_servers():
    one = parse_config(raw_config(), "dev", project_defaults())
    three = parse_config(raw_config(controlPlane={"count": 3, "serverType": "cx23"}), "dev", project_defaults())
    assert (one.api_lb_enabled, three.api_lb_enabled) == (False, True)
    assert three.api_load_balancer.type == "lb11"
    assert three.join_ip == "10.0.1.5" and one.join_ip == "10.0.1.10"


@pytest.mark.parametrize(
    "overrides, key, value",
    [
        ({"apiLoadBalancer": {"mode": "yes"}}, "apiLoadBalancer.mode", "yes"),
        ({"apiLoadBalancer": {"type": "big"}}, "apiLoadBalancer.type", "big"),
        ({"apiLoadBalancer": {"mode": "on", "size": 1}}, "apiLoadBalancer", None),
        ({"apiLoadBalancer": {"mode": "on", "public": "yes"}}, "apiLoadBalancer.public", "yes"),
        # dev has one server: auto means no load balancer, so there is no public address to use.
        ({"apiLoadBalancer": {"public": True}}, "apiLoadBalancer.public", True),
        ({"apiLoadBalancer": {"mode": "off", "public": True}}, "apiLoadBalancer.public", True),
        ({"deletionProtection": "maybe"}, "deletionProtection", "maybe"),
        ({"agentUpgradeBatchSize": 0}, "agentUpgradeBatchSize", 0),
        ({"agentUpgradeBatchSize": 101}, "agentUpgradeBatchSize", 101),
        ({"agentUpgradeBatchSize": "60%"}, "agentUpgradeBatchSize", "60%"),
        ({"controlPlane": {"count": 1, "serverType": "cx23", "upgradeDisk": "no"}}, "controlPlane.upgradeDisk", "no"),
        (
            {"nodePools": [{"name": "w", "count": 1, "serverType": "cx23", "upgradeDisk": 1}]},
            "nodePools[0].upgradeDisk",
            1,
        ),
    ],
)
def test_day2_keys_refuse_bad_values(overrides, key, value):
    err = error_for(**overrides)
    assert err.key == key
    if value is not None:
        assert err.value == value


def test_prod_protects_its_resources_and_upgrade_disk_defaults_off():
    prod = yaml.safe_load((STACK_FIXTURES / "Pulumi.prod.yaml").read_text())["config"]
    assert prod["keybuzz-k3s:deletionProtection"] is True
    cfg = parse_config(raw_config(), "dev", project_defaults())
    assert cfg.deletion_protection is False and not any(n.upgrade_disk for n in cfg.nodes)


def test_checks_between_rollout_batches_default_on_and_can_be_turned_off():
    assert parse_config(raw_config(), "dev", project_defaults()).verify.between_batches is True
    cfg = parse_config(raw_config(verify={"betweenBatches": False}), "dev", project_defaults())
    assert cfg.verify.between_batches is False
    assert cfg.verify.timeout_seconds == 60  # the other fields keep their defaults


@pytest.mark.parametrize("value", ["yes", 1, "off", None])
def test_a_bad_between_batches_value_is_refused_naming_the_key(value):
    err = error_for(verify={"betweenBatches": value})
    assert (err.key, err.value) == ("verify.betweenBatches", value)
    assert "true or false" in str(err) and "verify.betweenBatches" in str(err)
