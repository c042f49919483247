"""keybuzz.traefik: Traefik on every node's host network, serving IngressClass `nginx`, held to its chart."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes.client as k8s_client
import pytest
from shell_lint import assert_valid_bash

from keybuzz import ingress, traefik
from keybuzz.config import project_defaults

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "charts" / "traefik-37.4.0.values.schema.extract.json").read_text()
)
# Subtrees the chart renders verbatim into the pod spec (toYaml): Kubernetes fields, not chart keys.
PASS_THROUGH = {
    "securityContext": k8s_client.V1SecurityContext,
    "podSecurityContext": k8s_client.V1PodSecurityContext,
}
# The chart's own defaults (traefik/values.yaml, chart 37.4.0, commit 00374755) for what we override, so a
# test shows each change on purpose.
CHART_DEFAULTS = {
    "deployment.kind": "Deployment",
    "hostNetwork": False,
    "service.type": "LoadBalancer",
    "ingressClass.enabled": True,
    "providers.kubernetesIngress.enabled": True,
    "providers.kubernetesCRD.enabled": True,
    "providers.kubernetesIngressNginx.enabled": False,
    "providers.kubernetesIngressNginx.ingressClass": "nginx",
    "providers.kubernetesIngressNginx.controllerClass": "k8s.io/ingress-nginx",
    "logs.access.enabled": False,
    "api.dashboard": True,
    "ports.web.port": 8000,
    "ports.websecure.port": 8443,
    "ports.traefik.port": 8080,
    "ports.metrics.port": 9100,
    "updateStrategy.rollingUpdate.maxUnavailable": 1,
    "updateStrategy.rollingUpdate.maxSurge": 0,
    "podSecurityContext.runAsUser": 65532,
}
# Host ports ingress-nginx's controller binds on the host network (chart 4.15 defaults): 80/443, the
# admission webhook 8443, healthz/metrics 10254, the default server 8181, status 10245-10247 (localhost).
INGRESS_NGINX_HOST_PORTS = {80, 443, 8443, 10254, 8181, 10245, 10246, 10247}
# ingress-nginx chart 4.15 values.yaml: controller.image.runAsUser (runAsGroup 82).
INGRESS_NGINX_UID = 101


def unknown_keys(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key path in ``values`` that the chart's schema does not list (Helm ignores those silently)."""
    found = []
    props = schema.get("properties")
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if not prefix and key in PASS_THROUGH:
            model = PASS_THROUGH[key]
            allowed = set(model.attribute_map.values())
            found += [f"{path}.{k}" for k in value if k not in allowed]
            continue
        if props is None:
            continue  # a free-form object or list in the chart (e.g. tolerations, additionalArguments)
        if key not in props:
            found.append(path)
        elif isinstance(value, dict):
            found += unknown_keys(value, props[key], path)
    return found


