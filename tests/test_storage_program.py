"""Volumes and etcd snapshots under the mock engine: what a new and an existing stack declare, and what stays secret."""

from __future__ import annotations

import json

import pytest
import yaml
from harness import SECRET_PLACEHOLDER, run_program, secret_value

from keybuzz import k3s

P = "keybuzz-k3s"
NEW = "keybuzz-new"
BUCKET = {"bucket": "keybuzz-etcd"}
SECRET_KEYS = {f"{P}:etcdBackupAccessKey": {"secure": "v1:x"}, f"{P}:etcdBackupSecretKey": {"secure": "v1:y"}}


def stack_doc(**config):
    """A stack file of a 3-server stack, as fixture (never the operator's files)."""
    base = {
        f"{P}:clusterName": NEW,
        f"{P}:controlPlane": {"count": 3, "serverType": "cx23"},
        f"{P}:nodePools": [{"name": "workers", "count": 1, "serverType": "cx23"}],
    }
    base.update({f"{P}:{k}": v for k, v in config.items()})
    return {"config": base}


def run(preview=False, extra=None, **config):
    return run_program("dev", stack_doc=stack_doc(**config), overrides=extra, preview=preview)


def server_config(run_, node, name=NEW):
    create = run_.named(f"{name}-k3s-install-{name}-{node}").inputs["create"]
    return yaml.safe_load(k3s.config_in_install_script(secret_value(create) if isinstance(create, dict) else create))


@pytest.fixture(scope="module")
def new():
    return run()


@pytest.fixture(scope="module")
def existing():
    return run(storage={"localPath": True})


@pytest.fixture(scope="module")
def backed_up():
    return run(extra=SECRET_KEYS, etcdBackup=BUCKET)


def test_the_csi_release_is_pinned_from_hetzners_chart_repo_after_calico(new):
    release = new.named(f"{NEW}-storage-hcloud-csi")
    assert release.type == "kubernetes:helm.sh/v3:Release"
    assert (release.inputs["chart"], release.inputs["version"], release.inputs["repositoryOpts"]) == (
        "hcloud-csi", "2.19.0", {"repo": "https://charts.hetzner.cloud"})
    assert release.inputs["namespace"] == "kube-system"
    assert release.inputs["values"]["storageClasses"] == []
    assert set(release.depends_on) == {f"{NEW}-calico-installation", f"{NEW}-storage-hcloud-token"}


def test_the_hetzner_token_reaches_the_cluster_only_as_a_secret(new):
    secret = new.named(f"{NEW}-storage-hcloud-token")
    assert secret.inputs["metadata"] == {"name": "hcloud", "namespace": "kube-system"}
    assert secret_value(secret.inputs["stringData"]) == {"token": SECRET_PLACEHOLDER}
    assert set(secret.options["additional_secret_outputs"]) == {"data", "stringData"}
    # Nowhere in plain text: not in any other input, not in an output.
    for resource in new.resources:
        if resource.name != secret.name:
            assert SECRET_PLACEHOLDER not in json.dumps(resource.inputs, default=str), resource.name


def test_a_new_stack_has_hetzner_volumes_as_default_class_and_no_local_path(new):
    sc = new.named(f"{NEW}-storage-class")
    assert sc.inputs["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert sc.inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc.inputs["allowedTopologies"] == [
        {"matchLabelExpressions": [{"key": "csi.hetzner.cloud/location", "values": ["fsn1"]}]}]
    assert sc.inputs["reclaimPolicy"] == "Delete"  # dev; prod: Retain (tests/test_storage.py)
    assert sc.options["delete_before_replace"] is True
    for node in ("cp-1", "cp-2", "cp-3"):
        assert server_config(new, node)["disable"] == ["traefik", "servicelb", "local-storage"]


