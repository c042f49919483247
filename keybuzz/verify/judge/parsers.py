"""Parsers of what the real tools print: iputils ping, curl ``-w``, dig, ``ip -o route get``.

Each is tested on output captured from the real tool in the lab (tests/verify/captured/). They
classify as well as parse, because the classification is what the judges' causes hinge on: a
ping that could not run is not packet loss, a connect timeout is not a stalled transfer, a
refused DNS query is not a timed-out one.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from keybuzz.verify.plan import CURL_MARK

# ---------------------------------------------------------------------------------------------
# curl


@dataclass(frozen=True)
class CurlResult:
    exit_code: int | None
    http_code: int
    size: int
    seconds: float
    body: str
    error: str
    # curl's %{time_connect}: None in output from before it was recorded (a 4-field @@curl line).
    connect_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.http_code == 200

    @property
    def stage(self) -> str:
        """How far the transfer got: ``done``, ``no-connection``, ``no-response`` (connected, no
        header), ``stalled`` (headers or body bytes arrived, then nothing), or ``error``."""
        rc = self.exit_code
        if rc == 0:
            return "done"
        if rc in (6, 7) or (rc == 28 and _CONNECT_FAILED.search(self.error)):
            return "no-connection"
        if rc == 28:
            return "stalled" if (self.http_code or self.size) else "no-response"
        if rc in (52, 56) and not (self.http_code or self.size):
            return "no-response"
        if rc in (18, 56):
            return "stalled"
        return "error"

    @property
    def syn_retried(self) -> bool:
        """The TCP handshake took at least the kernel's initial RTO: the first SYN (or its SYN-ACK)
        was lost and the connection came from a retransmitted SYN."""
        return self.connect_seconds is not None and self.connect_seconds >= SYN_RETRY_S

    @property
    def waited_s(self) -> float:
        """How long curl waited, from its own error text when present ("after 2001 milliseconds")."""
        m = _AFTER_MS.search(self.error)
        return int(m.group(1)) / 1000 if m else self.seconds


# Linux's initial retransmission timeout (TCP_TIMEOUT_INIT, 1 s since RFC 6298 / Linux 3.1): the
# first SYN retransmission leaves 1 s after the SYN, so no handshake that lost its first SYN
# completes in under 1 s, while a healthy overlay handshake takes milliseconds.
SYN_RETRY_S = 1.0

_CURL_ERR = re.compile(r"curl: \((\d+)\) (.*)")
# curl 7.88: "Failed to connect to X port P after 1000 ms: Timeout was reached";
# older: "Connection timed out after 2001 milliseconds".
_CONNECT_FAILED = re.compile(r"Failed to connect|Connection timed out|Connection refused|Couldn't connect")
_AFTER_MS = re.compile(r"after (\d+) (?:ms|milliseconds)")


def parse_curl(text: str, exit_code: int | None) -> list[CurlResult]:
    """One result per ``@@curl`` line (a probe may loop); the body is the text before each line.

    A loop reports only the last curl's exit code, so per-call failure is read from the
    ``curl: (N)`` error lines and the ``000`` http code instead.
    """
    results: list[CurlResult] = []
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith(CURL_MARK + " "):
            fields = line.split()
            code = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
            size = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
            seconds = _float(fields, 3) or 0.0
            connect = _float(fields, 4)
            errors = [m for m in (_CURL_ERR.match(b) for b in body) if m]
            rc = int(errors[-1].group(1)) if errors else 0
            error = errors[-1].group(2) if errors else ""
            text_body = "\n".join(b for b in body if not _CURL_ERR.match(b)).strip()
            results.append(CurlResult(rc, code, size, seconds, text_body, error, connect))
            body = []
        else:
            body.append(line)
    if not results:
        errors = [m for m in (_CURL_ERR.match(b) for b in body) if m]
        error = errors[-1].group(2) if errors else "\n".join(body).strip()[:200]
        results.append(CurlResult(exit_code, 0, 0, 0.0, "", error or "no output"))
    elif exit_code not in (None, 0) and results[-1].exit_code == 0:
        last = results[-1]
        results[-1] = CurlResult(exit_code, last.http_code, last.size, last.seconds, last.body, last.error,
                                 last.connect_seconds)
    return results


def _float(fields: list[str], i: int) -> float | None:
    try:
        return float(fields[i]) if len(fields) > i else None
    except ValueError:
        return None


def describe_curl_failure(result: CurlResult, total: int | None = None) -> str:
    """What the transfer got to, in words, with the time curl really waited."""
    waited = f"{round(result.waited_s, 1):g} s"  # curl's "after 1003 ms" is its 1 s timeout
    stage = result.stage
    rc = result.exit_code
    if rc is None:
        return "no result (probe did not finish)"
    if rc == 6:
        return "could not resolve host (curl 6)"
    if rc == 7:
        return f"connection refused or no route to host (curl 7: {result.error[:90]})".replace(": )", ")")
    if stage == "no-connection":
        return f"no TCP connection within the {waited} connect timeout"
    if stage == "no-response":
        return f"connected, but no response header within {waited}"
    if stage == "stalled":
        of = f" of {total}" if total else ""
        head = f"HTTP {result.http_code:03d} headers, then " if result.http_code else ""
        return f"{head}stalled after {result.size}{of} bytes (gave up after {waited})"
    if rc == 0:
        return f"HTTP {result.http_code:03d}"
    return f"curl exit {rc}: {result.error}".strip(": ")


# ---------------------------------------------------------------------------------------------
# ping


@dataclass(frozen=True)
class PingResult:
    transmitted: int
    received: int
    errors: int
    loss_pct: float
    rtt_avg_ms: float | None
    frag_needed_mtu: int | None
    frag_needed_from: str | None
    local_mtu: int | None
    unreachable: bool
    raw_error: str
    # The ping could not run as asked (usage error, unknown option, not iputils, no permission):
    # the first line saying so. Nothing was measured: this is not packet loss.
    tool_error: str = ""
    # ``ip -o route get`` before the ping: a path MTU the kernel had cached (from an earlier
    # Frag needed) and its remaining lifetime.
    cached_mtu: int | None = None
    cache_expires_s: int | None = None

    @property
    def measured(self) -> bool:
        return not self.tool_error and self.transmitted > 0


_PING_TX = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_ERR = re.compile(r"\+(\d+) errors")
_PING_LOSS = re.compile(r"([\d.]+)% packet loss")
_PING_RTT = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/mdev)? = ([\d.]+)/([\d.]+)/([\d.]+)")
_PING_FRAG = re.compile(r"From (\S+?):? icmp_seq=\d+ Frag needed and DF set \(mtu = (\d+)\)")
_PING_LOCAL = re.compile(r"local error: [Mm]essage too long, mtu[=:]\s*(\d+)")
_ROUTE_CACHE = re.compile(r"cache\s+expires\s+(\d+)sec\s+mtu\s+(\d+)")
_TOOL_ERROR = re.compile(
    r"invalid option|invalid -\w+ argument|invalid argument|unrecognized option|[Uu]sage:|BusyBox|"
    r"not found|Operation not permitted|[Pp]ermission denied|can't create raw socket|command not found"
)


def parse_ping(text: str, exit_code: int | None = None) -> PingResult:
    """iputils ping output (summary, rtt, Frag needed / local error lines), tool errors, route cache."""
    tx = _PING_TX.search(text)
    err = _PING_ERR.search(text)
    loss = _PING_LOSS.search(text)
    rtt = _PING_RTT.search(text)
    frag = _PING_FRAG.search(text)
    local = _PING_LOCAL.search(text)
    cache = _ROUTE_CACHE.search(text)
    transmitted = int(tx.group(1)) if tx else 0
    received = int(tx.group(2)) if tx else 0
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first_error = next((ln for ln in lines if "ping:" in ln), "")
    tool_error = ""
    if not tx:
        bad = next((ln for ln in lines if _TOOL_ERROR.search(ln)), "")
        if bad:
            tool_error = bad[:160]
        elif exit_code == 2 and not first_error:
            tool_error = (lines[-1] if lines else "exit 2 without output")[:160]
    return PingResult(
        transmitted=transmitted,
        received=received,
        errors=int(err.group(1)) if err else 0,
        loss_pct=float(loss.group(1)) if loss else 100.0,
        rtt_avg_ms=float(rtt.group(2)) if rtt else None,
        frag_needed_mtu=int(frag.group(2)) if frag else None,
        frag_needed_from=frag.group(1) if frag else None,
        local_mtu=int(local.group(1)) if local else None,
        unreachable="Unreachable" in text,
        raw_error=first_error,
        tool_error=tool_error,
        cached_mtu=int(cache.group(2)) if cache else None,
        cache_expires_s=int(cache.group(1)) if cache else None,
    )


def ping_ok(result: PingResult) -> bool:
    return result.transmitted > 0 and result.received > 0 and result.received == result.transmitted


# ---------------------------------------------------------------------------------------------
# dig


@dataclass(frozen=True)
class DigResult:
    """``status``: ``ok`` (an answer), the DNS status in lower case (``nxdomain``, ``servfail``,
    ``noerror`` = empty answer), ``refused`` (ICMP port unreachable: nothing behind the address),
    ``timeout``, or ``error``."""

    answers: tuple[str, ...]
    status: str
    server: str
    detail: str


_DIG_STATUS = re.compile(r"status: ([A-Z]+)")
_DIG_COMM = re.compile(r";; communications error to (\S+): (.*)")


def parse_dig(text: str, exit_code: int | None) -> DigResult:
    """dig with ``+comments +answer`` (or ``+short``): A answers, the status, why no server answered."""
    answers: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        candidate = fields[-1] if len(fields) >= 5 and fields[-2] == "A" and fields[-3] == "IN" else line.strip()
        try:
            answers.append(str(ipaddress.IPv4Address(candidate)))
        except ValueError:
            continue
    comm = _DIG_COMM.findall(text)
    server = comm[-1][0] if comm else ""
    detail = comm[-1][1].strip() if comm else ""
    status_m = _DIG_STATUS.search(text)
    if answers:
        status = "ok"
    elif status_m:
        # A server answered (a header came back): its status stands, even after a first try that
        # timed out (+tries=2: one lost UDP query is followed by the real answer).
        status = status_m.group(1).lower()
    elif comm and any("refused" in why for _, why in comm):
        status = "refused"
    elif comm or exit_code == 9 or "no servers could be reached" in text:
        status = "timeout"
    elif exit_code == 0:
        status = "noerror"
    else:
        status = "error"
        detail = text.strip().splitlines()[0][:160] if text.strip() else f"exit {exit_code}"
    return DigResult(tuple(answers), status, server, detail)
