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
