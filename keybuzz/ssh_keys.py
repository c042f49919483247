"""SSH keys as data: fingerprints, resource names, the authorized_keys update script, rotation rules.

Why: the hcloud provider marks a server's ``ssh_keys`` force-new, so a key change would replace every
server; and Hetzner refuses two key objects with the same name or the same public key in a project.
So: key objects are named after their fingerprint (adding, removing or reordering keys touches only
that key, and a rotation never reuses a name), servers ignore ``sshKeys`` after creation, and running
nodes get the configured keys through SSH, in a managed block of ``/root/.ssh/authorized_keys``.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from collections.abc import Iterable, Sequence

AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
BLOCK_BEGIN = "# BEGIN keybuzz-k3s managed keys (sshPublicKeys; edited by pulumi up)"
BLOCK_END = "# END keybuzz-k3s managed keys"
# Hex digits of the SHA-256 fingerprint used in names: 48 bits, unique enough within one project.
NAME_DIGITS = 12


def key_blob(public_key: str) -> str:
    """The base64 body of an OpenSSH public key line (the part that identifies the key)."""
    return public_key.split()[1]


def fingerprint(public_key: str) -> str:
    """OpenSSH's fingerprint, as ``ssh-keygen -l`` prints it: ``SHA256:<base64, unpadded>``."""
    digest = hashlib.sha256(base64.b64decode(key_blob(public_key))).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_id(public_key: str) -> str:
    """A short name-safe id of the key (hex of the same SHA-256): stable whatever the key's position."""
    return hashlib.sha256(base64.b64decode(key_blob(public_key))).hexdigest()[:NAME_DIGITS]


def key_resource_names(cluster_name: str, component: str, keys: Sequence[str]) -> list[tuple[str, str, str]]:
    """(Pulumi name, Hetzner name, key) per key, both names derived from the fingerprint."""
    return [(f"{component}-key-{key_id(k)}", f"{cluster_name}-{key_id(k)}", k) for k in keys]


def rotation_problem(deployed: Iterable[str], configured: Iterable[str]) -> str | None:
    """Why a key change must be refused, or None. Arguments are fingerprints.

    Pulumi reaches the nodes over SSH with the operator's key: when the new list shares no key with
    the one on the nodes, the key Pulumi would use is not installed yet, and the update that installs
    it could not connect. Rotation is two steps.
    """
    old, new = set(deployed), set(configured)
    if not old or old & new:
        return None
    return (
        f"sshPublicKeys shares no key with the keys on the nodes (deployed {', '.join(sorted(old))}; "
        f"configured {', '.join(sorted(new))}): Pulumi could no longer reach the nodes over SSH. "
        "Rotate in two steps: add the new key, `pulumi up`, then remove the old one and `pulumi up` again."
    )


def authorized_keys_script(keys: Sequence[str], path: str = AUTHORIZED_KEYS) -> str:
    """A bash script that makes the managed block of ``path`` hold exactly ``keys``.

    Idempotent (same keys, same file), atomic (written beside the file, then renamed), keeps every line
    outside the block, and removes outside copies of managed keys (Hetzner writes the creation-time keys
    outside any block), so a key dropped from config is gone from the node.
    """
    lines = "\n".join(keys)
    blobs = " ".join(key_blob(k) for k in keys)
    q = shlex.quote
    return f"""#!/usr/bin/env bash
# Managed by keybuzz-k3s: the configured sshPublicKeys in a block of {path}.
set -euo pipefail
umask 077
file={q(path)}
dir=$(dirname "$file")
install -d -m 700 "$dir"
touch "$file"
begin={q(BLOCK_BEGIN)}
end={q(BLOCK_END)}
managed={q(blobs)}
tmp=$(mktemp "$dir/.authorized_keys.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# Lines outside the block stay, except copies of managed keys (the block owns those).
awk -v begin="$begin" -v end="$end" -v managed="$managed" '
  BEGIN {{ n = split(managed, list, " "); for (i = 1; i <= n; i++) own[list[i]] = 1 }}
  $0 == begin {{ inside = 1; next }}
  $0 == end {{ inside = 0; next }}
  inside {{ next }}
  {{ for (i = 1; i <= NF; i++) if ($i in own) next; print }}
  END {{ if (inside) exit 3 }}
' "$file" > "$tmp" || {{
  echo "keybuzz: $file has a managed block without its end line; fix it by hand, then pulumi up" >&2
  exit 1
}}
{{
  printf '%s\\n' "$begin"
  cat <<'KEYBUZZ_KEYS'
{lines}
KEYBUZZ_KEYS
  printf '%s\\n' "$end"
}} >> "$tmp"
chmod 600 "$tmp"
mv -f "$tmp" "$file"
trap - EXIT
echo "keybuzz: {len(keys)} managed key(s) in $file"
"""
