"""Restore the cluster from an etcd snapshot, as one operation: `bin/deploy <stack> restore <snapshot>`.

K3s's documented multi-server procedure (docs.k3s.io/cli/etcd-snapshot, "Restoring Snapshots"),
with what a real K3s v1.34.1 showed (FIELD_GUIDE, "Measured on a real K3s"):

1. list the snapshots on every server (K3s must run for `etcd-snapshot ls`); refuse a name that is
   not there, and refuse unless every server answers and holds the same cluster token;
2. stop K3s on every server;
3. on ONE server, `k3s server --cluster-reset --cluster-reset-restore-path=<snapshot>` with a config
   that has no ``server:`` (K3s refuses a reset while a server URL is set: pkg/cli/server/server.go,
   "cannot perform cluster-reset while server URL is set"). Every server's config here has one, so
   the reset reads a copy without that line (``--config``); the token file stays the original one
   (a reset with another token panics after moving ``db/etcd`` aside). A snapshot in S3 is
   downloaded by K3s itself (the bucket is in config.yaml); a local one needs ``--etcd-s3=false``
   and its full path (docs, same page);
4. start that server and wait for a one-member etcd;
5. on each other server, one at a time: remove ``server/db`` BEFORE starting K3s (a peer started
   with its old data ignores ``server`` and revives the old cluster: a split brain in which every
   ``/readyz`` is ok), start it, and wait until it is a voting member;
6. judge by the member lists read on every server (member IDs must agree; readiness proves
   nothing), then run the overlay checks (bin/verify).

The restore changes no input of any Pulumi resource: config.yaml, the token and the servers stay as
they are, so the next `pulumi up` sees no difference (objects created after the snapshot are gone
from the cluster, not from the state: see README, "Restore").

Deciding (the scripts, the judging) is pure; ``run_restore`` drives it over an ``Ssh`` that tests replace.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from keybuzz.etcd_backup import Snapshot, list_snapshots_script, parse_snapshot_list
from keybuzz.k3s import CONFIG_PATH, TOKEN_PATH, script_preamble

# K3s's etcd data and the JSON gateway on 127.0.0.1:2382 (k3s pkg/etcd/etcd.go listenClientHTTPURLs():
# 2379 serves gRPC only), with the client certificates under server/tls/etcd.
SERVER_DB = "/var/lib/rancher/k3s/server/db"
ETCD_TLS = "/var/lib/rancher/k3s/server/tls/etcd"
ETCD_GATEWAY = "https://127.0.0.1:2382"
RESET_CONFIG_PATH = "/etc/rancher/k3s/reset-config.yaml"
RESET_LOG = "/var/log/keybuzz-cluster-reset.log"
# The reset exits once etcd is restored (~11 s measured); downloading from S3 adds to it.
RESET_TIMEOUT_SECONDS = 600
STOP_TIMEOUT_SECONDS = 120
START_TIMEOUT_SECONDS = 300
JOIN_TIMEOUT_SECONDS = 300
LIST_TIMEOUT_SECONDS = 150
POLL_SECONDS = 5
SSH_SLACK_SECONDS = 30  # beyond a script's own bounds: connecting, and the script's last wait


class RestoreError(RuntimeError):
    """A restore that stopped: the message names the node, the step and what to do next."""


@dataclass(frozen=True)
class Server:
    name: str
    public_ip: str
    private_ip: str

    @property
    def peer_url(self) -> str:
        return f"https://{self.private_ip}:2380"


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str


class Ssh(Protocol):
    """Runs ``script`` with bash as root on ``host``; returns within ``timeout`` seconds (rc 124 when not)."""

    def run(self, host: str, script: str, timeout: int) -> Result: ...


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    peer_urls: tuple[str, ...]
    learner: bool


def parse_members(text: str) -> list[Member]:
    """etcd's ``/v3/cluster/member/list`` JSON (grpc-gateway, proto field names ``ID``, ``name``,
    ``peerURLs``, ``isLearner``; etcd api/etcdserverpb/rpc.proto ``Member``; false and empty fields
    are left out, uint64 IDs are strings). Raises ValueError on anything else."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("members"), list):
        raise ValueError("not an etcd member list (no 'members')")
    members = []
    for m in doc["members"]:
        members.append(
            Member(
                id=str(m.get("ID", m.get("id", ""))),
                name=str(m.get("name", "")),
                peer_urls=tuple(m.get("peerURLs") or m.get("peer_urls") or ()),
                learner=bool(m.get("isLearner", m.get("is_learner", False))),
            )
        )
    return members


