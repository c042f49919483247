"""Shell the K3s servers run against the Kubernetes API for day 2: drain, wait Ready, uncordon, taint, retire.

Pure (strings in, strings out); components/k3s.py runs them over SSH on a server, with ``k3s
kubectl`` and the admin kubeconfig there (agents have none). Every step is bounded by time, and a
failure names the node and prints the last lines of the server's ``journalctl -u k3s``.

Which API they talk to: the first that answers ``/readyz`` among this server's own, the API load
balancer's private address and every server's private address (``api_addresses``), so a drain does
not depend on the server the command connected to having a working API (that server down, being
upgraded, out of quorum). ``/readyz`` rather than ``/ping``: ``/ping`` answers from a server
without quorum (FIELD_GUIDE, "Measured on a real K3s").

The ``fingerprint`` in a script is the node's rollout fingerprint (K3s version, config, server
type): when it changes, the script text changes and Pulumi runs the command's ``update``.
"""

from __future__ import annotations

import shlex

from keybuzz.k3s import API_PORT, script_preamble, wait_loop

DRAIN_TIMEOUT_SECONDS = 300
READY_TIMEOUT_SECONDS = 300
DELETE_TIMEOUT_SECONDS = 300
# kubectl drain --skip-wait-for-delete-timeout: a pod whose deletion started this long ago is not
# waited for. On a dead node no pod ever finishes terminating (its kubelet is gone); without this
# the drain waits for them until --timeout and fails, blocking the very removal that is needed.
SKIP_WAIT_FOR_DELETE_SECONDS = 60
# Where the taints this program put on a node are recorded, so that removing one from the config
# removes it from the node (and nothing else: other taints belong to Kubernetes or to people).
MANAGED_TAINTS_ANNOTATION = "keybuzz.io/managed-taints"
# The rollout fingerprint a node was last brought to (set once it is Ready and uncordoned).
FINGERPRINT_ANNOTATION = "keybuzz.io/rollout-fingerprint"
# The embedded etcd's client certificates on every K3s server: server-ca.crt, client.crt, client.key
# (k3s pkg/daemons/control/deps/deps.go: ETCDServerCA, ClientETCDCert, ClientETCDKey under
# <data-dir>/server/tls/etcd). K3s ships no etcdctl.
ETCD_TLS = "/var/lib/rancher/k3s/server/tls/etcd"
# etcd's HTTP/JSON gateway (/v3/cluster/member/list): K3s v1.34 serves it only on loopback port 2382;
# 2379 answers gRPC only (k3s pkg/etcd/etcd.go, listenClientHTTPURLs(), citing etcd issue 15402).
ETCD_HTTP_URL = "https://127.0.0.1:2382"
# The label K3s puts on every server running etcd, value "true" (k3s pkg/etcd/etcd.go getETCDNodes:
# util.ETCDRoleLabelKey "true"); its member controller only acts on Nodes that carry it.
ETCD_ROLE_LABEL = "node-role.kubernetes.io/etcd"

KUBECTL_SECONDS = 60


def _header(node_name: str, fingerprint: str | None = None, api_fallbacks: tuple[str, ...] = ()) -> list[str]:
    lines = script_preamble(node_name, "k3s")
    if fingerprint is not None:
        lines.append(f"# keybuzz rollout fingerprint: {fingerprint}")
    return [*lines, *_api_choice(api_fallbacks)]


def _api_choice(api_fallbacks: tuple[str, ...]) -> list[str]:
    """Shell: ``kc``/``kc_within`` run ``k3s kubectl`` against ``API_ARGS``; ``pick_api`` sets them.

    ``pick_api`` tries this server's own API (the admin kubeconfig's 127.0.0.1:6443), then each
    fallback address, and keeps the first whose ``/readyz`` answers ok within 10 s.
    """
    candidates = " ".join(["local", *(shlex.quote(a) for a in api_fallbacks)])
    return [
        "API_ARGS=()",
        'API_NAME="this server"',
        'kc_within() { local limit=$1; shift; timeout "$limit" k3s kubectl "${API_ARGS[@]}" "$@"; }',
        f'kc() {{ kc_within {KUBECTL_SECONDS} "$@"; }}',
        f"pick_api() {{ try_apis {candidates}; }}",
        "try_apis() {",
        "  command -v k3s >/dev/null 2>&1 || return 1",
        '  for candidate in "$@"; do',
        '    if [ "$candidate" = local ]; then args=(); else args=(--server "https://$candidate:' f'{API_PORT}"); fi',
        '    if timeout 10 k3s kubectl "${args[@]}" --request-timeout=8s get --raw /readyz >/dev/null 2>&1; then',
        '      API_ARGS=("${args[@]}")',
        '      if [ "$candidate" != local ]; then',
        '        API_NAME="$candidate"',
        '        echo "keybuzz: node $NODE: the API on $(hostname) is not ready: using the one at $API_NAME"',
        "      fi",
        "      return 0",
        "    fi",
        "  done",
        "  return 1",
        "}",
    ]


