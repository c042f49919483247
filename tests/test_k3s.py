"""The K3s config every node gets, the node scripts, the kubeconfig rewrite and the critical-value guard."""

from __future__ import annotations

import subprocess

import pytest
import yaml
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
        "disable": ["traefik", "servicelb", "local-storage"],  # a new stack: no local-path
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


def first_server_script(peers=("10.0.1.11", "10.0.1.12", "10.0.1.5")):
    return k3s.install_script(
        "server", "v1.34.1+k3s1", "node-name: a\n", "keybuzz-cp-1",
        bootstrap_yaml="node-name: a\ncluster-init: true\n", peer_ips=peers,
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
    assert_valid_bash(script)


def test_a_changed_config_restarts_k3s_because_install_sh_would_not():
    script = k3s.install_script("agent", "v1.34.1+k3s1", "node-name: w\n", "keybuzz-workers-1")
    # RESTART becomes true only when the new file's bytes differ from the one on disk.
    assert f"if cmp -s {k3s.CONFIG_PATH}.new {k3s.CONFIG_PATH}; then rm -f {k3s.CONFIG_PATH}.new; " in script
    assert "RESTART=true" in script and "INSTALL_K3S_FORCE_RESTART=$RESTART " in script
    assert_valid_bash(script)


def test_every_wait_in_the_install_script_is_bounded_and_failures_name_the_node():
    script = k3s.install_script("server", "v1.34.1+k3s1", "node-name: a\n", "keybuzz-cp-2")
    assert "timeout 600 cloud-init status --wait" in script
    assert "timeout --kill-after=10 600 sh /tmp/k3s-install.sh" in script
    assert "curl -sfL --retry 5 --max-time 120 " in script
    assert "until timeout 10 k3s kubectl get --raw /readyz" in script and '[ "$i" -lt 150 ]' in script
    assert "NODE=keybuzz-cp-2" in script and 'journalctl -u "$UNIT" -n 40 --no-pager' in script
    assert "UNIT=k3s\n" in script
    assert "set -x" not in script and "env" not in script.split()
    agent = k3s.install_script("agent", "v1.34.1+k3s1", "node-name: w\n", "keybuzz-workers-1")
    assert "UNIT=k3s-agent\n" in agent and "/readyz" not in agent  # agents have no API server


def test_the_first_server_initialises_only_without_etcd_data_and_without_an_answering_peer():
    script = first_server_script()
    assert f"if [ -d {k3s.ETCD_DATA_DIR} ] || peer_answers; then" in script
    assert "for ip in 10.0.1.11 10.0.1.12 10.0.1.5; do" in script
    assert '"https://$ip:6443/ping"' in script
    # The join config comes first (the one read back as "the" config), the bootstrap one in the else.
    assert k3s.config_in_install_script(script) == "node-name: a\n"
    assert k3s.bootstrap_config_in_install_script(script) == "node-name: a\ncluster-init: true\n"
    assert script.index("KEYBUZZ_EOF") < script.index("\nelse\n") < script.index("KEYBUZZ_BOOTSTRAP_EOF")
    assert_valid_bash(script)
    alone = first_server_script(peers=())
    assert f"if [ -d {k3s.ETCD_DATA_DIR} ]; then" in alone and "peer_answers" not in alone
    assert_valid_bash(alone)


def run_first_server_choice(tmp_path, *, etcd_data, peer_up):
    """Run the first server's config choice for real, with stand-ins for curl and the paths."""
    script = first_server_script(peers=("10.0.1.11",))
    head = script[: script.index("curl -sfL")]  # stop before the installer
    root = tmp_path / "root"
    (root / "etc/rancher/k3s").mkdir(parents=True)
    if etcd_data:
        (root / k3s.ETCD_DATA_DIR.lstrip("/")).mkdir(parents=True)
    head = head.replace("/etc/rancher", f"{root}/etc/rancher").replace(k3s.ETCD_DATA_DIR, f"{root}{k3s.ETCD_DATA_DIR}")
    head = head.replace("timeout 600 cloud-init status --wait", "true").replace("install -d -m 0755", "mkdir -p")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(f"#!/bin/sh\nexit {0 if peer_up else 7}\n")
    (bin_dir / "curl").chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", head + 'echo "RESTART=$RESTART"'],
        input="tok", capture_output=True, text=True, timeout=10,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return (root / "etc/rancher/k3s/config.yaml").read_text(), done.stdout


def test_a_fresh_first_server_with_no_peer_initialises(tmp_path):
    written, out = run_first_server_choice(tmp_path, etcd_data=False, peer_up=False)
    assert written == "node-name: a\ncluster-init: true\n" and "RESTART=true" in out


def test_a_replaced_first_server_joins_when_a_peer_answers(tmp_path):
    written, _ = run_first_server_choice(tmp_path, etcd_data=False, peer_up=True)
    assert written == "node-name: a\n"


def test_a_first_server_with_etcd_data_keeps_joining_config(tmp_path):
    written, _ = run_first_server_choice(tmp_path, etcd_data=True, peer_up=False)
    assert written == "node-name: a\n"


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
