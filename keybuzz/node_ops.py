"""Shell the K3s servers run against the Kubernetes API for day 2: drain, wait Ready, uncordon, taint, retire.

Pure (strings in, strings out); components/k3s.py runs them over SSH on a server, with ``k3s
kubectl`` and the admin kubeconfig there (agents have none). Every step is bounded, and a failure
names the node and prints the last lines of the server's ``journalctl -u k3s``.

The ``fingerprint`` in a script is the node's rollout fingerprint (K3s version, config, server
type): when it changes, the script text changes and Pulumi runs the command's ``update``.
"""

from __future__ import annotations

import shlex

from keybuzz.k3s import script_preamble, wait_loop

DRAIN_TIMEOUT_SECONDS = 300
READY_TIMEOUT_SECONDS = 300
DELETE_TIMEOUT_SECONDS = 300
# Where the taints this program put on a node are recorded, so that removing one from the config
# removes it from the node (and nothing else: other taints belong to Kubernetes or to people).
MANAGED_TAINTS_ANNOTATION = "keybuzz.io/managed-taints"
# The rollout fingerprint a node was last brought to (set once it is Ready and uncordoned).
FINGERPRINT_ANNOTATION = "keybuzz.io/rollout-fingerprint"
# The embedded etcd's client certificates on every K3s server (K3s ships no etcdctl; etcd's JSON
# gateway answers the same member list over plain HTTPS).
ETCD_TLS = "/var/lib/rancher/k3s/server/tls/etcd"

_KUBECTL = "timeout 60 k3s kubectl"


def _header(node_name: str, fingerprint: str | None = None) -> list[str]:
    lines = script_preamble(node_name, "k3s")
    if fingerprint is not None:
        lines.append(f"# keybuzz rollout fingerprint: {fingerprint}")
    return lines


def _registered() -> str:
    return f'[ -n "$({_KUBECTL} get node "$NODE" --ignore-not-found -o name 2>/dev/null)" ]'


def new_node_script(node_name: str, fingerprint: str) -> str:
    """``create`` of a drain: the node is new, there is nothing to drain yet."""
    return "\n".join([*_header(node_name, fingerprint), 'echo "keybuzz: node $NODE is new: nothing to drain"']) + "\n"


def _annotation_jsonpath(key: str) -> str:
    return "{.metadata.annotations." + key.replace(".", "\\.") + "}"


def _current_fingerprint() -> str:
    """Shell: ``current`` = the fingerprint this node was last rolled out to (empty when never)."""
    jsonpath = shlex.quote(_annotation_jsonpath(FINGERPRINT_ANNOTATION))
    return f'current=$({_KUBECTL} get node "$NODE" -o jsonpath={jsonpath}) || fail "cannot read the node"'


def _record_fingerprint(fingerprint: str) -> str:
    pair = shlex.quote(f"{FINGERPRINT_ANNOTATION}={fingerprint}")
    return f'{_KUBECTL} annotate node "$NODE" --overwrite {pair} >/dev/null || fail "cannot record the rollout"'