def _no_api(api_fallbacks: tuple[str, ...]) -> str:
    where = ", ".join(api_fallbacks) if api_fallbacks else "nowhere else"
    return f"no Kubernetes API is ready: not on this server, nor at {where}"


def _wait_for_api(api_fallbacks: tuple[str, ...]) -> list[str]:
    return wait_loop("pick_api", READY_TIMEOUT_SECONDS, f"{_no_api(api_fallbacks)} after {READY_TIMEOUT_SECONDS} s")


def _registered() -> str:
    return '[ -n "$(kc get node "$NODE" --ignore-not-found -o name 2>/dev/null)" ]'


def new_node_script(node_name: str, fingerprint: str) -> str:
    """``create`` of a drain: the node is new, there is nothing to drain yet."""
    lines = [*script_preamble(node_name, "k3s"), f"# keybuzz rollout fingerprint: {fingerprint}"]
    return "\n".join([*lines, 'echo "keybuzz: node $NODE is new: nothing to drain"']) + "\n"


def _annotation_jsonpath(key: str) -> str:
    return "{.metadata.annotations." + key.replace(".", "\\.") + "}"


def _current_fingerprint() -> str:
    """Shell: ``current`` = the fingerprint this node was last rolled out to (empty when never)."""
    jsonpath = shlex.quote(_annotation_jsonpath(FINGERPRINT_ANNOTATION))
    return f'current=$(kc get node "$NODE" -o jsonpath={jsonpath}) || fail "cannot read the node"'


def _record_fingerprint(fingerprint: str) -> str:
    pair = shlex.quote(f"{FINGERPRINT_ANNOTATION}={fingerprint}")
    return f'kc annotate node "$NODE" --overwrite {pair} >/dev/null || fail "cannot record the rollout"'


def _drain(flags: str, message: str) -> str:
    return (
        f'kc_within {DRAIN_TIMEOUT_SECONDS + 30} drain "$NODE" --ignore-daemonsets --delete-emptydir-data '
        f"--skip-wait-for-delete-timeout={SKIP_WAIT_FOR_DELETE_SECONDS}{flags} --timeout={DRAIN_TIMEOUT_SECONDS}s "
        f"|| fail {shlex.quote(message)}"
    )


