"""Start the pack the way the CLI does and talk to it over the Analyzer gRPC interface.

The CLI launches a Python pack through ``pulumi-analyzer-policy-python`` (pulumi/pulumi
sdk/python/dist), which runs ``<venv>/bin/python -u -m pulumi.policy <engine-address> <pack-dir>`` in
the pack folder (``virtualenv`` is resolved against it); ``pulumi.policy`` runs the folder's
``__main__.py``, whose ``PolicyPack(...)`` starts a gRPC server on 127.0.0.1, prints its port on
stdout and serves until killed. Nothing dials the engine address unless the
pack itself fails (it would log there), so no fake engine is needed: an unroutable address will do.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, plugin_pb2

from .helpers import PACK_DIR, guardrails_module, workload

START_TIMEOUT_S = 20
RPC_TIMEOUT_S = 10


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(PACK_DIR)],
        cwd=PACK_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if not line.isdigit():
            proc.kill()
            _, err = proc.communicate(timeout=5)
            pytest.fail(f"pack did not print a port (got {line!r}); stderr:\n{err.decode()}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT_S)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.kill()
        proc.wait(timeout=5)


def struct(value: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def configure(stub, **policies: analyzer_pb2.PolicyConfig) -> None:
    stub.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=policies), timeout=RPC_TIMEOUT_S)


def analyze(stub, type_token: str, name: str, props: dict) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    request = analyzer_pb2.AnalyzeRequest(
        type=type_token, name=name, urn=f"urn:pulumi:dev::keybuzz-k3s::{type_token}::{name}", properties=struct(props)
    )
    return list(stub.Analyze(request, timeout=RPC_TIMEOUT_S).diagnostics)


BAD_DEPLOYMENT = workload(
    "kubernetes:apps/v1:Deployment",
    {"hostNetwork": True, "containers": [{"name": "web"}], "initContainers": [{"ports": [{}, {"hostPort": 8080}]}]},
    namespace="shop",
    name="web",
)


def test_analyzer_info_lists_every_policy_with_its_default_level(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=RPC_TIMEOUT_S)
    g = guardrails_module()
    assert info.name == "keybuzz-guardrails"
    assert info.supportsConfig
    assert [p.name for p in info.policies] == list(g.POLICY_NAMES)
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert levels["admin-ports-not-world"] == levels["helm-release-opaque"] == analyzer_pb2.ADVISORY
    assert {n for n, level in levels.items() if level == analyzer_pb2.MANDATORY} == set(g.POLICY_NAMES) - {
        "admin-ports-not-world",
        "helm-release-opaque",
    }
    schema = next(p for p in info.policies if p.name == "no-node-port").configSchema
    assert list(schema.properties["allowedServices"]["default"]) == ["ingress-nginx/ingress-nginx-controller"]


def test_analyze_reports_a_violating_deployment_with_paths_and_fixes(analyzer):
    configure(analyzer)
    diagnostics = analyze(analyzer, "kubernetes:apps/v1:Deployment", "web", BAD_DEPLOYMENT)
    assert sorted((d.policyName, d.enforcementLevel) for d in diagnostics) == [
        ("no-host-network", analyzer_pb2.MANDATORY),
        ("no-host-port", analyzer_pb2.MANDATORY),
    ]
    by_policy = {d.policyName: d for d in diagnostics}
    assert "web: spec.template.spec.hostNetwork: hostNetwork is true" in by_policy["no-host-network"].message
    # The Struct carried 8080 as a float; the message still says 8080.
    assert (
        "web: spec.template.spec.initContainers[0].ports[1].hostPort: hostPort 8080 is set"
        in by_policy["no-host-port"].message
    )
    assert all(d.policyPackName == "keybuzz-guardrails" for d in diagnostics)


def test_compliant_deployment_gets_no_diagnostics(analyzer):
    configure(analyzer)
    props = workload(
        "kubernetes:apps/v1:Deployment", {"containers": [{"name": "web", "ports": [{"containerPort": 80}]}]}
    )
    assert analyze(analyzer, "kubernetes:apps/v1:Deployment", "web", props) == []


def test_configure_sets_enforcement_levels_and_properties(analyzer):
    configure(
        analyzer,
        **{
            "no-host-network": analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.ADVISORY),
            "no-host-port": analyzer_pb2.PolicyConfig(
                enforcementLevel=analyzer_pb2.MANDATORY, properties=struct({"exemptNamespaces": ["shop"]})
            ),
        },
    )
    try:
        diagnostics = analyze(analyzer, "kubernetes:apps/v1:Deployment", "web", BAD_DEPLOYMENT)
        assert [(d.policyName, d.enforcementLevel) for d in diagnostics] == [("no-host-network", analyzer_pb2.ADVISORY)]
    finally:
        configure(analyzer)


def test_unknown_value_during_preview_becomes_an_advisory_diagnostic(analyzer):
    configure(analyzer)
    props = workload("kubernetes:core/v1:Pod", {"hostNetwork": "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7"}, "shop", "p")
    (diagnostic,) = analyze(analyzer, "kubernetes:core/v1:Pod", "p", props)
    assert diagnostic.policyName == "no-host-network"
    assert diagnostic.enforcementLevel == analyzer_pb2.ADVISORY
    assert "can't be known during preview" in diagnostic.message and "spec.hostNetwork" in diagnostic.message


def test_pack_does_not_implement_handshake(analyzer):
    # pulumi-policy 1.21 predates the Analyzer.Handshake RPC; the engine falls back to argv.
    with pytest.raises(grpc.RpcError) as err:
        analyzer.Handshake(analyzer_pb2.AnalyzerHandshakeRequest(engine_address="127.0.0.1:1"), timeout=RPC_TIMEOUT_S)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_plugin_info_reports_the_policy_sdk_version(analyzer):
    info = analyzer.GetPluginInfo(empty_pb2.Empty(), timeout=RPC_TIMEOUT_S)
    assert isinstance(info, plugin_pb2.PluginInfo) and info.version == "1.21.0"


# --- Helm Releases over gRPC (values arrive as a Struct: every number a float) ----------------------

RELEASE = "kubernetes:helm.sh/v3:Release"


def release(values, namespace="shop"):
    props = {"chart": "c", "version": "1.0.0", "values": values}
    if namespace is not None:
        props["namespace"] = namespace
    return props


def by_level(diagnostics):
    return sorted((d.policyName, d.enforcementLevel) for d in diagnostics)


def test_release_values_with_host_network_and_host_ports_at_any_depth_are_refused(analyzer):
    configure(analyzer)
    values = {
        "controller": {"hostNetwork": True, "hostPort": {"enabled": True}},
        "ports": [{"containerPort": 53}, {"containerPort": 8080, "hostPort": 8080}],
        "sidecar": {"hostPort": 9100},
    }
    diagnostics = analyze(analyzer, RELEASE, "web", release(values))
    assert by_level(diagnostics) == [
        ("helm-release-opaque", analyzer_pb2.ADVISORY),
        ("no-host-network", analyzer_pb2.MANDATORY),
        ("no-host-port", analyzer_pb2.MANDATORY),
        ("no-host-port", analyzer_pb2.MANDATORY),
        ("no-host-port", analyzer_pb2.MANDATORY),
    ]
    messages = "\n".join(d.message for d in diagnostics)
    assert "web: values.controller.hostNetwork: the chart is asked for hostNetwork: true" in messages
    assert "web: values.controller.hostPort.enabled: the chart is asked for hostPort.enabled: true" in messages
    assert "web: values.ports[1].hostPort: the chart is asked for hostPort 8080;" in messages
    assert "web: values.sidecar.hostPort: the chart is asked for hostPort 9100;" in messages
    assert "kubernetes.helm.v4.Chart" in messages


def test_a_compliant_release_gets_only_the_advisory_note(analyzer):
    configure(analyzer)
    diagnostics = analyze(analyzer, RELEASE, "web", release({"replicaCount": 2, "service": {"type": "ClusterIP"}}))
    assert by_level(diagnostics) == [("helm-release-opaque", analyzer_pb2.ADVISORY)]


def test_a_release_in_an_exempt_namespace_passes_and_look_alikes_do_not(analyzer):
    configure(analyzer)
    values = {"controller": {"hostNetwork": True}}
    assert analyze(analyzer, RELEASE, "ingress", release(values, "traefik")) == []
    for look_alike in ("kube-system-evil", "Kube-System"):
        diagnostics = analyze(analyzer, RELEASE, "ingress", release(values, look_alike))
        assert ("no-host-network", analyzer_pb2.MANDATORY) in by_level(diagnostics), look_alike


def test_a_release_without_a_namespace_is_judged_as_default(analyzer):
    configure(analyzer)
    diagnostics = analyze(analyzer, RELEASE, "web", release({"hostPID": True}, namespace=None))
    assert ("no-host-network", analyzer_pb2.MANDATORY) in by_level(diagnostics)


def test_release_values_unknown_at_preview_are_advisory(analyzer):
    configure(analyzer)
    diagnostics = analyze(analyzer, RELEASE, "web", release("04da6b54-80e4-46f7-96ec-b56ff0331ba9"))
    assert {d.enforcementLevel for d in diagnostics} == {analyzer_pb2.ADVISORY}
    preview = [d for d in diagnostics if "can't be known during preview" in d.message]
    assert {d.policyName for d in preview} == {"no-host-network", "no-host-port"}
    assert all("values" in d.message for d in preview)


# --- numbers as the user wrote them ----------------------------------------------------------------


def test_configured_admin_ports_print_as_written_not_as_floats(analyzer):
    # The CLI hands integer config over as floats (Struct); the message still says 22, not 22.0.
    configure(
        analyzer,
        **{
            "admin-ports-not-world": analyzer_pb2.PolicyConfig(
                enforcementLevel=analyzer_pb2.ADVISORY, properties=struct({"adminPorts": [22, 6443]})
            ),
            "no-vxlan-port": analyzer_pb2.PolicyConfig(
                enforcementLevel=analyzer_pb2.MANDATORY, properties=struct({"vxlanPorts": [8472]})
            ),
        },
    )
    try:
        props = {
            "name": "fw",
            "rules": [
                {"direction": "in", "protocol": "tcp", "port": "22", "sourceIps": ["0.0.0.0/0"]},
                {"direction": "in", "protocol": "udp", "port": "8000-9000", "sourceIps": ["10.0.0.0/8"]},
            ],
        }
        diagnostics = analyze(analyzer, "hcloud:index/firewall:Firewall", "fw", props)
        messages = {d.policyName: d.message for d in diagnostics}
        assert "tcp '22' (admin port 22) is open to 0.0.0.0/0" in messages["admin-ports-not-world"]
        assert "opens VXLAN port 8472;" in messages["no-vxlan-port"]
    finally:
        configure(analyzer)