def drain_script(node_name: str, fingerprint: str, *, on_node: bool = False) -> str:
    """Cordon and drain before the node's K3s restarts, upgrades or its server is resized.

    Bounded (``--timeout``); a PodDisruptionBudget or a pod without a controller that blocks the
    drain fails the update with the node left cordoned, which is the safe state. A node already
    rolled out to this fingerprint is left alone: the command also updates when only its SSH
    connection changed (a new ``sshPrivateKey``, a new first-server address), which is no reason
    to drain anything.

    ``on_node``: the script runs on the node itself (the first server drains itself). When that
    server was replaced, the new machine has no K3s yet and its old Node is already gone (retire):
    nothing to drain, and failing here would keep the install from ever running.
    """
    not_installed = (
        ["if ! command -v k3s >/dev/null 2>&1; then "
         'echo "keybuzz: node $NODE: no K3s on this machine yet (a new server): nothing to drain"; exit 0; fi']
        if on_node
        else []
    )
    return (
        "\n".join(
            [
                *_header(node_name, fingerprint),
                *not_installed,
                f'out=$({_KUBECTL} get node "$NODE" --ignore-not-found -o name) '
                '|| fail "the Kubernetes API does not answer on this server"',
                'if [ -z "$out" ]; then echo "keybuzz: node $NODE is not registered: nothing to drain"; exit 0; fi',
                _current_fingerprint(),
                f'if [ "$current" = {shlex.quote(fingerprint)} ]; then '
                'echo "keybuzz: node $NODE already runs this rollout: nothing to drain"; exit 0; fi',
                f'{_KUBECTL} cordon "$NODE" || fail "cordon failed"',
                f'timeout {DRAIN_TIMEOUT_SECONDS + 30} k3s kubectl drain "$NODE" --ignore-daemonsets '
                f"--delete-emptydir-data --timeout={DRAIN_TIMEOUT_SECONDS}s "
                f'|| fail "drain did not finish within {DRAIN_TIMEOUT_SECONDS} s (a PodDisruptionBudget, or a pod '
                'without a controller?); the node stays cordoned: fix it, then run pulumi up again"',
            ]
        )
        + "\n"
    )


def registered_script(node_name: str, fingerprint: str) -> str:
    """``create`` of ready: the new node registered (Ready needs Calico, which comes later); record it."""
    return (
        "\n".join(
            [
                *_header(node_name, fingerprint),
                *wait_loop(_registered(), READY_TIMEOUT_SECONDS, f"not registered after {READY_TIMEOUT_SECONDS} s"),
                _record_fingerprint(fingerprint),
            ]
        )
        + "\n"
    )


def ready_script(node_name: str, fingerprint: str) -> str:
    """``update`` of ready: wait until the node is Ready again, then uncordon it and record the rollout.

    A node already recorded at this fingerprint was not drained by this run (see ``drain_script``):
    it is not uncordoned either, so a node someone cordoned by hand stays cordoned.
    """
    ready = (
        f'[ "$({_KUBECTL} get node "$NODE" '
        '-o jsonpath=\'{.status.conditions[?(@.type=="Ready")].status}\' 2>/dev/null)" = True ]'
    )
    return (
        "\n".join(
            [
                *_header(node_name, fingerprint),
                *wait_loop(ready, READY_TIMEOUT_SECONDS, f"not Ready {READY_TIMEOUT_SECONDS} s after its change"),
                _current_fingerprint(),
                f'if [ "$current" != {shlex.quote(fingerprint)} ]; then',
                f'  {_KUBECTL} uncordon "$NODE" || fail "uncordon failed"',
                f"  {_record_fingerprint(fingerprint)}",
                "fi",
            ]
        )
        + "\n"
    )


def taints_script(node_name: str, taints: tuple[str, ...]) -> str:
    """Make the node's program-managed taints exactly ``taints``; leave every other taint alone.

    Not a server-side apply: ``spec.taints`` is an atomic list, so an apply would own the whole
    list and wipe the taints Kubernetes sets (not-ready, unschedulable). The taints set last time
    are read from an annotation; those no longer wanted are removed.
    """
    wanted = " ".join(taints)
    jsonpath = _annotation_jsonpath(MANAGED_TAINTS_ANNOTATION)
    lines = [
        *_header(node_name),
        *wait_loop(_registered(), READY_TIMEOUT_SECONDS, f"not registered after {READY_TIMEOUT_SECONDS} s"),
        f"wanted={shlex.quote(' ' + wanted + ' ')}",
        f'old=$({_KUBECTL} get node "$NODE" -o jsonpath={shlex.quote(jsonpath)}) || fail "cannot read the node"',
        "for t in $(printf '%s' \"$old\" | tr ',' ' '); do",
        '  case "$wanted" in',
        '    *" $t "*) ;;',
        f'    *) {_KUBECTL} taint node "$NODE" "${{t%%[=:]*}}:${{t##*:}}-" >/dev/null 2>&1 || true ;;',
        "  esac",
        "done",
    ]
    for taint in taints:
        quoted = shlex.quote(taint)
        lines.append(f'{_KUBECTL} taint node "$NODE" {quoted} --overwrite || fail {shlex.quote("cannot set " + taint)}')
    lines.append(
        f'{_KUBECTL} annotate node "$NODE" --overwrite '
        f'{shlex.quote(MANAGED_TAINTS_ANNOTATION + "=" + ",".join(taints))} || fail "cannot record the taints"'
    )
    return "\n".join(lines) + "\n"


