"""storage: the config shape, the hcloud-csi values checked against the chart's own, the StorageClass."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_config import error_for, raw_config

from keybuzz import storage
from keybuzz.config import parse_config, project_defaults

CHART_VALUES = Path(__file__).resolve().parent / "charts" / "hcloud-csi-2.19.0.values.extract.yaml"


def parsed(stack: str = "dev", **fields):
    raw = raw_config(storage=fields)
    if stack == "prod":
        raw.update(promotesFrom="staging")
    return parse_config(raw, stack, project_defaults()).storage


def test_a_new_stack_gets_hetzner_volumes_as_default_and_no_local_path():
    cfg = parsed()
    assert (cfg.csi, cfg.csi_version, cfg.local_path, cfg.csi_default) == (True, "2.19.0", False, True)
    assert storage.k3s_disable(cfg) == ["local-storage"]


def test_a_stack_that_keeps_local_path_keeps_it_default_and_enabled():
    cfg = parsed(localPath=True)
    assert storage.k3s_disable(cfg) == []
    assert storage.storage_class(cfg, "fsn1")["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "false"
    }


@pytest.mark.parametrize(("stack", "policy"), [("dev", "Delete"), ("staging", "Delete"), ("prod", "Retain")])
def test_reclaim_policy_defaults_to_retain_in_prod_only(stack, policy):
    raw = raw_config(storage={})
    raw.update(promotesFrom={"staging": "dev", "prod": "staging"}.get(stack, ""))
    assert parse_config(raw, stack, project_defaults()).storage.reclaim_policy == policy


def test_an_explicit_reclaim_policy_wins_in_prod_too():
    assert parsed("prod", reclaimPolicy="Delete").reclaim_policy == "Delete"


@pytest.mark.parametrize(
    ("fields", "key", "words"),
    [
        ({"reclaimPolicy": "Recycle"}, "storage.reclaimPolicy", "Retain"),
        ({"csiVersion": "latest"}, "storage.csiVersion", "pinned"),
        ({"csiVersion": "v2.19.0"}, "storage.csiVersion", "pinned"),
        ({"localPath": "yes"}, "storage.localPath", "true or false"),
        ({"csi": False, "localPath": False}, "storage.csi", "no storage"),
        ({"class": "x"}, "storage", "unknown key"),
    ],
)
def test_bad_storage_values_are_refused_with_the_key_named(fields, key, words):
    err = error_for(storage=fields)
    assert err.key == key and words in str(err)


def test_the_storage_class_binds_where_the_pod_lands_and_only_in_the_clusters_location():
    sc = storage.storage_class(parsed("prod"), "nbg1")
    assert sc["provisioner"] == "csi.hetzner.cloud"
    assert sc["volume_binding_mode"] == "WaitForFirstConsumer"
    assert sc["reclaim_policy"] == "Retain"
    assert sc["allowed_topologies"] == [
        {"match_label_expressions": [{"key": "csi.hetzner.cloud/location", "values": ["nbg1"]}]}
    ]
    assert sc["metadata"] == {
        "name": "hcloud-volumes",
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
    }


def _paths(values: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        out.add(path)
        if isinstance(value, dict) and value:
            out |= _paths(value, path)
    return out


def test_every_csi_value_we_set_exists_in_the_charts_values_yaml():
    chart = yaml.safe_load(CHART_VALUES.read_text())
    ours = storage.csi_values("fsn1")
    assert _paths(ours) <= _paths(chart)
    # The chart's own default Secret name/key is the one our Secret has.
    assert chart["controller"]["hcloudToken"]["existingSecret"] == {"name": "hcloud", "key": "token"}
    assert ours["storageClasses"] == []  # ours is declared by the program (topology, policy per stack)
