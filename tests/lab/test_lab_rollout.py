"""A rollout over the lab's three nodes with the overlay check after each batch: real ping, curl and dig.

``LabRollout`` does, for the lab, what ``pulumi up`` does with the program's rollout resources
(components/k3s.py, components/batch_checks.py), one node per batch:

- each batch's nodes are changed (drain, install, ready), except a node already at this run's
  target: the rollout fingerprint annotation (keybuzz/node_ops.py) makes its drain and ready no-ops;
- then the batch's check, as the engine calls it: ``create`` when it is not in state yet, else
  ``diff`` and, on a change, ``update`` (keybuzz/verify/rollout_check.BatchCheckProvider, with the
  lab's exec transport as its cluster access); a failure stops the run there and the check's old
  state stays recorded, as the engine keeps a resource's state when its update fails.

The change breaks the overlay on the first node (its routes to the other nodes' pods vanish, while
Calico's API objects still look healthy: the case readiness does not see). The rollout stops after
that node's check, naming the paths and the cause, and the other two nodes are never touched.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from lab import POD_CIDR, SUBNET_CIDR, TUNNEL_MTU, LabClusterAccess

from keybuzz.verify import checks, fixture
from keybuzz.verify.rollout_check import SKIP_CREATE, BatchCheckProvider, RolloutStopped, batch_positions

KUBECONFIG = "apiVersion: v1\nkind: Config\n"


class LabWithCalico(LabClusterAccess):
    """The lab's data path, plus Calico's API objects as a healthy Calico reports them (calico-node
    Ready, the IPIP pool, every BGP session Established): only the data path can fail here."""

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        if namespace == "calico-system" and label_selector == "k8s-app=calico-node":
            return [{"metadata": {"name": f"calico-node-{n.name}", "namespace": namespace},
                     "spec": {"nodeName": n.name},
                     "status": {"phase": "Running", "podIP": n.ip,
                                "conditions": [{"type": "Ready", "status": "True"}]}} for n in self.lab.lab_nodes]
        return super().list_pods(namespace, label_selector)

    def get_custom_object(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        if plural == "ippools" and name == "default-ipv4-ippool":
            return {"spec": {"cidr": POD_CIDR, "ipipMode": "Always", "vxlanMode": "Never", "natOutgoing": True}}
        node = name.removeprefix(fixture.NODE_STATUS_PREFIX)
        if plural == "caliconodestatuses" and node in self.lab.nodes:
            peers = [{"peerIP": ip, "state": "Established", "type": "NodeMesh"}
                     for other, ip in self.lab.nodes.items() if other != node]
            return {"spec": {"node": node},
                    "status": {"agent": {"birdV4": {"state": "Ready"}},
                               "bgp": {"numberEstablishedV4": len(peers), "numberNotEstablishedV4": 0,
                                       "peersV4": peers}}}
        return None


class LabRollout:
    """The program's rollout over the lab: one node per batch, a check after each (see the module doc)."""

    def __init__(self, lab: Any, breaks: dict[str, str]) -> None:
        self.lab = lab
        self.breaks = breaks  # node -> the target that breaks its overlay
        names = sorted(lab.nodes)
        plan = [SimpleNamespace(node=SimpleNamespace(name=n), wave="agents", batch=i) for i, n in enumerate(names)]
        self.positions = batch_positions(plan)
        self.at = {n: "v1" for n in names}  # the rollout fingerprint annotation on each Node
        self.state: dict[int, dict[str, Any]] = {}  # the checks' recorded outputs (Pulumi state)
        self.events: list[str] = []
        access = LabWithCalico(lab)
        self.provider = BatchCheckProvider(lambda kubeconfig, connect, read: access)

    def _props(self, batch: int, target: str) -> dict[str, Any]:
        pos = self.positions[batch]
        return {
            "kubeconfig": KUBECONFIG, "nodes": [{"name": n, "privateIp": ip} for n, ip in self.lab.nodes.items()],
            "podCidr": POD_CIDR, "subnetCidr": SUBNET_CIDR, "poolMtu": TUNNEL_MTU, "timeoutSeconds": 10,
            "externalUrls": [], "probeNamespace": fixture.NAMESPACE, "ingressHost": fixture.DEFAULT_INGRESS_HOST,
            "ingressController": "ingress-nginx", "ingressPort": 80, "runId": "",
            "batch": pos.label, "focus": list(pos.focus), "fingerprints": {n: target for n in pos.focus},
            "changed": list(pos.changed), "untouched": list(pos.untouched),
        }

    def _change(self, node: str, target: str) -> None:
        if self.at[node] == target:
            return  # drain_script / ready_script: "already runs this rollout"
        self.events.append(f"change {node}")
        if self.breaks.get(node) == target:
            self.lab.break_overlay(node)
        self.at[node] = target

    def up(self, target: str) -> RolloutStopped | None:
        """One ``pulumi up`` to ``target``; returns the error that stopped it, if any."""
        for batch, pos in self.positions.items():
            for node in pos.focus:
                self._change(node, target)
            news = self._props(batch, target)
            try:
                if batch not in self.state:
                    self.events.append(f"create check {batch}")
                    self.state[batch] = self.provider.create(news).outs
                elif self.provider.diff("id", self.state[batch], news).changes:
                    self.events.append(f"check {batch}")
                    self.state[batch] = self.provider.update("id", self.state[batch], news).outs
            except RolloutStopped as stopped:
                return stopped
        return None


