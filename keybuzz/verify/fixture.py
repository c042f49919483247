"""The probe fixture the overlay checks talk to, rendered as plain Kubernetes manifests.

One echo pod and one client pod per node (DaemonSets that tolerate every NoSchedule/NoExecute taint,
so control-plane nodes are covered), a ClusterIP Service and an Ingress in front of the echo pods,
and one CalicoNodeStatus per node (calico-node publishes BGP peer state only for nodes that have
one). No hostNetwork, no hostPort: the fixture must use the pod network it verifies.

Echo server: the official nginx image. Its entrypoint renders ``/etc/nginx/templates/*.template``
into ``/etc/nginx/conf.d/`` with envsubst, substituting only variables that are set, so
``${NODE_NAME}`` (from the downward API, ``spec.nodeName``) becomes the node name while nginx's own
``$uri``-style variables are left alone. An initContainer (same image, busybox ``head``) writes a
1 MiB random file into an emptyDir that nginx serves as the bulk body: random so that no layer can
compress it, an emptyDir so the image needs no change. It also writes the pod's eth0 MTU there,
served on ``/mtu``, so the MTU check sees echo pods' MTUs without an exec into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keybuzz import ingress
from keybuzz.verify.plan import (
    BULK_BYTES,
    BULK_PATH,
    CLIENT_CONTAINER,
    ECHO_MTU_PATH,
    ECHO_PORT,
    NODE_PATH,
    SERVICE_PORT,
)

NAMESPACE = "overlay-probe"
ECHO_NAME = "overlay-probe-echo"
CLIENT_NAME = "overlay-probe-client"
ECHO_CONTAINER = "echo"
INGRESS_CLASS = ingress.INGRESS_CLASS  # the class ingress-nginx serves (keybuzz/ingress.py)
DEFAULT_INGRESS_HOST = "overlay-probe.invalid"
DEFAULT_INGRESS_CONTROLLER = "ingress-nginx"  # the name the ingress check's messages use
NODE_STATUS_PREFIX = "overlay-probe-"
# Digests are the multi-arch index digests of these tags, as pinned by several unrelated public
# repositories (see keybuzz/verify/README.md); a tag alone is mutable.
DEFAULT_CLIENT_IMAGE = (
    "nicolaka/netshoot:v0.13@sha256:a20c2531bf35436ed3766cd6cfe89d352b050ccc4d7005ce6400adf97503da1b"
)
DEFAULT_ECHO_IMAGE = (
    "nginx:1.28.0-alpine@sha256:30f1c0d78e0ad60901648be663a710bdadf19e4c10ac6782c235200619158284"
)

PART_OF = {"app.kubernetes.io/part-of": "keybuzz-overlay-verification"}
# Tolerate every NoSchedule/NoExecute taint (control plane, not-ready, unreachable...): a probe
# pod missing from a node would leave that node's paths untested.
TOLERATE_ALL = [
    {"operator": "Exists", "effect": "NoSchedule"},
    {"operator": "Exists", "effect": "NoExecute"},
]

NGINX_TEMPLATE = f"""\
server {{
    listen {ECHO_PORT};
    access_log off;
    location = {NODE_PATH} {{
        default_type text/plain;
        return 200 "${{NODE_NAME}}\\n";
    }}
    location = {BULK_PATH} {{
        default_type application/octet-stream;
        alias /probe-data/bulk.bin;
    }}
    location = {ECHO_MTU_PATH} {{
        default_type text/plain;
        alias /probe-data/mtu;
    }}
    location = /healthz {{
        default_type text/plain;
        return 200 "ok\\n";
    }}
}}
"""

# Sleep in the background and wait, so SIGTERM ends the pod at once instead of after 3600 s.
CLIENT_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


def labels(name: str) -> dict[str, str]:
    """Selector labels of a fixture workload (the contract the checks discover pods by)."""
    return {"app.kubernetes.io/name": name}


def label_selector(name: str) -> str:
    """The ``label_selector`` string for ``labels(name)``."""
    return ",".join(f"{k}={v}" for k, v in labels(name).items())


def node_status_name(node: str) -> str:
    """The CalicoNodeStatus object for a node."""
    return f"{NODE_STATUS_PREFIX}{node}"


def _meta(name: str, namespace: str | None, app: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**(labels(app) if app else {}), **PART_OF}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def render_namespace(namespace: str = NAMESPACE) -> dict[str, Any]:
    """The fixture's own namespace, so that deleting it removes every probe object."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(namespace, None)}


