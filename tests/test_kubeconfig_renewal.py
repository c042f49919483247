"""When the kubeconfig is read again: its certificate's expiry (read from a real certificate) and a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from keybuzz.kubeconfig_renewal import client_cert_not_after, expiry_warning, reread_key
from keybuzz.offline import SAMPLE_K3S_KUBECONFIG

# tests/fixtures/k3s_kubeconfig_admin_cert.yaml: a K3s-shaped admin kubeconfig whose client certificate
# (ECDSA P-256, signed by a k3s-client-ca, 365 days) openssl made; `openssl x509 -noout -enddate` printed
# notAfter=Dec  6 06:50:55 2027 GMT.
KUBECONFIG = (Path(__file__).resolve().parent / "fixtures" / "k3s_kubeconfig_admin_cert.yaml").read_text()
NOT_AFTER = datetime(2027, 12, 6, 6, 50, 55, tzinfo=UTC)


def test_the_client_certificates_not_after_is_what_openssl_printed():
    assert client_cert_not_after(KUBECONFIG) == NOT_AFTER


def test_a_kubeconfig_without_a_readable_certificate_gives_none():
    assert client_cert_not_after(SAMPLE_K3S_KUBECONFIG) is None
    assert client_cert_not_after("") is None


def test_no_reread_before_the_renewal_window_then_one_per_30_days():
    key = [reread_key(NOT_AFTER, NOT_AFTER - timedelta(days=d)) for d in (200, 91, 90, 61, 60, 30, 0, -40)]
    assert key == ["", "", "window 2027-09-07 period 0", "window 2027-09-07 period 0",
                   "window 2027-09-07 period 1", "window 2027-09-07 period 2", "window 2027-09-07 period 3",
                   "window 2027-09-07 period 4"]
    assert reread_key(None, NOT_AFTER) == ""


def test_a_warning_only_inside_the_window_naming_the_date_and_the_fix():
    assert expiry_warning(NOT_AFTER, NOT_AFTER - timedelta(days=91), "cp-1") is None
    warning = expiry_warning(NOT_AFTER, NOT_AFTER - timedelta(days=30), "keybuzz-prod-cp-1")
    assert warning is not None
    assert "2027-12-06 (30 days)" in warning and "keybuzz-prod-cp-1" in warning and "systemctl restart k3s" in warning
