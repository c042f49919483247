"""Verdicts from raw probe output and API objects: pure functions, tested as data.

One module per check (calico, dns, clusterip, mesh, mtu, ingress, external), as cilium's
connectivity test gives each scenario a file; the tool-output parsers (ping, curl, dig) and the
walk over cross-node paths are shared (parsers.py, common.py). Every failure names its path
(``node-a→node-c``) and a cause an operator can act on.
"""

from keybuzz.verify.judge.calico import judge_calico
from keybuzz.verify.judge.clusterip import judge_clusterip
from keybuzz.verify.judge.common import (
    CAUSE_EXEC,
    CAUSE_PING_TOOL,
    CAUSE_PROBE_POD,
    CAUSE_UNFINISHED,
    exec_failures,
    missing_pod_failures,
)
from keybuzz.verify.judge.dns import judge_dns
from keybuzz.verify.judge.external import judge_external
from keybuzz.verify.judge.ingress import judge_ingress
from keybuzz.verify.judge.mesh import CAUSE_OVERLAY, CAUSE_TCP_ONLY, judge_mesh
from keybuzz.verify.judge.mtu import judge_mtu
from keybuzz.verify.judge.parsers import (
    CurlResult,
    DigResult,
    PingResult,
    describe_curl_failure,
    parse_curl,
    parse_dig,
    parse_ping,
    ping_ok,
)
from keybuzz.verify.judge.verdict import ARROW, Failure, Verdict, latency_summary, path

__all__ = [
    "ARROW", "CAUSE_EXEC", "CAUSE_OVERLAY", "CAUSE_PING_TOOL", "CAUSE_PROBE_POD", "CAUSE_TCP_ONLY",
    "CAUSE_UNFINISHED", "CurlResult", "DigResult", "Failure", "PingResult", "Verdict",
    "describe_curl_failure", "exec_failures", "judge_calico", "judge_clusterip", "judge_dns", "judge_external",
    "judge_ingress", "judge_mesh", "judge_mtu", "latency_summary", "missing_pod_failures", "parse_curl",
    "parse_dig", "parse_ping", "path", "ping_ok",
]
