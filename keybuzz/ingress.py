"""ingress-nginx on every node's host network: the chart pin and its values, as plain data.

Upstream retired ingress-nginx (Kubernetes SIG Network / SRC announcement, 2025-11-11: best-effort
maintenance until March 2026, then no releases, bug fixes or security fixes; the charts and images
stay downloadable). The pin below is the newest chart found in kubernetes/ingress-nginx; treat the
ingress layer as due for a Gateway API replacement.
"""

from __future__ import annotations

from typing import Any

INGRESS_NGINX_CHART = "ingress-nginx"
INGRESS_NGINX_CHART_REPO = "https://kubernetes.github.io/ingress-nginx"
# Chart 4.15.1 ships controller v1.15.1 (charts/ingress-nginx/changelog/helm-chart-4.15.1.md).
INGRESS_NGINX_CHART_VERSION = "4.15.1"
INGRESS_NGINX_CONTROLLER_VERSION = "v1.15.1"
INGRESS_NGINX_NAMESPACE = "ingress-nginx"
INGRESS_CLASS = "nginx"


def ingress_nginx_values() -> dict[str, Any]:
    """Helm values: one controller per node, bound to the node's ports 80/443, no load balancer.

    Every key exists in the chart's values.yaml (4.15 line); the tests pin each one.
    """
    return {
        "controller": {
            # One pod per node, so any node's public IP answers on 80/443.
            "kind": "DaemonSet",
            # Bind the node's 80/443 directly: no Hetzner load balancer, no NodePort.
            "hostNetwork": True,
            # hostPort would only add a portmap DNAT in front of ports the pod already owns on the host.
            "hostPort": {"enabled": False},
            # With hostNetwork the default ClusterFirst falls back to the node's resolver; this keeps
            # cluster DNS for the controller.
            "dnsPolicy": "ClusterFirstWithHostNet",
            # The Service only gives in-cluster clients a stable address.
            "service": {"type": "ClusterIP"},
            # A ClusterIP is unreachable from outside; with this off the controller reports the
            # addresses of the nodes it runs on in Ingress status (ingress-nginx bare-metal guide).
            "publishService": {"enabled": False},
            # The class is "nginx" and Ingresses without a class get it on creation.
            "ingressClassResource": {"name": INGRESS_CLASS, "enabled": True, "default": True},
            "ingressClass": INGRESS_CLASS,
            # Run on every node, servers included, whatever their taints: the verification fixture
            # expects an ingress endpoint on each node.
            "tolerations": [{"operator": "Exists"}],
            # Chart default, stated: rejects a broken Ingress at admission instead of letting it stall
            # nginx reloads. Its port (8443) is on the host network; only 80/443 are public.
            "admissionWebhooks": {"enabled": True},
        }
    }