def leaf(values: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


@pytest.mark.parametrize("trial", [False, True])
def test_values_conform_to_the_charts_schema(trial):
    values = traefik.traefik_values(ports=ingress.TRIAL_PORTS if trial else None)
    jsonschema.validate(values, SCHEMA)
    assert unknown_keys(values, SCHEMA) == []


def test_a_misspelt_key_is_caught():
    values = traefik.traefik_values()
    values["providers"]["kubernetesIngressNGINX"] = {"enabled": True}  # the 40.x spelling: unknown to 37.4.0
    values["securityContext"]["runAsUsr"] = 0
    assert unknown_keys(values, SCHEMA) == ["providers.kubernetesIngressNGINX", "securityContext.runAsUsr"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, SCHEMA)  # providers has additionalProperties: false in the chart


def test_every_override_differs_from_the_chart_default_on_purpose():
    values = traefik.traefik_values()
    changed = {path: leaf(values, path) for path in CHART_DEFAULTS if leaf(values, path) != CHART_DEFAULTS[path]}
    assert changed == {
        "deployment.kind": "DaemonSet",
        "hostNetwork": True,
        "service.type": "ClusterIP",
        "ingressClass.enabled": False,
        "providers.kubernetesIngress.enabled": False,
        "providers.kubernetesCRD.enabled": False,
        "providers.kubernetesIngressNginx.enabled": True,
        "logs.access.enabled": True,
        "api.dashboard": False,
        "ports.web.port": 80,
        "ports.websecure.port": 443,
        "podSecurityContext.runAsUser": 101,
    }


def test_one_pod_per_node_on_the_host_network_tolerating_every_taint():
    values = traefik.traefik_values()
    assert values["deployment"] == {"kind": "DaemonSet", "dnsPolicy": "ClusterFirstWithHostNet"}
    assert values["hostNetwork"] is True
    assert values["tolerations"] == [{"operator": "Exists"}]


def test_edge_binds_80_and_443_and_nothing_else_is_exposed():
    ports = traefik.traefik_values()["ports"]
    assert (ports["web"]["port"], ports["websecure"]["port"]) == (80, 443)
    assert ports["traefik"]["expose"] == {"default": False} and ports["metrics"]["expose"] == {"default": False}
    assert traefik.host_ports() == {"web": 80, "websecure": 443, "traefik": 8080, "metrics": 9100}


def test_no_host_port_is_declared_on_top_of_the_host_network():
    # The chart fails when hostPort != port with hostNetwork; leaving it unset adds no hostPort of its own.
    for name, port in traefik.traefik_values()["ports"].items():
        assert "hostPort" not in port, name


def node_ports_fit(new: set[int], running: set[int]) -> bool:
    """The scheduler's NodePorts filter for hostNetwork pods, all TCP on 0.0.0.0: on the host network every
    declared containerPort is a hostPort (defaultHostNetworkPorts), and a pod fits only if none is taken."""
    return not new & running


# ingress-nginx chart 4.15 defaults: http/https, the admission webhook, metrics (declared only when
# controller.metrics.enabled, which this program leaves off; listed so turning it on cannot collide).
INGRESS_NGINX_DECLARED = {80, 443, 8443, 10254}


@pytest.mark.parametrize("trial", [False, True])
def test_web_and_websecure_declare_other_ports_than_they_bind(trial):
    values = traefik.traefik_values(ports=ingress.TRIAL_PORTS if trial else None)
    bound = traefik.host_ports(trial=trial)
    assert traefik.declared_ports(values) == {"web": 11080, "websecure": 11443, "traefik": 8080, "metrics": 9100}
    # The entrypoint address is `.port` (templates/_podtemplate.tpl): Traefik still listens on 80/443.
    assert (bound["web"], bound["websecure"]) == ((8000, 8444) if trial else (80, 443))
    assert not set(traefik.declared_ports(values).values()) & {bound["web"], bound["websecure"]}


def test_the_overlap_pod_declares_no_port_ingress_nginx_declares():
    nginx = ingress.ingress_nginx_declared_ports(ingress.ingress_nginx_values())
    assert nginx == {80, 443, 8443}  # metrics off, admission webhook on, no tcp/udp maps
    assert nginx <= INGRESS_NGINX_DECLARED
    overlap = set(traefik.declared_ports(traefik.traefik_values()).values())
    assert not overlap & INGRESS_NGINX_DECLARED
    assert node_ports_fit(overlap, nginx)
    assert len(overlap) == 4  # no two entrypoints declare one port
    # Outside the NodePort range (kube-proxy may hold those on the node) and the ephemeral range.
    assert all(p < 30000 for p in overlap)


def test_the_fit_check_sees_what_the_chart_alone_would_declare():
    # Without containerPort the chart declares `.port`: 80/443, which ingress-nginx holds, and the pod
    # stays Pending (the problem this fixes). A Traefik surge pod beside the old one collides too: hence
    # maxSurge 0.
    values = traefik.traefik_values()
    for name in ("web", "websecure"):
        del values["ports"][name]["containerPort"]
    nginx = ingress.ingress_nginx_declared_ports(ingress.ingress_nginx_values())
    assert not node_ports_fit(set(traefik.declared_ports(values).values()), nginx)
    own = set(traefik.declared_ports(traefik.traefik_values()).values())
    assert not node_ports_fit(own, own)
    assert traefik.traefik_values()["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}


def test_an_ingress_nginx_metrics_or_tcp_port_would_be_counted():
    values = ingress.ingress_nginx_values()
    values["controller"]["metrics"] = {"enabled": True}
    values["tcp"] = {"5432": "db/postgres:5432"}
    assert ingress.ingress_nginx_declared_ports(values) == {80, 443, 8443, 10254, 5432}
    assert ingress.ingress_nginx_declared_ports(ingress.ingress_nginx_values(retired=True)) == {80, 443}


def service_target_port(name: str, entry: dict[str, Any], values: dict[str, Any]) -> int:
    """Where the chart's Service sends a port (templates/_service.tpl: `targetPort: default $name
    .targetPort`): a name resolves to the pod's containerPort of that name, a number is used as it is."""
    target = entry.get("targetPort") or name
    return traefik.declared_ports(values)[target] if isinstance(target, str) else target


@pytest.mark.parametrize("trial", [False, True])
def test_the_cluster_ip_service_reaches_the_real_listeners(trial):
    values = traefik.traefik_values(ports=ingress.TRIAL_PORTS if trial else None)
    exposed = {n: e for n, e in values["ports"].items() if e["expose"]["default"]}
    assert set(exposed) == {"web", "websecure"}
    # hostNetwork pod: the endpoint is the node's address on this port, which must be the bound one.
    assert {n: service_target_port(n, e, values) for n, e in exposed.items()} == {
        n: traefik.host_ports(trial=trial)[n] for n in exposed
    }
    assert {n: e["exposedPort"] for n, e in exposed.items()} == {"web": 80, "websecure": 443}


def test_trial_ports_do_not_collide_with_a_running_ingress_nginx():
    trial = traefik.host_ports(trial=True)
    assert trial == {"web": 8000, "websecure": 8444, "traefik": 8080, "metrics": 9100}
    assert not set(trial.values()) & INGRESS_NGINX_HOST_PORTS
    assert len(set(trial.values())) == len(trial)


def test_service_is_cluster_ip_only():
    values = traefik.traefik_values()
    assert values["service"] == {"type": "ClusterIP"}
    text = repr(values)
    assert "LoadBalancer" not in text and "NodePort" not in text and "nodePort" not in text


def test_serves_class_nginx_through_the_nginx_provider_only():
    providers = traefik.traefik_values()["providers"]
    assert providers["kubernetesIngress"] == {"enabled": False}  # no duplicate routers
    assert providers["kubernetesCRD"] == {"enabled": False}
    nginx = providers["kubernetesIngressNginx"]
    assert nginx["enabled"] is True
    assert (nginx["ingressClass"], nginx["controllerClass"]) == ("nginx", "k8s.io/ingress-nginx")
    assert nginx["ingressClassByName"] is True and nginx["watchIngressWithoutClass"] is False
    assert traefik.traefik_values()["ingressClass"] == {"enabled": False}  # no `traefik` class


def test_ingress_class_nginx_names_the_controller_the_provider_claims():
    cls = traefik.nginx_ingress_class()
    provider = traefik.traefik_values()["providers"]["kubernetesIngressNginx"]
    assert cls["metadata"]["name"] == provider["ingressClass"] == ingress.INGRESS_CLASS
    assert cls["spec"] == {"controller": provider["controllerClass"]}
    assert cls["metadata"]["annotations"] == {"ingressclass.kubernetes.io/is-default-class": "true"}


def test_access_logs_on_dashboard_and_api_not_served():
    values = traefik.traefik_values()
    assert values["logs"] == {"access": {"enabled": True}}
    assert values["api"] == {"dashboard": False}
    assert values["ingressRoute"] == {"dashboard": {"enabled": False}}
    assert values["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}


def test_rolling_update_replaces_one_node_at_a_time_old_pod_first():
    values = traefik.traefik_values()
    assert values["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    # Every entrypoint still allows a second socket on its host port (the overlap step of a switch).
    assert values["additionalArguments"] == [f"--entryPoints.{e}.reusePort=true" for e in values["ports"]]


def test_runs_as_ingress_nginx_uid_with_no_capability_at_all():
    # uid 101: SO_REUSEPORT lets Traefik join ingress-nginx's sockets on 80/443 only with the same uid
    # (tests/test_reuseport_premise.py); 80/443 are bindable through the node sysctl, not a capability.
    values = traefik.traefik_values()
    assert values["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert values["podSecurityContext"] == {"runAsGroup": 101, "runAsNonRoot": True, "runAsUser": 101}
    assert values["podSecurityContext"]["runAsUser"] == INGRESS_NGINX_UID
    # The lowest edge port Traefik binds is what the node sysctl must allow.
    assert min(traefik.host_ports().values()) == traefik.UNPRIVILEGED_PORT_START == 80


def test_the_same_values_on_every_step_but_the_trial_ports():
    # No switch step restarts Traefik for anything but its move from 8000/8444 to 80/443.
    trial, edge = traefik.traefik_values(ports=ingress.TRIAL_PORTS), traefik.traefik_values()
    assert {k: v for k, v in trial.items() if k != "ports"} == {k: v for k, v in edge.items() if k != "ports"}


# --- the node sysctl that lets uid 101 bind 80/443 ---------------------------------------------


def sysctl_script(tmp_path: Path) -> Path:
    path = tmp_path / "edge-sysctl.sh"
    path.write_text(traefik.node_sysctl_script())
    return path


def test_the_node_sysctl_script_passes_bash_n_and_shellcheck():
    assert_valid_bash(traefik.node_sysctl_script())


def test_the_node_sysctl_script_writes_one_drop_in_and_sets_80():
    script = traefik.node_sysctl_script()
    assert "/etc/sysctl.d/90-keybuzz-edge.conf" in script
    assert "net.ipv4.ip_unprivileged_port_start = 80" in script
    assert "sysctl --system" not in script  # would re-apply every drop-in, not just this one
    assert "while" not in script and "for " not in script  # bounded: no loop at all


@pytest.mark.skipif(os.geteuid() != 0, reason="a network and mount namespace of its own needs root")
def test_the_node_sysctl_script_is_idempotent_in_a_namespace_of_its_own(tmp_path):
    if not shutil.which("sysctl") and shutil.which("apt-get"):
        # A slim CI image may lack procps (the nodes' Ubuntu has it).
        subprocess.run(["apt-get", "install", "-y", "-qq", "procps"], capture_output=True, timeout=300, check=False)
    assert shutil.which("sysctl") and shutil.which("unshare"), "needs procps's sysctl and util-linux's unshare"
    # The sysctl is per network namespace and /etc/sysctl.d is bind-mounted over: this machine is untouched.
    etc = tmp_path / "sysctl.d"
    etc.mkdir()
    path = sysctl_script(tmp_path)
    inner = (f"mount --bind {etc} /etc/sysctl.d && bash {path} && stat -c %i /etc/sysctl.d/90-keybuzz-edge.conf "
             f"&& bash {path} && stat -c %i /etc/sysctl.d/90-keybuzz-edge.conf "
             "&& cat /proc/sys/net/ipv4/ip_unprivileged_port_start")
    done = subprocess.run(["unshare", "--net", "--mount", "--", "bash", "-c", inner], capture_output=True,
                          text=True, timeout=4)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == lines[2] == "keybuzz: net.ipv4.ip_unprivileged_port_start=80 on " + os.uname().nodename
    assert lines[1] == lines[3]  # same inode: the second run did not rewrite the file (it would `mv` a new one in)
    assert lines[4] == "80"
    assert (etc / "90-keybuzz-edge.conf").read_text().splitlines()[1] == "net.ipv4.ip_unprivileged_port_start = 80"


def test_chart_and_image_are_pinned_and_are_the_config_defaults():
    assert (traefik.TRAEFIK_CHART, traefik.TRAEFIK_CHART_REPO) == ("traefik", "https://traefik.github.io/charts")
    assert (traefik.TRAEFIK_CHART_VERSION, traefik.TRAEFIK_IMAGE_TAG) == ("37.4.0", "v3.6.17")
    defaults = project_defaults()["ingress"]
    assert defaults == {"controller": "traefik", "version": "37.4.0", "imageTag": "v3.6.17", "migration": ""}
    image = traefik.traefik_values("v3.6.17")["image"]
    assert image == {"registry": "docker.io", "repository": "traefik", "tag": "v3.6.17"}
    assert re.fullmatch(r"v3\.6\.\d+", image["tag"])
