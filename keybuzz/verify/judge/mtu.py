"""MTU path: every pod's eth0 MTU is the pool MTU, and full-size packets cross every path.

"MTU" is blamed only when size matters: a small ping passes and a full-size DF ping does not
(Frag needed, a cached path MTU, or silent loss), or the bulk transfer stalls after data came.
A transfer that never connected, or connected and got nothing while full-size DF pings pass, is
something else, and is named as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keybuzz.calico import HETZNER_PRIVATE_NETWORK_MTU, IPIP_OVERHEAD_BYTES
from keybuzz.verify.judge.common import (
    CAUSE_EXEC,
    CAUSE_PING_TOOL,
    CAUSE_UNFINISHED,
    exec_failures,
    missing_pod_failures,
    unfinished_failure,
    walk_paths,
)
from keybuzz.verify.judge.parsers import CurlResult, PingResult, describe_curl_failure, parse_curl, parse_ping, ping_ok
from keybuzz.verify.judge.verdict import Failure, Verdict, latency_summary
from keybuzz.verify.plan import BULK_BYTES, DEFAULT_TIMEOUTS, RawOutput, Timeouts, cross_node_pairs

# The largest pool MTU Hetzner's private network carries with IPIP (1450 - 20): the value to set when the
# pool MTU is larger and full-size packets do not cross.
HETZNER_IPIP_POOL_MTU = HETZNER_PRIVATE_NETWORK_MTU - IPIP_OVERHEAD_BYTES


def _too_large(mtu: int) -> str:
    """The fix when the pool MTU itself is above what IPIP fits in Hetzner's private network, else ""."""
    if mtu <= HETZNER_IPIP_POOL_MTU:
        return ""
    return (f"; the pool MTU {mtu} is above {HETZNER_IPIP_POOL_MTU}, the most IPIP (20 bytes) fits in Hetzner's "
            f"{HETZNER_PRIVATE_NETWORK_MTU}-byte private network: set keybuzz-k3s:calicoMtu to "
            f"{HETZNER_IPIP_POOL_MTU} (or 0, which derives it), then recreate the pods")


def _int(text: str) -> int | None:
    value = text.strip().splitlines()[0].strip() if text.strip() else ""
    return int(value) if value.isdigit() else None


def _seen(client_mtus: Mapping[str, int], echo_mtus: Mapping[str, int]) -> str:
    values = set(client_mtus.values()) | set(echo_mtus.values())
    if len(values) == 1:
        return f"{values.pop()} on every pod read"
    parts = [f"client {n} {v}" for n, v in sorted(client_mtus.items())]
    parts += [f"echo {n} {v}" for n, v in sorted(echo_mtus.items())]
    return ", ".join(parts)


def _df_state(small: PingResult, df: PingResult) -> str:
    """What the DF ping says about size: pass, frag, cached, lost, or unknown (not measurable)."""
    if small.tool_error or df.tool_error or not ping_ok(small):
        return "unknown"
    if df.frag_needed_mtu is not None:
        return "frag"
    if df.local_mtu is not None:
        return "cached"
    return "pass" if ping_ok(df) else "lost"