@pytest.fixture
def one_attempt(monkeypatch):
    """A failing check is retried while its deadline allows; one attempt is enough to judge (seconds)."""
    monkeypatch.setattr(checks, "MAX_ATTEMPTS", 1)


def test_a_change_that_breaks_the_first_nodes_overlay_stops_after_its_check(clean_lab, one_attempt):
    rollout = LabRollout(clean_lab, breaks={"node-a": "v2"})
    assert rollout.up("v1") is None  # the first deploy: every check created, skipped
    assert rollout.events == ["create check 0", "create check 1", "create check 2"]
    assert all(s["skipped"] and s["reason"] == SKIP_CREATE for s in rollout.state.values())

    rollout.events.clear()
    stopped = rollout.up("v2")
    assert stopped is not None
    # Stopped after node-a's check: node-b and node-c were never changed, their checks never ran.
    assert rollout.events == ["change node-a", "check 0"]
    assert rollout.at == {"node-a": "v2", "node-b": "v1", "node-c": "v1"}
    message = str(stopped)
    lines = message.splitlines()
    assert lines[0] == "overlay check after agent batch 1 of 3 (canary) (node-a) failed:"
    mesh = next(line for line in lines if line.startswith("pod mesh: "))
    assert mesh.startswith("pod mesh: 4 of 4 cross-node paths failed (")
    for path in ("node-a→node-b", "node-a→node-c", "node-b→node-a", "node-c→node-a"):
        assert path in mesh
    assert "every failure involves node-a" in mesh
    assert "tunl0 routes missing (BIRD not exchanging routes); see calico-node logs on node-a" in mesh
    # From node-a the Service reaches only its own backend; said once, as the full check says it.
    clusterip = next(line for line in lines if line.startswith("ClusterIP: "))
    assert clusterip.startswith("ClusterIP: 1 of 4 node checks (answers from, answered by) failed (from node-a: ")
    assert "(see pod mesh)" in clusterip  # some calls reach node-a's own backend (all 20 missing it: 3e-4)
    # Calico's API says healthy: only the data path shows the fault.
    assert not any(line.startswith("calico health") for line in lines)
    assert lines[-1].startswith("Rollout stopped after agent batch 1 of 3 (canary): already changed (at this run's "
                                "config): node-a; left untouched: node-b, node-c.")
    # The paths among the untouched nodes still work: nothing of theirs was touched.
    b, c = clean_lab.node("node-b"), clean_lab.node("node-c")
    assert clean_lab.netns_exec(b.client_ns, f"curl -sS -m 2 http://{c.echo_ip}:8080/node").strip() == "node-c"


def test_a_rerun_after_the_fix_checks_the_stopped_batch_first_and_rolls_only_the_rest(clean_lab, one_attempt):
    rollout = LabRollout(clean_lab, breaks={"node-a": "v2"})
    rollout.up("v1")
    assert rollout.up("v2") is not None
    clean_lab.reset()  # the operator fixes the cause on node-a (outside the config: same target)
    rollout.events.clear()
    assert rollout.up("v2") is None
    # node-a is not rolled again; its batch is checked again first, then the rollout goes on.
    assert rollout.events == ["check 0", "change node-b", "check 1", "change node-c", "check 2"]
    assert all(s["passed"] and not s["skipped"] for s in rollout.state.values())
    # An up with nothing new runs no check at all.
    rollout.events.clear()
    assert rollout.up("v2") is None and rollout.events == []


def test_focused_probe_scripts_pass_shellcheck(lab, tmp_path):
    import subprocess

    from keybuzz.verify import plan

    nodes = sorted(lab.nodes)
    pods = plan.ProbePods(clients={n: n for n in nodes}, echo_ips={n: lab.node(n).echo_ip for n in nodes})
    focus = ["node-a"]
    plans = (plan.plan_mesh(nodes, pods, focus=focus) + plan.plan_mtu(nodes, pods, 1430, focus=focus)
             + plan.plan_clusterip(nodes, pods, "10.43.100.7", plan.MAX_PARALLEL_CALLS + 9, focus=focus))
    files = []
    for i, p in enumerate(plans):
        files.append(tmp_path / f"{i}-{p.node}.sh")
        files[-1].write_text(p.script())
    result = subprocess.run(["shellcheck", "-s", "sh", *map(str, files)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
