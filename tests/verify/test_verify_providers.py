"""Dynamic providers: dill round trip into a fresh process, unreachable API, secrets, diff/check."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.clock import FakeClock
from pulumi.dynamic.dynamic import serialize_provider
from verify_fakes import TOKEN, closed_port, kubeconfig_text  # tests/verify is on sys.path (conftest)

from keybuzz.verify import checks, providers

ROOT = Path(__file__).resolve().parents[2]
def props(**overrides):
    base = {
        "kubeconfig": kubeconfig_text(f"https://127.0.0.1:{closed_port()}"),
        "nodes": [{"name": "node-a", "privateIp": "10.0.1.10"}, {"name": "node-b", "privateIp": "10.0.1.11"}],
        "podCidr": "10.42.0.0/16",
        "subnetCidr": "10.0.1.0/24",
        "poolMtu": 1430,
        "timeoutSeconds": 3,
        "externalUrls": [],
        "probeNamespace": "overlay-probe",
        "ingressHost": "overlay-probe.invalid",
        "runId": "test-run",
    }
    base.update(overrides)
    return base


FRESH_PROCESS = r"""
import base64, json, sys
import dill
news = json.loads(sys.argv[1])
report = {}
for line in sys.stdin.read().split():
    provider = dill.loads(base64.b64decode(line))
    diff = provider.diff("overlay-check", {}, news)
    result = provider.check({}, news)
    bad = provider.check({}, dict(news, poolMtu=99999, nodes=[]))
    report[provider.check_name] = {
        "class": type(provider).__module__ + "." + type(provider).__qualname__,
        "check_name": provider.check_name,
        "changes": diff.changes,
        "replaces": diff.replaces,
        "inputs_kept": result.inputs == news,
        "failures": [f.property for f in result.failures],
        "bad_failures": sorted(f.property for f in bad.failures),
        "kubernetes_imported": "kubernetes" in sys.modules,
    }
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def fresh_process_round_trip():
    """Every provider pickled here and loaded in ONE fresh process (one interpreter start, not seven)."""
    blobs = {name: serialize_provider(providers.CheckProvider(name)) for name in checks.CHECK_NAMES}
    news = props(kubeconfig="apiVersion: v1")
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, json.dumps(news)], input="\n".join(blobs.values()),
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert done.returncode == 0, done.stderr
    return blobs, json.loads(done.stdout)


@pytest.mark.parametrize("name", checks.CHECK_NAMES)
def test_provider_round_trips_through_dill_into_a_fresh_process(name, fresh_process_round_trip):
    blobs, report = fresh_process_round_trip
    raw = base64.b64decode(blobs[name])
    # Pickled by reference: the class name, not its code, and no client or secret inside.
    assert b"keybuzz.verify.providers" in raw and b"CheckProvider" in raw
    assert len(raw) < 1024
    assert report[name] == {
        "class": "keybuzz.verify.providers.CheckProvider",
        "check_name": name,
        "changes": True,
        "replaces": [],
        "inputs_kept": True,
        "failures": [],
        "bad_failures": ["nodes", "poolMtu"],
        "kubernetes_imported": False,
    }