def drain_script(
    node_name: str, fingerprint: str, *, on_node: bool = False, api_fallbacks: tuple[str, ...] = ()
) -> str:
    """Cordon and drain before the node's K3s restarts, upgrades or its server is resized.

    Bounded (``--timeout``); a PodDisruptionBudget or a pod without a controller that blocks the
    drain fails the update with the node left cordoned, which is the safe state. A node already
    rolled out to this fingerprint is left alone: the command also updates when only its SSH
    connection or this script's text changed, which is no reason to drain anything.

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
    message = (
        f"drain did not finish within {DRAIN_TIMEOUT_SECONDS} s (a PodDisruptionBudget, or a pod without a "
        "controller?); the node stays cordoned: fix it, then run pulumi up again"
    )
    return (
        "\n".join(
            [
                *_header(node_name, fingerprint, api_fallbacks),
                *not_installed,
                f"pick_api || fail {shlex.quote(_no_api(api_fallbacks))}",
                'out=$(kc get node "$NODE" --ignore-not-found -o name) '
                '|| fail "the Kubernetes API ($API_NAME) does not answer"',
                'if [ -z "$out" ]; then echo "keybuzz: node $NODE is not registered: nothing to drain"; exit 0; fi',
                _current_fingerprint(),
                f'if [ "$current" = {shlex.quote(fingerprint)} ]; then '
                'echo "keybuzz: node $NODE already runs this rollout: nothing to drain"; exit 0; fi',
                'kc cordon "$NODE" || fail "cordon failed"',
                _drain("", message),
            ]
        )
        + "\n"
    )


def registered_script(node_name: str, fingerprint: str, *, api_fallbacks: tuple[str, ...] = ()) -> str:
    """``create`` of ready: the new node registered (Ready needs Calico, which comes later); record it."""
    return (
        "\n".join(
            [
                *_header(node_name, fingerprint, api_fallbacks),
                *_wait_for_api(api_fallbacks),
                *wait_loop(_registered(), READY_TIMEOUT_SECONDS, f"not registered after {READY_TIMEOUT_SECONDS} s"),
                _record_fingerprint(fingerprint),
            ]
        )
        + "\n"
    )


def ready_script(node_name: str, fingerprint: str, *, api_fallbacks: tuple[str, ...] = ()) -> str:
    """``update`` of ready: wait until the node is Ready again, then uncordon it and record the rollout.

    A node already recorded at this fingerprint was not drained by this run (see ``drain_script``):
    it is not uncordoned either, so a node someone cordoned by hand stays cordoned.
    """
    ready = (
        '[ "$(kc get node "$NODE" '
        '-o jsonpath=\'{.status.conditions[?(@.type=="Ready")].status}\' 2>/dev/null)" = True ]'
    )
    return (
        "\n".join(
            [
                *_header(node_name, fingerprint, api_fallbacks),
                *_wait_for_api(api_fallbacks),
                *wait_loop(ready, READY_TIMEOUT_SECONDS, f"not Ready {READY_TIMEOUT_SECONDS} s after its change"),
                _current_fingerprint(),
                f'if [ "$current" != {shlex.quote(fingerprint)} ]; then',
                '  kc uncordon "$NODE" || fail "uncordon failed"',
                f"  {_record_fingerprint(fingerprint)}",
                "fi",
            ]
        )
        + "\n"
    )


def taints_script(node_name: str, taints: tuple[str, ...], *, api_fallbacks: tuple[str, ...] = ()) -> str:
    """Make the node's program-managed taints exactly ``taints``; leave every other taint alone.

    Not a server-side apply: ``spec.taints`` is an atomic list, so an apply would own the whole
    list and wipe the taints Kubernetes sets (not-ready, unschedulable). The taints set last time
    are read from an annotation; those no longer wanted are removed.
    """
    wanted = " ".join(taints)
    jsonpath = _annotation_jsonpath(MANAGED_TAINTS_ANNOTATION)
    lines = [
        *_header(node_name, None, api_fallbacks),
        *_wait_for_api(api_fallbacks),
        *wait_loop(_registered(), READY_TIMEOUT_SECONDS, f"not registered after {READY_TIMEOUT_SECONDS} s"),
        f"wanted={shlex.quote(' ' + wanted + ' ')}",
        f'old=$(kc get node "$NODE" -o jsonpath={shlex.quote(jsonpath)}) || fail "cannot read the node"',
        "for t in $(printf '%s' \"$old\" | tr ',' ' '); do",
        '  case "$wanted" in',
        '    *" $t "*) ;;',
        '    *) kc taint node "$NODE" "${t%%[=:]*}:${t##*:}-" >/dev/null 2>&1 || true ;;',
        "  esac",
        "done",
    ]
    for taint in taints:
        quoted = shlex.quote(taint)
        lines.append(f'kc taint node "$NODE" {quoted} --overwrite || fail {shlex.quote("cannot set " + taint)}')
    lines.append(
        'kc annotate node "$NODE" --overwrite '
        f'{shlex.quote(MANAGED_TAINTS_ANNOTATION + "=" + ",".join(taints))} || fail "cannot record the taints"'
    )
    return "\n".join(lines) + "\n"


def retire_script(
    node_name: str,
    role: str,
    private_ip: str,
    *,
    alone: bool = False,
    first: bool = False,
    api_fallbacks: tuple[str, ...] = (),
) -> str:
    """``delete`` of a node's retire step: drain, delete the Node, and for a server wait until etcd forgot it.

    The drain never waits on a dead node: pods whose deletion started ``SKIP_WAIT_FOR_DELETE_SECONDS``
    ago are skipped, and a node whose Ready condition is ``Unknown`` (its kubelet stopped reporting:
    unreachable) has its pods deleted without the eviction API (``--disable-eviction --force``): a
    PodDisruptionBudget counting pods that cannot run anyway would otherwise refuse every eviction.

    K3s's etcd member controller holds a finalizer on every etcd Node (k3s
    ``pkg/etcd/member_controller.go``, ``OnRemove`` -> ``RemovePeer``, run by the holder of the
    ``k3s-etcd`` lease, ``pkg/etcd/etcd.go`` ``Register``): ``kubectl delete node`` returns only once
    the member is removed (~45 s when the dead server itself held the lease). The script then
    confirms it on this server's own etcd member list, read the way K3s v1.34 serves it (JSON
    gateway on 127.0.0.1:2382, ``ETCD_HTTP_URL``), so the next removal starts from a smaller,
    healthy cluster.

    ``alone``: the node is the only server; nothing can remove it from a cluster that is itself
    (``pulumi destroy``): the script does nothing. ``first``: the first server, retired from the
    second one. Retired last on ``pulumi destroy``, when it is the only etcd member left: then, and
    only then, there is no cluster after it and the script skips. An API error is never a reason to
    skip: it fails, since skipping could leave a stale etcd member behind.
    """
    if alone:
        nothing = 'echo "keybuzz: $NODE is the only server: nothing to remove it from"'
        return "\n".join([*script_preamble(node_name, "k3s"), nothing]) + "\n"
    no_api = f"{_no_api(api_fallbacks)}: nothing was removed; bring a server back, then run pulumi up again"
    lines = [
        *_header(node_name, None, api_fallbacks),
        f"pick_api || fail {shlex.quote(no_api)}",
        'out=$(kc get node "$NODE" --ignore-not-found -o name) '
        '|| fail "the Kubernetes API ($API_NAME) does not answer"',
    ]
    if first:
        last = (
            "keybuzz: node $NODE is the last etcd member: no cluster is left after it (pulumi destroy): "
            "nothing to remove it from"
        )
        lines += [
            f'etcd_nodes=$(kc get nodes -l {ETCD_ROLE_LABEL}=true -o name) || fail "cannot list the etcd servers"',
            f'if [ "$etcd_nodes" = "node/$NODE" ]; then echo "{last}"; exit 0; fi',
        ]
    dead_message = (
        f"drain of the unreachable node did not finish within {DRAIN_TIMEOUT_SECONDS} s; nothing was deleted"
    )
    lines += [
        'if [ -n "$out" ]; then',
        '  ready=$(kc get node "$NODE" -o jsonpath=\'{.status.conditions[?(@.type=="Ready")].status}\') '
        '|| fail "cannot read the node"',
        '  kc cordon "$NODE" || fail "cordon failed"',
        '  if [ "$ready" = Unknown ]; then',
        '    echo "keybuzz: node $NODE is unreachable (Ready=Unknown): its pods are deleted, not evicted"',
        "    " + _drain(" --disable-eviction --force", dead_message),
        "  else",
        "    "
        + _drain("", f"drain before removal did not finish within {DRAIN_TIMEOUT_SECONDS} s; nothing was deleted"),
        "  fi",
        f'  kc_within {DELETE_TIMEOUT_SECONDS + 30} delete node "$NODE" --timeout={DELETE_TIMEOUT_SECONDS}s '
        f'|| fail "the Node was not deleted within {DELETE_TIMEOUT_SECONDS} s '
        '(for a server: K3s could not remove its etcd member)"',
        "fi",
    ]
    if role == "server":
        peer = f"https://{private_ip}:2380"
        lines += [
            "members() {",
            f"  curl -sf --max-time 10 --cacert {ETCD_TLS}/server-ca.crt --cert {ETCD_TLS}/client.crt "
            f"--key {ETCD_TLS}/client.key -X POST -d '{{}}' {ETCD_HTTP_URL}/v3/cluster/member/list",
            "}",
            *wait_loop(
                f'list=$(members) && case "$list" in *{shlex.quote(peer)}*) false ;; *) true ;; esac',
                DELETE_TIMEOUT_SECONDS,
                f"etcd member {peer} still listed (or this server's member list at {ETCD_HTTP_URL} unreadable) "
                f"{DELETE_TIMEOUT_SECONDS} s after its Node was deleted",
            ),
            f'echo "keybuzz: node $NODE removed: Node deleted, etcd member {peer} gone"',
        ]
    else:
        lines.append('echo "keybuzz: node $NODE removed: drained and Node deleted"')
    return "\n".join(lines) + "\n"


def retire_create_script(node_name: str) -> str:
    """``create``/``update`` of a retire step: nothing to do until the node is removed."""
    message = f"keybuzz: {node_name} will be drained and removed from the cluster before its server is deleted"
    return f"echo {shlex.quote(message)}\n"
