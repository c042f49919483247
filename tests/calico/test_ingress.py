"""keybuzz.ingress: ingress-nginx on every node's host network, with no load balancer or NodePort."""

import re

import pytest

from keybuzz.ingress import (
    INGRESS_CLASS,
    INGRESS_NGINX_CHART,
    INGRESS_NGINX_CHART_REPO,
    INGRESS_NGINX_CHART_VERSION,
    INGRESS_NGINX_CONTROLLER_VERSION,
    ingress_nginx_values,
)

# Value paths that exist in kubernetes/ingress-nginx charts/ingress-nginx/values.yaml (4.15 line),
# with the chart's default, so a misspelled key (which Helm ignores silently) fails here.
CHART_DEFAULTS = {
    "controller.kind": "Deployment",
    "controller.hostNetwork": False,
    "controller.hostPort.enabled": False,
    "controller.dnsPolicy": "ClusterFirst",
    "controller.service.type": "LoadBalancer",
    "controller.publishService.enabled": True,
    "controller.ingressClassResource.name": "nginx",
    "controller.ingressClassResource.enabled": True,
    "controller.ingressClassResource.default": False,
    "controller.ingressClass": "nginx",
    "controller.tolerations": [],
    "controller.admissionWebhooks.enabled": True,
    # Set only in the retire step of a switch to Traefik (a map: a leaf here).
    "controller.nodeSelector": {"kubernetes.io/os": "linux"},
}
MAP_VALUES = {"controller.nodeSelector"}


def _leaves(values, prefix=""):
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and path not in MAP_VALUES:
            yield from _leaves(value, path)
        else:
            yield path, value


@pytest.mark.parametrize("retired", [False, True])
def test_every_value_is_a_chart_key(retired):
    assert {path for path, _ in _leaves(ingress_nginx_values(retired=retired))} <= set(CHART_DEFAULTS)


def test_controller_runs_on_every_node_host_network():
    controller = ingress_nginx_values()["controller"]
    assert controller["kind"] == "DaemonSet"
    assert controller["hostNetwork"] is True
    assert controller["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert controller["tolerations"] == [{"operator": "Exists"}]


def test_no_host_port_on_top_of_host_network():
    assert ingress_nginx_values()["controller"]["hostPort"] == {"enabled": False}


def test_service_is_cluster_ip_only():
    controller = ingress_nginx_values()["controller"]
    assert controller["service"] == {"type": "ClusterIP"}
    assert controller["publishService"] == {"enabled": False}
    rendered = repr(ingress_nginx_values())
    assert "LoadBalancer" not in rendered and "NodePort" not in rendered and "nodePorts" not in rendered


def test_nginx_is_the_default_ingress_class():
    controller = ingress_nginx_values()["controller"]
    assert INGRESS_CLASS == "nginx"
    assert controller["ingressClassResource"] == {"name": "nginx", "enabled": True, "default": True}
    assert controller["ingressClass"] == "nginx"


def test_admission_webhook_stays_at_the_chart_default():
    webhooks = ingress_nginx_values()["controller"]["admissionWebhooks"]
    assert webhooks == {"enabled": CHART_DEFAULTS["controller.admissionWebhooks.enabled"]}


def test_chart_is_pinned():
    assert INGRESS_NGINX_CHART == "ingress-nginx"
    assert INGRESS_NGINX_CHART_REPO == "https://kubernetes.github.io/ingress-nginx"
    assert re.fullmatch(r"\d+\.\d+\.\d+", INGRESS_NGINX_CHART_VERSION)
    assert re.fullmatch(r"v\d+\.\d+\.\d+", INGRESS_NGINX_CONTROLLER_VERSION)
    assert (INGRESS_NGINX_CHART_VERSION, INGRESS_NGINX_CONTROLLER_VERSION) == ("4.15.1", "v1.15.1")


def test_retired_controller_runs_on_no_node_and_drops_its_ingress_class_and_webhook():
    from keybuzz.ingress import RETIRED_NODE_LABEL

    retired = ingress_nginx_values(retired=True)["controller"]
    assert retired["nodeSelector"] == {RETIRED_NODE_LABEL: "true"}
    assert retired["ingressClassResource"]["enabled"] is False
    # No webhook left to refuse Ingress changes while no controller pod runs.
    assert retired["admissionWebhooks"] == {"enabled": False}
    # Everything else as in service: the retire step changes only where it runs, the class and the webhook.
    changed = ("nodeSelector", "ingressClassResource", "admissionWebhooks")
    rest = {k: v for k, v in retired.items() if k not in changed}
    assert rest == {k: v for k, v in ingress_nginx_values()["controller"].items() if k not in changed}
    assert "nodeSelector" not in ingress_nginx_values()["controller"]
