"""bin/verify (keybuzz/verify/cli.py): arguments, sources, fixture lifecycle, verdicts, report, exit codes.

The cluster is the in-memory fake of verify_fakes (real probe scripts, canned real tool output)
behind the same ClusterAccess the checks use; the clock is injected, so no test waits on the
wall clock except the unreachable-API ones, which are bounded generously.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.clock import FakeClock
from verify_fakes import (  # tests/verify is on sys.path (conftest)
    NODES,
    POD_CIDR,
    TOKEN,
    FakeCluster,
    Faults,
    closed_port,
    kubeconfig_text,
)

from keybuzz.verify import checks, cli, fixture, providers
from keybuzz.verify.cluster import ClusterAccessError

ROOT = Path(__file__).resolve().parents[2]


class FixtureFake:
    """FakeCluster plus what bin/verify needs: records applies and deletes; Calico optional."""

    server = "https://10.0.1.10:6443"

    def __init__(self, cluster: Any, calico: bool = True) -> None:
        self.cluster = cluster
        self.calico = calico
        self.applied: list[tuple[str, str]] = []
        self.deleted: list[tuple[str, str]] = []
        self.factory_args: tuple[Any, ...] = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        if not self.calico and label_selector == checks.CALICO_NODE_SELECTOR:
            return []
        return self.cluster.list_pods(namespace, label_selector)

    def apply_object(self, manifest: dict[str, Any]) -> None:
        self.applied.append((manifest["kind"], manifest["metadata"]["name"]))

    def delete_object(self, manifest: dict[str, Any]) -> None:
        self.deleted.append((manifest["kind"], manifest["metadata"]["name"]))

    def read_object(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def crd_exists(self, name: str) -> bool:
        return self.calico

    def factory(self, kubeconfig: str, connect: float, read: float) -> FixtureFake:
        self.factory_args = (kubeconfig, connect, read)
        return self


class FlushedOut(io.StringIO):
    """Records what had been written at each flush: live progress means a flush per line."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


@pytest.fixture
def kubeconfig_file(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig_text("https://10.0.1.10:6443"))
    return path


def run_cli(argv: list[str], access: Any = None, **kwargs: Any) -> tuple[int, str]:
    out = FlushedOut()
    clock = FakeClock(1000.0)
    factory = access.factory if access is not None else kwargs.pop("access_factory")
    code = cli.main(argv, out=out, clock=clock, sleep=clock.sleep, access_factory=factory, **kwargs)
    return code, out.getvalue()


# -- a healthy cluster ----------------------------------------------------------------------------


def test_healthy_cluster_passes_with_progress_table_report_and_cleanup(kubeconfig_file, tmp_path):
    access = FixtureFake(FakeCluster())
    report = tmp_path / "report.json"
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--json", str(report)], access)
    assert code == cli.EXIT_PASSED, text
    # The kubeconfig reached the factory, with the providers' timeout split for a 60 s deadline.
    assert access.factory_args == (kubeconfig_file.read_text(), 3.0, 10.0)
    # Fixture: every manifest applied in order, then the cluster-scoped statuses and the namespace deleted.
    rendered = fixture.render_fixture(nodes=sorted(NODES))
    assert access.applied == [(m["kind"], m["metadata"]["name"]) for m in rendered]
    assert access.deleted == [("CalicoNodeStatus", f"overlay-probe-{n}") for n in sorted(NODES)] + [
        ("Namespace", "overlay-probe")]
    lines = text.splitlines()
    assert lines[0] == f"verifying https://10.0.1.10:6443 (kubeconfig {kubeconfig_file})"
    assert lines[1] == "nodes: node-a 10.0.1.10, node-b 10.0.1.11, node-c 10.0.1.12"
    assert lines[2] == ("pod CIDR 10.42.0.0/16, subnet 10.0.1.0/24, pod MTU 1430, Calico installed, "
                        "deadline 60 s per check")
    assert "probe pods Ready on 3 of 3 nodes after 0 s" in lines
    progress = [line for line in lines if line.startswith("  ")]
    assert sorted(line.split()[0] for line in progress) == sorted(
        checks.CHECK_TITLES[n].split()[0] for n in checks.CHECK_NAMES)
    assert any(line.startswith("  pod mesh") and " passed " in line and " 6 " in line for line in progress)
    header = next(i for i, line in enumerate(lines) if line.startswith("check          result   failed/total"))
    table = [re.split(r"\s{2,}", line) for line in lines[header + 1:header + 8]]
    assert [(row[0], row[1].strip(), row[2].split()[0]) for row in table] == [
        ("calico health", "passed", "0/13"),
        ("DNS", "passed", "0/3"),
        ("ClusterIP", "passed", "0/6"),
        ("pod mesh", "passed", "0/6"),
        ("MTU path", "passed", "0/12"),
        ("ingress", "passed", "0/3"),
        ("external URLs", "skipped", "0/0"),
    ]
    assert "probe fixture removed (namespace overlay-probe deleted)" in lines
    assert lines[-1].startswith("PASSED: 7 of 7 checks passed or skipped")
    data = json.loads(report.read_text())
    assert (data["passed"], data["exitCode"], data["timeoutSeconds"]) == (True, 0, 60)
    assert list(data["checks"]) == list(checks.CHECK_NAMES)
    for outs in data["checks"].values():
        assert list(outs) == list(providers.OUTPUT_KEYS)
    assert data["checks"]["mesh"]["total"] == 6 and data["checks"]["mesh"]["passed"] is True
    assert data["cluster"]["nodes"] == [{"name": n, "privateIp": ip} for n, ip in sorted(NODES.items())]
    assert (data["cluster"]["podCidr"], data["cluster"]["podMtu"]) == (POD_CIDR, 1430)
    assert data["cluster"]["calico"] == {"installed": True, "missing": []}
    assert data["fixture"] == {"namespace": "overlay-probe", "state": "removed"}
    assert data["startedAt"].endswith("+00:00")
    assert TOKEN not in text and TOKEN not in report.read_text()


