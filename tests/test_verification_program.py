"""The overlay checks as the program declares them: after Calico, on every up, and loadable by the engine."""

from __future__ import annotations

import json
import subprocess
import sys

import pulumi
import pytest
from harness import REPO, STACKS, run_program, secret_value

from keybuzz.offline import CHECK_TYPE_PREFIX, unwrap_secret
from keybuzz.promotion import Commit

SHA = "0123456789abcdef0123456789abcdef01234567"
CHECK_NAMES = ["calico", "clusterip", "dns", "external", "ingress", "mesh", "mtu"]


@pytest.fixture(scope="module", params=STACKS)
def run(request):
    return run_program(request.param, commit=Commit(SHA, dirty=False))


def checks_of(run):
    return sorted((r for r in run.resources if r.type.startswith(CHECK_TYPE_PREFIX)), key=lambda r: r.name)


def fixture_of(run):
    return [r for r in run.resources if "-verify-" in r.name and r.type.startswith("kubernetes:")]


def test_one_check_resource_per_path_class(run):
    assert [c.name.rsplit("-", 1)[-1] for c in checks_of(run)] == CHECK_NAMES


def test_the_fixture_is_declared_after_calico_and_ingress_with_the_clusters_provider(run):
    name = f"keybuzz-{run.stack}"
    kinds = sorted(r.type.rsplit(":", 1)[-1] for r in fixture_of(run))
    nodes = len(run.of_type("hcloud:index/server:Server"))
    assert kinds == sorted(
        ["Namespace", "ConfigMap", "DaemonSet", "DaemonSet", "Service", "Ingress"] + ["CalicoNodeStatus"] * nodes
    )
    for resource in fixture_of(run):
        assert f"::{name}-k3s-k8s::" in resource.provider, resource.name
        assert f"{name}-calico-installation" in resource.depends_on, resource.name
        assert f"{name}-ingress-nginx" in resource.depends_on, resource.name


def test_checks_run_after_the_fixture_calico_and_ingress(run):
    fixture_names = {r.name for r in fixture_of(run)}
    for check in checks_of(run):
        deps = set(check.depends_on)
        assert fixture_names <= deps, check.name
        assert {f"keybuzz-{run.stack}-calico-installation", f"keybuzz-{run.stack}-ingress-nginx"} <= deps


def test_checks_get_the_cluster_as_planned(run):
    servers = run.of_type("hcloud:index/server:Server")
    for check in checks_of(run):
        inputs = check.inputs
        assert sorted(n["name"] for n in inputs["nodes"]) == sorted(s.name for s in servers)
        assert {n["privateIp"] for n in inputs["nodes"]} == {s.inputs["networks"][0]["ip"] for s in servers}
        assert inputs["podCidr"] == "10.42.0.0/16" and inputs["subnetCidr"] == "10.0.1.0/24"
        assert inputs["poolMtu"] == 1430
        assert inputs["timeoutSeconds"] == 60
        assert inputs["probeNamespace"] == "overlay-probe"
        assert "server: https://203.0.113." in secret_value(inputs["kubeconfig"])


def test_every_up_rechecks_because_the_run_id_changes():
    first = {c.name: c.inputs["runId"] for c in checks_of(run_program("dev"))}
    second = {c.name: c.inputs["runId"] for c in checks_of(run_program("dev"))}
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first)
    assert len(set(first.values())) == 1  # one id per run


def test_external_urls_and_timeout_come_from_config():
    run = run_program(
        "dev",
        overrides={"keybuzz-k3s:verify": {"externalUrls": ["https://platform.keybuzz.io"], "timeoutSeconds": 90}},
    )
    for check in checks_of(run):
        assert check.inputs["externalUrls"] == ["https://platform.keybuzz.io"]
        assert check.inputs["timeoutSeconds"] == 90


def test_verification_can_be_turned_off_and_then_nothing_is_verified():
    run = run_program("dev", overrides={"keybuzz-k3s:verify": {"enabled": False}}, commit=Commit(SHA, False))
    assert checks_of(run) == [] and fixture_of(run) == []
    assert run.outputs["verifiedCommit"] == ""


