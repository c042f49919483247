"""Pack config: the CLI file format, exemptions, enforcement levels, and the shipped example."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from .helpers import PACK_DIR, example_config, guardrails_module, violations_for, workload

g = guardrails_module()

HOST_NET_DEPLOYMENT = (
    "kubernetes:apps/v1:Deployment",
    "web",
    workload("kubernetes:apps/v1:Deployment", {"hostNetwork": True}, "shop"),
)


def levels(config):
    return {name: s.enforcement_level for name, s in g.resolve_config(config).items()}


def test_defaults_are_mandatory_except_admin_ports_and_the_opaque_release_note():
    advisory = {"admin-ports-not-world": "advisory", "helm-release-opaque": "advisory"}
    assert levels(None) == {name: "mandatory" for name in g.POLICY_NAMES} | advisory


def test_policy_names_are_stable():
    assert g.POLICY_NAMES == (
        "no-host-network",
        "no-host-port",
        "no-app-daemonset",
        "no-node-port",
        "no-hardcoded-ips",
        "no-vxlan-port",
        "ipip-pool",
        "admin-ports-not-world",
        "helm-release-opaque",
    )


def test_all_sets_every_level_and_a_policy_entry_overrides_it():
    resolved = levels({"all": "advisory", "no-host-port": {"enforcementLevel": "mandatory"}, "ipip-pool": "disabled"})
    assert resolved["no-host-network"] == "advisory"
    assert resolved["admin-ports-not-world"] == "advisory"
    assert resolved["no-host-port"] == "mandatory"
    assert resolved["ipip-pool"] == "disabled"


def test_enforcement_level_flows_into_violations():
    (found,) = violations_for([HOST_NET_DEPLOYMENT], {"no-host-network": "advisory"})
    assert (found.enforcement_level, found.blocking) == ("advisory", False)


def test_disabled_policy_reports_nothing():
    assert violations_for([HOST_NET_DEPLOYMENT], {"no-host-network": {"enforcementLevel": "disabled"}}) == []


def test_remediate_blocks_like_mandatory():
    (found,) = violations_for([HOST_NET_DEPLOYMENT], {"no-host-network": "remediate"})
    assert found.blocking


def test_exempt_namespaces_are_configurable_per_policy():
    config = {"no-host-network": {"exemptNamespaces": ["shop"]}}
    assert violations_for([HOST_NET_DEPLOYMENT], config) == []
    # Replacing the list drops the defaults: kube-system is no longer exempt for this policy.
    system = workload("kubernetes:apps/v1:Deployment", {"hostNetwork": True}, "kube-system")
    assert len(violations_for([("kubernetes:apps/v1:Deployment", "sys", system)], config)) == 1


def test_properties_get_schema_defaults():
    props = g.resolve_config({}).get("no-host-port").properties
    assert props == {"exemptNamespaces": list(g.DEFAULT_EXEMPT_NAMESPACES)}


@pytest.mark.parametrize(
    "config,complaint",
    [
        ({"no-such-policy": "mandatory"}, "unknown policies"),
        ({"all": "loud"}, "not an enforcement level"),
        ({"no-host-port": {"enforcementLevel": "strict"}}, "not an enforcement level"),
        ({"no-host-port": {"exemptNamspaces": []}}, "has no property"),
        ({"no-host-port": {"exemptNamespaces": "kube-system"}}, "must be a list"),
        ({"no-host-port": {"exemptNamespaces": [1]}}, "must hold strings"),
        ({"no-node-port": {"allowedServices": ["web"]}}, "does not match"),
        ({"no-vxlan-port": {"vxlanPorts": ["8472"]}}, "must hold integers"),
        ({"admin-ports-not-world": {"adminPorts": [70000]}}, "out of range"),
        ({"ipip-pool": 3}, "expected an enforcement level or an object"),
    ],
)
def test_bad_config_is_refused_with_a_reason(config, complaint):
    with pytest.raises(g.ConfigError, match=complaint):
        g.resolve_config(config)


def advertised_schema(policy):
    """The JSON schema the CLI validates a policy's config against, plus enforcementLevel, made strict."""
    properties = dict(policy.config_schema.properties) if policy.config_schema else {}
    properties["enforcementLevel"] = {"enum": list(g.ENFORCEMENT_LEVELS)}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def test_example_config_validates_against_the_packs_advertised_schema():
    import pack

    policies = {p.name: p for p in pack.build_policies()}
    config = example_config()
    assert set(config) <= set(policies) | {"all"}
    for name, entry in config.items():
        if isinstance(entry, str):
            assert entry in g.ENFORCEMENT_LEVELS
        else:
            jsonschema.Draft7Validator(advertised_schema(policies[name])).validate(entry)


def test_example_config_resolves_to_the_defaults():
    # The example spells out the defaults, so using it changes nothing; editing it is how to change them.
    assert g.resolve_config(example_config()) == g.resolve_config(None)


def test_schema_defaults_validate_against_their_own_schema():
    for spec in g.POLICIES:
        for schema in spec.config_properties.values():
            jsonschema.Draft7Validator(schema).validate(schema["default"])


def test_readme_documents_the_command_and_every_policy():
    readme = (PACK_DIR.parent / "docs" / "policies.md").read_text()  # the pack's page of the project docs
    assert "pulumi preview --policy-pack policies --policy-pack-config policies/config.example.json" in readme
    assert all(f"`{name}`" in readme for name in g.POLICY_NAMES)


def test_pack_files_pin_the_sdk_and_declare_the_python_runtime():
    assert (PACK_DIR / "requirements.txt").read_text().split() == ["pulumi==3.272.0", "pulumi-policy==1.21.0"]
    project = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"virtualenv": "venv"}}


def test_pack_never_imports_the_program():
    for source in PACK_DIR.rglob("*.py"):
        if "venv" in source.relative_to(PACK_DIR).parts:
            continue
        text = source.read_text()
        assert "import keybuzz" not in text and "from keybuzz" not in text, source
        assert "import components" not in text and "from components" not in text, source


def test_the_verdict_reads_the_same_whatever_order_the_resources_come_in():
    import guardrails

    bad_pod = {"metadata": {"namespace": "shop"}, "spec": {"hostNetwork": True, "containers": [
        {"name": "a", "image": "x:1", "ports": [{"containerPort": 80, "hostPort": 80}]}]}}
    resources = [("kubernetes:core/v1:Pod", f"pod-{i}", bad_pod) for i in range(3)]
    forward = [str(v) for v in guardrails.evaluate(resources)]
    backward = [str(v) for v in guardrails.evaluate(list(reversed(resources)))]
    assert forward == backward
    assert [v.split(" (")[0] for v in forward] == [
        f"[mandatory] {policy}: pod-{i}" for i in range(3) for policy in ("no-host-network", "no-host-port")
    ]