def render_echo_config(namespace: str = NAMESPACE) -> dict[str, Any]:
    """The nginx server template (node name on /node, 1 MiB on /bulk)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(ECHO_NAME, namespace, ECHO_NAME),
        "data": {"default.conf.template": NGINX_TEMPLATE},
    }


def render_echo_daemonset(namespace: str = NAMESPACE, image: str = DEFAULT_ECHO_IMAGE) -> dict[str, Any]:
    """One nginx per node answering with its node name: proves which node a request reached."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(ECHO_NAME, namespace, ECHO_NAME),
        "spec": {
            "selector": {"matchLabels": labels(ECHO_NAME)},
            "template": {
                "metadata": {"labels": {**labels(ECHO_NAME), **PART_OF}},
                "spec": {
                    "tolerations": TOLERATE_ALL,
                    "terminationGracePeriodSeconds": 5,
                    "automountServiceAccountToken": False,
                    "initContainers": [
                        {
                            "name": "bulk-body",
                            "image": image,
                            "command": ["/bin/sh", "-c",
                                        f"head -c {BULK_BYTES} /dev/urandom > /probe-data/bulk.bin && "
                                        # the pod's own eth0 MTU, served on /mtu: the MTU check reads
                                        # echo pods' MTUs too (a pod keeps the MTU it started with)
                                        "cat /sys/class/net/eth0/mtu > /probe-data/mtu"],
                            "volumeMounts": [{"name": "probe-data", "mountPath": "/probe-data"}],
                            "resources": _resources("10m", "16Mi", "100m", "32Mi"),
                        }
                    ],
                    "containers": [
                        {
                            "name": ECHO_CONTAINER,
                            "image": image,
                            "env": [
                                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                # Size worker_processes to the CPU limit, not the host's CPU count
                                # (the image's 30-tune-worker-processes.sh runs when this is set).
                                {"name": "NGINX_ENTRYPOINT_WORKER_PROCESSES_AUTOTUNE", "value": "1"},
                            ],
                            "ports": [{"name": "http", "containerPort": ECHO_PORT, "protocol": "TCP"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5,
                            },
                            "volumeMounts": [
                                {"name": "templates", "mountPath": "/etc/nginx/templates", "readOnly": True},
                                {"name": "probe-data", "mountPath": "/probe-data", "readOnly": True},
                            ],
                            "resources": _resources("10m", "16Mi", "200m", "64Mi"),
                        }
                    ],
                    "volumes": [
                        {"name": "templates", "configMap": {"name": ECHO_NAME}},
                        {"name": "probe-data", "emptyDir": {"sizeLimit": "4Mi"}},
                    ],
                },
            },
        },
    }


def render_echo_service(namespace: str = NAMESPACE) -> dict[str, Any]:
    """ClusterIP Service over all echo pods: kube-proxy picks a backend per connection."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ECHO_NAME, namespace, ECHO_NAME),
        "spec": {
            "type": "ClusterIP",
            "selector": labels(ECHO_NAME),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_ingress(namespace: str = NAMESPACE, host: str = DEFAULT_INGRESS_HOST) -> dict[str, Any]:
    """The probe Ingress: ingress-nginx (hostNetwork on every node) -> Service -> echo pods."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(ECHO_NAME, namespace, ECHO_NAME),
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": ECHO_NAME, "port": {"number": SERVICE_PORT}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


def render_client_daemonset(namespace: str = NAMESPACE, image: str = DEFAULT_CLIENT_IMAGE) -> dict[str, Any]:
    """One idle netshoot per node (iputils ping with -M, curl, dig); the checks exec into it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(CLIENT_NAME, namespace, CLIENT_NAME),
        "spec": {
            "selector": {"matchLabels": labels(CLIENT_NAME)},
            "template": {
                "metadata": {"labels": {**labels(CLIENT_NAME), **PART_OF}},
                "spec": {
                    "tolerations": TOLERATE_ALL,
                    "terminationGracePeriodSeconds": 5,
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": CLIENT_CONTAINER,
                            "image": image,
                            "command": CLIENT_COMMAND,
                            # ping needs a raw ICMP socket; containerd's default set has NET_RAW, but
                            # say so explicitly in case a runtime default drops it.
                            "securityContext": {"capabilities": {"add": ["NET_RAW"]}},
                            "resources": _resources("10m", "16Mi", "500m", "96Mi"),
                        }
                    ],
                },
            },
        },
    }


def render_node_status(node: str) -> dict[str, Any]:
    """Ask calico-node on ``node`` to publish its agent and BGP status (every 10 s)."""
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "CalicoNodeStatus",
        "metadata": _meta(node_status_name(node), None),
        "spec": {"node": node, "classes": ["Agent", "BGP"], "updatePeriodSeconds": 10},
    }


def render_fixture(
    namespace: str = NAMESPACE,
    nodes: Sequence[str] = (),
    client_image: str = DEFAULT_CLIENT_IMAGE,
    echo_image: str = DEFAULT_ECHO_IMAGE,
    ingress_host: str = DEFAULT_INGRESS_HOST,
) -> list[dict[str, Any]]:
    """Every fixture manifest, in apply order (namespace first, cluster-scoped statuses last)."""
    return [
        render_namespace(namespace),
        render_echo_config(namespace),
        render_echo_daemonset(namespace, echo_image),
        render_echo_service(namespace),
        render_ingress(namespace, ingress_host),
        render_client_daemonset(namespace, client_image),
        *(render_node_status(node) for node in sorted(nodes)),
    ]


def _resources(cpu_req: str, mem_req: str, cpu_lim: str, mem_lim: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu_req, "memory": mem_req}, "limits": {"cpu": cpu_lim, "memory": mem_lim}}
