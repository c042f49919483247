"""When the kubeconfig kept in state must be read again from the first server.

Why: K3s's admin client certificate (the one in /etc/rancher/k3s/k3s.yaml) lasts 365 days; K3s
renews it, and rewrites k3s.yaml, when it starts within 90 days of expiry (docs.k3s.io/cli/certificate;
k3s discussion 10024: "If you've copied the admin kubeconfig ... update your copies periodically").
The copy Pulumi keeps in state is what the Kubernetes provider uses: never read again, it fails every
`pulumi up` with 401 after a year.

How, without making the kubeconfig unknown at preview on every run (a remote command that runs every
time has an unknown output at preview): the decision is made from data known at preview, the
certificate of the kubeconfig first read when the cluster was built (its ``notAfter``) and a clock.
Until 90 days before that date nothing is read again; from then on, once per 30-day period. A
certificate K3s renewed at a start in its 90-day window is therefore picked up within 30 days,
well before the old one expires; every later renewal too (the periods go on). A re-read is a
replaced command whose output is unknown at that preview only; with the provider's fixed
``clusterIdentifier`` that is an update of the provider, never a replacement (pulumi-kubernetes
``DiffConfig``: with an unchanged identifier it clears ``Replaces``, also for an unknown kubeconfig).

The certificate is read with a small DER walk (no new dependency): Certificate -> tbsCertificate ->
validity -> notAfter (RFC 5280, section 4.1).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta

import yaml

# docs.k3s.io/cli/certificate: certificates within 90 days of expiry are renewed when K3s starts.
RENEWAL_WINDOW = timedelta(days=90)
# How often the kubeconfig is read again once the window of the first one has opened.
REREAD_PERIOD = timedelta(days=30)


def _der_header(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, length, start of content) of the DER element at ``pos``."""
    tag, first = der[pos], der[pos + 1]
    if first < 0x80:
        return tag, first, pos + 2
    size = first & 0x7F
    return tag, int.from_bytes(der[pos + 2:pos + 2 + size], "big"), pos + 2 + size


def _der_children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, content start, content end) of each element between ``start`` and ``end``."""
    out = []
    pos = start
    while pos < end:
        tag, length, content = _der_header(der, pos)
        out.append((tag, content, content + length))
        pos = content + length
    return out


def certificate_not_after(der: bytes) -> datetime:
    """The ``notAfter`` of an X.509 certificate in DER, as an aware UTC datetime."""
    tag, length, start = _der_header(der, 0)
    (tbs_tag, tbs_start, tbs_end), *_ = _der_children(der, start, start + length)
    fields = _der_children(der, tbs_start, tbs_end)
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    _serial, _signature, _issuer, (validity_tag, v_start, v_end), *_ = fields
    if tag != 0x30 or tbs_tag != 0x30 or validity_tag != 0x30:
        raise ValueError("not an X.509 certificate")
    _not_before, (time_tag, t_start, t_end) = _der_children(der, v_start, v_end)
    text = der[t_start:t_end].decode("ascii")
    if time_tag == 0x17:  # UTCTime YYMMDDHHMMSSZ (RFC 5280: YY < 50 is 20YY)
        parsed = datetime.strptime(text, "%y%m%d%H%M%SZ")
    elif time_tag == 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        parsed = datetime.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError(f"unexpected time tag {time_tag:#x}")
    return parsed.replace(tzinfo=UTC)


def client_cert_not_after(kubeconfig: str) -> datetime | None:
    """``notAfter`` of the first user's ``client-certificate-data``; None when there is none readable
    (an unknown or placeholder kubeconfig: no re-read is then decided from it)."""
    try:
        doc = yaml.safe_load(kubeconfig) or {}
        data = doc["users"][0]["user"]["client-certificate-data"]
        pem = base64.b64decode(data).decode("ascii")
        body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
        return certificate_not_after(base64.b64decode("".join(body.split())))
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error, UnicodeDecodeError, yaml.YAMLError):
        return None


def reread_key(first_not_after: datetime | None, now: datetime) -> str:
    """The re-read command's trigger: "" until the first certificate's renewal window opens, then one
    value per 30-day period (a new value re-reads the file)."""
    if first_not_after is None:
        return ""
    opens = first_not_after - RENEWAL_WINDOW
    if now < opens:
        return ""
    period = int((now - opens) / REREAD_PERIOD)
    return f"window {opens:%Y-%m-%d} period {period}"


def expiry_warning(not_after: datetime | None, now: datetime, node: str) -> str | None:
    """A warning when the certificate in use expires within the renewal window, or None."""
    if not_after is None or not_after - now > RENEWAL_WINDOW:
        return None
    days = (not_after - now).days
    return (
        f"the kubeconfig's admin client certificate expires on {not_after:%Y-%m-%d} ({days} days). K3s renews "
        f"it when it starts within 90 days of expiry: restart K3s on the servers one at a time, {node} "
        "included (`systemctl restart k3s`; a K3s upgrade does it too), and `bin/deploy <stack> up` reads "
        "the new one within 30 days (docs.k3s.io/cli/certificate)"
    )


def from_timestamp(seconds: float) -> datetime:
    """An injected clock's reading (seconds since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)
