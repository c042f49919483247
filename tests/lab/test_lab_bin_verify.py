"""bin/verify (keybuzz.verify.cli.main) against the network-namespace lab: real ping, curl and dig.

Only the transport is swapped, as in the lab's judge tests: the CLI gets ``LabClusterAccess``
(exec = ``ip netns exec``) through its access factory, plus the fixture calls bin/verify adds,
recorded here (the lab has no API server to apply manifests to). The lab describes no Calico API
objects, so the calico check reports itself skipped, as on a cluster without Calico; every other
check runs its generated probe scripts on the lab's data path.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fakes.clock import FakeClock
from lab import LabClusterAccess

from keybuzz.verify import checks, cli, providers

TOKEN = "kb-lab-token-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
KUBECONFIG = f"""apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {{server: "https://10.0.1.10:6443", insecure-skip-tls-verify: true}}
users:
- name: admin
  user: {{token: {TOKEN}}}
contexts:
- name: lab
  context: {{cluster: lab, user: admin}}
current-context: lab
"""


class LabFixtureAccess(LabClusterAccess):
    """The lab's transport plus bin/verify's fixture calls, recorded; no IPPool CRD (no Calico API)."""

    server = "https://10.0.1.10:6443"

    def __init__(self, lab: Any) -> None:
        super().__init__(lab)
        self.applied: list[str] = []
        self.deleted: list[str] = []
        self.kubeconfigs: list[str] = []

    def apply_object(self, manifest: dict[str, Any]) -> None:
        self.applied.append(f"{manifest['kind']}/{manifest['metadata']['name']}")

    def delete_object(self, manifest: dict[str, Any]) -> None:
        self.deleted.append(f"{manifest['kind']}/{manifest['metadata']['name']}")

    def read_object(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        return None  # nothing left over from an earlier run

    def crd_exists(self, name: str) -> bool:
        return False

    def factory(self, kubeconfig: str, connect: float, read: float) -> LabFixtureAccess:
        self.kubeconfigs.append(kubeconfig)
        return self


@pytest.fixture
def one_attempt(monkeypatch):
    """A failing check is retried up to 3 times in production; once is enough to judge here (< 5 s)."""
    monkeypatch.setattr(checks, "MAX_ATTEMPTS", 1)


def verify(lab: Any, tmp_path: Path, *extra: str) -> tuple[int, str, dict[str, Any], LabFixtureAccess]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    report = tmp_path / "report.json"
    access = LabFixtureAccess(lab)
    out = io.StringIO()
    clock = FakeClock()  # real probes take real time; only the checks' retry pauses are virtual
    code = cli.main(["--kubeconfig", str(kubeconfig), "--json", str(report), *extra], out=out, clock=clock,
                    sleep=clock.sleep, access_factory=access.factory)
    text = out.getvalue()
    assert TOKEN not in text and TOKEN not in report.read_text()
    assert access.kubeconfigs == [KUBECONFIG]
    return code, text, json.loads(report.read_text()), access


def test_healthy_lab_passes(clean_lab, tmp_path):
    code, text, report, access = verify(clean_lab, tmp_path)
    assert code == cli.EXIT_PASSED, text
    lines = text.splitlines()
    assert "nodes: node-a 10.0.1.10, node-b 10.0.1.11, node-c 10.0.1.12" in lines
    assert "Calico not installed (no IPPool CRD, no calico-node pods)" in lines[2]
    assert "probe pods Ready on 3 of 3 nodes after 0 s" in lines
    # One live line per check, then the table: the same seven rows.
    assert len([line for line in lines if line.startswith("  ")]) == len(checks.CHECK_NAMES)
    header = next(i for i, line in enumerate(lines) if line.startswith("check "))
    rows = [re.split(r"\s{2,}", line)[:2] for line in lines[header + 1:header + 8]]
    assert rows == [["calico health", "skipped"], ["DNS", "passed"], ["ClusterIP", "passed"],
                    ["pod mesh", "passed"], ["MTU path", "passed"], ["ingress", "passed"],
                    ["external URLs", "skipped"]]
    assert lines[-1].startswith("PASSED: 7 of 7 checks passed or skipped")
    # The fixture went in (no CalicoNodeStatus: no Calico CRD) and came out again.
    assert access.applied == ["Namespace/overlay-probe", "ConfigMap/overlay-probe-echo",
                              "DaemonSet/overlay-probe-echo", "Service/overlay-probe-echo",
                              "Ingress/overlay-probe-echo", "DaemonSet/overlay-probe-client"]
    assert access.deleted == ["Namespace/overlay-probe"]
    assert report["passed"] is True and report["exitCode"] == 0
    assert list(report["checks"]) == list(checks.CHECK_NAMES)
    assert all(list(outs) == list(providers.OUTPUT_KEYS) for outs in report["checks"].values())
    assert report["checks"]["mesh"]["total"] == 6 and report["checks"]["mesh"]["latencyMs"]["samples"] > 0
    assert report["checks"]["calico"]["notes"] == ["skipped: Calico not installed (no IPPool CRD, no calico-node pods)"]
    # The lab's real exec transport carried every probe script.
    assert {pod for pod, _ in access.execs} == {n.client_pod for n in clean_lab.lab_nodes}


def test_lab_with_a_black_holed_node_pair_fails_naming_the_paths_and_the_cause(clean_lab, tmp_path, one_attempt):
    clean_lab.block_pair("node-a", "node-c")
    code, text, report, access = verify(clean_lab, tmp_path, "--check", "mesh")
    assert code == cli.EXIT_FAILED, text
    verdict = next(line for line in text.splitlines() if line.startswith("pod mesh: "))
    assert "2 of 6" in verdict
    assert "node-a→node-c" in verdict and "node-c→node-a" in verdict
    assert "every failure involves node-a, node-c" in verdict
    assert "IPIP" in verdict
    mesh = report["checks"]["mesh"]
    assert (mesh["passed"], mesh["failed"], mesh["total"]) == (False, 2, 6)
    assert any("IPIP" in cause for cause in mesh["causes"])
    assert access.deleted == ["Namespace/overlay-probe"]
