"""SSH keys as data: fingerprints, resource names, the authorized_keys update script, rotation rules.

Why: the hcloud provider marks a server's ``ssh_keys`` force-new, so a key change would replace every
server; and Hetzner refuses two key objects with the same name or the same public key in a project.
So: key objects are named after their fingerprint (adding, removing or reordering keys touches only
that key, and a rotation never reuses a name), servers ignore ``sshKeys`` after creation, and running
nodes get the configured keys through SSH, in a managed block of ``/root/.ssh/authorized_keys``.
"""

from __future__ import annotations

import base64
import binascii
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


# --- the key Pulumi connects with ------------------------------------------------------------------
#
# Pulumi reaches every node over SSH with ``sshPrivateKey`` (or the SSH agent's keys). A key list
# without that key would be written to every node's authorized_keys by the very run that connects
# with it: the next run is locked out. So the public half of ``sshPrivateKey`` must be listed.
# Reading it needs no cryptography: an OpenSSH private key file (ssh-keygen's format since 7.8)
# carries its public key in clear before the (possibly encrypted) private part (OpenSSH PROTOCOL.key),
# and a PEM RSA key (PKCS#1) holds n and e, which are the public key.

_OPENSSH_MAGIC = b"openssh-key-v1\0"


def _ssh_string(data: bytes, offset: int) -> tuple[bytes, int]:
    length = int.from_bytes(data[offset:offset + 4], "big")
    end = offset + 4 + length
    if length < 0 or end > len(data):
        raise ValueError("truncated")
    return data[offset + 4:end], end


def _pem_body(text: str, label: str) -> bytes | None:
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    if begin not in text or end not in text:
        return None
    inner = text.split(begin, 1)[1].split(end, 1)[0]
    if "ENCRYPTED" in inner:
        return None  # a PEM key with a passphrase: its numbers are encrypted
    lines = [line.strip() for line in inner.strip().splitlines() if line.strip() and ":" not in line]
    return base64.b64decode("".join(lines))


def _der_sequence_integers(der: bytes, count: int) -> list[bytes]:
    """The first ``count`` INTEGERs of a DER SEQUENCE, as their content bytes (two's complement)."""

    def header(pos: int) -> tuple[int, int, int]:
        tag, first = der[pos], der[pos + 1]
        if first < 0x80:
            return tag, first, pos + 2
        size = first & 0x7F
        return tag, int.from_bytes(der[pos + 2:pos + 2 + size], "big"), pos + 2 + size

    tag, _, pos = header(0)
    if tag != 0x30:
        raise ValueError("not a DER SEQUENCE")
    values = []
    for _ in range(count):
        tag, length, start = header(pos)
        if tag != 0x02:
            raise ValueError("not a DER INTEGER")
        values.append(der[start:start + length])
        pos = start + length
    return values


def public_key_from_private(private_key: str) -> str | None:
    """The OpenSSH public key line (``<type> <base64>``) of a private key; None for a format not read here
    (PKCS#8, an encrypted PEM key) or text that is no key."""
    try:
        body = _pem_body(private_key, "OPENSSH PRIVATE KEY")
        if body is not None:
            if not body.startswith(_OPENSSH_MAGIC):
                return None
            offset = len(_OPENSSH_MAGIC)
            for _ in range(3):  # ciphername, kdfname, kdfoptions
                _, offset = _ssh_string(body, offset)
            if int.from_bytes(body[offset:offset + 4], "big") < 1:
                return None
            blob, _ = _ssh_string(body, offset + 4)
            key_type, _ = _ssh_string(blob, 0)
            return f"{key_type.decode()} {base64.b64encode(blob).decode()}"
        der = _pem_body(private_key, "RSA PRIVATE KEY")
        if der is not None:
            _version, n, e = _der_sequence_integers(der, 3)

            def string(value: bytes) -> bytes:
                return len(value).to_bytes(4, "big") + value

            blob = string(b"ssh-rsa") + string(e) + string(n)  # DER INTEGER content is already an SSH mpint
            return f"ssh-rsa {base64.b64encode(blob).decode()}"
    except (ValueError, IndexError, UnicodeDecodeError, binascii.Error):
        return None
    return None


def connecting_key_problem(private_key: str, public_keys: Sequence[str]) -> str | None:
    """Why ``sshPrivateKey`` must be refused with this key list, or None (listed, or not readable here)."""
    public = public_key_from_private(private_key)
    if public is None or key_blob(public) in {key_blob(k) for k in public_keys}:
        return None
    return (
        f"its public key ({fingerprint(public)}) is not in sshPublicKeys. Pulumi connects to every node with "
        "this key, and this run would write a key list without it to every node: the next run would be "
        "locked out. Add it to sshPublicKeys (`ssh-keygen -y -f KEYFILE` prints it), or set sshPrivateKey "
        "to a key that is listed"
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