def judge_mtu(
    nodes: Sequence[str],
    outputs: Mapping[str, Mapping[str, RawOutput]],
    clients: Mapping[str, str],
    echo_ips: Mapping[str, str],
    mtu: int,
    exec_errors: Mapping[str, str] | None = None,
    namespace: str = "overlay-probe",
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> Verdict:
    """Client and echo pods' eth0 MTU == pool MTU; a DF ping of MTU bytes and a 1 MiB transfer
    cross every path; each failure named by what was seen."""
    failures = missing_pod_failures(nodes, clients, "client", namespace)
    failures += missing_pod_failures(nodes, echo_ips, "echo", namespace)
    failures += exec_failures(exec_errors or {}, namespace)
    packet = mtu  # the DF ping sends MTU - 28 bytes of payload: full-size packets
    bulk_ms: list[float] = []
    notes: list[str] = []
    veth_cause = (f"a pod's eth0 MTU differs from the pool MTU {mtu}: Calico sets it when the pod starts, so "
                  "pods created before calicoNetwork.mtu changed keep the old one (recreate them: `kubectl -n "
                  f"{namespace} rollout restart daemonset`), or the Installation's mtu is not applied")

    client_mtus: dict[str, int] = {}
    for node in sorted(nodes):
        if node not in clients or (exec_errors and node in exec_errors):
            continue
        raw = outputs.get(node, {}).get("mtu:eth0")
        if raw is not None and not raw.finished:
            failures.append(unfinished_failure(node, ["mtu:eth0"]))
            continue
        value = _int(raw.text) if raw else None
        if value is None:
            shown = raw.text.strip()[:80] if raw else ""
            failures.append(Failure(node, f"could not read the client pod's eth0 MTU ({shown or 'no output'})",
                                    CAUSE_EXEC.format(ns=namespace)))
            continue
        client_mtus[node] = value
        if value != mtu:
            failures.append(Failure(node, f"client pod eth0 MTU {value}, want {mtu}", veth_cause))

    # The echo pods' MTU, served by each echo pod on /mtu, read from any client that reached it.
    echo_mtus: dict[str, int] = {}
    for src in sorted(outputs):
        for key, raw in outputs[src].items():
            kind, _, dst = key.partition(":")
            if kind == "emtu" and raw.finished and dst not in echo_mtus:
                res = parse_curl(raw.text, raw.exit_code)[-1]
                value = _int(res.body) if res.ok else None
                if value is not None:
                    echo_mtus[dst] = value
    for dst, value in sorted(echo_mtus.items()):
        if value != mtu:
            failures.append(Failure(f"echo pod on {dst}", f"eth0 MTU {value}, want {mtu}", veth_cause))

    seen = _seen(client_mtus, echo_mtus)
    tool_broken: dict[str, str] = {}
    icmp_filtered: list[str] = []
    for p in walk_paths(nodes, outputs, clients, echo_ips, ("ping", "dfping", "bulk"), failures, exec_errors,
                        namespace, report_missing_pods=False, optional=("emtu",), partial=("bulk", "emtu")):
        small = parse_ping(p.got["ping"].text, p.got["ping"].exit_code)
        df = parse_ping(p.got["dfping"].text, p.got["dfping"].exit_code)
        bulk_done = "bulk" in p.got
        bulk = parse_curl(p.got["bulk"].text, p.got["bulk"].exit_code)[-1] if bulk_done else None
        bulk_ok = bulk is not None and bulk.ok and bulk.size == BULK_BYTES
        if bulk_ok:
            bulk_ms.append(bulk.seconds * 1000)
        if small.tool_error or df.tool_error:
            tool_broken.setdefault(p.src, small.tool_error or df.tool_error)
        state = _df_state(small, df)
        if state == "unknown" and not small.tool_error and not df.tool_error and not ping_ok(small):
            if bulk is not None and bulk.stage == "no-connection":
                failures.append(Failure(p.where, f"small pings lost and {describe_curl_failure(bulk)}: path down, "
                                        "MTU not judged", "path down altogether (see the pod mesh check for its "
                                        "cause)"))
                continue
            if small.received == 0:
                icmp_filtered.append(p.where)
        whats: list[str] = []
        cause = ""
        if state == "frag":
            whats.append(f"DF ping of {packet}-byte packets: Frag needed (mtu = {df.frag_needed_mtu}) from "
                         f"{df.frag_needed_from}")
            cause = (f"a hop on the path carries only {df.frag_needed_mtu} bytes, less than the pool MTU {mtu} "
                     f"(pod eth0 MTU {seen}): set the pool MTU (keybuzz-k3s:calicoMtu, the Installation's "
                     f"calicoNetwork.mtu) to at most {df.frag_needed_mtu}, or raise that hop's MTU"
                     + _too_large(mtu))
        elif state == "cached":
            cached = df.cached_mtu or df.local_mtu
            client_mtu = client_mtus.get(p.src)
            if client_mtu is not None and df.local_mtu is not None and df.local_mtu == client_mtu < packet:
                whats.append(f"DF ping of {packet}-byte packets refused by the pod's own eth0 (mtu={client_mtu})")
                cause = veth_cause
            else:
                expires = f", expires in {df.cache_expires_s} s" if df.cache_expires_s is not None else ""
                whats.append(f"DF ping of {packet}-byte packets refused by the pod's kernel: path MTU {cached} "
                             f"cached from an earlier Frag needed{expires}")
                cause = (f"the client pod's kernel learnt path MTU {cached} to this echo pod from an ICMP Frag "
                         f"needed within the last 10 minutes (an earlier attempt or `pulumi up`): a hop carried less "
                         f"than the pool MTU {mtu} then; if it still does, set the pool MTU to at most {cached}; "
                         "pods cannot flush that cache (no CAP_NET_ADMIN), so a rerun after it expires, or from a "
                         "new client pod, measures afresh")
        elif state == "lost":
            whats.append(f"DF ping of {packet}-byte packets lost ({df.loss_pct:g}% loss, no Frag needed) while "
                         "small pings pass")
            cause = "mtu-black-hole"
        if bulk is None:
            # Cut by the exec deadline: what the DF ping showed still stands; alone, blame the deadline.
            whats.append(f"bulk transfer did not finish before the deadline ({timeouts.bulk_s} s budget)")
            cause = cause or CAUSE_UNFINISHED
        elif not bulk_ok:
            whats.append(f"bulk transfer: {describe_curl_failure(bulk, BULK_BYTES)}")
            if not cause:
                cause = _bulk_cause(bulk, state, p.dst, namespace)
        if whats:
            failures.append(Failure(p.where, "; ".join(whats), cause))

    black_hole = (f"MTU black hole: {packet}-byte packets vanish on the path and no Frag needed comes back, while "
                  f"small ones pass (pod eth0 MTU {seen}): a hop carries less than the pool MTU {mtu} and ICMP "
                  "type 3 code 4 is filtered; find that hop's MTU (`tracepath` from a pod) and set the pool MTU "
                  "below it, or let 'fragmentation needed' through" + _too_large(mtu))
    failures = [Failure(f.where, f.what, black_hole) if f.cause == "mtu-black-hole" else f for f in failures]
    for node, error in sorted(tool_broken.items()):
        failures.append(Failure(f"client pod on {node}", f"ping could not run ({error}): the DF probe measured "
                                "nothing", CAUSE_PING_TOOL))
    if icmp_filtered:
        notes.append(f"ICMP echo is filtered on {len(icmp_filtered)} paths ({', '.join(icmp_filtered[:4])}): "
                     "the DF ping proves nothing there; the bulk transfer alone judged them")
    pairs = cross_node_pairs(nodes)
    return Verdict(
        check="MTU path",
        tested=(f"pod eth0 MTU == {mtu} (client and echo pods, {len(nodes)} nodes); DF ping of {packet}-byte "
                f"packets and a {BULK_BYTES}-byte transfer (connect timeout {timeouts.connect_s} s, "
                f"{timeouts.bulk_s} s in all) on {len(pairs)} cross-node paths"),
        total=len(nodes) * 2 + len(pairs),
        failures=failures,
        unit="pods and paths",
        latency_ms=latency_summary(bulk_ms),
        notes=notes,
    )


def _bulk_cause(bulk: CurlResult, state: str, dst: str, ns: str) -> str:
    """Why a bulk transfer failed when the DF ping did not already say "size"."""
    df_passed = " (full-size DF pings pass: not an MTU problem)" if state == "pass" else ""
    if bulk.stage == "no-connection":
        return (f"no TCP connection to the echo pod on {dst} although ping passes{df_passed}: it is not listening "
                "on the probe port, or TCP to it is filtered (see the pod mesh check)")
    if bulk.stage == "no-response":
        if state in ("pass", "unknown"):
            return (f"the echo pod on {dst} accepts connections but sends nothing{df_passed}: hung or starved; "
                    f"see `kubectl -n {ns} describe pod` and its logs")
        return "mtu-black-hole"
    if bulk.stage == "stalled":
        return "mtu-black-hole"
    if bulk.exit_code == 0:
        return (f"the echo pod on {dst} served HTTP {bulk.http_code:03d} / {bulk.size} bytes instead of the "
                f"{BULK_BYTES}-byte body: the probe fixture is broken, see its logs")
    return f"the transfer from the echo pod on {dst} failed; see the pod mesh check and the echo pod's logs"