def test_each_check_line_is_flushed_as_it_completes(kubeconfig_file):
    out = FlushedOut()
    clock = FakeClock(1000.0)
    access = FixtureFake(FakeCluster())
    cli.main(["--kubeconfig", str(kubeconfig_file)], out=out, clock=clock, sleep=clock.sleep,
             access_factory=access.factory)
    check_lines = [line for line in out.getvalue().splitlines() if line.startswith("  ")]
    # Every check line was on its way to the terminal before the next one was written.
    for i, line in enumerate(check_lines):
        assert any(chunk.endswith(line + "\n") for chunk in out.flushed), line
        assert i == 0 or any(check_lines[i - 1] in c and line not in c for c in out.flushed)


def test_keep_leaves_the_fixture_and_says_how_to_remove_it(kubeconfig_file):
    access = FixtureFake(FakeCluster())
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--keep"], access)
    assert code == 0
    assert access.deleted == []
    assert "probe fixture kept in namespace overlay-probe (--keep); remove it with " \
           "`kubectl delete namespace overlay-probe` and `kubectl delete caliconodestatuses " \
           "-l app.kubernetes.io/part-of=keybuzz-overlay-verification`" in text
    # Without Calico no CalicoNodeStatus was created: the namespace is all there is.
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--keep"], FixtureFake(FakeCluster(), calico=False))
    assert code == 0
    assert "probe fixture kept in namespace overlay-probe (--keep); remove it with " \
           "`kubectl delete namespace overlay-probe`\n" in text


def test_ingress_class_and_controller_flags_reach_the_ingress_and_its_messages(kubeconfig_file):
    class Recording(FixtureFake):
        def apply_object(self, manifest: dict[str, Any]) -> None:
            super().apply_object(manifest)
            if manifest["kind"] == "Ingress":
                self.ingress = manifest

    access = Recording(FakeCluster(Faults(ingress_503=True)))
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--check", "ingress", "--ingress-class", "traefik",
                          "--ingress-controller", "traefik"], access)
    assert code == cli.EXIT_FAILED
    assert access.ingress["spec"]["ingressClassName"] == "traefik"
    verdict = next(line for line in text.splitlines() if line.startswith("ingress: "))
    assert "traefik" in verdict and "ingress-nginx" not in verdict


def test_check_flag_runs_only_the_named_checks(kubeconfig_file):
    access = FixtureFake(FakeCluster())
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--check", "dns", "--check", "mesh"], access)
    assert code == 0
    assert text.splitlines()[-1].startswith("PASSED: 2 of 2 checks")
    assert not any(call[0] == "get_custom_object" and call[1] == "caliconodestatuses"
                   for call in access.cluster.calls)


# -- failures -------------------------------------------------------------------------------------


def test_faulted_cluster_fails_naming_the_path_and_the_cause(kubeconfig_file, tmp_path):
    access = FixtureFake(FakeCluster(Faults(ipip_blocked={frozenset(("node-a", "node-c"))})))
    report = tmp_path / "r.json"
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--json", str(report)], access)
    assert code == cli.EXIT_FAILED
    assert "\npod mesh       FAILED   2/6 " in text
    mesh = next(line for line in text.splitlines() if line.startswith("pod mesh: "))
    assert "node-a→node-c" in mesh and "node-c→node-a" in mesh
    assert "IPIP" in mesh
    assert "FAILED: " in text.splitlines()[-1]
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["exitCode"] == 1
    assert data["checks"]["mesh"]["failed"] == 2
    assert any("node-a→node-c" in f for f in data["checks"]["mesh"]["failures"])
    # Still cleaned up after a failure.
    assert ("Namespace", "overlay-probe") in access.deleted


