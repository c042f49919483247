"""etcd snapshots to S3 (Hetzner Object Storage): the config shape, what K3s gets, and the snapshot scripts.

Why the credentials go into every server's ``config.yaml`` and not into an ``etcd-s3-config-secret``:
K3s reads a config Secret through the API server, which does not run during a restore ("The S3 config
Secret cannot be used when restoring a snapshot", docs.k3s.io/cli/etcd-snapshot). With the keys in
``config.yaml``, the reset (keybuzz/restore.py) reads the same file and downloads the snapshot from
the bucket with no extra flag, and ``k3s etcd-snapshot save|ls`` on a server see the bucket too (K3s
applies config.yaml to the ``etcd-snapshot`` subcommands: pkg/configfilearg/defaultparser.go,
``After: server, agent, etcd-snapshot:1``, ``ValidFlags`` = ``cmds.EtcdSnapshotFlags``).
The file is written by the install command, whose script becomes a Pulumi secret when the keys are
in it (components/k3s.py); the file is 0600 and never printed.

Pure functions: the config shape and the rendered shell are tested as data.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keybuzz.config import ConfigError, _int, _object, _string
from keybuzz.k3s import script_preamble

# Hetzner Object Storage exists in these locations, with the endpoint <location>.your-objectstorage.com
# and the location as the S3 region (docs.hetzner.com/storage/object-storage/overview, "Available endpoints").
OBJECT_STORAGE_LOCATIONS = ("fsn1", "nbg1", "hel1")
ETCD_BACKUP_FIELDS = {"bucket", "endpoint", "region", "folder", "schedule", "retention"}
# K3s's own defaults (docs.k3s.io/cli/etcd-snapshot): used when the stack says nothing.
DEFAULT_SCHEDULE = "0 */12 * * *"
DEFAULT_RETENTION = 5
# Pre-upgrade snapshots: on-demand snapshots have no retention in K3s, so the rollout prunes them to
# this many itself (`k3s etcd-snapshot prune --name pre-upgrade`).
PRE_UPGRADE_NAME = "pre-upgrade"
PRE_UPGRADE_KEEP = 5
SNAPSHOT_TIMEOUT_SECONDS = 300
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?$")
_FOLDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_CRON_FIELD_RE = re.compile(r"^[0-9*/,-]+$")


@dataclass(frozen=True)
class EtcdBackup:
    """Where K3s puts its etcd snapshots. ``bucket`` empty: local snapshots only (K3s's default schedule)."""

    bucket: str
    endpoint: str
    region: str
    folder: str
    schedule: str
    retention: int

    @property
    def s3(self) -> bool:
        return bool(self.bucket)


def parse_etcd_backup(
    value: object, defaults: Mapping[str, Any], location: str, cluster_name: str
) -> EtcdBackup:
    """``etcdBackup`` merged field by field over Pulumi.yaml's default; every bad value names its key.

    Empty ``endpoint``/``region``/``folder`` are derived: ``<location>.your-objectstorage.com``, the
    location, the cluster name (so several stacks can share one bucket).
    """
    raw = {**defaults, **_object(value if value is not None else {}, "etcdBackup", ETCD_BACKUP_FIELDS)}
    bucket = raw.get("bucket") or ""
    if bucket and (not isinstance(bucket, str) or not _BUCKET_RE.match(bucket) or ".." in bucket):
        raise ConfigError("etcdBackup.bucket", bucket, "an S3 bucket name: 3-63 of a-z, 0-9, '.', '-' ('' = no S3)")
    endpoint = raw.get("endpoint") or ""
    if endpoint:
        endpoint = _string(endpoint, "etcdBackup.endpoint", "an S3 host name such as fsn1.your-objectstorage.com")
        if "://" in endpoint or not _HOST_RE.match(endpoint):
            raise ConfigError(
                "etcdBackup.endpoint", endpoint, "a host name without scheme or path, e.g. fsn1.your-objectstorage.com"
            )
    elif bucket:
        if location not in OBJECT_STORAGE_LOCATIONS:
            raise ConfigError(
                "etcdBackup.endpoint",
                "",
                f"an S3 endpoint: Hetzner Object Storage is not offered in {location} "
                f"(only {', '.join(OBJECT_STORAGE_LOCATIONS)}); name one, e.g. fsn1.your-objectstorage.com",
            )
        endpoint = f"{location}.your-objectstorage.com"
    region = raw.get("region") or ""
    if region:
        region = _string(region, "etcdBackup.region", "an S3 region such as fsn1")
        if not re.fullmatch(r"[a-z0-9-]+", region):
            raise ConfigError("etcdBackup.region", region, "an S3 region: lowercase letters, digits, '-' (e.g. fsn1)")
    else:
        region = endpoint.split(".", 1)[0] if endpoint.endswith(".your-objectstorage.com") else "us-east-1"
    folder = raw.get("folder") or cluster_name
    if not isinstance(folder, str) or not _FOLDER_RE.match(folder) or ".." in folder or folder.endswith("/"):
        raise ConfigError("etcdBackup.folder", folder, "a folder (prefix) in the bucket: letters, digits, . _ - /")
    schedule = raw.get("schedule") or DEFAULT_SCHEDULE
    fields = schedule.split() if isinstance(schedule, str) else []
    if len(fields) != 5 or not all(_CRON_FIELD_RE.match(f) for f in fields):
        raise ConfigError(
            "etcdBackup.schedule",
            schedule,
            "a cron spec of 5 fields (minute hour day month weekday), e.g. '0 */6 * * *'",
        )
    retention = _int(raw.get("retention", DEFAULT_RETENTION), "etcdBackup.retention", minimum=1)
    if retention > 1000:
        raise ConfigError("etcdBackup.retention", retention, "1..1000 snapshots kept per server")
    return EtcdBackup(bucket, endpoint, region, folder, " ".join(fields), retention)


def check_credentials(backup: EtcdBackup, access_key_set: bool, secret_key_set: bool) -> None:
    """A bucket needs both keys; keys without a bucket are a forgotten half, refused too."""
    for key, is_set in (("etcdBackupAccessKey", access_key_set), ("etcdBackupSecretKey", secret_key_set)):
        if backup.s3 and not is_set:
            raise ConfigError(
                key,
                "",
                f"set with --secret while etcdBackup.bucket is set: bin/deploy <stack> config set --secret {key}",
            )
        if not backup.s3 and is_set:
            raise ConfigError("etcdBackup.bucket", "", f"a bucket name: {key} is set, so snapshots were meant for S3")


def server_config(backup: EtcdBackup, access_key: str | None = None, secret_key: str | None = None) -> dict[str, Any]:
    """The K3s server config keys for ``backup`` (flag names from docs.k3s.io/cli/etcd-snapshot).

    Without a bucket: nothing (K3s's own local schedule and retention stay, and an existing stack's
    config.yaml, hence its servers, is unchanged). With one: schedule, retention and the S3 keys.
    """
    if not backup.s3:
        return {}
    return {
        "etcd-snapshot-schedule-cron": backup.schedule,
        "etcd-snapshot-retention": backup.retention,
        "etcd-s3": True,
        "etcd-s3-endpoint": backup.endpoint,
        "etcd-s3-region": backup.region,
        "etcd-s3-bucket": backup.bucket,
        "etcd-s3-folder": backup.folder,
        "etcd-s3-access-key": access_key or "",
        "etcd-s3-secret-key": secret_key or "",
    }


SECRET_CONFIG_KEYS = ("etcd-s3-access-key", "etcd-s3-secret-key")


def redact_server_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A server config with the S3 keys replaced, for anything that prints or compares configs."""
    return {k: ("[secret]" if k in SECRET_CONFIG_KEYS and v else v) for k, v in config.items()}


# --- snapshots on the servers ---------------------------------------------------------------------


def pre_upgrade_snapshot_script(node_name: str, fingerprint: str, *, on_node: bool = False) -> str:
    """One etcd snapshot before a server is drained and changed (run first in its drain's ``update``).

    Runs on a server (``k3s etcd-snapshot save`` asks the local K3s, which reads config.yaml: with a
    bucket, the snapshot is uploaded too). Skipped when the node was already rolled out to this
    fingerprint (only the SSH connection changed), like the drain. On-demand snapshots have no
    retention in K3s (docs.k3s.io/cli/etcd-snapshot, "Deleting Snapshots"): the older pre-upgrade
    ones beyond ``PRE_UPGRADE_KEEP`` are pruned here. A failed snapshot stops the rollout: no server
    is changed without a way back. The one exception: K3s not running on the host that runs it (the
    rollout then drains through another server's API): a loud warning, the scheduled snapshots stand.
    """
    from keybuzz.node_ops import FINGERPRINT_ANNOTATION

    jsonpath = "{.metadata.annotations." + FINGERPRINT_ANNOTATION.replace(".", "\\.") + "}"
    not_installed = (
        ["if ! command -v k3s >/dev/null 2>&1; then "
         'echo "keybuzz: node $NODE: no K3s on this machine yet (a new server): no snapshot to take"; exit 0; fi']
        if on_node
        else []
    )
    lines = [
        *script_preamble(node_name, "k3s"),
        f"# keybuzz rollout fingerprint: {fingerprint}",
        *not_installed,
        f'current=$(timeout 60 k3s kubectl get node "$NODE" -o jsonpath={shlex.quote(jsonpath)} 2>/dev/null) '
        '|| current=""',
        f'if [ "$current" = {shlex.quote(fingerprint)} ]; then',
        '  echo "keybuzz: node $NODE already runs this rollout: no snapshot needed"',
        "  exit 0",
        "fi",
        # The drain may go through another server's API when this one's is down (keybuzz/node_ops.py);
        # a snapshot needs the local etcd: without it, say so loudly and let the scheduled ones stand.
        "if ! systemctl is-active --quiet k3s; then",
        '  echo "keybuzz: WARNING: node $NODE: K3s is not running on $(hostname): no pre-upgrade snapshot '
        '(the scheduled snapshots remain)" >&2',
        "  exit 0",
        "fi",
        # k3s etcd-snapshot save: pkg/cli/etcdsnapshot/etcd_snapshot.go (name prefix + node + unix time).
        f"timeout {SNAPSHOT_TIMEOUT_SECONDS} k3s etcd-snapshot save --name {PRE_UPGRADE_NAME} "
        f'|| fail "etcd snapshot before changing $NODE did not succeed within {SNAPSHOT_TIMEOUT_SECONDS} s; '
        'nothing was changed"',
        f"timeout {SNAPSHOT_TIMEOUT_SECONDS} k3s etcd-snapshot prune --name {PRE_UPGRADE_NAME} "
        f"--snapshot-retention {PRE_UPGRADE_KEEP} >/dev/null 2>&1 "
        '|| echo "keybuzz: node $NODE: pruning old pre-upgrade snapshots failed (kept them)" >&2',
        f'echo "keybuzz: etcd snapshot {PRE_UPGRADE_NAME}-* taken before changing $NODE"',
    ]
    return "\n".join(lines) + "\n"


def with_pre_upgrade_snapshot(drain_script: str, node_name: str, fingerprint: str, *, on_node: bool = False) -> str:
    """A server's drain script with the pre-upgrade snapshot in front, in a subshell of its own.

    The snapshot part exits early exactly when the drain has nothing to do (rolled out already, no K3s
    on a new machine); its failure stops the script before anything is cordoned.
    """
    snapshot = pre_upgrade_snapshot_script(node_name, fingerprint, on_node=on_node)
    return f"# keybuzz: etcd snapshot first (keybuzz/etcd_backup.py)\n(\n{snapshot}) || exit 1\n{drain_script}"


@dataclass(frozen=True)
class Snapshot:
    """One line of ``k3s etcd-snapshot ls``."""

    name: str
    location: str  # file:///var/lib/rancher/k3s/server/db/snapshots/<name> or s3://<bucket>/<folder>/<name>
    size: int
    created: str

    @property
    def in_s3(self) -> bool:
        return self.location.startswith("s3://")

    @property
    def local_path(self) -> str:
        return self.location[len("file://") :] if self.location.startswith("file://") else ""


def parse_snapshot_list(text: str) -> list[Snapshot]:
    """Rows of ``k3s etcd-snapshot ls``; headers, log lines and anything else are skipped.

    K3s prints a tabwriter table (pkg/cli/etcdsnapshot/etcd_snapshot.go). Recent releases, as printed
    in docs.k3s.io/cli/etcd-snapshot, write ``Name Location Size Created`` with a file:// row per local
    copy and an s3:// row per bucket copy; older ones (read in that file's history) wrote only
    ``Name Size Created`` rows of the bucket while S3 was on. Both are read; the first from the docs'
    own output, not captured from a running v1.34.1 here.
    """
    snapshots = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] == "Name":
            continue
        if len(parts) == 4 and "://" in parts[1] and parts[2].isdigit():
            snapshots.append(Snapshot(parts[0], parts[1], int(parts[2]), parts[3]))
        elif len(parts) == 3 and parts[1].isdigit() and re.match(r"^\d{4}-\d\d-\d\dT", parts[2]):
            snapshots.append(Snapshot(parts[0], f"s3://(bucket)/{parts[0]}", int(parts[1]), parts[2]))
    return snapshots


def list_snapshots_script(node_name: str) -> str:
    """Print this server's view of the snapshots (local files, and the bucket's when S3 is configured)."""
    lines = [
        *script_preamble(node_name, "k3s"),
        'timeout 120 k3s etcd-snapshot ls || fail "k3s etcd-snapshot ls failed on $NODE"',
    ]
    return "\n".join(lines) + "\n"