# --- the scripts each step runs on a server -------------------------------------------------------


def _script(node: str, body: list[str]) -> str:
    return "\n".join([*script_preamble(node, "k3s"), *body]) + "\n"


SNAPSHOT_DIR = f"{SERVER_DB}/snapshots"


def preflight_script(node: str) -> str:
    """The snapshots this server sees, and a digest of its token file (printed, never the token).

    ``k3s etcd-snapshot ls`` may fail on a broken cluster (the reason for a restore); the local
    snapshot files are then still listed, in the same four columns, so a local snapshot can be found.
    """
    return _script(
        node,
        [
            f"[ -s {TOKEN_PATH} ] || fail 'no cluster token at {TOKEN_PATH}: this is not a server of this stack'",
            f'echo "token-sha256 $(sha256sum {TOKEN_PATH} | cut -d" " -f1)"',
            f"timeout {LIST_TIMEOUT_SECONDS - 30} k3s etcd-snapshot ls "
            '|| echo "keybuzz: node $NODE: k3s etcd-snapshot ls failed; only local files are listed" >&2',
            f"for f in {SNAPSHOT_DIR}/*; do",
            '  [ -f "$f" ] || continue',
            '  created=$(date -u -d "@$(stat -c %Y "$f")" +%Y-%m-%dT%H:%M:%SZ)',
            '  echo "$(basename "$f") file://$f $(stat -c %s "$f") $created"',
            "done",
        ],
    )


def stop_script(node: str) -> str:
    """Stop K3s and make sure it is stopped (the unit restarts on failure, not on a stop)."""
    return _script(
        node,
        [
            f'timeout {STOP_TIMEOUT_SECONDS - 10} systemctl stop k3s || fail "systemctl stop k3s did not finish"',
            'if systemctl is-active --quiet k3s; then fail "k3s is still active after stop"; fi',
            'echo "keybuzz: node $NODE: k3s stopped"',
        ],
    )


def reset_script(node: str, snapshot: Snapshot) -> str:
    """The cluster reset on this server, from ``snapshot``, with a config that has no ``server:``.

    ``to_yaml`` (keybuzz/k3s.py) writes one top-level ``server: <url>`` line, so deleting that line is
    exact. S3: K3s downloads the snapshot by name from the bucket in the config; local: its path, S3 off.
    """
    restore = (
        ["--cluster-reset-restore-path=" + shlex.quote(snapshot.name)]
        if snapshot.in_s3
        else ["--etcd-s3=false", "--cluster-reset-restore-path=" + shlex.quote(snapshot.local_path)]
    )
    local_check = (
        []
        if snapshot.in_s3
        else [f"[ -f {shlex.quote(snapshot.local_path)} ] || fail 'snapshot file {snapshot.local_path} is gone'"]
    )
    return _script(
        node,
        [
            "umask 077",
            *local_check,
            'if systemctl is-active --quiet k3s; then fail "k3s is running: every server must be stopped first"; fi',
            f"sed '/^server:/d' {CONFIG_PATH} > {RESET_CONFIG_PATH}",
            f"if grep -q '^server:' {RESET_CONFIG_PATH}; then fail 'the reset config still names a server'; fi",
            # k3s server --cluster-reset: pkg/cli/server/server.go (refuses a JoinURL), pkg/cluster/reset.go /
            # pkg/etcd/etcd.go Restore (moves db/etcd to etcd-old-<ts>, restores, exits). Output to a root-only
            # file: the log is shown only on failure, and only its tail.
            "rc=0",
            f"timeout {RESET_TIMEOUT_SECONDS - 20} k3s server --config {RESET_CONFIG_PATH} --cluster-reset "
            f"{' '.join(restore)} >{RESET_LOG} 2>&1 || rc=$?",
            f"rm -f {RESET_CONFIG_PATH}",
            f'if [ "$rc" -ne 0 ]; then tail -n 25 {RESET_LOG} >&2; '
            f'fail "k3s server --cluster-reset exited $rc (full log: {RESET_LOG} on this server)"; fi',
            f"grep -q 'restart without --cluster-reset' {RESET_LOG} "
            f'|| {{ tail -n 25 {RESET_LOG} >&2; fail "the reset did not report success"; }}',
            'echo "keybuzz: node $NODE: etcd restored from the snapshot; membership reset to this server"',
        ],
    )


