"""shop-web: what an app team deploys on the keybuzz cluster, the way the guardrails want it.

A Deployment (no host network, no host port, no literal IPs: peers by Service DNS name), a
ClusterIP Service, an Ingress of class ``nginx`` (the cluster's ingress controller answers on every
node's 80/443), and a Helm chart declared with ``kubernetes.helm.v4.Chart``: v4 renders the chart
and registers each object, so the policy pack sees the real Deployment and Service at preview
(a ``helm.v3.Release`` is one opaque object: the pack could only read its values).

The Kubernetes provider is the default one: it reads ``KUBECONFIG`` (the cluster stack's
``kubeconfig`` output), see README.md.
"""

import pulumi
import pulumi_kubernetes as k8s

config = pulumi.Config()
namespace_name = config.get("namespace") or "shop"
image = config.get("image") or "ghcr.io/stefanprodan/podinfo:6.6.2"
replicas = config.get_int("replicas", 2)  # 0 is a valid choice (the app paused), not "unset"
host = config.require("host")
labels = {"app": "web"}

namespace = k8s.core.v1.Namespace("shop", metadata={"name": namespace_name})
ns = namespace.metadata.name

# A cache the web tier talks to, from a public chart; compliant values (ClusterIP, no host port).
cache = k8s.helm.v4.Chart(
    "cache",
    chart="podinfo",
    version="6.6.2",
    namespace=ns,
    repository_opts={"repo": "https://stefanprodan.github.io/podinfo"},
    values={"replicaCount": 1, "service": {"type": "ClusterIP"}, "hpa": {"enabled": False}},
)

web = k8s.apps.v1.Deployment(
    "web",
    metadata={"name": "web", "namespace": ns},
    spec={
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": image,
                        "ports": [{"name": "http", "containerPort": 9898}],
                        # A Service DNS name, never a pod or node IP: those change.
                        "env": [{"name": "PODINFO_BACKEND_URL", "value": "http://cache-podinfo:9898/echo"}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                    }
                ]
            },
        },
    },
)

service = k8s.core.v1.Service(
    "web",
    metadata={"name": "web", "namespace": ns},
    spec={"type": "ClusterIP", "selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
)

ingress = k8s.networking.v1.Ingress(
    "web",
    metadata={"name": "web", "namespace": ns},
    spec={
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ],
    },
)

pulumi.export("url", f"http://{host}/")