def test_an_existing_stack_keeps_local_path_as_default_and_its_k3s_config_unchanged(existing, new):
    sc = existing.named(f"{NEW}-storage-class")
    assert sc.inputs["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "false"}
    for node in ("cp-1", "cp-2", "cp-3"):
        config = server_config(existing, node)
        assert config["disable"] == ["traefik", "servicelb"]
        # The only difference to a new stack's config is local-path: nothing else would restart K3s.
        assert {k: v for k, v in config.items() if k != "disable"} == {
            k: v for k, v in server_config(new, node).items() if k != "disable"}
        assert not any(k.startswith("etcd-") for k in config)


def test_etcd_backup_goes_into_every_servers_config_and_nowhere_else(backed_up):
    for node in ("cp-1", "cp-2", "cp-3"):
        config = server_config(backed_up, node)
        assert config["etcd-s3"] is True
        assert config["etcd-s3-endpoint"] == "fsn1.your-objectstorage.com"
        assert config["etcd-s3-bucket"] == "keybuzz-etcd" and config["etcd-s3-folder"] == NEW
        assert config["etcd-s3-access-key"] == config["etcd-s3-secret-key"] == SECRET_PLACEHOLDER
        assert config["etcd-snapshot-schedule-cron"] == "0 */12 * * *" and config["etcd-snapshot-retention"] == 5
    agent = backed_up.named(f"{NEW}-k3s-install-{NEW}-workers-1").inputs["create"]
    assert isinstance(agent, str) and "etcd-s3" not in agent


def test_s3_keys_are_secret_in_every_input_and_absent_from_logs_and_outputs(backed_up):
    for node in ("cp-1", "cp-2", "cp-3"):
        install = backed_up.named(f"{NEW}-k3s-install-{NEW}-{node}")
        secret_value(install.inputs["create"])  # the whole script: a Pulumi secret
        assert install.inputs["logging"] == "stderr"  # the script never writes the config to stderr
        assert {"stdout", "stderr"} <= set(install.options["additional_secret_outputs"])
        script = secret_value(install.inputs["create"])
        assert "set -x" not in script
        # The file is only ever hashed, never printed.
        reads = [line for line in script.splitlines() if "cat /etc/rancher/k3s/config.yaml" in line]
        assert all("| sha256sum" in line for line in reads), reads
    # Every other input and every output: no key in plain text (the fingerprints are digests).
    for resource in backed_up.resources:
        plain = json.dumps(_without_secrets(resource.inputs), default=str)
        assert SECRET_PLACEHOLDER not in plain, resource.name
    for key, value in backed_up.outputs.items():
        if key not in backed_up.secret_outputs:
            assert SECRET_PLACEHOLDER not in json.dumps(value, default=str), key
    # The drain and snapshot scripts stay readable in a preview.
    drain = backed_up.named(f"{NEW}-k3s-drain-{NEW}-cp-2").inputs["update"]
    assert isinstance(drain, str) and "rollout fingerprint" in drain


def _without_secrets(value):
    from keybuzz.offline import redact_secrets

    return redact_secrets(value)


def test_a_snapshot_is_taken_before_each_servers_drain_and_none_for_agents(new):
    for node in ("cp-1", "cp-2", "cp-3"):
        drain = new.named(f"{NEW}-k3s-drain-{NEW}-{node}")
        update = drain.inputs["update"]
        assert update.index("k3s etcd-snapshot save --name pre-upgrade") < update.index('drain "$NODE"')
        assert drain.inputs["logging"] == "stdoutAndStderr"
    assert "etcd-snapshot" not in new.named(f"{NEW}-k3s-drain-{NEW}-workers-1").inputs["update"]
    # The first server snapshots itself (it is its own ops host); a new machine there has no K3s yet.
    cp1 = new.named(f"{NEW}-k3s-drain-{NEW}-cp-1").inputs["update"]
    assert cp1.index("command -v k3s") < cp1.index("etcd-snapshot save")


def test_s3_keys_set_in_plain_text_are_refused_without_showing_them():
    plain = {f"{P}:etcdBackupAccessKey": "AKPLAIN", f"{P}:etcdBackupSecretKey": {"secure": "v1:y"}}
    with pytest.raises(Exception) as err:
        run(extra=plain, etcdBackup=BUCKET)
    assert "etcdBackupAccessKey" in str(err.value) and "AKPLAIN" not in str(err.value)


def test_a_bucket_without_keys_is_refused_naming_the_key():
    with pytest.raises(Exception) as err:
        run(etcdBackup=BUCKET)
    assert "etcdBackupAccessKey" in str(err.value) and "--secret" in str(err.value)


def test_the_offline_plan_prints_the_server_config_with_the_s3_keys_redacted(backed_up):
    import io

    from keybuzz.offline_plan import render_plan

    out = io.StringIO()
    render_plan(backed_up, out)
    text = out.getvalue()
    assert "etcd-s3-bucket: keybuzz-etcd" in text
    assert "etcd-s3-secret-key: '[secret]'" in text and SECRET_PLACEHOLDER not in text
