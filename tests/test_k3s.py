"""The K3s config every node gets, the node scripts, the kubeconfig rewrite and the critical-value guard."""

from __future__ import annotations

import pytest
import yaml
from fakes.node_stubs import make_stubs, run_script
from harness import SAMPLE_K3S_KUBECONFIG
from shell_lint import assert_valid_bash
from test_config import raw_config

from keybuzz import k3s
from keybuzz.config import parse_config, project_defaults
from keybuzz.guards import CriticalConfigProvider, critical_changes


def staging_like():
    raw = raw_config(controlPlane={"count": 3, "serverType": "cx23"}, promotesFrom="dev")
    return parse_config(raw, "staging", project_defaults())


def test_first_server_joins_like_the_others_and_only_its_bootstrap_variant_initialises_etcd():
    cfg = staging_like()
    first = cfg.servers[0]
    config = k3s.render_server_config(cfg, first, "203.0.113.5")
    assert config == {
        "node-name": "keybuzz-cp-1",
        "token-file": k3s.TOKEN_PATH,
        "server": "https://10.0.1.5:6443",  # the API load balancer (3 servers: on by default)
        "flannel-backend": "none",
        "disable-network-policy": True,
        "cluster-cidr": "10.42.0.0/16",
        "service-cidr": "10.43.0.0/16",
        "node-ip": "10.0.1.10",
        "advertise-address": "10.0.1.10",
        "node-external-ip": "203.0.113.5",
        "tls-san": ["203.0.113.5", "10.0.1.10", "10.0.1.5"],
        "disable": ["traefik", "servicelb"],
        "write-kubeconfig-mode": "0600",
    }
    bootstrap = k3s.bootstrap_server_config(config)
    assert "server" not in bootstrap and bootstrap["cluster-init"] is True
    assert {k: v for k, v in bootstrap.items() if k != "cluster-init"} == {
        k: v for k, v in config.items() if k != "server"
    }


def test_other_servers_join_through_the_load_balancer_over_the_private_network():
    cfg = staging_like()
    config = k3s.render_server_config(cfg, cfg.servers[2], "203.0.113.7")
    assert config["server"] == "https://10.0.1.5:6443"
    assert "cluster-init" not in config
    assert config["node-ip"] == config["advertise-address"] == "10.0.1.12"
    # Critical values are identical on every server, or K3s refuses to start.
    first = k3s.render_server_config(cfg, cfg.servers[0], "203.0.113.5")
    for key in k3s.CRITICAL_KEYS:
        assert config[key] == first[key]


def test_a_single_server_without_load_balancer_joins_through_its_own_private_ip():
    cfg = parse_config(raw_config(), "dev", project_defaults())
    config = k3s.render_server_config(cfg, cfg.servers[0], "203.0.113.5")
    assert config["server"] == "https://10.0.1.10:6443"
    assert config["tls-san"] == ["203.0.113.5", "10.0.1.10"]


def test_a_public_api_host_is_added_to_tls_san_once():
    cfg = staging_like()
    config = k3s.render_server_config(cfg, cfg.servers[1], "203.0.113.6", api_host="198.51.100.9")
    assert config["tls-san"] == ["203.0.113.6", "10.0.1.11", "10.0.1.5", "198.51.100.9"]
    same = k3s.render_server_config(cfg, cfg.servers[1], "203.0.113.6", api_host="203.0.113.6")
    assert same["tls-san"] == ["203.0.113.6", "10.0.1.11", "10.0.1.5"]


def test_agents_join_through_the_join_address_and_register_without_labels_or_taints():
    raw = raw_config(
        nodePools=[
            {
                "name": "gpu",
                "count": 1,
                "serverType": "cx33",
                "labels": {"keybuzz.io/pool": "gpu"},
                "taints": ["gpu=true:NoSchedule"],
            }
        ]
    )
    cfg = parse_config(raw, "dev", project_defaults())
    config = k3s.render_agent_config(cfg, cfg.agents[0], "203.0.113.9")
    # Labels and taints go through the Kubernetes API: K3s applies these flags only at registration.
    assert config == {
        "node-name": "keybuzz-gpu-1",
        "token-file": k3s.TOKEN_PATH,
        "server": "https://10.0.1.10:6443",
        "node-ip": "10.0.1.20",
        "node-external-ip": "203.0.113.9",
    }


