"""The whole program fed to the guardrail pack: our own resources pass, a bad app Deployment does not."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pytest
from harness import STACKS, run_program

from tests.policy.helpers import violations_for


def bad_app(built):
    """An app Deployment on the host network with a hostPort and a literal IP: the runbook's hack."""
    k8s.apps.v1.Deployment(
        "keybuzz-api",
        metadata={"name": "keybuzz-api", "namespace": "keybuzz"},
        spec={
            "selector": {"matchLabels": {"app": "keybuzz-api"}},
            "template": {
                "metadata": {"labels": {"app": "keybuzz-api"}},
                "spec": {
                    "hostNetwork": True,
                    "containers": [
                        {
                            "name": "api",
                            "image": "keybuzz/api:1.0.0",
                            "ports": [{"containerPort": 8080, "hostPort": 8080}],
                            "env": [{"name": "DB_HOST", "value": "10.0.1.30"}],
                        }
                    ],
                },
            },
        },
        opts=pulumi.ResourceOptions(provider=built.k3s.provider),
    )
    return {}


@pytest.mark.parametrize("stack", STACKS)
def test_the_programs_own_resources_pass_every_policy(stack):
    run = run_program(stack)
    violations = violations_for(run.for_policies())
    assert violations == []
    # The system components and the probe fixture were really looked at, not skipped for lack of input.
    kinds = {r.type for r in run.resources}
    assert {
        "kubernetes:apps/v1:DaemonSet",
        "hcloud:index/firewall:Firewall",
        "kubernetes:operator.tigera.io/v1:Installation",
    } <= kinds


def test_a_deliberately_bad_app_deployment_is_refused_with_paths_and_fixes():
    run = run_program("dev", probe=bad_app)
    violations = violations_for(run.for_policies())
    blocking = {(v.policy, v.resource) for v in violations if v.blocking}
    assert blocking == {
        ("no-host-network", "keybuzz-api"),
        ("no-host-port", "keybuzz-api"),
        ("no-hardcoded-ips", "keybuzz-api"),
    }
    messages = " ".join(str(v) for v in violations)
    assert "spec.template.spec.hostNetwork" in messages
    assert "spec.template.spec.containers[0].ports[0].hostPort" in messages
    assert "ClusterIP Service" in messages