def start_script(node: str, *, wipe: bool) -> str:
    """Start K3s; ``wipe``: remove this server's etcd data first, so it joins the restored cluster."""
    wipe_lines = (
        [
            'if systemctl is-active --quiet k3s; then fail "k3s is running: its old data would revive the old '
            'cluster"; fi',
            # FIELD_GUIDE "Measured": a peer started with its old db ignores `server` and runs the OLD cluster.
            f"rm -rf {SERVER_DB}",
            f'[ ! -e {SERVER_DB} ] || fail "could not remove {SERVER_DB}"',
            f'echo "keybuzz: node $NODE: removed {SERVER_DB}; joining the restored cluster"',
        ]
        if wipe
        else []
    )
    return _script(
        node,
        [
            *wipe_lines,
            # The unit is Type=notify with TimeoutStartSec=0: start without blocking, wait with a bound.
            'systemctl start --no-block k3s || fail "systemctl start k3s failed"',
            "i=0",
            "until timeout 10 k3s kubectl get --raw /readyz >/dev/null 2>&1; do",
            "  i=$((i + 1))",
            f'  [ "$i" -lt {START_TIMEOUT_SECONDS // 5} ] '
            f'|| fail "K3s API not ready (/readyz) {START_TIMEOUT_SECONDS} s after the start"',
            "  sleep 5",
            "done",
            'echo "keybuzz: node $NODE: k3s started"',
        ],
    )


def members_script(node: str) -> str:
    """This server's etcd member list, as JSON, from the local gateway (not readiness: see the module doc)."""
    return _script(
        node,
        [
            f"curl -sf --max-time 10 --cacert {ETCD_TLS}/server-ca.crt --cert {ETCD_TLS}/client.crt "
            f"--key {ETCD_TLS}/client.key -X POST -d '{{}}' {ETCD_GATEWAY}/v3/cluster/member/list "
            '|| fail "cannot read the etcd member list on this server (127.0.0.1:2382)"',
        ],
    )


# --- the plan, as data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One script on one server, with its bound; ``wait_member``: then poll until this peer is a voter."""

    node: str
    what: str
    script: str
    timeout: int
    wait_member: str = ""


def plan_restore(servers: Sequence[Server], reset_on: Server, snapshot: Snapshot) -> list[Step]:
    """Every server stopped; the reset on ``reset_on``; it starts; the others wiped and started one by one."""
    others = [s for s in servers if s.name != reset_on.name]
    steps = [Step(s.name, "stop k3s", stop_script(s.name), STOP_TIMEOUT_SECONDS) for s in servers]
    steps += [
        Step(reset_on.name, f"cluster reset from {snapshot.name}", reset_script(reset_on.name, snapshot),
             RESET_TIMEOUT_SECONDS),
        Step(reset_on.name, "start k3s on the restored data", start_script(reset_on.name, wipe=False),
             START_TIMEOUT_SECONDS + 10, wait_member=reset_on.peer_url),
    ]
    steps += [
        Step(s.name, "remove server/db and rejoin", start_script(s.name, wipe=True), START_TIMEOUT_SECONDS + 10,
             wait_member=s.peer_url)
        for s in others
    ]
    return steps


def choose_snapshot(
    listings: dict[str, list[Snapshot]], name: str, servers: Sequence[Server]
) -> tuple[Server, Snapshot]:
    """Where to reset from: the bucket's copy on the first server, else the server holding the local file."""
    by_name = {s.name: s for s in servers}
    for server in servers:
        for snap in listings.get(server.name, []):
            if snap.name == name and snap.in_s3:
                return servers[0], snap
    for server in servers:
        for snap in listings.get(server.name, []):
            if snap.name == name and snap.local_path:
                return by_name[server.name], snap
    known = sorted({s.name for snaps in listings.values() for s in snaps})
    raise RestoreError(
        f"no snapshot named {name!r} on any server or in the bucket; nothing was stopped. "
        f"Known: {', '.join(known) if known else 'none'} (bin/deploy <stack> snapshots)"
    )


