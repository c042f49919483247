"""The K3s config every node gets, the node scripts, the kubeconfig rewrite and the critical-value guard."""

from __future__ import annotations

import pytest
import yaml
from harness import SAMPLE_K3S_KUBECONFIG
from test_config import raw_config

from keybuzz import k3s
from keybuzz.config import parse_config, project_defaults
from keybuzz.guards import CriticalConfigProvider, critical_changes


def staging_like():
    raw = raw_config(controlPlane={"count": 3, "serverType": "cx23"}, promotesFrom="dev")
    return parse_config(raw, "staging", project_defaults())


def test_first_server_initialises_etcd_with_flannel_off():
    cfg = staging_like()
    first = cfg.servers[0]
    config = k3s.render_server_config(cfg, first, first, "203.0.113.5")
    assert config == {
        "node-name": "keybuzz-cp-1",
        "token-file": k3s.TOKEN_PATH,
        "cluster-init": True,
        "flannel-backend": "none",
        "disable-network-policy": True,
        "cluster-cidr": "10.42.0.0/16",
        "service-cidr": "10.43.0.0/16",
        "node-ip": "10.0.1.10",
        "advertise-address": "10.0.1.10",
        "tls-san": ["203.0.113.5", "10.0.1.10"],
        "disable": ["traefik", "servicelb"],
        "write-kubeconfig-mode": "0600",
    }


def test_other_servers_join_the_first_over_the_private_network():
    cfg = staging_like()
    config = k3s.render_server_config(cfg, cfg.servers[2], cfg.servers[0], "203.0.113.7")
    assert config["server"] == "https://10.0.1.10:6443"
    assert "cluster-init" not in config
    assert config["node-ip"] == config["advertise-address"] == "10.0.1.12"
    # Critical values are identical on every server, or K3s refuses to start.
    first = k3s.render_server_config(cfg, cfg.servers[0], cfg.servers[0], "203.0.113.5")
    for key in k3s.CRITICAL_KEYS:
        assert config[key] == first[key]


def test_agents_join_the_first_server_with_labels_and_taints():
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
    config = k3s.render_agent_config(cfg.agents[0], cfg.servers[0])
    assert config == {
        "node-name": "keybuzz-gpu-1",
        "token-file": k3s.TOKEN_PATH,
        "server": "https://10.0.1.10:6443",
        "node-ip": "10.0.1.20",
        "node-label": ["keybuzz.io/pool=gpu"],
        "node-taint": ["gpu=true:NoSchedule"],
    }
    assert "flannel-backend" not in config  # server-only flags would make an agent refuse to start


def test_rendering_is_byte_stable_so_reruns_change_nothing():
    cfg = staging_like()
    once = k3s.to_yaml(k3s.render_server_config(cfg, cfg.servers[1], cfg.servers[0], "203.0.113.6"))
    again = k3s.to_yaml(k3s.render_server_config(cfg, cfg.servers[1], cfg.servers[0], "203.0.113.6"))
    assert once == again
    assert k3s.content_hash("v1", once) == k3s.content_hash("v1", again)
    assert k3s.content_hash("v1", once) != k3s.content_hash("v2", once)
    assert yaml.safe_load(once)["flannel-backend"] == "none"


def test_install_script_writes_whole_files_atomically_and_pins_the_installer():
    script = k3s.install_script("server", "v1.34.1+k3s1", "node-name: a\n")
    assert ">>" not in script  # never appends: a re-run yields the same file
    assert f"mv -f {k3s.CONFIG_PATH}.new {k3s.CONFIG_PATH}" in script
    assert f"cat > {k3s.TOKEN_PATH}.new" in script  # token from stdin, never on a command line
    assert "https://raw.githubusercontent.com/k3s-io/k3s/v1.34.1%2Bk3s1/install.sh" in script
    assert "INSTALL_K3S_VERSION=v1.34.1+k3s1 INSTALL_K3S_EXEC=server" in script
    assert "cloud-init status --wait" in script
    assert "node-name: a\nKEYBUZZ_EOF" in script


def test_install_script_refuses_an_unknown_role():
    with pytest.raises(ValueError, match="'master'"):
        k3s.install_script("master", "v1.34.1+k3s1", "")


def test_readiness_waits_for_readyz_not_node_ready():
    script = k3s.wait_ready_script(60)
    assert "get --raw /readyz" in script
    assert "seq 1 30" in script
    assert "Ready" not in script.replace("readyz", "").replace("not ready", "")


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
