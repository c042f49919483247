"""Persistent volumes: Hetzner's CSI driver, the default StorageClass, and K3s's local-path kept or not.

Why Hetzner Volumes: a local-path volume lives on one server's disk, so its pod cannot follow a drain
and its data goes with a replaced server. A Hetzner Volume is detached and attached again on the node
the pod moves to, within the same location (topology key ``csi.hetzner.cloud/location``; hence
``WaitForFirstConsumer``: the volume is created where the pod is scheduled). Sources:
hetznercloud/csi-driver chart/values.yaml and templates/core/storageclass.yaml (chart 2.19.0),
docs/kubernetes/README.md (Secret ``hcloud``, key ``token``).

``localPath`` is per stack: a stack that ran before this key existed has local-path volumes, which
stay working only while K3s's local-path provisioner and class stay (its stack file says
``localPath: true``); a new stack gets ``disable: [local-storage]`` and Hetzner Volumes as default.

Pure functions only; components/storage.py declares the resources.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keybuzz.config import PROD_STACKS, ConfigError, _bool, _object, _string

CSI_CHART = "hcloud-csi"
CSI_CHART_REPO = "https://charts.hetzner.cloud"
CSI_NAMESPACE = "kube-system"
# The chart reads the token from this Secret by default (values.yaml controller.hcloudToken.existingSecret).
TOKEN_SECRET_NAME = "hcloud"
TOKEN_SECRET_KEY = "token"
STORAGE_CLASS = "hcloud-volumes"
LOCAL_PATH_CLASS = "local-path"
PROVISIONER = "csi.hetzner.cloud"
TOPOLOGY_KEY = "csi.hetzner.cloud/location"
# K3s's name for its bundled local-path provisioner in `disable:` (docs.k3s.io/installation/packaged-components).
K3S_LOCAL_STORAGE = "local-storage"
RECLAIM_POLICIES = ("Delete", "Retain")
STORAGE_FIELDS = {"csi", "csiVersion", "reclaimPolicy", "localPath"}
_CHART_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class StorageConfig:
    """``csi``: Hetzner's CSI driver and its StorageClass. ``reclaim_policy``: what happens to a Hetzner
    Volume when its claim is deleted. ``local_path``: K3s's local-path provisioner kept (existing stacks)."""

    csi: bool
    csi_version: str
    reclaim_policy: str
    local_path: bool

    @property
    def csi_default(self) -> bool:
        """Hetzner Volumes are the default class unless local-path stays (two defaults would be ambiguous)."""
        return self.csi and not self.local_path


def parse_storage(value: object, defaults: Mapping[str, Any], stack: str) -> StorageConfig:
    """``storage`` merged over Pulumi.yaml's default; ``reclaimPolicy: ''`` = Retain in prod, else Delete."""
    raw = {**defaults, **_object(value if value is not None else {}, "storage", STORAGE_FIELDS)}
    csi = _bool(raw.get("csi", True), "storage.csi")
    version = _string(raw.get("csiVersion"), "storage.csiVersion", "a pinned hcloud-csi chart version such as 2.19.0")
    if not _CHART_VERSION_RE.match(version):
        raise ConfigError("storage.csiVersion", version, "a pinned hcloud-csi chart version such as 2.19.0")
    policy = raw.get("reclaimPolicy") or ""
    if policy == "":
        policy = "Retain" if stack in PROD_STACKS else "Delete"
    if policy not in RECLAIM_POLICIES:
        raise ConfigError(
            "storage.reclaimPolicy", policy, "Retain (the volume outlives its claim), Delete, or '' (Retain in prod)"
        )
    local_path = _bool(raw.get("localPath", False), "storage.localPath")
    if not csi and not local_path:
        raise ConfigError(
            "storage.csi", False, "true while storage.localPath is false: the cluster would have no storage"
        )
    return StorageConfig(csi=csi, csi_version=version, reclaim_policy=policy, local_path=local_path)


def k3s_disable(storage: StorageConfig) -> list[str]:
    """What the servers' ``disable:`` gains: K3s's local-path, unless this stack keeps it."""
    return [] if storage.local_path else [K3S_LOCAL_STORAGE]


def csi_values(location: str) -> dict[str, Any]:
    """hcloud-csi chart values: our own StorageClass (the chart's is off), the token from Secret ``hcloud``.

    ``hcloudVolumeDefaultLocation``: this cluster runs no Hetzner cloud controller manager, so no node
    carries ``instance.hetzner.cloud/provided-by``; with the location set, the controller may run on
    any node (values.yaml, controller.hcloudVolumeDefaultLocation).
    """
    return {
        "storageClasses": [],
        "controller": {
            "hcloudToken": {"existingSecret": {"name": TOKEN_SECRET_NAME, "key": TOKEN_SECRET_KEY}},
            "hcloudVolumeDefaultLocation": location,
        },
    }


def storage_class(storage: StorageConfig, location: str) -> dict[str, Any]:
    """The Hetzner Volumes StorageClass: bound where the pod lands, only in this cluster's location."""
    return {
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true" if storage.csi_default else "false"},
        },
        "provisioner": PROVISIONER,
        "volume_binding_mode": "WaitForFirstConsumer",
        "allow_volume_expansion": True,
        "reclaim_policy": storage.reclaim_policy,
        "allowed_topologies": [
            {"match_label_expressions": [{"key": TOPOLOGY_KEY, "values": [location]}]},
        ],
    }