def judge_members(views: dict[str, list[Member]], servers: Sequence[Server]) -> list[str]:
    """Problems with the restored membership, seen from every server; empty = one healthy cluster.

    Every server must list the same member IDs (two clusters never share them, even with the same
    cluster_id), one voting member per server, each at its private peer URL.
    """
    problems = []
    wanted = {s.peer_url for s in servers}
    ids = {name: {m.id for m in members} for name, members in views.items()}
    reference = views.get(servers[0].name, [])
    for server in servers:
        members = views.get(server.name)
        if members is None:
            problems.append(f"{server.name}: no member list")
            continue
        peers = {u for m in members for u in m.peer_urls}
        if peers != wanted:
            problems.append(f"{server.name}: members at {sorted(peers)}, expected {sorted(wanted)}")
        learners = [m.name for m in members if m.learner]
        if learners:
            problems.append(f"{server.name}: still learners: {', '.join(learners)}")
        if ids[server.name] != {m.id for m in reference}:
            problems.append(
                f"{server.name}: member IDs {sorted(ids[server.name])} differ from {servers[0].name}'s "
                f"{sorted(m.id for m in reference)} (two clusters: split brain)"
            )
    return problems


# --- the driver -----------------------------------------------------------------------------------


@dataclass
class Restore:
    """Runs a restore over ``ssh``, saying each node's step; ``clock``/``sleep`` bound the waits."""

    ssh: Ssh
    servers: Sequence[Server]
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    done: list[str] = field(default_factory=list)

    def _run(self, server: Server, what: str, script: str, timeout: int) -> Result:
        self.say(f"restore: {server.name}: {what} ...")
        result = self.ssh.run(server.public_ip, script, timeout + SSH_SLACK_SECONDS)
        if result.rc != 0:
            detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
            timed_out = " (timed out)" if result.rc == 124 else ""
            raise RestoreError(
                f"{server.name}: step '{what}' failed{timed_out} (exit {result.rc}): {detail}\n"
                f"steps done: {'; '.join(self.done) or 'none'}. See README, 'Restore', for how to go on."
            )
        self.done.append(f"{server.name}: {what}")
        return result

    def preflight(self, name: str) -> tuple[Server, Snapshot]:
        listings: dict[str, list[Snapshot]] = {}
        tokens: dict[str, str] = {}
        for server in self.servers:
            out = self._run(server, "list snapshots", preflight_script(server.name), LIST_TIMEOUT_SECONDS).stdout
            listings[server.name] = parse_snapshot_list(out)
            tokens[server.name] = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("token-sha256 ")), "")
        if len(set(tokens.values())) != 1 or not all(tokens.values()):
            raise RestoreError(
                "the servers do not hold the same cluster token (a reset with another token fails after moving "
                "etcd aside); nothing was stopped"
            )
        self.done.clear()  # listing changes nothing: "steps done" names only what did
        return choose_snapshot(listings, name, self.servers)

    def members(self, server: Server) -> list[Member]:
        out = self._run(server, "read the etcd member list", members_script(server.name), 30).stdout
        self.done.pop()
        try:
            return parse_members(out)
        except ValueError as exc:
            raise RestoreError(f"{server.name}: unreadable member list ({exc})") from None

    def wait_voter(self, reader: Server, peer_url: str, node: str) -> None:
        deadline = self.clock() + JOIN_TIMEOUT_SECONDS
        while True:
            try:
                members = self.members(reader)
                last = ""
            except RestoreError as exc:  # a member list not readable yet (etcd settling): poll again
                members, last = [], f"; last read: {exc}"
            match = [m for m in members if peer_url in m.peer_urls]
            if match and not match[0].learner:
                self.say(f"restore: {node}: a voting etcd member ({len(members)} member(s) now)")
                return
            if self.clock() >= deadline:
                state = "a learner" if match else "not a member"
                raise RestoreError(
                    f"{node}: still {state} of the restored etcd {JOIN_TIMEOUT_SECONDS} s after its start "
                    f"(member list read on {reader.name}{last}); steps done: {'; '.join(self.done)}"
                )
            self.sleep(POLL_SECONDS)

    def run(self, name: str) -> None:
        reset_on, snapshot = self.preflight(name)
        where = "the bucket" if snapshot.in_s3 else f"{reset_on.name}'s disk"
        self.say(f"restore: snapshot {snapshot.name} from {where}; reset on {reset_on.name}")
        for step in plan_restore(self.servers, reset_on, snapshot):
            server = next(s for s in self.servers if s.name == step.node)
            self._run(server, step.what, step.script, step.timeout)
            if step.wait_member:
                self.wait_voter(reset_on, step.wait_member, step.node)
        views = {s.name: self.members(s) for s in self.servers}
        problems = judge_members(views, self.servers)
        if problems:
            raise RestoreError("the restored etcd is not one healthy cluster: " + "; ".join(problems))
        self.say(f"restore: etcd restored from {snapshot.name}: {len(self.servers)} voting member(s), "
                 "the same member IDs on every server")