def test_flannel_cluster_skips_the_calico_check_and_runs_the_others(kubeconfig_file, tmp_path):
    access = FixtureFake(FakeCluster(), calico=False)
    report = tmp_path / "r.json"
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--json", str(report)], access)
    assert code == cli.EXIT_PASSED, text
    reason = "Calico not installed (no IPPool CRD, no calico-node pods)"
    assert f"skipped: {reason}" in text
    assert "\ncalico health  skipped  0/0 checks" in text
    # No CalicoNodeStatus objects: their CRD does not exist.
    assert not any(kind == "CalicoNodeStatus" for kind, _ in access.applied)
    data = json.loads(report.read_text())
    assert data["checks"]["calico"]["skipped"] is True
    assert data["checks"]["calico"]["notes"] == [f"skipped: {reason}"]
    assert data["checks"]["mesh"]["passed"] is True
    assert data["cluster"]["calico"] == {"installed": False, "missing": ["no IPPool CRD", "no calico-node pods"]}


def test_probe_pods_never_ready_is_bounded_and_the_checks_name_the_nodes(kubeconfig_file):
    access = FixtureFake(FakeCluster(Faults(echo_missing={"node-b"})))
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--ready-timeout", "30", "--check", "mesh"], access)
    assert code == cli.EXIT_FAILED
    assert "probe pods Ready on 2 of 3 nodes after 30 s; the checks name the nodes without them" in text
    assert "node-b" in next(line for line in text.splitlines() if line.startswith("pod mesh: "))


def test_fixture_is_removed_when_the_cluster_goes_away_mid_run(kubeconfig_file):
    class Vanishing(FixtureFake):
        def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
            if namespace == fixture.NAMESPACE:
                raise ClusterAccessError("list pods: MaxRetryError: Connection refused")
            return super().list_pods(namespace, label_selector)

    access = Vanishing(FakeCluster())
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file)], access)
    assert code == cli.EXIT_UNREACHABLE
    assert "cannot reach the cluster: listing the probe pods: list pods: MaxRetryError: Connection refused" in text
    assert ("Namespace", "overlay-probe") in access.deleted
    assert "probe fixture removed" in text


def test_interrupt_removes_the_fixture_and_exits_130(kubeconfig_file, monkeypatch):
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # Ctrl-C while the checks run

    monkeypatch.setattr(cli, "run_checks", interrupted)
    access = FixtureFake(FakeCluster())
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file)], access)
    assert code == cli.EXIT_INTERRUPTED
    assert text.splitlines()[-2:] == ["probe fixture removed", "bin/verify: interrupted"]
    assert ("Namespace", "overlay-probe") in access.deleted


def test_a_refused_delete_does_not_stop_the_namespace_from_being_deleted(kubeconfig_file):
    class StatusDeleteForbidden(FixtureFake):
        def delete_object(self, manifest: dict[str, Any]) -> None:
            if manifest["kind"] == "CalicoNodeStatus":
                raise ClusterAccessError(f"delete CalicoNodeStatus {manifest['metadata']['name']}: HTTP 403 Forbidden")
            super().delete_object(manifest)

    access = StatusDeleteForbidden(FakeCluster())
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--check", "dns"], access)
    assert ("Namespace", "overlay-probe") in access.deleted  # the probe pods go, whatever else failed
    assert code == cli.EXIT_PASSED, text
    assert ("probe fixture NOT removed (failed: delete CalicoNodeStatus overlay-probe-node-a: HTTP 403 Forbidden; "
            "delete CalicoNodeStatus overlay-probe-node-b: HTTP 403 Forbidden; ") in text


@pytest.mark.parametrize("where", ["missing-dir/report.json", "."])
def test_a_report_that_cannot_be_written_is_refused_before_the_cluster_is_touched(kubeconfig_file, tmp_path, where):
    access = FixtureFake(FakeCluster())
    report = tmp_path / where
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--json", str(report)], access)
    assert code == cli.EXIT_USAGE, text
    reason = "is a directory" if where == "." else f"no directory {tmp_path / 'missing-dir'}"
    assert text.splitlines()[-1] == f"bin/verify: error: --json {report}: {reason}"
    assert access.applied == [] and access.deleted == []