def retire_script(node_name: str, role: str, private_ip: str, *, alone: bool = False, first: bool = False) -> str:
    """``delete`` of a node's retire step: drain, delete the Node, and for a server wait until etcd forgot it.

    K3s's etcd member controller holds a finalizer on every etcd node: deleting the Node removes the
    member (``RemovePeer``) before the Node goes away (k3s ``pkg/etcd/member_controller.go``). The
    script then reads the member list from the local etcd and waits until the node's peer URL is
    gone, so the next removal starts from a healthy, smaller cluster.

    ``alone``: the node is the only server; nothing can remove it from a cluster that is itself
    (``pulumi destroy``): the script does nothing. ``first``: the first server, retired last, from
    the second one; on ``pulumi destroy`` that host has already left etcd and its API is down, so
    then (and only then) the script skips instead of failing.
    """
    if alone:
        nothing = 'echo "keybuzz: $NODE is the only server: nothing to remove it from"'
        return "\n".join([*_header(node_name), nothing]) + "\n"
    api_down = (
        'echo "keybuzz: node $NODE: the API on $(hostname) does not answer (cluster being destroyed?): skipped"; exit 0'
        if first
        else 'fail "the Kubernetes API does not answer on this server"'
    )
    lines = [
        *_header(node_name),
        f'out=$({_KUBECTL} get node "$NODE" --ignore-not-found -o name) || {{ {api_down}; }}',
        'if [ -n "$out" ]; then',
        f'  {_KUBECTL} cordon "$NODE" || fail "cordon failed"',
        f'  timeout {DRAIN_TIMEOUT_SECONDS + 30} k3s kubectl drain "$NODE" --ignore-daemonsets '
        f"--delete-emptydir-data --timeout={DRAIN_TIMEOUT_SECONDS}s "
        f'|| fail "drain before removal did not finish within {DRAIN_TIMEOUT_SECONDS} s; nothing was deleted"',
        f'  timeout {DELETE_TIMEOUT_SECONDS + 30} k3s kubectl delete node "$NODE" '
        f"--timeout={DELETE_TIMEOUT_SECONDS}s "
        '|| fail "the Node was not deleted in time (for a server: its etcd member could not be removed)"',
        "fi",
    ]
    if role == "server":
        peer = f"https://{private_ip}:2380"
        still_listed = f"etcd member {peer} still listed {DELETE_TIMEOUT_SECONDS} s after its Node was deleted"
        lines += [
            "members() {",
            f"  curl -sf --max-time 10 --cacert {ETCD_TLS}/server-ca.crt --cert {ETCD_TLS}/client.crt "
            f"--key {ETCD_TLS}/client.key -X POST -d '{{}}' https://127.0.0.1:2379/v3/cluster/member/list",
            "}",
            "i=0",
            "while :; do",
            '  list=$(members) || fail "cannot read the etcd member list on this server"',
            f'  case "$list" in *{shlex.quote(peer)}*) ;; *) break ;; esac',
            "  i=$((i + 1))",
            f'  [ "$i" -lt {DELETE_TIMEOUT_SECONDS // 2} ] || fail {shlex.quote(still_listed)}',
            "  sleep 2",
            "done",
            f'echo "keybuzz: node $NODE removed: Node deleted, etcd member {peer} gone"',
        ]
    else:
        lines.append('echo "keybuzz: node $NODE removed: drained and Node deleted"')
    return "\n".join(lines) + "\n"


def retire_create_script(node_name: str) -> str:
    """``create``/``update`` of a retire step: nothing to do until the node is removed."""
    message = f"keybuzz: {node_name} will be drained and removed from the cluster before its server is deleted"
    return f"echo {shlex.quote(message)}\n"