# --- bin/deploy <stack> restore|snapshots ---------------------------------------------------------


class OpenSsh:
    """ssh as root, the script on stdin; a throw-away known_hosts (as Pulumi's remote commands, which
    do not check host keys either), and the stack's private key or, without one, the SSH agent."""

    def __init__(self, key_file: str | None, known_hosts: str) -> None:
        self.key_file = key_file
        self.known_hosts = known_hosts

    def run(self, host: str, script: str, timeout: int) -> Result:
        cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=accept-new",
               "-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.key_file:
            cmd += ["-i", self.key_file, "-o", "IdentitiesOnly=yes"]
        cmd += [f"root@{host}", "bash", "-s"]
        try:
            done = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return Result(124, "", f"no answer within {timeout} s")
        return Result(done.returncode, done.stdout, done.stderr)


def servers_from_outputs(nodes: object) -> list[Server]:
    """The servers from the stack's ``nodes`` output (``pulumi stack output nodes --json``), first first."""
    if not isinstance(nodes, list):
        raise RestoreError("the stack has no 'nodes' output: deploy it first (bin/deploy <stack> up)")
    servers = [
        Server(n["name"], n["publicIp"], n["privateIp"])
        for n in nodes
        if isinstance(n, dict) and n.get("role") == "server"
    ]
    if not servers:
        raise RestoreError("the stack's 'nodes' output lists no server")
    return sorted(servers, key=lambda s: [int(p) for p in s.private_ip.split(".")])


def _pulumi(stack: str, *args: str) -> str:
    done = subprocess.run(["pulumi", *args, "--stack", stack], capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise RestoreError(f"pulumi {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def main(argv: Sequence[str] | None = None) -> int:
    """``restore <stack> <snapshot> [--yes]`` or ``snapshots <stack>``; run by bin/deploy."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] not in ("restore", "snapshots") or (args[0] == "restore" and len(args) < 3):
        print("usage: bin/deploy <stack> snapshots | bin/deploy <stack> restore <snapshot name> --yes",
              file=sys.stderr)
        return 2
    command, stack = args[0], args[1]
    try:
        servers = servers_from_outputs(json.loads(_pulumi(stack, "stack", "output", "nodes", "--json") or "null"))
    except (RestoreError, json.JSONDecodeError) as exc:
        print(f"bin/deploy {stack} {command}: {exc}", file=sys.stderr)
        return 1
    try:
        key = _pulumi(stack, "config", "get", "sshPrivateKey").strip()
    except RestoreError:
        key = ""  # not set: the SSH agent, as for `pulumi up`
    with tempfile.TemporaryDirectory(prefix="keybuzz-restore-") as tmp:
        key_file = None
        if key:
            key_path = Path(tmp) / "id"
            key_path.touch(mode=0o600)
            key_path.write_text(key + "\n")
            key_file = str(key_path)
        ssh = OpenSsh(key_file, str(Path(tmp) / "known_hosts"))
        if command == "snapshots":
            return _print_snapshots(ssh, servers)
        if "--yes" not in args[3:]:
            print(f"bin/deploy {stack} restore: this stops K3s on every server and replaces the cluster's state "
                  f"with snapshot {args[2]!r}; run again with --yes", file=sys.stderr)
            return 2
        try:
            Restore(ssh, servers).run(args[2])
        except RestoreError as exc:
            print(f"bin/deploy {stack} restore: {exc}", file=sys.stderr)
            return 1
    print(f"bin/deploy {stack} restore: done; now the overlay checks: bin/verify --stack {stack}", file=sys.stderr)
    verify = Path(__file__).resolve().parents[1] / "bin" / "verify"
    return subprocess.run([str(verify), "--stack", stack], check=False).returncode


def _print_snapshots(ssh: Ssh, servers: Sequence[Server]) -> int:
    """Each server's view: its local files and, with a bucket, the bucket's objects."""
    rc = 0
    for server in servers:
        result = ssh.run(server.public_ip, list_snapshots_script(server.name), LIST_TIMEOUT_SECONDS)
        print(f"== {server.name} ({server.public_ip})")
        if result.rc != 0:
            print(f"   failed (exit {result.rc}): {result.stderr.strip()[-500:]}")
            rc = 1
            continue
        for snap in parse_snapshot_list(result.stdout):
            print(f"   {snap.name}  {snap.location}  {snap.size}  {snap.created}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
