"""ingress-nginx on every node's host network: the chart pin and its values, as plain data.

Upstream retired ingress-nginx (Kubernetes SIG Network / SRC announcement, 2025-11-11: best-effort
maintenance until March 2026, then no releases, bug fixes or security fixes; the charts and images
stay downloadable). The pin below is the newest chart found in kubernetes/ingress-nginx. Traefik is the
default for new stacks (keybuzz/traefik.py); ingress-nginx stays for stacks that keep it and for a switch.
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

    ``retired`` (the retire step of a switch to Traefik): the DaemonSet is scheduled on no node, so its
    pods leave 80/443 to the Traefik already listening there beside them; the release goes in the next step.
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


# ingress-nginx chart 4.15 defaults for the ports its controller container declares
# (templates/controller-daemonset.yaml: controller.containerPort, metrics.port when metrics.enabled,
# admissionWebhooks.port when admissionWebhooks.enabled, plus any tcp/udp map key; none set here).
NGINX_CONTAINER_PORTS = {"http": 80, "https": 443}
NGINX_METRICS_PORT = 10254
NGINX_WEBHOOK_PORT = 8443


def ingress_nginx_declared_ports(values: dict[str, Any]) -> set[int]:
    """The containerPorts an ingress-nginx pod declares with these values, as the chart renders them: on the
    host network each is also a hostPort, which no other pod on the node may declare (scheduler NodePorts)."""
    ctl = values["controller"]
    ports = set(ctl.get("containerPort", NGINX_CONTAINER_PORTS).values())
    if ctl.get("metrics", {}).get("enabled", False):
        ports.add(ctl["metrics"].get("port", NGINX_METRICS_PORT))
    if ctl.get("admissionWebhooks", {}).get("enabled", True):
        ports.add(ctl["admissionWebhooks"].get("port", NGINX_WEBHOOK_PORT))
    ports |= {int(p) for p in values.get("tcp", {})} | {int(p) for p in values.get("udp", {})}
    return ports


# No node carries this label: a DaemonSet that requires it runs nowhere.
RETIRED_NODE_LABEL = "keybuzz.io/ingress-nginx-retired"


# --- which controller serves the edge, and how an existing stack moves from one to the other -----

INGRESS_NGINX = "ingress-nginx"
TRAEFIK = "traefik"
CONTROLLERS = (TRAEFIK, INGRESS_NGINX)
# The controller string of IngressClass `nginx`: ingress-nginx's own, which Traefik's
# kubernetesIngressNGINX provider also claims by default (--providers.kubernetesingressnginx.controllerclass).
NGINX_CONTROLLER_CLASS = "k8s.io/ingress-nginx"

# Switching an existing stack (docs/edge.md, "Switching ingress-nginx -> Traefik"): both controllers are on the
# host network. SO_REUSEPORT lets two sockets share a port only when both set it and belong to the same
# effective uid: ingress-nginx's nginx listens with `reuseport` (ConfigMap `reuse-port`, default true) as
# uid 101 (chart `controller.image.runAsUser`), so Traefik runs as uid 101 too and joins 80/443 beside it
# (tests/test_reuseport_premise.py proves the hand-over on the kernel). Each step keeps a listener on :80.
MIGRATION_TRIAL = "trial"  # ingress-nginx unchanged on 80/443; Traefik on TRIAL_PORTS, checked there
MIGRATION_OVERLAP = "overlap"  # Traefik joins 80/443 beside the unchanged ingress-nginx
MIGRATION_RETIRE = "retire"  # ingress-nginx scheduled on no node; Traefik alone on 80/443, the class handed over
MIGRATION_PHASES = ("", MIGRATION_TRIAL, MIGRATION_OVERLAP, MIGRATION_RETIRE)

EDGE_PORTS = {"web": 80, "websecure": 443}
# Not 8443: ingress-nginx's admission webhook already listens there on the host network.
TRIAL_PORTS = {"web": 8000, "websecure": 8444}

TRIAL, OVERLAP, RETIRE = (f"{TRAEFIK}-{m}" for m in (MIGRATION_TRIAL, MIGRATION_OVERLAP, MIGRATION_RETIRE))
# What the ingress check names while both controllers hold :80: over IPv4 the kernel prefers nginx's
# AF_INET socket to Traefik's dual-stack one, so the probe is answered by ingress-nginx until it leaves.
OVERLAP_PROBE_NAME = "ingress-nginx (Traefik beside it on :80)"


def edge_state(controller: str, migration: str) -> str:
    """One word for what runs on the nodes: ingress-nginx, traefik-trial, traefik-overlap, traefik-retire, traefik."""
    if controller == INGRESS_NGINX:
        return INGRESS_NGINX
    return f"{TRAEFIK}-{migration}" if migration else TRAEFIK


# Moves in which every node keeps a listener on :80/:443 throughout; everything else is refused.
ALLOWED_MOVES = {
    (INGRESS_NGINX, TRIAL),  # Traefik added on the trial ports
    (TRIAL, INGRESS_NGINX),  # roll back: Traefik removed, ingress-nginx never stopped
    (TRIAL, OVERLAP),  # Traefik proven on every node: it joins 80/443 beside ingress-nginx (SO_REUSEPORT)
    (OVERLAP, TRIAL),  # roll back: Traefik back to the trial ports, ingress-nginx never stopped
    (OVERLAP, INGRESS_NGINX),  # roll back: Traefik removed, ingress-nginx never stopped
    (OVERLAP, RETIRE),  # ingress-nginx leaves; the kernel hands new connections to Traefik's sockets
    (RETIRE, TRAEFIK),  # the empty ingress-nginx release removed
}


def refuse_move(old: str | None, new: str) -> str | None:
    """Why going from the deployed edge ``old`` to ``new`` in one `pulumi up` is refused; None if it is safe.

    ``old`` None: nothing deployed yet (a new stack), any target is fine.
    """
    if old is None or old == new or (old, new) in ALLOWED_MOVES:
        return None
    steps = {
        INGRESS_NGINX: "ingress.migration: trial (Traefik beside ingress-nginx on ports 8000/8444)",
        TRIAL: "ingress.migration: overlap (Traefik joins ingress-nginx on 80/443), or back to ingress-nginx",
        OVERLAP: "ingress.migration: retire (ingress-nginx leaves 80/443 to Traefik), or back to trial",
        RETIRE: "ingress.migration removed (ingress.controller: traefik alone)",
    }
    nxt = steps.get(old)
    how = f"the next step from '{old}' is {nxt}" if nxt else f"'{old}' is the end state; there is no way back in place"
    return (
        f"ingress change '{old}' -> '{new}' refused: it would skip a step of the switch, so a node could be left "
        f"with nothing on :80/:443, a controller never checked would take the traffic, or the IngressClass `nginx` "
        f"would be claimed twice. Go one step per `bin/deploy <stack> up`: {how} "
        f"(docs/edge.md, 'Switching ingress-nginx -> Traefik')."
    )


@dataclass(frozen=True)
class EdgePlan:
    """What one edge state declares; components/ingress.py turns it into resources, nothing more."""

    state: str
    nginx: bool  # the ingress-nginx release exists
    nginx_retired: bool  # ... scheduled on no node, without its IngressClass and webhook
    traefik: bool  # the Traefik release exists (as uid 101, needing EdgeNodeSysctl on every node)
    traefik_ports: dict[str, int]  # its web/websecure host ports
    ingress_class: bool  # the program declares IngressClass `nginx` (else ingress-nginx's chart does)
    probe_controller: str  # what the ingress check names ...
    probe_port: int  # ... and where it probes it


def edge_plan(controller: str, migration: str) -> EdgePlan:
    """The resources of each step of the edge, as data (docs/edge.md, 'Switching ingress-nginx -> Traefik')."""
    state = edge_state(controller, migration)
    web = EDGE_PORTS["web"]
    if state == INGRESS_NGINX:
        return EdgePlan(state, True, False, False, {}, False, INGRESS_NGINX, web)
    if state == TRIAL:
        return EdgePlan(state, True, False, True, dict(TRIAL_PORTS), False, TRAEFIK, TRIAL_PORTS["web"])
    if state == OVERLAP:
        return EdgePlan(state, True, False, True, dict(EDGE_PORTS), False, OVERLAP_PROBE_NAME, web)
    return EdgePlan(state, state == RETIRE, state == RETIRE, True, dict(EDGE_PORTS), True, TRAEFIK, web)
