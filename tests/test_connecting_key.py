"""The key Pulumi connects with, read from real keys and real `ssh-add -L` output (tests/fixtures/ssh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keybuzz.guards import SshKeysRecordProvider, confirmed_keys_problem
from keybuzz.ssh_keys import connecting_key_problem, fingerprint, public_key_from_private

SSH = Path(__file__).resolve().parent / "fixtures" / "ssh"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl other@laptop"


def public(name: str) -> str:
    return " ".join((SSH / f"{name}.pub").read_text().split()[:2])


@pytest.mark.parametrize(
    "name",
    ["throwaway_ed25519", "throwaway_rsa_pem", "throwaway_ecdsa_passphrase"],
    ids=["openssh-ed25519", "pem-rsa-pkcs1", "openssh-ecdsa-with-passphrase"],
)
def test_the_public_half_is_what_ssh_keygen_wrote(name):
    assert public_key_from_private((SSH / name).read_text()) == public(name)


@pytest.mark.parametrize(
    "text",
    ["mock-secret-value", "", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
     "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n"],
    ids=["placeholder", "empty", "pkcs8", "garbage"],
)
def test_formats_not_read_here_give_none(text):
    assert public_key_from_private(text) is None


def test_a_listed_key_passes_whatever_its_comment():
    private = (SSH / "throwaway_ed25519").read_text()
    assert connecting_key_problem(private, [OTHER, public("throwaway_ed25519") + " renamed@elsewhere"]) is None


def test_an_unlisted_key_names_its_fingerprint_and_the_fix():
    private = (SSH / "throwaway_rsa_pem").read_text()
    problem = connecting_key_problem(private, [OTHER])
    assert problem is not None
    assert fingerprint(public("throwaway_rsa_pem")) in problem
    assert "ssh-keygen -y -f KEYFILE" in problem and "locked out" in problem


# --- the record of keys every node has ------------------------------------------------------------


def test_a_list_sharing_no_key_with_the_confirmed_ones_is_refused_at_check():
    """Step 1 added B but failed on a node: only A is confirmed. Step 2 (B alone) would strand that node."""
    provider = SshKeysRecordProvider()
    result = provider.check({"sshKeyFingerprints": ["SHA256:A"]}, {"sshKeyFingerprints": ["SHA256:B"]})
    assert [f.property for f in result.failures] == ["sshKeyFingerprints"]
    assert "SHA256:A" in result.failures[0].reason and "every node" in result.failures[0].reason


@pytest.mark.parametrize(
    ("confirmed", "configured"),
    [([], ["SHA256:B"]), (["SHA256:A", "SHA256:B"], ["SHA256:B"]), (["SHA256:A"], ["SHA256:A", "SHA256:B"])],
    ids=["new-stack", "step-two-after-a-complete-step-one", "step-one"],
)
def test_lists_sharing_a_confirmed_key_pass(confirmed, configured):
    assert confirmed_keys_problem(confirmed, configured) is None
    result = SshKeysRecordProvider().check({"sshKeyFingerprints": confirmed}, {"sshKeyFingerprints": configured})
    assert not result.failures