def test_rendering_is_byte_stable_so_reruns_change_nothing():
    cfg = staging_like()
    once = k3s.to_yaml(k3s.render_server_config(cfg, cfg.servers[1], "203.0.113.6"))
    again = k3s.to_yaml(k3s.render_server_config(cfg, cfg.servers[1], "203.0.113.6"))
    assert once == again
    assert k3s.content_hash("v1", once) == k3s.content_hash("v1", again)
    assert k3s.content_hash("v1", once) != k3s.content_hash("v2", once)
    assert yaml.safe_load(once)["flannel-backend"] == "none"


def first_server_script(config="node-name: a\n"):
    """The first server's install while it is the server that created the cluster."""
    return k3s.install_script(
        "server", "v1.34.1+k3s1", config, "keybuzz-cp-1", bootstrap_yaml=config + "cluster-init: true\n",
    )


def test_install_script_writes_whole_files_atomically_and_pins_the_installer():
    script = k3s.install_script("server", "v1.34.1+k3s1", "node-name: a\n", "keybuzz-cp-2")
    assert ">>" not in script  # never appends: a re-run yields the same file
    assert f"mv -f {k3s.CONFIG_PATH}.new {k3s.CONFIG_PATH}" in script
    assert f"cat > {k3s.TOKEN_PATH}.new" in script  # token from stdin, never on a command line
    assert "https://raw.githubusercontent.com/k3s-io/k3s/v1.34.1%2Bk3s1/install.sh" in script
    assert "INSTALL_K3S_VERSION=v1.34.1+k3s1 INSTALL_K3S_EXEC=server" in script
    assert "cloud-init status --wait" in script
    assert "node-name: a\nKEYBUZZ_EOF" in script
    assert k3s.bootstrap_config_in_install_script(script) is None
    assert "cluster-init" not in script
    assert_valid_bash(script)


def test_the_restart_follows_what_k3s_last_started_with_not_the_file_change():
    script = k3s.install_script("agent", "v1.34.1+k3s1", "node-name: w\n", "keybuzz-workers-1")
    assert f"APPLIED={k3s.APPLIED_PATH}" in script
    assert '[ "$(cat "$APPLIED" 2>/dev/null || true)" = "$wanted" ] || RESTART=true' in script
    assert "INSTALL_K3S_FORCE_RESTART=$RESTART " in script
    # The marker is written last, after the start and the readiness check.
    assert script.rstrip().endswith('printf \'%s\\n\' "$wanted" > "$APPLIED.new" && mv -f "$APPLIED.new" "$APPLIED"')
    assert_valid_bash(script)


def test_every_wait_in_the_install_script_is_bounded_and_failures_name_the_node():
    script = k3s.install_script("server", "v1.34.1+k3s1", "node-name: a\n", "keybuzz-cp-2")
    assert "timeout 600 cloud-init status --wait" in script
    assert 'timeout --kill-after=10 600 sh "$installer"' in script
    assert "curl -sfL --retry 5 --max-time 120 " in script
    assert "until timeout 10 k3s kubectl get --raw /readyz" in script and "deadline=$((started + 300))" in script
    assert "NODE=keybuzz-cp-2" in script and 'journalctl -u "$UNIT" -n 40 --no-pager' in script
    assert "UNIT=k3s\n" in script
    assert "set -x" not in script and "env" not in script.split()
    agent = k3s.install_script("agent", "v1.34.1+k3s1", "node-name: w\n", "keybuzz-workers-1")
    assert "UNIT=k3s-agent\n" in agent and "/readyz" not in agent  # agents have no API server


def test_the_creating_server_initialises_only_without_etcd_data_and_never_probes_peers():
    script = first_server_script()
    # K3s's own test for an initialised member: the WAL directory (pkg/etcd/etcd.go IsInitialized).
    assert k3s.ETCD_WAL_DIR == "/var/lib/rancher/k3s/server/db/etcd/member/wal"
    assert f"if [ -d {k3s.ETCD_WAL_DIR} ] && ! cmp -s {k3s.CONFIG_PATH}.bootstrap {k3s.CONFIG_PATH}; then" in script
    assert "/ping" not in script and "peer_answers" not in script
    assert k3s.config_in_install_script(script) == "node-name: a\n"
    assert k3s.bootstrap_config_in_install_script(script) == "node-name: a\ncluster-init: true\n"
    assert_valid_bash(script)


