"""Redaction of kubeconfig credentials, apart from the providers so that bin/verify (which prints
through it) does not import the Pulumi SDK: a second of start-up on a loaded machine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Credentials a kubeconfig can hold: static ones, the OIDC auth-provider's (client-secret too), and
# the values of an exec credential plugin's env (cloud keys: see _walk).
_SECRET_KEYS = {"token", "password", "client-key-data", "client-certificate-data", "certificate-authority-data",
                "client-key", "id-token", "refresh-token", "access-token", "client-secret"}


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
                if key == "env" and isinstance(v, Mapping) and isinstance(v.get("value"), str):
                    # users[].user.exec.env: [{name: AWS_SECRET_ACCESS_KEY, value: ...}]
                    walk(v["value"], "token")
                else:
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
