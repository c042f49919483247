"""Calico and ingress-nginx as the program declares them, under the mock engine."""

from __future__ import annotations

import pytest
from harness import STACKS, run_program, upstream

import keybuzz.calico
from keybuzz.guards import CriticalConfigProvider
from tests.calico.crd_schema import assert_conforms

RELEASE = "kubernetes:helm.sh/v3:Release"
INSTALLATION = "kubernetes:operator.tigera.io/v1:Installation"
IPPOOL_PATCH = "kubernetes:crd.projectcalico.org/v1:IPPoolPatch"
SYSTEM_NAMESPACES = {"kube-system", "tigera-operator", "calico-system", "ingress-nginx"}


@pytest.fixture(scope="module", params=STACKS)
def run(request):
    return run_program(request.param)


def the(run, type_token):
    (resource,) = run.of_type(type_token)
    return resource


def release(run, chart):
    return next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == chart)


def walk(value, path=""):
    """Every (path, leaf) in a nested inputs structure."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk(item, f"{path}[{i}]")
    else:
        yield path, value


def test_installation_has_one_ipip_pool_matching_the_cluster(run):
    spec = the(run, INSTALLATION).inputs["spec"]
    network = spec["calicoNetwork"]
    assert network["ipPools"] == [
        {
            "name": "default-ipv4-ippool",
            "cidr": "10.42.0.0/16",  # == podCidr == K3s cluster-cidr
            "encapsulation": "IPIP",
            "natOutgoing": "Enabled",
            "blockSize": 26,
            "nodeSelector": "all()",
            # tigera-operator's pool defaults, so a later server-side apply does not conflict.
            "allowedUses": ["Workload", "Tunnel"],
            "disableNewAllocations": False,
            "assignmentMode": "Automatic",
        }
    ]
    assert network["bgp"] == "Enabled"
    assert network["mtu"] == 1430
    assert network["nodeAddressAutodetectionV4"] == {"cidrs": ["10.0.1.0/24"]}  # == subnetCidr
    assert network["containerIPForwarding"] == "Enabled"


def test_installation_as_declared_conforms_to_calicos_crd(run):
    installation = the(run, INSTALLATION)
    manifest = {
        "apiVersion": installation.inputs["apiVersion"],
        "kind": installation.inputs["kind"],
        "metadata": {"name": installation.inputs["metadata"]["name"]},
        "spec": installation.inputs["spec"],
    }
    assert_conforms(manifest, "operator.tigera.io_installations.yaml")


def test_pool_and_autodetection_follow_the_stack_config():
    run = run_program(
        "dev", overrides={"keybuzz-k3s:podCidr": "10.244.0.0/16", "keybuzz-k3s:subnetCidr": "10.0.8.0/24"}
    )
    network = the(run, INSTALLATION).inputs["spec"]["calicoNetwork"]
    assert network["ipPools"][0]["cidr"] == "10.244.0.0/16"
    assert network["nodeAddressAutodetectionV4"]["cidrs"] == ["10.0.8.0/24"]
    assert the(run, IPPOOL_PATCH).inputs["spec"]["cidr"] == "10.244.0.0/16"


def test_mtu_is_derived_from_the_network_mtu_constant(monkeypatch):
    monkeypatch.setattr(keybuzz.calico, "HETZNER_PRIVATE_NETWORK_MTU", 1400)
    run = run_program("dev")
    assert the(run, INSTALLATION).inputs["spec"]["calicoNetwork"]["mtu"] == 1380
    assert run.outputs["podMtu"] == 1380


def test_an_mtu_override_within_bounds_is_used():
    run = run_program("dev", overrides={"keybuzz-k3s:calicoMtu": 1400})
    assert the(run, INSTALLATION).inputs["spec"]["calicoNetwork"]["mtu"] == 1400


def test_the_pool_is_kept_ipip_always_vxlan_never_on_every_up(run):
    pool = the(run, IPPOOL_PATCH)
    assert pool.inputs["metadata"]["name"] == "default-ipv4-ippool"
    assert pool.inputs["spec"]["ipipMode"] == "Always"
    assert pool.inputs["spec"]["vxlanMode"] == "Never"
    assert pool.inputs["spec"]["natOutgoing"] is True
    annotations = pool.inputs["metadata"]["annotations"]
    assert annotations["pulumi.com/patchForce"] == "true"
    again = run_program(run.stack)
    assert (
        the(again, IPPOOL_PATCH).inputs["metadata"]["annotations"]["keybuzz.io/asserted-by-run"]
        != (annotations["keybuzz.io/asserted-by-run"])
    )


def test_no_declared_resource_enables_vxlan(run):
    for resource in run.resources:
        for path, leaf in walk(resource.inputs):
            if isinstance(leaf, str) and "vxlan" in leaf.lower():
                pytest.fail(f"{resource.name}: {path} = {leaf}")
            if path.lower().endswith("vxlanmode"):
                assert leaf == "Never", f"{resource.name}: {path} = {leaf}"


def test_a_pod_cidr_change_is_refused_at_preview(run):
    guard = next(r for r in run.resources if r.name.endswith("-critical-config"))
    assert guard.inputs["cluster-cidr"] == "10.42.0.0/16"
    news = {k: v for k, v in guard.inputs.items() if k != "__provider"} | {"cluster-cidr": "10.50.0.0/16"}
    failures = CriticalConfigProvider().check(guard.inputs, news).failures
    assert [f.property for f in failures] == ["cluster-cidr"]
    assert "pool migration" in failures[0].reason


def test_calico_and_ingress_use_the_clusters_provider_and_wait_for_it(run):
    provider = f"::keybuzz-{run.stack}-k3s-k8s::"
    # ... and every rollout batch's overlay check (keybuzz/verify/rollout_check.py) passed or skipped.
    joined = {r.name for r in run.resources if "-k3s-install-" in r.name or "-k3s-ready-" in r.name
              or "-rollout-check-batch-" in r.name}
    operator = release(run, "tigera-operator")
    installation = the(run, INSTALLATION)
    pool = the(run, IPPOOL_PATCH)
    nginx = release(run, "ingress-nginx")
    for resource in (operator, installation, pool, nginx):
        assert provider in resource.provider, resource.name
    # Every node has joined (calico-node runs everywhere) and every batch was checked: the last batch's
    # boundary (here, batches of one with verify.betweenBatches on: the last batch's check, after the
    # last node's ready) stands after every install, ready and check.
    (last,) = operator.depends_on
    checks = sorted(n for n in joined if "-rollout-check-batch-" in n)
    assert len(checks) == len([n for n in joined if "-k3s-ready-" in n])  # one per node
    assert last == f"keybuzz-{run.stack}-rollout-check-batch-{len(checks) - 1}"
    (ready,) = run.named(last).depends_on
    assert ready.startswith(f"keybuzz-{run.stack}-k3s-ready-") and joined <= upstream(run, last) | {last}
    assert operator.name in installation.depends_on
    assert pool.depends_on == [installation.name]
    # Calico first; the edge guard too, so a refused edge step fails before the release changes.
    assert sorted(nginx.depends_on) == sorted([installation.name, f"keybuzz-{run.stack}-ingress-edge"])


def test_calico_readiness_is_awaited_before_pod_networking(run):
    annotations = the(run, INSTALLATION).inputs["metadata"]["annotations"]
    assert annotations["pulumi.com/waitFor"] == "condition=Ready"
    assert annotations["pulumi.com/timeoutSeconds"] == "600"


def test_versions_are_pinned_and_come_from_config(run):
    operator = release(run, "tigera-operator")
    nginx = release(run, "ingress-nginx")
    assert operator.inputs["version"] == "v3.31.7"
    assert operator.inputs["repositoryOpts"]["repo"] == "https://docs.tigera.io/calico/charts"
    assert nginx.inputs["version"] == "4.15.1"
    assert nginx.inputs["repositoryOpts"]["repo"] == "https://kubernetes.github.io/ingress-nginx"
    for resource in run.resources:
        for path, leaf in walk(resource.inputs):
            assert not (isinstance(leaf, str) and leaf.endswith(":latest")), f"{resource.name}: {path}"


def test_pinned_defaults_agree_with_the_modules_that_render_them():
    from keybuzz import ingress
    from keybuzz.config import project_defaults

    defaults = project_defaults()
    assert defaults["calicoVersion"] == keybuzz.calico.CALICO_VERSION
    assert defaults["ingressNginxVersion"] == ingress.INGRESS_NGINX_CHART_VERSION


def test_ingress_nginx_is_a_hostnetwork_daemonset_behind_a_clusterip(run):
    nginx = release(run, "ingress-nginx")
    assert nginx.inputs["namespace"] == "ingress-nginx"
    controller = nginx.inputs["values"]["controller"]
    assert controller["kind"] == "DaemonSet"
    assert controller["hostNetwork"] is True
    assert controller["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert controller["service"]["type"] == "ClusterIP"
    assert controller["hostPort"]["enabled"] is False


def test_the_operator_chart_does_not_install_its_own_installation(run):
    values = release(run, "tigera-operator").inputs["values"]
    assert values["installation"]["enabled"] is False
    assert release(run, "tigera-operator").inputs["namespace"] == "tigera-operator"


POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def test_no_workload_outside_system_namespaces_uses_the_host_network(run):
    inspected = 0
    for resource in run.resources:
        if not resource.type.startswith("kubernetes:") or "spec" not in resource.inputs:
            continue
        kind = resource.type.rsplit(":", 1)[-1]
        if kind not in ("Pod", "Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job", "CronJob"):
            continue
        pod = resource.inputs
        for key in POD_SPEC_PATHS.get(kind, ("spec", "template", "spec")):
            pod = pod.get(key) or {}
        namespace = (resource.inputs.get("metadata") or {}).get("namespace", "default")
        if namespace in SYSTEM_NAMESPACES:
            continue
        inspected += 1
        assert not pod.get("hostNetwork"), resource.name
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            assert not [p for p in container.get("ports", []) if p.get("hostPort")], resource.name
    assert inspected == 2  # the probe fixture's echo and client DaemonSets (namespace overlay-probe)
