"""Traefik on every node's host network, serving the `nginx` Ingresses: chart pin and values, as plain data.

Why Traefik: ingress-nginx was retired upstream (Kubernetes blog, 2025-11-11: best-effort maintenance
until March 2026, then no releases or security fixes). Traefik v3.6+ has the `kubernetesIngressNGINX`
provider, which serves Ingresses of class `nginx` and translates the common
`nginx.ingress.kubernetes.io/*` annotations, so the apps' Ingress objects stay as they are.

Chart pin: traefik/traefik-helm-chart 37.4.0 is the newest chart whose values.yaml and
values.schema.json could be read and held to (tests/charts/traefik_37_4_0.py); the image is pinned
separately to a later 3.6 patch release. Newer charts exist (40.x renamed the provider key to
`kubernetesIngressNGINX`, 38.0 renamed `namespaces` to `watchNamespace`): moving to one means
refreshing the vendored keys first.
"""

from __future__ import annotations

from typing import Any

from keybuzz.ingress import EDGE_PORTS, INGRESS_CLASS, NGINX_CONTROLLER_CLASS, TRIAL_PORTS

TRAEFIK_CHART = "traefik"
TRAEFIK_CHART_REPO = "https://traefik.github.io/charts"
TRAEFIK_CHART_VERSION = "37.4.0"
TRAEFIK_IMAGE_TAG = "v3.6.17"
TRAEFIK_NAMESPACE = "traefik"
TRAEFIK_RELEASE = "traefik"
# Host ports Traefik binds besides the edge: the chart's defaults, private network only (the Cloud
# Firewall opens 80/443 alone on the public interface).
PING_PORT = 8080  # entrypoint `traefik`: /ping for the kubelet probes; the API/dashboard is off
METRICS_PORT = 9100  # entrypoint `metrics`: Prometheus /metrics
# What the pod DECLARES for web/websecure, never what Traefik binds. On the host network the API server
# copies every declared containerPort into hostPort (kubernetes pkg/apis/core/v1/defaults.go,
# defaultHostNetworkPorts) and the scheduler's NodePorts filter places no two pods declaring one hostPort
# on a node: declaring 80/443, as ingress-nginx does, would keep Traefik's overlap pods Pending. Chart
# 37.4.0 (templates/_podtemplate.tpl, commit 00374755) renders `containerPort: default .port
# .containerPort` but the entrypoint address from `.port` alone, so these numbers are bookkeeping only:
# nothing listens on them. Chosen unused by ingress-nginx (80/443/8443/10254), by Traefik's own trial
# ports (8000/8444), by K3s/Calico and outside the NodePort (30000-32767) and ephemeral ranges.
DECLARED_PORTS = {"web": 11080, "websecure": 11443}
# ingress-nginx's uid (chart 4.15: controller.image.runAsUser 101; its runAsGroup 82 does not matter to
# SO_REUSEPORT, which compares uids only).
EDGE_UID = 101
EDGE_GID = 101
# Lowest port a process without CAP_NET_BIND_SERVICE may bind in the nodes' (host) network namespace.
UNPRIVILEGED_PORT_START = 80
SYSCTL_DROP_IN = "/etc/sysctl.d/90-keybuzz-edge.conf"


