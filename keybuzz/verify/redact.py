"""Redaction of kubeconfig credentials, apart from the providers so that bin/verify (which prints
through it) does not import the Pulumi SDK: a second of start-up on a loaded machine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_SECRET_KEYS = {"token", "password", "client-key-data", "client-certificate-data", "certificate-authority-data",
                "client-key", "id-token", "refresh-token", "access-token"}


def redact(text: str, kubeconfig: str) -> str:
    """Remove any credential from the kubeconfig that might have leaked into an error message."""
    import yaml

    secrets: set[str] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in _SECRET_KEYS and len(node) >= 6:
            secrets.add(node)

    try:
        walk(yaml.safe_load(kubeconfig))
    except yaml.YAMLError:
        secrets.update(line.strip() for line in kubeconfig.splitlines() if len(line.strip()) >= 16)
    if kubeconfig.strip():
        secrets.add(kubeconfig.strip())
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text