def test_provider_needs_the_project_directory_as_cwd(tmp_path):
    # The engine starts `python -m pulumi.dynamic` in the project directory; elsewhere the
    # by-reference class cannot be found. This pins that assumption.
    blob = serialize_provider(providers.CheckProvider("mesh"))
    load = "import base64, sys, dill; dill.loads(base64.b64decode(sys.stdin.read()))"
    done = subprocess.run([sys.executable, "-c", load], input=blob, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert done.returncode != 0
    assert "No module named 'keybuzz'" in done.stderr


@pytest.fixture
def virtual_clock(monkeypatch):
    """The checks' clock, moved only by their own pauses: the deadline is judged in check time.

    A cold ``import kubernetes`` (3 s on a loaded 2-core machine) or a slow thread start then cannot
    eat a short deadline, and the retries' pauses cost no real time.
    """
    clock = FakeClock()
    real_run_check = checks.run_check
    monkeypatch.setattr(checks, "run_check", lambda *a, **k: real_run_check(*a, clock=clock, sleep=clock.sleep, **k))
    return clock


@pytest.mark.parametrize("name", checks.CHECK_NAMES)
def test_unreachable_api_fails_create_and_update_within_the_deadline(name, virtual_clock):
    provider = providers.CheckProvider(name)
    for call in (lambda p: provider.create(p), lambda p: provider.update("id", {}, p)):
        p = props(timeoutSeconds=30)
        started = virtual_clock()
        with pytest.raises(providers.OverlayCheckFailed) as failed:
            call(p)
        # Every attempt was refused at once; the retries and their pauses fit in the deadline.
        assert virtual_clock() - started <= 30
        message = str(failed.value)
        assert "API server" in message and "Connection refused" in message
        assert "Kubernetes API is unreachable" in message
        assert message.endswith("Failed on all 3 attempts")
        assert TOKEN not in message and "\n" not in message


def test_unreachable_api_with_external_urls_also_fails(virtual_clock):
    with pytest.raises(providers.OverlayCheckFailed, match="Connection refused"):
        providers.CheckProvider("external").create(props(externalUrls=["https://example.com/"], timeoutSeconds=30))


def test_diff_always_reports_a_change_so_every_up_rechecks():
    diff = providers.CheckProvider("dns").diff("id", props(), props())
    assert (diff.changes, diff.replaces) == (True, [])


def test_check_rejects_malformed_inputs_and_passes_unknowns():
    from pulumi.runtime import rpc

    bad = props(podCidr="10.42.0.0/99", timeoutSeconds=600, externalUrls=["ftp://x"],
                nodes=[{"name": "a", "privateIp": "nope"}, {"name": "a", "privateIp": "10.0.1.1"}])
    result = providers.CheckProvider("mesh").check({}, bad)
    assert sorted({f.property for f in result.failures}) == ["externalUrls", "nodes", "podCidr", "timeoutSeconds"]
    unknown = props(kubeconfig=rpc.UNKNOWN, nodes=rpc.UNKNOWN, podCidr=rpc.UNKNOWN)
    assert providers.CheckProvider("mesh").check({}, unknown).failures == []


def test_passing_check_outputs_hold_no_kubeconfig(monkeypatch):
    from verify_fakes import NODES, FakeCluster

    monkeypatch.setattr("keybuzz.verify.cluster.KubernetesClusterAccess", lambda *a, **k: FakeCluster())
    p = props(nodes=[{"name": n, "privateIp": ip} for n, ip in NODES.items()], timeoutSeconds=30)
    result = providers.CheckProvider("mesh").create(p)
    assert result.id == "overlay-check-mesh"
    assert set(result.outs) == set(providers.OUTPUT_KEYS)
    assert (result.outs["passed"], result.outs["total"], result.outs["runId"]) == (True, 6, "test-run")
    assert TOKEN not in json.dumps(result.outs)


def test_redact_removes_kubeconfig_credentials():
    text = f"failed with Authorization: Bearer {TOKEN} at https://127.0.0.1:6443"
    redacted = providers.redact(text, kubeconfig_text("https://127.0.0.1:6443"))
    assert redacted == "failed with Authorization: Bearer [redacted] at https://127.0.0.1:6443"


def test_redact_removes_oidc_and_exec_plugin_credentials():
    kubeconfig = """apiVersion: v1
kind: Config
users:
- name: oidc
  user:
    auth-provider:
      name: oidc
      config: {client-id: kube, client-secret: oidc-client-secret-7f3e9a, id-token: eyJ.id.token}
- name: cloud
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: aws
      env: [{name: AWS_SECRET_ACCESS_KEY, value: wJalrXUtnFEMI-K7MDENG-bPxRfiCY}]
"""
    text = "refused: client-secret=oidc-client-secret-7f3e9a key=wJalrXUtnFEMI-K7MDENG-bPxRfiCY client-id=kube"
    assert providers.redact(text, kubeconfig) == "refused: client-secret=[redacted] key=[redacted] client-id=kube"


def test_every_check_has_its_own_resource_class():
    assert set(providers.CHECKS) == set(checks.CHECK_NAMES)
    assert len({cls._resource_type_name for cls in providers.CHECKS.values()}) == len(checks.CHECK_NAMES)
    assert providers.CHECKS["mesh"]._resource_type_name == "dynamic/keybuzz:PodMeshCheck"


def test_importing_the_package_does_not_import_the_kubernetes_client():
    code = "import sys, keybuzz.verify.providers, keybuzz.verify.checks; print('kubernetes' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