def test_verified_commit_is_exported_only_when_every_check_passed(run):
    assert run.outputs["verifiedCommit"] == SHA
    failing = run_program(run.stack, commit=Commit(SHA, dirty=False), failing_checks=frozenset({"mesh"}))
    assert failing.outputs["verifiedCommit"] == ""


def test_a_dirty_tree_is_never_the_verified_commit():
    assert run_program("dev", commit=Commit(SHA, dirty=True)).outputs["verifiedCommit"] == ""


def test_check_outputs_are_exported_without_secrets(run):
    assert sorted(run.outputs["checks"]) == CHECK_NAMES
    assert "checks" not in run.secret_outputs
    assert "kubeconfig" not in json.dumps(run.outputs["checks"])


FRESH = r"""
import base64, json, sys
import dill
result = {}
for name, blob in json.load(sys.stdin).items():
    provider = dill.loads(base64.b64decode(blob))
    result[name] = [type(provider).__module__ + "." + type(provider).__qualname__,
                    provider.diff("id", {}, {}).changes]
print(json.dumps(result))
"""


def test_declared_dynamic_providers_load_in_a_fresh_process_like_the_engines():
    # The __provider input is exactly what the engine hands its dynamic-provider process.
    run = run_program("staging")
    blobs = {r.name: unwrap_secret(r.inputs["__provider"]) for r in run.resources if "__provider" in r.inputs}
    # the checks, the critical-config guard, the promotion gate, the ingress edge guard, the deployed-stack
    # guard, one server-type change per node (3 servers + 2 workers), the API LB's public-interface switch,
    # the cluster origin (which server may run cluster-init), the record of SSH keys on every node
    assert len(blobs) == len(CHECK_NAMES) + 4 + 5 + 1 + 1 + 1
    done = subprocess.run(
        [sys.executable, "-c", FRESH],
        input=json.dumps(blobs),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    for name in blobs:
        if "-verify-check-" in name:
            assert loaded[name] == ["keybuzz.verify.providers.CheckProvider", True]
    assert loaded["keybuzz-staging-k3s-critical-config"][0] == "keybuzz.guards.CriticalConfigProvider"
    assert loaded["keybuzz-staging-promotion-gate"][0] == "keybuzz.promotion.PromotionGateProvider"
    assert loaded["keybuzz-staging-ingress-edge"][0] == "keybuzz.ingress_guard.EdgeGuardProvider"
    assert loaded["keybuzz-staging-k3s-resize-keybuzz-staging-cp-1"][0] == "keybuzz.resize.ServerTypeChangeProvider"
    assert loaded["keybuzz-staging-deployed-stack"][0] == "keybuzz.guards.DeployedStackProvider"
    assert loaded["keybuzz-staging-authorized-keys-on-every-node"][0] == "keybuzz.guards.SshKeysRecordProvider"
    assert loaded["keybuzz-staging-k3s-cluster-origin"][0] == "keybuzz.cluster_origin.ClusterOriginProvider"


def test_probe_image_defaults_are_the_fixtures_pinned_references():
    from keybuzz.config import project_defaults
    from keybuzz.verify import fixture

    verify = project_defaults()["verify"]
    assert verify["clientImage"] == fixture.DEFAULT_CLIENT_IMAGE
    assert verify["echoImage"] == fixture.DEFAULT_ECHO_IMAGE
    assert all("@sha256:" in image for image in (verify["clientImage"], verify["echoImage"]))


def test_the_checks_summary_is_one_output_so_a_preview_shows_one_unknown():
    preview = run_program("dev", preview=True, probe=lambda built: {
        "summaryIsOneOutput": isinstance(built.exports["checks"], pulumi.Output),
    })
    assert preview.outputs["summaryIsOneOutput"] is True
    assert "checks" in preview.unknown_outputs  # one unknown object, not 7 x 5 unknown fields


def test_the_checks_summary_after_up_holds_each_checks_fields(run):
    fields = {"tested", "total", "failed", "skipped", "latencyMs"}
    assert all(set(summary) == fields for summary in run.outputs["checks"].values())
    assert all(summary["failed"] == 0 for summary in run.outputs["checks"].values())
