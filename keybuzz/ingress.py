"""ingress-nginx on every node's host network: the chart pin and its values, as plain data.

Upstream retired ingress-nginx (Kubernetes SIG Network / SRC announcement, 2025-11-11: best-effort
maintenance until March 2026, then no releases, bug fixes or security fixes; the charts and images
stay downloadable). The pin below is the newest chart found in kubernetes/ingress-nginx; treat the
ingress layer as due for a Gateway API replacement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INGRESS_NGINX_CHART = "ingress-nginx"
INGRESS_NGINX_CHART_REPO = "https://kubernetes.github.io/ingress-nginx"
# Chart 4.15.1 ships controller v1.15.1 (charts/ingress-nginx/changelog/helm-chart-4.15.1.md).
INGRESS_NGINX_CHART_VERSION = "4.15.1"
INGRESS_NGINX_CONTROLLER_VERSION = "v1.15.1"
INGRESS_NGINX_NAMESPACE = "ingress-nginx"
INGRESS_CLASS = "nginx"


def ingress_nginx_values(retired: bool = False) -> dict[str, Any]:
    """Helm values: one controller per node, bound to the node's ports 80/443, no load balancer.

    ``retired`` (the swap step of a switch to Traefik): the DaemonSet is scheduled on no node, so its
    pods stop and free 80/443 before Traefik moves there; the release itself goes in the next step.
    Every key exists in the chart's values.yaml (4.15 line); the tests pin each one.
    """
    values: dict[str, Any] = {
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
    if retired:
        values["controller"]["nodeSelector"] = {RETIRED_NODE_LABEL: "true"}
        # The program declares IngressClass `nginx` from here on; the chart's copy goes with this upgrade.
        values["controller"]["ingressClassResource"]["enabled"] = False
        # Its admission webhook (failurePolicy Fail) would have no pod behind it and refuse every Ingress
        # change until the release is gone: the webhook configuration goes with this upgrade too.
        values["controller"]["admissionWebhooks"]["enabled"] = False
    return values


# No node carries this label: a DaemonSet that requires it runs nowhere.
RETIRED_NODE_LABEL = "keybuzz.io/ingress-nginx-retired"


# --- which controller serves the edge, and how an existing stack moves from one to the other -----

INGRESS_NGINX = "ingress-nginx"
TRAEFIK = "traefik"
CONTROLLERS = (TRAEFIK, INGRESS_NGINX)
# The controller string of IngressClass `nginx`: ingress-nginx's own, which Traefik's
# kubernetesIngressNGINX provider also claims by default (--providers.kubernetesingressnginx.controllerclass).
NGINX_CONTROLLER_CLASS = "k8s.io/ingress-nginx"

# Switching an existing stack (README, "Switching ingress-nginx -> Traefik"): both controllers are on the
# host network and cannot bind the same port (ingress-nginx's nginx runs as uid 101, Traefik as root:
# SO_REUSEPORT only shares a port between sockets of the same effective uid), so Traefik first runs
# beside ingress-nginx on other ports, is checked there, then takes 80/443 once ingress-nginx is gone.
MIGRATION_TRIAL = "trial"  # ingress-nginx unchanged on 80/443; Traefik on TRIAL_PORTS, checked there
MIGRATION_SWAP = "swap"  # ingress-nginx's DaemonSet scaled to no node, then Traefik rolls onto 80/443
MIGRATION_PHASES = ("", MIGRATION_TRIAL, MIGRATION_SWAP)

EDGE_PORTS = {"web": 80, "websecure": 443}
# Not 8443: ingress-nginx's admission webhook already listens there on the host network.
TRIAL_PORTS = {"web": 8000, "websecure": 8444}


def edge_state(controller: str, migration: str) -> str:
    """One word for what runs on the nodes: ingress-nginx, traefik-trial, traefik-swap or traefik."""
    if controller == INGRESS_NGINX:
        return INGRESS_NGINX
    return f"{TRAEFIK}-{migration}" if migration else TRAEFIK


# Moves that never leave :80 unserved for longer than one controller's restart; everything else is refused.
ALLOWED_MOVES = {
    (INGRESS_NGINX, "traefik-trial"),  # Traefik added on the trial ports
    ("traefik-trial", INGRESS_NGINX),  # roll back: Traefik removed, ingress-nginx never stopped
    ("traefik-trial", "traefik-swap"),  # Traefik proven on every node: ingress-nginx retired, Traefik on 80/443
    ("traefik-swap", TRAEFIK),  # the empty ingress-nginx release removed
}


def refuse_move(old: str | None, new: str) -> str | None:
    """Why going from the deployed edge ``old`` to ``new`` in one `pulumi up` is refused; None if it is safe.

    ``old`` None: nothing deployed yet (a new stack), any target is fine.
    """
    if old is None or old == new or (old, new) in ALLOWED_MOVES:
        return None
    steps = {
        INGRESS_NGINX: "ingress.migration: trial (Traefik beside ingress-nginx on ports 8000/8444)",
        "traefik-trial": "ingress.migration: swap (ingress-nginx retired, Traefik moves to 80/443)",
        "traefik-swap": "ingress.migration removed (ingress.controller: traefik alone)",
    }
    nxt = steps.get(old)
    how = f"the next step from '{old}' is {nxt}" if nxt else f"'{old}' is the end state; there is no way back in place"
    return (
        f"ingress change '{old}' -> '{new}' refused: both controllers bind the nodes' host ports, so a direct "
        f"switch would leave nodes with nothing on :80/:443 or crash the new controller on a taken port. "
        f"Go one step per `bin/deploy <stack> up`: {how} (README, 'Switching ingress-nginx -> Traefik')."
    )


@dataclass(frozen=True)
class EdgePlan:
    """What one edge state declares; components/ingress.py turns it into resources, nothing more."""

    state: str
    nginx: bool  # the ingress-nginx release exists
    nginx_retired: bool  # ... scheduled on no node, without its IngressClass and webhook
    wait_drained: bool  # wait until its controller pods are gone before Traefik moves
    traefik: bool  # the Traefik release exists
    traefik_ports: dict[str, int]  # its web/websecure host ports
    traefik_all_nodes_at_once: bool  # maxSurge 100% (the swap step) instead of one node at a time
    ingress_class: bool  # the program declares IngressClass `nginx` (else ingress-nginx's chart does)
    probe_controller: str  # what the ingress check names ...
    probe_port: int  # ... and where it probes it


def edge_plan(controller: str, migration: str) -> EdgePlan:
    """The resources of each step of the edge, as data (README, 'Switching ingress-nginx -> Traefik')."""
    state = edge_state(controller, migration)
    if state == INGRESS_NGINX:
        return EdgePlan(state, True, False, False, False, {}, False, False, INGRESS_NGINX, EDGE_PORTS["web"])
    trial, swap = state == f"{TRAEFIK}-{MIGRATION_TRIAL}", state == f"{TRAEFIK}-{MIGRATION_SWAP}"
    ports = dict(TRIAL_PORTS if trial else EDGE_PORTS)
    return EdgePlan(
        state=state,
        nginx=trial or swap,
        nginx_retired=swap,
        wait_drained=swap,
        traefik=True,
        traefik_ports=ports,
        traefik_all_nodes_at_once=swap,
        ingress_class=not trial,
        probe_controller=TRAEFIK,
        probe_port=ports["web"],
    )