def test_sigterm_removes_the_fixture_and_exits_143(kubeconfig_file):
    """A cancelled CI job or `timeout` sends SIGTERM: the fixture must not be left in the cluster."""

    class KilledMidApply(FixtureFake):
        def apply_object(self, manifest: dict[str, Any]) -> None:
            super().apply_object(manifest)
            if manifest["kind"] == "DaemonSet":
                signal.raise_signal(signal.SIGTERM)

    # Without bin/verify's own handler the signal lands here (not on pytest's default: death).
    caught: list[int] = []

    def ours(signum: int, _frame: Any) -> None:
        caught.append(signum)

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        access = KilledMidApply(FakeCluster())
        code, text = run_cli(["--kubeconfig", str(kubeconfig_file)], access)
        assert signal.getsignal(signal.SIGTERM) is ours  # bin/verify put the caller's handler back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert caught == []
    assert code == cli.EXIT_TERMINATED, text
    assert text.splitlines()[-2:] == ["probe fixture removed", "bin/verify: terminated (SIGTERM)"]
    assert ("Namespace", "overlay-probe") in access.deleted
    assert ("DaemonSet", fixture.CLIENT_NAME) not in access.applied  # stopped at the first DaemonSet


def test_a_namespace_still_terminating_is_waited_for_before_applying(kubeconfig_file):
    class Terminating(FixtureFake):
        reads = 0

        def read_object(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
            self.reads += 1
            if self.reads <= 3:  # terminating for three reads, then gone
                return {"metadata": {"name": "overlay-probe", "deletionTimestamp": "2026-12-01T03:00:00Z"}}
            return None

    access = Terminating(FakeCluster())
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--check", "dns"], access)
    assert code == 0, text
    assert "namespace overlay-probe is still terminating (an earlier run removed it); waiting up to 180 s" in text
    assert "namespace overlay-probe from an earlier run finished terminating after 4 s" in text
    assert access.applied[0] == ("Namespace", "overlay-probe")


def test_a_namespace_that_never_finishes_terminating_exits_3(kubeconfig_file):
    class Stuck(FixtureFake):
        def read_object(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
            return {"metadata": {"name": "overlay-probe", "deletionTimestamp": "2026-12-01T03:00:00Z"}}

    access = Stuck(FakeCluster())
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--ready-timeout", "20"], access)
    assert code == cli.EXIT_UNREACHABLE
    assert "namespace overlay-probe still terminating after 20 s" in text and "finalizers" in text
    assert access.applied == []


def test_fixture_apply_refused_exits_3_and_says_why(kubeconfig_file):
    class Refusing(FixtureFake):
        def apply_object(self, manifest: dict[str, Any]) -> None:
            raise ClusterAccessError("patch ConfigMap overlay-probe/overlay-probe-echo: HTTP 403 Forbidden")

    code, text = run_cli(["--kubeconfig", str(kubeconfig_file)], Refusing(FakeCluster()))
    assert code == cli.EXIT_UNREACHABLE
    assert "could not deploy the probe fixture: patch ConfigMap overlay-probe/overlay-probe-echo: HTTP 403" in text


# -- unreachable API ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubernetes_imported() -> None:
    """The Kubernetes client's cold import (seconds on a loaded machine), paid once, outside the runs."""
    import kubernetes.client  # noqa: F401
    import kubernetes.client.models  # noqa: F401


def test_unreachable_api_server_exits_3_within_its_deadline(tmp_path, kubernetes_imported):
    path = tmp_path / "kc"
    path.write_text(kubeconfig_text(f"https://127.0.0.1:{closed_port()}"))

    out = io.StringIO()
    started = time.monotonic()
    code = cli.main(["--kubeconfig", str(path), "--api-timeout", "20"], out=out)
    elapsed = time.monotonic() - started
    text = out.getvalue()
    assert code == cli.EXIT_UNREACHABLE
    assert elapsed < 20  # refused at once; the bound is the flag, not a race
    assert "bin/verify: cannot reach the cluster: https://127.0.0.1:" in text
    assert "Connection refused" in text and "Check the kubeconfig's server address" in text
    assert TOKEN not in text


def test_an_unreachable_cluster_still_writes_the_json_report_with_the_reason(tmp_path, kubernetes_imported):
    path = tmp_path / "kc"
    path.write_text(kubeconfig_text(f"https://127.0.0.1:{closed_port()}"))
    report = tmp_path / "r.json"
    code = cli.main(["--kubeconfig", str(path), "--api-timeout", "20", "--json", str(report)], out=io.StringIO())
    assert code == cli.EXIT_UNREACHABLE
    data = json.loads(report.read_text())
    assert (data["passed"], data["exitCode"], data["checks"]) == (False, cli.EXIT_UNREACHABLE, {})
    assert data["error"].startswith("cannot reach the cluster: https://127.0.0.1:") and "Connection refused" in data[
        "error"]
    assert data["cluster"]["source"] == f"kubeconfig {path}"
    assert TOKEN not in report.read_text()


def test_a_refused_command_line_still_writes_the_json_report(tmp_path):
    report = tmp_path / "r.json"
    code, text = run_cli(["--stack", "nosuch", "--json", str(report)], FixtureFake(FakeCluster()))
    assert code == cli.EXIT_USAGE
    data = json.loads(report.read_text())
    assert (data["passed"], data["exitCode"]) == (False, cli.EXIT_USAGE)
    assert data["error"].startswith("--stack nosuch: no Pulumi.nosuch.yaml")
    assert f"report written to {report} (exit 2: --stack nosuch" in text


def test_api_that_never_answers_is_cut_at_the_api_timeout(kubeconfig_file):
    hang = threading.Event()

    class Hanging(FixtureFake):
        def list_nodes(self) -> list[dict[str, Any]]:
            hang.wait(60)
            return []

    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--api-timeout", "0.3"], Hanging(FakeCluster()))
    hang.set()
    assert code == cli.EXIT_UNREACHABLE
    assert "cannot reach the cluster: https://10.0.1.10:6443: list nodes: no answer within 0.3 s" in text


# -- usage ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    ([], "say which cluster: --stack STACK or --kubeconfig FILE"),
    (["--kubeconfig", "KC", "--bogus"], "unrecognized arguments: --bogus"),
    (["--kubeconfig", "KC", "--stack", "dev"], "not allowed with argument"),
    (["--kubeconfig", "KC", "--mtu", "100"], "--mtu 100: an MTU between 576 and 9000"),
    (["--kubeconfig", "KC", "--timeout", "2"], "--timeout 2: 5..600 seconds"),
    (["--kubeconfig", "KC", "--ingress-port", "70000"], "--ingress-port 70000: a port between 1 and 65535"),
    (["--kubeconfig", "KC", "--pod-cidr", "10.42.0.0/99"], "--pod-cidr 10.42.0.0/99: not an IPv4 CIDR"),
    (["--kubeconfig", "KC", "--external-url", "ftp://x"], "--external-url ftp://x: not an http(s) URL"),
    (["--kubeconfig", "KC", "--check", "nope"], "invalid choice: 'nope'"),
])
def test_bad_usage_exits_2_with_usage(argv, message, kubeconfig_file):
    argv = [str(kubeconfig_file) if a == "KC" else a for a in argv]
    access = FixtureFake(FakeCluster())
    code, text = run_cli(argv, access)
    assert code == cli.EXIT_USAGE
    assert text.startswith("usage: bin/verify")
    assert message in text
    assert access.applied == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--kubeconfig", "/nonexistent/kc"], "--kubeconfig /nonexistent/kc: no such file"),
    (["--stack", "nosuch"], "--stack nosuch: no Pulumi.nosuch.yaml"),
    (["--stack", "../etc/x"], "--stack '../etc/x': a stack name"),
])
def test_an_unusable_cluster_source_is_one_line_without_the_usage(argv, message):
    code, text = run_cli(argv, FixtureFake(FakeCluster()))
    assert code == cli.EXIT_USAGE
    assert text.startswith(f"bin/verify: error: {message}") and "usage:" not in text