def test_a_replaced_first_server_joins_and_fails_clearly_instead_of_initialising():
    script = k3s.install_script(
        "server", "v1.34.1+k3s1", "node-name: a\nserver: https://10.0.1.5:6443\n", "keybuzz-cp-1",
        rejoin_url="https://10.0.1.5:6443",
    )
    assert "cluster-init" not in script and k3s.bootstrap_config_in_install_script(script) is None
    assert "it joins https://10.0.1.5:6443 and never initialises a new cluster" in script
    assert "never initialises a new cluster: is a server healthy there" in script
    assert_valid_bash(script)
    refused = k3s.install_script("server", "v1.34.1+k3s1", "node-name: a\n", "keybuzz-cp-1", refusal="no cluster")
    refusal = "REFUSAL='no cluster'\n[ -z \"$REFUSAL\" ] || fail \"$REFUSAL\""
    assert refused.index(refusal) < refused.index("write_config")
    assert_valid_bash(refused)


def install(tmp_path, script, *, active=False, **state_files):
    """Run an install script as on a node: stubs on PATH, /etc/rancher and /var/lib/rancher under ``root``."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    if not bin_dir.exists():
        make_stubs(tmp_path)
    for name in ("start_fails", "download_fails", "active"):
        (state / name).unlink(missing_ok=True)
    if active:
        (state / "active").write_text("")
    for name, value in state_files.items():
        if value:
            (state / name).write_text("")
    root = tmp_path / "root"
    (root / "etc/rancher/k3s").mkdir(parents=True, exist_ok=True)
    script = script.replace("install -d -m 0755", "mkdir -p")
    done = run_script(script, bin_dir, stdin="token", root=root)
    installs = (state / "installs").read_text().splitlines() if (state / "installs").exists() else []
    return done, installs, root / "etc/rancher/k3s"


def test_a_fresh_creating_server_initialises_the_cluster(tmp_path):
    done, installs, etc = install(tmp_path, first_server_script())
    assert done.returncode == 0, done.stderr
    assert (etc / "config.yaml").read_text() == "node-name: a\ncluster-init: true\n"
    assert "initialising the cluster (cluster-init)" in done.stderr
    assert installs == ["force_restart=true version=v1.34.1+k3s1 exec=server"]
    assert (etc / "keybuzz-applied").exists() and not (etc / "config.yaml.bootstrap").exists()


def test_the_creating_server_with_etcd_data_keeps_what_it_runs_and_does_not_restart(tmp_path):
    wal = tmp_path / "root" / k3s.ETCD_WAL_DIR.lstrip("/")
    wal.mkdir(parents=True)
    (tmp_path / "root/etc/rancher/k3s").mkdir(parents=True)
    for on_disk in ("node-name: a\n", "node-name: a\ncluster-init: true\n"):
        (tmp_path / "root/etc/rancher/k3s/config.yaml").write_text(on_disk)
        (tmp_path / "root/etc/rancher/k3s/keybuzz-applied").unlink(missing_ok=True)
        # Set up by an earlier program (no marker), running: no restart, no rewrite.
        done, installs, etc = install(tmp_path, first_server_script(), active=True)
        assert done.returncode == 0, done.stderr
        assert (etc / "config.yaml").read_text() == on_disk
        assert installs[-1].startswith("force_restart=false ")
        assert "initialising" not in done.stderr
    # Some other config on disk (a config change): the joining variant is written, and K3s restarts.
    (tmp_path / "root/etc/rancher/k3s/config.yaml").write_text("node-name: old\n")
    done, installs, etc = install(tmp_path, first_server_script(), active=True)
    assert (etc / "config.yaml").read_text() == "node-name: a\n" and installs[-1].startswith("force_restart=true ")


def test_a_config_change_retried_after_a_failed_start_still_restarts(tmp_path):
    old = k3s.install_script("agent", "v1.34.1+k3s1", "node-name: w\nold: 1\n", "keybuzz-workers-1")
    new = k3s.install_script("agent", "v1.34.1+k3s1", "node-name: w\nnew: 1\n", "keybuzz-workers-1")
    done, installs, _ = install(tmp_path, old)
    assert done.returncode == 0, done.stderr
    # The change: config.yaml is replaced, then K3s fails to start with it.
    done, installs, etc = install(tmp_path, new, start_fails=True)
    assert done.returncode == 1 and installs[-1].startswith("force_restart=true ")
    assert (etc / "config.yaml").read_text() == "node-name: w\nnew: 1\n"
    # The re-run finds config.yaml already as wanted; install.sh alone would skip the start. Not here:
    done, installs, _ = install(tmp_path, new, active=True)
    assert done.returncode == 0, done.stderr
    assert installs[-1].startswith("force_restart=true ")
    # Once K3s started with it, the next run restarts nothing.
    done, installs, _ = install(tmp_path, new, active=True)
    assert installs[-1].startswith("force_restart=false ")


def test_a_config_change_retried_after_a_failed_download_still_restarts(tmp_path):
    old = k3s.install_script("agent", "v1.34.1+k3s1", "node-name: w\nold: 1\n", "keybuzz-workers-1")
    new = k3s.install_script("agent", "v1.34.1+k3s1", "node-name: w\nnew: 1\n", "keybuzz-workers-1")
    assert install(tmp_path, old)[0].returncode == 0
    done, installs, _ = install(tmp_path, new, active=True, download_fails=True)
    assert done.returncode == 1 and "could not download the K3s installer" in done.stderr
    assert len(installs) == 1  # the installer never ran: K3s still runs the old config
    done, installs, _ = install(tmp_path, new, active=True)
    assert installs[-1].startswith("force_restart=true ")


def test_a_version_change_is_part_of_what_was_applied(tmp_path):
    first = k3s.install_script("agent", "v1.34.1+k3s1", "node-name: w\n", "keybuzz-workers-1")
    bumped = k3s.install_script("agent", "v1.34.2+k3s1", "node-name: w\n", "keybuzz-workers-1")
    assert install(tmp_path, first)[0].returncode == 0
    done, installs, _ = install(tmp_path, bumped, active=True, start_fails=True)
    done, installs, _ = install(tmp_path, bumped, active=True)
    assert installs[-1] == "force_restart=true version=v1.34.2+k3s1 exec=agent"


def test_install_script_refuses_an_unknown_role():
    with pytest.raises(ValueError, match="'master'"):
        k3s.install_script("master", "v1.34.1+k3s1", "", "n")


def test_kubeconfig_points_at_the_public_address_under_the_cluster_name():
    text = k3s.kubeconfig_for_operator(SAMPLE_K3S_KUBECONFIG, "https://203.0.113.5:6443", "keybuzz-dev")
    config = yaml.safe_load(text)
    assert config["clusters"][0]["cluster"]["server"] == "https://203.0.113.5:6443"
    assert config["clusters"][0]["cluster"]["certificate-authority-data"] == "Q0EtREFUQQ=="
    assert config["current-context"] == "keybuzz-dev"
    assert config["contexts"][0]["context"] == {"cluster": "keybuzz-dev", "user": "keybuzz-dev"}
    assert config["users"][0]["name"] == "keybuzz-dev"


def test_kubeconfig_without_clusters_is_a_clear_error():
    with pytest.raises(ValueError, match="no clusters"):
        k3s.kubeconfig_for_operator("", "https://x:6443", "c")


def test_guard_refuses_a_changed_pod_cidr_at_preview():
    olds = k3s.critical_values(staging_like())
    news = dict(olds, **{"cluster-cidr": "10.52.0.0/16"})
    result = CriticalConfigProvider().check(olds, news)
    assert [f.property for f in result.failures] == ["cluster-cidr"]
    message = result.failures[0].reason
    assert "'10.42.0.0/16' -> '10.52.0.0/16'" in message and "pool migration" in message


def test_guard_refuses_turning_flannel_back_on():
    olds = {"flannel-backend": "none"}
    changes = critical_changes(olds, {"flannel-backend": "vxlan"})
    assert changes[0][0] == "flannel-backend" and "switching the CNI" in changes[0][1]


def test_guard_accepts_a_new_cluster_and_unchanged_values():
    values = k3s.critical_values(staging_like())
    assert CriticalConfigProvider().check({}, values).failures == []
    assert CriticalConfigProvider().check(values, dict(values)).failures == []


def test_a_node_set_up_before_the_marker_is_adopted_without_a_restart_only_while_running(tmp_path):
    script = k3s.install_script("agent", "v1.34.1+k3s1", "node-name: w\n", "keybuzz-workers-1")
    etc = tmp_path / "running" / "root/etc/rancher/k3s"
    etc.mkdir(parents=True)
    (etc / "config.yaml").write_text("node-name: w\n")
    done, installs, _ = install(tmp_path / "running", script, active=True)
    assert done.returncode == 0, done.stderr
    assert installs == ["force_restart=false version=v1.34.1+k3s1 exec=agent"]
    # Not running (a first install that failed, or K3s down): nothing to adopt, K3s is (re)started.
    etc = tmp_path / "stopped" / "root/etc/rancher/k3s"
    etc.mkdir(parents=True)
    (etc / "config.yaml").write_text("node-name: w\n")
    done, installs, _ = install(tmp_path / "stopped", script, start_fails=True)
    assert done.returncode == 1 and installs == ["force_restart=true version=v1.34.1+k3s1 exec=agent"]
    done, installs, _ = install(tmp_path / "stopped", script)
    assert done.returncode == 0 and installs[-1] == "force_restart=true version=v1.34.1+k3s1 exec=agent"
