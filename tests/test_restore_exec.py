"""The restore scripts executed by bash, each server a directory, systemctl and k3s stand-ins recording what they saw.

Only the absolute paths are moved under a temporary root; the scripts run as rendered. The stand-ins
check what the real K3s enforces (no ``server:`` at reset time) and record, at each start, whether the
server still had its etcd data: the gotcha a restore must avoid.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_k3s import staging_like

from keybuzz import k3s, restore
from keybuzz.etcd_backup import Snapshot

SYSTEMCTL = """#!/bin/bash
root=$KEYBUZZ_ROOT
case "$1" in
  stop) echo inactive > "$root/state"; echo "$NODE_NAME stop" >> "$CALLS" ;;
  start)
    if [ -d "$root/var/lib/rancher/k3s/server/db" ]; then db=with-db; else db=without-db; fi
    echo active > "$root/state"; echo "$NODE_NAME start $db" >> "$CALLS" ;;
  is-active) [ "$(cat "$root/state")" = active ] ;;
esac
"""
K3S = """#!/bin/bash
root=$KEYBUZZ_ROOT
if [ "$1" = server ]; then
  config=$3
  if grep -q '^server:' "$config"; then
    echo "cannot perform cluster-reset while server URL is set - remove server from configuration before resetting"
    exit 1
  fi
  echo "$NODE_NAME reset $*" >> "$CALLS"
  mv "$root/var/lib/rancher/k3s/server/db/etcd" "$root/var/lib/rancher/k3s/server/db/etcd-old-1"
  mkdir "$root/var/lib/rancher/k3s/server/db/etcd"
  echo "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now."
  exit 0
fi
exit 0  # kubectl get --raw /readyz: ready
"""


def stand_ins(tmp: Path) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, text in (("systemctl", SYSTEMCTL), ("k3s", K3S), ("journalctl", "#!/bin/sh\nexit 0\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def server_root(tmp: Path, node, cfg) -> Path:
    root = tmp / node.name
    (root / "etc/rancher/k3s").mkdir(parents=True)
    (root / "var/lib/rancher/k3s/server/db/etcd").mkdir(parents=True)
    (root / "var/lib/rancher/k3s/server/db/snapshots").mkdir()
    (root / "var/log").mkdir(parents=True)
    config = k3s.to_yaml(k3s.render_server_config(cfg, node, "203.0.113.9"))
    (root / "etc/rancher/k3s/config.yaml").write_text(config)
    (root / "etc/rancher/k3s/cluster-token").write_text("token\n")
    (root / "state").write_text("active\n")
    return root


def run_script(script: str, root: Path, node: str, bin_dir: Path, calls: Path) -> subprocess.CompletedProcess:
    for path in ("/etc/rancher/k3s", "/var/lib/rancher/k3s", "/var/log/"):
        script = script.replace(path, f"{root}{path}")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "KEYBUZZ_ROOT": str(root),
           "NODE_NAME": node, "CALLS": str(calls)}
    return subprocess.run(["bash", "-s"], input=script, env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture
def cluster(tmp_path):
    cfg = staging_like()
    servers = [restore.Server(n.name, f"203.0.113.{9 + i}", n.private_ip) for i, n in enumerate(cfg.servers)]
    roots = {n.name: server_root(tmp_path, n, cfg) for n in cfg.servers}
    return servers, roots, stand_ins(tmp_path), tmp_path / "calls"


def test_the_plan_run_by_bash_resets_without_server_and_starts_the_others_only_without_their_data(cluster):
    servers, roots, bin_dir, calls = cluster
    assert all("server: https://" in (r / "etc/rancher/k3s/config.yaml").read_text() for r in roots.values())
    snap = Snapshot("etcd-snapshot-x", "s3://b/f/etcd-snapshot-x", 1, "2025-07-22T10:02:03Z")
    for step in restore.plan_restore(servers, servers[0], snap):
        done = run_script(step.script, roots[step.node], step.node, bin_dir, calls)
        assert done.returncode == 0, f"{step.node} {step.what}: {done.stderr}"
    first, second, third = (s.name for s in servers)
    lines = calls.read_text().splitlines()
    assert lines[:3] == [f"{first} stop", f"{second} stop", f"{third} stop"]
    assert lines[3].startswith(f"{first} reset server --config ")
    assert "--cluster-reset-restore-path=etcd-snapshot-x" in lines[3]
    # The reset server keeps its (restored) data; the others start only once theirs is gone.
    assert lines[4:] == [f"{first} start with-db", f"{second} start without-db", f"{third} start without-db"]
    # The reset config is gone again; config.yaml itself is untouched (no Pulumi input changed).
    first_root = roots[first]
    assert not (first_root / "etc/rancher/k3s/reset-config.yaml").exists()
    assert "server: https://" in (first_root / "etc/rancher/k3s/config.yaml").read_text()
    assert (first_root / "var/lib/rancher/k3s/server/db/etcd-old-1").is_dir()


def test_a_reset_while_k3s_still_runs_is_refused_before_anything_moves(cluster):
    servers, roots, bin_dir, calls = cluster
    snap = Snapshot("etcd-snapshot-x", "s3://b/f/etcd-snapshot-x", 1, "2025-07-22T10:02:03Z")
    done = run_script(restore.reset_script(servers[0].name, snap), roots[servers[0].name], servers[0].name,
                      bin_dir, calls)
    assert done.returncode == 1 and "every server must be stopped first" in done.stderr
    assert not calls.exists()


def test_a_peer_whose_k3s_runs_is_not_wiped(cluster):
    servers, roots, bin_dir, calls = cluster
    node = servers[1].name
    done = run_script(restore.start_script(node, wipe=True), roots[node], node, bin_dir, calls)
    assert done.returncode == 1 and "revive the old cluster" in done.stderr
    assert (roots[node] / "var/lib/rancher/k3s/server/db/etcd").is_dir()