def test_empty_or_invalid_kubeconfig_exits_2(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    code, text = run_cli(["--kubeconfig", str(empty)], access_factory=cli.default_access_factory)
    assert (code, "the file is empty" in text) == (cli.EXIT_USAGE, True)
    bad = tmp_path / "bad"
    bad.write_text(f"token: {TOKEN}\n  : [\n")
    code, text = run_cli(["--kubeconfig", str(bad)], access_factory=cli.default_access_factory)
    assert code == cli.EXIT_USAGE
    assert "kubeconfig is not valid YAML" in text and TOKEN not in text


def test_help_exits_0_and_documents_the_exit_codes(kubeconfig_file):
    code, text = run_cli(["--help"], FixtureFake(FakeCluster()))
    assert code == 0
    assert "--stack STACK" in text and "--kubeconfig FILE" in text
    assert "0 all passed, 1 a check failed, 2 bad usage or input, 3 the cluster cannot be reached" in " ".join(
        text.split())


# -- --stack through the Pulumi CLI -----------------------------------------------------------------

FAKE_PULUMI = """#!/bin/sh
# A stand-in for the Pulumi CLI: records how it was called, prints the stack's outputs.
printf '%s\\n' "$*" > "$FAKE_PULUMI_LOG"
printf '%s\\n' "$PULUMI_BACKEND_URL" >> "$FAKE_PULUMI_LOG"
case "$*" in
  "stack output --json --show-secrets --stack dev") cat "$FAKE_PULUMI_OUTPUTS" ;;
  *) echo "error: no stack named '$*'" >&2; exit 255 ;;
esac
"""


@pytest.fixture
def fake_pulumi(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "pulumi"
    script.write_text(FAKE_PULUMI)
    script.chmod(0o755)
    outputs = {
        "kubeconfig": kubeconfig_text(f"https://127.0.0.1:{closed_port()}"),
        "nodes": [{"name": n, "role": "agent", "pool": "workers", "serverType": "cx23", "privateIp": ip,
                   "publicIp": "203.0.113.9"} for n, ip in NODES.items()],
        "podMtu": 1400,
        "apiServer": "https://203.0.113.9:6443",
    }
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    return {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PULUMI_CONFIG_PASSPHRASE": "test-passphrase",
        "FAKE_PULUMI_LOG": str(tmp_path / "pulumi.log"),
        "FAKE_PULUMI_OUTPUTS": str(tmp_path / "outputs.json"),
    }


def test_stack_reads_kubeconfig_nodes_and_mtu_from_the_stack_outputs(fake_pulumi, tmp_path):
    access = FixtureFake(FakeCluster())
    report = tmp_path / "r.json"
    code, text = run_cli(["--stack", "dev", "--json", str(report)], access, env=fake_pulumi)
    assert code == cli.EXIT_FAILED  # the stack says pod MTU 1400; the pods report 1430
    log = Path(fake_pulumi["FAKE_PULUMI_LOG"]).read_text().splitlines()
    assert log == ["stack output --json --show-secrets --stack dev", f"file://{ROOT}/.pulumi-state"]
    assert access.factory_args[0] == json.loads(Path(fake_pulumi["FAKE_PULUMI_OUTPUTS"]).read_text())["kubeconfig"]
    assert "(stack dev)" in text.splitlines()[0]
    assert "pod MTU 1400" in text
    data = json.loads(report.read_text())
    assert data["cluster"]["source"] == "stack dev"
    # podCidr and subnetCidr come from the stack's config (Pulumi.yaml defaults here).
    assert (data["cluster"]["podCidr"], data["cluster"]["subnetCidr"]) == ("10.42.0.0/16", "10.0.1.0/24")
    assert data["checks"]["mtu"]["passed"] is False
    assert TOKEN not in text and TOKEN not in report.read_text()


class ScriptRecorder(FixtureFake):
    """FixtureFake that keeps every probe script it was asked to run."""

    def __init__(self, cluster: Any) -> None:
        super().__init__(cluster)
        self.scripts: list[str] = []

    def exec_in_pod(self, namespace: str, pod: str, container: str, command: list[str], timeout: float) -> Any:
        self.scripts.append(command[-1])
        return self.cluster.exec_in_pod(namespace, pod, container, command, timeout)


def _stack_repo(tmp_path: Path, ingress: str) -> Path:
    """A project copy holding only a Pulumi.dev.yaml whose edge is ``ingress`` (YAML flow mapping)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Pulumi.dev.yaml").write_text(f"config:\n  keybuzz-k3s:clusterName: keybuzz-dev\n"
                                          f"  keybuzz-k3s:ingress: {ingress}\n")
    return repo


@pytest.mark.parametrize(("ingress", "controller", "port"), [
    ("{controller: ingress-nginx}", "ingress-nginx", 80),
    ("{controller: traefik, migration: trial}", "traefik", 8000),  # Traefik beside ingress-nginx: its trial port
    ("{controller: traefik, migration: overlap}", "ingress-nginx (Traefik beside it on :80)", 80),
    ("{controller: traefik, migration: retire}", "traefik", 80),
    ("{controller: traefik}", "traefik", 80),
])
def test_stack_probes_the_ingress_controller_and_port_its_config_declares(fake_pulumi, tmp_path, ingress,
                                                                          controller, port):
    access = ScriptRecorder(FakeCluster())
    report = tmp_path / "r.json"
    code, text = run_cli(["--stack", "dev", "--check", "ingress", "--json", str(report)], access,
                         env=fake_pulumi, repo=_stack_repo(tmp_path, ingress))
    assert code == cli.EXIT_PASSED, text
    assert f"ingress: {controller} probed on the nodes' port {port}" in text
    data = json.loads(report.read_text())
    assert data["cluster"]["ingress"] == {"controller": controller, "port": port}
    assert data["checks"]["ingress"]["tested"].startswith(f"{controller} on 3 nodes (private IP :{port},")
    probed = set(re.findall(r"http://10\.0\.1\.\d+:(\d+)/node", "\n".join(access.scripts)))
    assert probed == {str(port)}


def test_ingress_flags_override_the_stacks_edge(fake_pulumi, tmp_path):
    access = ScriptRecorder(FakeCluster())
    code, text = run_cli(["--stack", "dev", "--check", "ingress", "--ingress-controller", "ingress-nginx",
                          "--ingress-port", "8080"], access, env=fake_pulumi,
                         repo=_stack_repo(tmp_path, "{controller: traefik, migration: trial}"))
    assert code == cli.EXIT_PASSED, text
    assert "ingress: ingress-nginx probed on the nodes' port 8080" in text
    assert set(re.findall(r"http://10\.0\.1\.\d+:(\d+)/node", "\n".join(access.scripts))) == {"8080"}


def test_kubeconfig_without_flags_probes_ingress_nginx_on_80(kubeconfig_file):
    access = ScriptRecorder(FakeCluster())
    code, text = run_cli(["--kubeconfig", str(kubeconfig_file), "--check", "ingress"], access)
    assert code == cli.EXIT_PASSED, text
    assert "ingress: ingress-nginx probed on the nodes' port 80" in text


def test_stack_dev_against_an_api_that_refuses_exits_3(fake_pulumi, kubernetes_imported):
    # The stack's outputs through the fake Pulumi CLI, the real Kubernetes client, a closed port.
    out = io.StringIO()
    code = cli.main(["--stack", "dev", "--api-timeout", "20"], out=out, env=fake_pulumi)
    text = out.getvalue()
    assert code == cli.EXIT_UNREACHABLE, text
    assert text.startswith("verifying https://127.0.0.1:")
    assert "(stack dev)" in text and "Connection refused" in text
    assert TOKEN not in text
    assert Path(fake_pulumi["FAKE_PULUMI_LOG"]).read_text().startswith("stack output --json --show-secrets")


def test_bin_verify_stack_dev_with_a_fake_pulumi_on_path(fake_pulumi):
    # The bash wrapper end to end from another directory: bin/venv, the module, the environment, the
    # stack file found in the project, the Pulumi CLI on PATH, the exit status. A stack never brought
    # up (no kubeconfig output) stops before any cluster client: one interpreter start, no
    # Kubernetes client import (the refused API is the test above, in-process).
    Path(fake_pulumi["FAKE_PULUMI_OUTPUTS"]).write_text(json.dumps({"podMtu": 1400}))
    done = subprocess.run([str(ROOT / "bin/verify"), "--stack", "dev", "--api-timeout", "20"], capture_output=True,
                          text=True, timeout=120, env=fake_pulumi, cwd="/")
    assert done.returncode == cli.EXIT_USAGE, done.stdout + done.stderr
    # The fix first, not 20 lines of usage: the command line was right, the stack is not up yet.
    assert done.stdout.startswith("bin/verify: error: stack dev has no kubeconfig output: run `bin/deploy dev up` "
                                  "first")
    assert "usage:" not in done.stdout
    assert Path(fake_pulumi["FAKE_PULUMI_LOG"]).read_text().splitlines() == [
        "stack output --json --show-secrets --stack dev", f"file://{ROOT}/.pulumi-state"]


def test_stack_without_passphrase_or_pulumi_or_outputs_exits_2(fake_pulumi):
    access = FixtureFake(FakeCluster())
    no_pass = {k: v for k, v in fake_pulumi.items() if k != "PULUMI_CONFIG_PASSPHRASE"}
    code, text = run_cli(["--stack", "dev"], access, env=no_pass)
    assert code == 2 and "--stack needs PULUMI_CONFIG_PASSPHRASE" in text
    code, text = run_cli(["--stack", "dev"], access, env={**fake_pulumi, "PATH": "/nonexistent"})
    assert code == 2 and "--stack needs the Pulumi CLI on PATH" in text
    code, text = run_cli(["--stack", "staging"], access, env=fake_pulumi)
    assert code == 2 and "`pulumi stack output --stack staging` failed: error: no stack named" in text
    Path(fake_pulumi["FAKE_PULUMI_OUTPUTS"]).write_text(json.dumps({"nodes": []}))
    code, text = run_cli(["--stack", "dev"], access, env=fake_pulumi)
    assert code == 2 and "stack dev has no kubeconfig output: run `bin/deploy dev up` first" in text
    assert access.applied == []


# -- deciding: what the cluster says about itself ---------------------------------------------------


def test_nodes_and_pod_cidrs_from_the_api():
    api = [
        {"metadata": {"name": "cp-1"}, "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24", "fd00::/64"]},
         "status": {"addresses": [{"type": "Hostname", "address": "cp-1"},
                                  {"type": "InternalIP", "address": "fd00::1"},
                                  {"type": "InternalIP", "address": "10.0.1.10"},
                                  {"type": "ExternalIP", "address": "203.0.113.4"}]}},
        {"metadata": {"name": "w-1"}, "spec": {"podCIDR": "10.42.1.0/24"},
         "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.20"}]}},
        {"metadata": {"name": "no-ip"}, "spec": {}, "status": {"addresses": []}},
    ]
    assert cli.nodes_from_api(api) == {"cp-1": "10.0.1.10", "w-1": "10.0.1.20"}
    assert cli.node_pod_cidrs(api) == ["10.42.0.0/24", "10.42.1.0/24"]


def test_covering_network_and_derived_pod_cidr():
    assert cli.covering_network(["10.0.1.10", "10.0.1.20"], max_prefix=24) == "10.0.1.0/24"
    assert cli.covering_network(["10.0.1.10", "10.0.2.20"], max_prefix=24) == "10.0.0.0/22"
    assert cli.covering_network(["10.42.0.0/24", "10.42.1.0/24"]) == "10.42.0.0/23"
    assert cli.covering_network([]) is None
    pool = {"spec": {"cidr": "10.42.0.0/16"}}
    assert cli.derive_pod_cidr(pool, ["10.42.0.0/24", "10.42.1.0/24"]) == "10.42.0.0/16"
    # A pool that does not hold the nodes' podCIDRs: check against the nodes' range instead.
    assert cli.derive_pod_cidr({"spec": {"cidr": "192.168.0.0/16"}}, ["10.42.0.0/24"]) == "10.42.0.0/24"
    assert cli.derive_pod_cidr(None, ["10.42.0.0/24", "10.42.3.0/24"]) == "10.42.0.0/22"
    assert cli.derive_pod_cidr(None, []) is None


# -- the real client's fixture calls, against a recording HTTP server -------------------------------


def test_fixture_apply_and_delete_send_server_side_apply_and_background_deletes():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from keybuzz.verify.cluster import KubernetesClusterAccess

    seen: list[tuple[str, str, str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            seen.append((self.command, self.path, self.headers.get("Content-Type", ""), body))
            status = 404 if self.path.endswith("/missing") else 403 if "/forbidden" in self.path else 200
            payload = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}} if status == 200 else {
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                "message": 'namespaces "forbidden" is forbidden: User "probe" cannot patch resource "namespaces"'
            }).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        access = KubernetesClusterAccess(kubeconfig_text(f"http://127.0.0.1:{server.server_port}"))
        manifests = fixture.render_fixture(nodes=["node-a"])
        for manifest in manifests:
            access.apply_object(manifest)
        cli.remove_fixture(access, manifests)
        exists = access.read_object(manifests[0])
        crd = access.crd_exists("ippools.crd.projectcalico.org")
        gone = access.read_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "missing"}})
        with pytest.raises(ClusterAccessError) as refused:
            access.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "forbidden"}})
    finally:
        server.shutdown()
    apply_query, background = "?fieldManager=keybuzz-verify&force=true", "?propagationPolicy=Background"
    assert [(m, p) for m, p, _, _ in seen] == [
        ("PATCH", f"/api/v1/namespaces/overlay-probe{apply_query}"),
        ("PATCH", f"/api/v1/namespaces/overlay-probe/configmaps/overlay-probe-echo{apply_query}"),
        ("PATCH", f"/apis/apps/v1/namespaces/overlay-probe/daemonsets/overlay-probe-echo{apply_query}"),
        ("PATCH", f"/api/v1/namespaces/overlay-probe/services/overlay-probe-echo{apply_query}"),
        ("PATCH", f"/apis/networking.k8s.io/v1/namespaces/overlay-probe/ingresses/overlay-probe-echo{apply_query}"),
        ("PATCH", f"/apis/apps/v1/namespaces/overlay-probe/daemonsets/overlay-probe-client{apply_query}"),
        ("PATCH", f"/apis/crd.projectcalico.org/v1/caliconodestatuses/overlay-probe-node-a{apply_query}"),
        ("DELETE", f"/apis/crd.projectcalico.org/v1/caliconodestatuses/overlay-probe-node-a{background}"),
        ("DELETE", f"/api/v1/namespaces/overlay-probe{background}"),
        ("GET", "/api/v1/namespaces/overlay-probe"),
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ippools.crd.projectcalico.org"),
        ("GET", "/api/v1/namespaces/missing"),
        ("PATCH", f"/api/v1/namespaces/forbidden{apply_query}"),
    ]
    # A refusal says why, from the API's Status.
    assert str(refused.value) == ('patch Namespace forbidden: HTTP 403 Forbidden: namespaces "forbidden" is '
                                  'forbidden: User "probe" cannot patch resource "namespaces"')
    assert {ct for m, _, ct, _ in seen if m == "PATCH"} == {"application/apply-patch+yaml"}
    assert [body for m, _, _, body in seen if m == "PATCH"][:-1] == manifests
    assert (exists, crd, gone) == ({"kind": "Status", "apiVersion": "v1", "metadata": {}}, True, None)


def test_module_runs_as_a_script_without_pulumi_on_path(tmp_path):
    done = subprocess.run([sys.executable, "-m", "keybuzz.verify.cli", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.startswith("usage: bin/verify")


def test_bin_verify_wrapper_is_valid_shell():
    import shutil

    script = str(ROOT / "bin/verify")
    assert subprocess.run(["bash", "-n", script], capture_output=True, text=True).returncode == 0
    if shutil.which("shellcheck"):  # installed on the dev machine; a bare CI image may lack it
        done = subprocess.run(["shellcheck", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout
