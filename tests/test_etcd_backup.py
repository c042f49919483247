"""etcdBackup: the config shape, what K3s gets, the pre-upgrade snapshot and the snapshot list."""

from __future__ import annotations

import pytest
from shell_lint import assert_valid_bash
from test_config import error_for, raw_config

from keybuzz import etcd_backup
from keybuzz.config import ConfigError, parse_config, project_defaults

BUCKET = {"bucket": "keybuzz-etcd"}


def parsed(location: str = "fsn1", **backup):
    return parse_config(raw_config(location=location, etcdBackup=backup), "dev", project_defaults()).etcd_backup


def test_without_a_bucket_nothing_goes_into_the_k3s_config():
    backup = parsed()
    assert backup.s3 is False
    assert etcd_backup.server_config(backup) == {}


@pytest.mark.parametrize("location", ["fsn1", "nbg1", "hel1"])
def test_a_bucket_alone_fits_hetzner_object_storage_in_the_stacks_location(location):
    backup = parsed(location, **BUCKET)
    assert etcd_backup.server_config(backup, "AK", "SK") == {
        "etcd-snapshot-schedule-cron": "0 */12 * * *",
        "etcd-snapshot-retention": 5,
        "etcd-s3": True,
        "etcd-s3-endpoint": f"{location}.your-objectstorage.com",
        "etcd-s3-region": location,
        "etcd-s3-bucket": "keybuzz-etcd",
        "etcd-s3-folder": "keybuzz",  # the cluster name: stacks can share a bucket
        "etcd-s3-access-key": "AK",
        "etcd-s3-secret-key": "SK",
    }


def test_explicit_values_win_over_the_derived_ones():
    backup = parsed(**BUCKET, endpoint="s3.example.com:9000", region="eu-1", folder="prod/etcd",
                    schedule="0 */6 * * *", retention=14)
    assert (backup.endpoint, backup.region, backup.folder, backup.schedule, backup.retention) == (
        "s3.example.com:9000", "eu-1", "prod/etcd", "0 */6 * * *", 14)


def test_a_location_without_object_storage_needs_an_endpoint():
    err = error_for(location="ash", nodePools=[], controlPlane={"count": 1, "serverType": "cpx21"}, etcdBackup=BUCKET)
    assert err.key == "etcdBackup.endpoint" and "not offered in ash" in str(err)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("bucket", "Bad_Bucket", "S3 bucket name"),
        ("endpoint", "https://fsn1.your-objectstorage.com", "without scheme"),
        ("region", "EU Central", "S3 region"),
        ("folder", "../up", "folder"),
        ("schedule", "every 6 hours", "cron spec of 5 fields"),
        ("schedule", "0 */6 * *", "cron spec of 5 fields"),
        ("retention", 0, ">= 1"),
        ("retention", 5000, "1..1000"),
    ],
)
def test_bad_etcd_backup_values_are_refused_with_the_key_named(field, value, words):
    err = error_for(etcdBackup={**BUCKET, field: value})
    assert err.key == f"etcdBackup.{field}" and err.value == value
    assert words in str(err)


def test_an_unknown_etcd_backup_field_is_refused_with_a_suggestion():
    err = error_for(etcdBackup={"bucket": "b-1", "retension": 3})
    assert err.key == "etcdBackup" and "did you mean retention?" in str(err)


def test_a_bucket_needs_both_keys_and_keys_need_a_bucket():
    backup = parsed(**BUCKET)
    with pytest.raises(ConfigError) as err:
        etcd_backup.check_credentials(backup, True, False)
    assert err.value.key == "etcdBackupSecretKey" and "--secret" in str(err.value)
    with pytest.raises(ConfigError) as err:
        etcd_backup.check_credentials(parsed(), True, True)
    assert err.value.key == "etcdBackup.bucket"
    etcd_backup.check_credentials(backup, True, True)  # both: fine


def test_redacted_config_hides_only_the_keys():
    config = etcd_backup.server_config(parsed(**BUCKET), "AK", "SK")
    shown = etcd_backup.redact_server_config(config)
    assert shown["etcd-s3-access-key"] == shown["etcd-s3-secret-key"] == "[secret]"
    assert shown["etcd-s3-bucket"] == "keybuzz-etcd"