def traefik_values(image_tag: str = TRAEFIK_IMAGE_TAG, ports: dict[str, int] | None = None) -> dict[str, Any]:
    """Helm values: one Traefik per node on the host network, serving IngressClass `nginx` only.

    ``ports``: web/websecure host ports, 80/443 unless a switch's trial step puts Traefik on 8000/8444
    beside a running ingress-nginx. Every key exists in the chart's values.yaml (37.4.0); the tests hold
    each one to it.
    """
    ports = ports or EDGE_PORTS
    return {
        "image": {"registry": "docker.io", "repository": "traefik", "tag": image_tag},
        # One pod per node, so any node's public IP answers on 80/443.
        "deployment": {"kind": "DaemonSet", "dnsPolicy": "ClusterFirstWithHostNet"},
        # Bind the node's ports directly: no load balancer, no NodePort, no hostPort (the chart requires
        # hostPort == port on the host network; leaving it unset declares none).
        "hostNetwork": True,
        # One node at a time, the old pod first. A surge pod could share the ports (reusePort below,
        # same uid), but on the host network the API server turns every declared containerPort into a
        # hostPort and the scheduler never places two pods with one hostPort on a node: a surge pod
        # declares what the old one does (DECLARED_PORTS, 8080, 9100), would stay Pending and the
        # rollout (and the `up` waiting on it) would never finish.
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        # web/websecure declare DECLARED_PORTS, not the ports they bind (schedulable beside ingress-nginx);
        # the Service then targets the bound port by number: by name (the chart's default, `targetPort:
        # default $name .targetPort` in templates/_service.tpl, commit 06c7b601) it would resolve to the
        # declared number, where nothing listens.
        "ports": {
            "web": {"port": ports["web"], "containerPort": DECLARED_PORTS["web"], "targetPort": ports["web"],
                    "expose": {"default": True}, "exposedPort": 80},
            "websecure": {"port": ports["websecure"], "containerPort": DECLARED_PORTS["websecure"],
                          "targetPort": ports["websecure"], "expose": {"default": True}, "exposedPort": 443},
            "traefik": {"port": PING_PORT, "expose": {"default": False}},
            "metrics": {"port": METRICS_PORT, "expose": {"default": False}},
        },
        # SO_REUSEPORT on every entrypoint: the surge pod binds the same host ports as the old one, and
        # during a switch Traefik binds 80/443 beside ingress-nginx's nginx (same uid, below).
        "additionalArguments": [f"--entryPoints.{name}.reusePort=true" for name in ("web", "websecure",
                                                                                     "traefik", "metrics")],
        # In-cluster clients only; the nodes' own addresses are the public entry.
        "service": {"type": "ClusterIP"},
        # No `traefik` IngressClass: Traefik serves class `nginx`, declared by the program.
        "ingressClass": {"enabled": False},
        "providers": {
            # Off: with both Ingress providers on, every Ingress would get two routers.
            "kubernetesIngress": {"enabled": False},
            # Off: no IngressRoute CRDs needed, and no dashboard route can be created through them.
            "kubernetesCRD": {"enabled": False},
            "kubernetesIngressNginx": {
                "enabled": True,
                "ingressClass": INGRESS_CLASS,
                "controllerClass": NGINX_CONTROLLER_CLASS,
                # Only Ingresses that name a class (IngressClass `nginx` is the default class for the rest).
                "watchIngressWithoutClass": False,
                # Match class `nginx` by name as well as by controller: Ingresses keep being served in the
                # moment of a switch when IngressClass `nginx` passes from ingress-nginx's chart to the program.
                "ingressClassByName": True,
                # Ingress status is left alone (as ingress-nginx's publishService off does).
                "publishService": {"enabled": False},
            },
        },
        "logs": {"access": {"enabled": True}},
        # No dashboard, and no IngressRoute for it (the API is then not served on any entrypoint).
        "api": {"dashboard": False},
        "ingressRoute": {"dashboard": {"enabled": False}},
        # Every node, servers included, whatever their taints (as ingress-nginx): the ingress check
        # expects a listener on each node.
        "tolerations": [{"operator": "Exists"}],
        # uid 101, ingress-nginx's (chart 4.15 controller.image.runAsUser): SO_REUSEPORT shares a port
        # only between sockets of one effective uid, so this is what lets Traefik join ingress-nginx on
        # 80/443 during a switch (tests/test_reuseport_premise.py). With no capability at all: ports
        # 80/443 are bindable because every node sets net.ipv4.ip_unprivileged_port_start=80
        # (node_sysctl_script; Kubernetes gives a non-root container no ambient capabilities and the
        # image's binary carries no file capability, traefik/traefik-library-image#51).
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "podSecurityContext": {"runAsGroup": EDGE_GID, "runAsNonRoot": True, "runAsUser": EDGE_UID},
        # No call home from a production edge.
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }


def nginx_ingress_class(default: bool = True) -> dict[str, Any]:
    """IngressClass `nginx`, claimed by Traefik's kubernetesIngressNGINX provider (same controller string)."""
    metadata: dict[str, Any] = {"name": INGRESS_CLASS}
    if default:
        metadata["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": metadata,
        "spec": {"controller": NGINX_CONTROLLER_CLASS},
    }


def host_ports(trial: bool = False) -> dict[str, int]:
    """Every port Traefik binds on each node's host network, by entrypoint: read from the values themselves
    (on the host network every entrypoint's port is a host port)."""
    values = traefik_values(ports=TRIAL_PORTS if trial else EDGE_PORTS)
    return {name: entry["port"] for name, entry in values["ports"].items()}


def declared_ports(values: dict[str, Any]) -> dict[str, int]:
    """Every containerPort a Traefik pod declares, by entrypoint, as chart 37.4.0 renders it (`default .port
    .containerPort`): on the host network these become the pod's hostPorts, which the scheduler keeps
    unique per node."""
    return {name: entry.get("containerPort") or entry["port"] for name, entry in values["ports"].items()}


def node_sysctl_script() -> str:
    """Let uid-101 Traefik bind 80/443 on the host network: a sysctl drop-in, applied now and at every boot.

    Idempotent (the file is rewritten only when it differs; the value set is the same every time) and
    bounded (no loop, no network). Only this file is applied (`sysctl -p FILE`), not `sysctl --system`,
    which would re-apply every drop-in and could undo what K3s or Calico set at runtime.
    Trade-off: any process in the host network namespace may then bind ports 80..1023 without
    privilege (README, "The edge"); ports below 80 (SSH on 22, DNS on 53) stay privileged.
    """
    line = f"net.ipv4.ip_unprivileged_port_start = {UNPRIVILEGED_PORT_START}"
    return "\n".join([
        "#!/usr/bin/env bash",
        "set -euo pipefail",
        f"conf={SYSCTL_DROP_IN}",
        f"want='{line}'",
        "# Written by keybuzz-k3s (keybuzz/traefik.py): Traefik runs as uid 101 with no capability.",
        'if [ "$(grep -v \'^#\' "$conf" 2>/dev/null || true)" != "$want" ]; then',
        '  printf \'# keybuzz-k3s: uid-101 Traefik binds 80/443 (README, The edge)\\n%s\\n\' "$want" > "$conf.tmp"',
        '  mv -f "$conf.tmp" "$conf"',
        "fi",
        'sysctl -q -p "$conf"',
        f'test "$(sysctl -n net.ipv4.ip_unprivileged_port_start)" = {UNPRIVILEGED_PORT_START}',
        f'echo "keybuzz: net.ipv4.ip_unprivileged_port_start={UNPRIVILEGED_PORT_START} on $(hostname)"',
        "",
    ])
