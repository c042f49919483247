"""The deployed-stack guard: what an existing stack refuses at preview, as data."""

from __future__ import annotations

import pytest

from keybuzz.guards import DeployedStackProvider, deployed_stack_changes, k3s_version_key, stack_guard_values


def values(image="ubuntu-24.04", location="fsn1", k3s="v1.34.1+k3s1", keys=("SHA256:a",)):
    return stack_guard_values(image, location, k3s, list(keys))


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("v1.34.1+k3s1", "v1.34.1+k3s2"),  # a K3s rebuild of the same Kubernetes release
        ("v1.33.9+k3s1", "v1.34.1+k3s1"),
        ("v1.34.1+k3s2", "v1.34.2+k3s1"),
        ("v1.9.0+k3s1", "v1.10.0+k3s1"),  # numbers, not strings
        ("v1.34.9+k3s9", "v1.34.10+k3s1"),
    ],
)
def test_k3s_versions_compare_as_numbers(older, newer):
    assert k3s_version_key(older) < k3s_version_key(newer)


def test_k3s_version_key_refuses_a_channel():
    with pytest.raises(ValueError, match="not a K3s release"):
        k3s_version_key("stable")


@pytest.mark.parametrize(
    ("olds", "news", "refused"),
    [
        ({}, values(), []),  # a new stack: nothing deployed, nothing to compare
        (values(), values(), []),
        (values(), values(image="debian-12"), ["image"]),
        (values(), values(location="nbg1"), ["location"]),
        (values(k3s="v1.34.1+k3s2"), values(k3s="v1.34.1+k3s1"), ["k3sVersion"]),
        (values(k3s="v1.34.1+k3s1"), values(k3s="v1.33.9+k3s1"), ["k3sVersion"]),
        (values(k3s="v1.34.1+k3s1"), values(k3s="v1.34.1+k3s2"), []),  # upgrades pass
        (values(k3s="v1.33.9+k3s1"), values(k3s="v1.34.1+k3s1"), []),
        (values(keys=["SHA256:a"]), values(keys=["SHA256:a", "SHA256:b"]), []),  # add
        (values(keys=["SHA256:a", "SHA256:b"]), values(keys=["SHA256:b"]), []),  # drop the old one
        (values(keys=["SHA256:a"]), values(keys=["SHA256:b"]), ["sshKeyFingerprints"]),  # swap in one step
        (values(), values(image="debian-12", location="hel1", k3s="v1.33.0+k3s1", keys=["SHA256:z"]),
         ["image", "location", "k3sVersion", "sshKeyFingerprints"]),
    ],
)
def test_what_an_existing_stack_refuses(olds, news, refused):
    assert [key for key, _ in deployed_stack_changes(olds, news)] == refused


def test_messages_say_what_changed_why_and_what_to_do():
    messages = dict(
        deployed_stack_changes(
            values(),
            values(image="debian-12", location="nbg1", k3s="v1.33.9+k3s1", keys=["SHA256:new"]),
        )
    )
    assert messages["image"].startswith("'image' cannot change on an existing stack ('ubuntu-24.04' -> 'debian-12')")
    assert "every server, etcd included, would be replaced at once" in messages["image"]
    assert "('fsn1' -> 'nbg1')" in messages["location"]
    assert messages["k3sVersion"] == (
        "K3s downgrade refused (v1.34.1+k3s1 -> v1.33.9+k3s1): K3s does not support downgrades "
        "(docs.k3s.io, upgrades). Keep v1.34.1+k3s1 or pick a newer release."
    )
    assert "add the new key, `pulumi up`, then remove the old one" in messages["sshKeyFingerprints"]


def test_provider_check_fails_at_preview_and_keeps_inputs():
    provider = DeployedStackProvider()
    refused = provider.check(values(), values(image="debian-12"))
    assert [f.property for f in refused.failures] == ["image"]
    passed = provider.check(values(), values(k3s="v1.35.0+k3s1"))
    assert passed.failures == [] and passed.inputs == values(k3s="v1.35.0+k3s1")


def test_provider_records_changes_in_place():
    provider = DeployedStackProvider()
    diff = provider.diff("id", values(), values(k3s="v1.35.0+k3s1"))
    assert (diff.changes, diff.replaces) == (True, [])
    assert provider.diff("id", values(), values()).changes is False
    assert provider.update("id", values(), values(k3s="v1.35.0+k3s1")).outs == values(k3s="v1.35.0+k3s1")


def test_key_order_does_not_matter():
    assert values(keys=["SHA256:b", "SHA256:a"]) == values(keys=["SHA256:a", "SHA256:b"])