def test_pre_upgrade_snapshot_is_taken_pruned_and_skipped_when_already_rolled_out():
    script = etcd_backup.pre_upgrade_snapshot_script("kb-cp-2", "abc123")
    skip = script.index('if [ "$current" = abc123 ]; then')
    save = script.index("timeout 300 k3s etcd-snapshot save --name pre-upgrade ")
    prune = script.index("k3s etcd-snapshot prune --name pre-upgrade --snapshot-retention 5")
    assert skip < save < prune
    assert "{.metadata.annotations.keybuzz\\.io/rollout-fingerprint}" in script
    assert_valid_bash(script)
    on_node = etcd_backup.pre_upgrade_snapshot_script("kb-cp-1", "abc123", on_node=True)
    assert on_node.index("command -v k3s") < on_node.index("etcd-snapshot save")
    assert_valid_bash(on_node)
    combined = etcd_backup.with_pre_upgrade_snapshot("set -eu\necho drain\n", "kb-cp-2", "abc123")
    assert combined.index("etcd-snapshot save") < combined.index("echo drain")
    assert ") || exit 1\n" in combined  # a failed snapshot stops before the drain
    assert_valid_bash(combined)
    assert_valid_bash(etcd_backup.list_snapshots_script("kb-cp-2"))


def test_snapshot_list_is_parsed_from_k3s_etcd_snapshot_ls():
    # Printed by `k3s etcd-snapshot ls` in docs.k3s.io/cli/etcd-snapshot (S3 and file rows of one snapshot).
    text = (
        "Name                              Location                                                                "
        "          Size    Created\n"
        "on-demand-server-0-1753178523     s3://test-bucket/test-folder/on-demand-server-0-1753178523             "
        "           5062688 2025-07-22T10:02:03Z\n"
        "on-demand-server-0-1753178523     file:///var/lib/rancher/k3s/server/db/snapshots/on-demand-server-0-17531"
        "78523     5062688 2025-07-22T10:02:03Z\n"
    )
    snaps = etcd_backup.parse_snapshot_list(text)
    assert [(s.name, s.in_s3, s.local_path, s.size) for s in snaps] == [
        ("on-demand-server-0-1753178523", True, "", 5062688),
        ("on-demand-server-0-1753178523", False,
         "/var/lib/rancher/k3s/server/db/snapshots/on-demand-server-0-1753178523", 5062688),
    ]
    assert etcd_backup.parse_snapshot_list("Name Location Size Created\n") == []


def test_the_older_s3_only_listing_without_a_location_column_is_read_as_bucket_rows():
    # Older K3s printed `Name\tSize\tCreated` rows of the bucket only while etcd-s3 was on.
    text = "Name    Size    Created\netcd-snapshot-kb-cp-1-1753178523 5062688 2025-07-22T10:02:03Z\n"
    (snap,) = etcd_backup.parse_snapshot_list(text)
    assert (snap.name, snap.in_s3, snap.size) == ("etcd-snapshot-kb-cp-1-1753178523", True, 5062688)
    # A log line or the preflight's token digest is no snapshot.
    assert etcd_backup.parse_snapshot_list("token-sha256 abc\nINFO[0000] Managed etcd cluster\n") == []


def _run_combined(tmp_path, annotation: str, save_rc: int, k3s_active: str = "yes"):
    """The server's drain update run by bash, with a k3s stand-in: the node's recorded fingerprint and
    the outcome of `etcd-snapshot save`."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    (bin_dir / "k3s").write_text(
        "#!/bin/bash\n"
        f'echo "$*" >> {calls}\n'
        f'case "$1 $2" in "kubectl get") echo -n {annotation!r} ;; "etcd-snapshot save") exit {save_rc} ;; esac\n'
    )
    (bin_dir / "journalctl").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\n[ {k3s_active!r} = yes ]\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    script = etcd_backup.with_pre_upgrade_snapshot("set -eu\necho DRAINED\n", "kb-cp-2", "fp-new")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-s"], input=script, env=env, capture_output=True, text=True, timeout=30)
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_run_by_bash_a_snapshot_precedes_the_drain_and_a_failed_one_stops_it(tmp_path):
    done, calls = _run_combined(tmp_path, "fp-old", 0)
    assert done.returncode == 0 and done.stdout.rstrip().endswith("DRAINED")
    assert [c.split()[:3] for c in calls if "etcd-snapshot" in c] == [
        ["etcd-snapshot", "save", "--name"], ["etcd-snapshot", "prune", "--name"]]
    failed, _ = _run_combined(tmp_path, "fp-old", 1)
    assert failed.returncode == 1 and "DRAINED" not in failed.stdout
    assert "nothing was changed" in failed.stderr


def test_run_by_bash_a_node_already_rolled_out_takes_no_snapshot_and_the_drain_decides_alone(tmp_path):
    done, calls = _run_combined(tmp_path, "fp-new", 1)
    assert done.returncode == 0 and "DRAINED" in done.stdout  # the drain script's own skip logic follows
    assert not [c for c in calls if "etcd-snapshot" in c]


def test_run_by_bash_without_k3s_on_the_ops_host_the_drain_goes_on_with_a_warning(tmp_path):
    done, calls = _run_combined(tmp_path, "", 0, k3s_active="no")
    assert done.returncode == 0 and "DRAINED" in done.stdout
    assert "WARNING" in done.stderr and "no pre-upgrade snapshot" in done.stderr
    assert not [c for c in calls if "etcd-snapshot" in c]
