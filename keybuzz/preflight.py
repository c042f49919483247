"""bin/deploy's checks that need more than a shell: run before the Pulumi CLI, each says what to do.

Why here and not in the program: the program runs inside the engine, after the CLI has written a
stack file, created a stack or started 20 Hetzner resources. These checks run before any of that:

- ``config-set``: a secret key (``SECRET_KEYS``) set without ``--secret`` would be written to
  ``Pulumi.<stack>.yaml`` in clear; a list or object key set as one value would be stored as a string.
- ``stack-file``: the stack file parses as YAML (file:line, and the ``encryptionsalt:`` hint).
- ``token``: ``HCLOUD_TOKEN`` is accepted by the Hetzner Cloud API (one GET), not only well-formed.
- ``ssh``: ``pulumi up`` reaches the nodes over SSH as root with the agent's key or ``sshPrivateKey``;
  without one whose public half is in ``sshPublicKeys``, every remote command fails minutes later
  with ``ssh: handshake failed``.

Every message names ``bin/deploy``, never raw ``pulumi``; none prints a secret. Exit 1 when refused.
Importable by the system Python (stdlib at import time; PyYAML only for the stack file).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from keybuzz.config import PROJECT, SECRET_KEYS, STRUCTURED_KEYS
from keybuzz.ssh_keys import fingerprint, key_blob

# The hcloud provider's own endpoint override (terraform-provider-hcloud, hcloud/provider.go:
# `endpoint` defaults from HCLOUD_ENDPOINT), so the check and the provider talk to the same API.
ENDPOINT_ENV = "HCLOUD_ENDPOINT"
DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
# terraform-provider-hcloud refuses a token whose length is not 64 ("entered token is invalid (must be
# exactly 64 characters long)", hcloud/provider.go); Hetzner's tokens are letters and digits (the
# hetzner.hcloud collection's documented example token).
TOKEN_RE = re.compile(r"[A-Za-z0-9]{64}")
# The one authenticated call: a short, static list every token may read (Read or Read & Write).
TOKEN_CHECK_PATH = "/locations"
TOKEN_CHECK_TIMEOUT_SECONDS = 10.0
SSH_ADD_TIMEOUT_SECONDS = 5.0


class Refusal(Exception):
    """What is wrong and the command that fixes it; bin/deploy prints it and runs nothing."""


# --- config set -----------------------------------------------------------------------------------

# `pulumi config set` / `set-all` flags that take a value (so the next word is not the key).
_VALUE_FLAGS = {"-s", "--stack", "-C", "--cwd", "--config-file"}


def _bare(key: str) -> str:
    """``keybuzz-k3s:sshPrivateKey`` or ``sshPrivateKey`` -> ``sshPrivateKey`` (other namespaces kept)."""
    return key.split(":", 1)[1] if key.startswith(f"{PROJECT}:") else key


def check_config_set(stack: str, args: Sequence[str]) -> None:
    """Refuse a ``config set``/``set-all`` (``args`` after ``config``) that would write a secret in
    clear or a list/object as a string, before the CLI touches the stack file."""
    if not args or args[0] not in ("set", "set-all"):
        return
    words = list(args[1:])
    secret = "--secret" in words
    path = "--path" in words
    if args[0] == "set-all":
        for flag, pair in zip(words, words[1:], strict=False):
            key = _bare(pair.split("=", 1)[0])
            if flag == "--plaintext" and key.split(".")[0].split("[")[0] in SECRET_KEYS:
                raise Refusal(_secret_refusal(stack, key))
        return
    positional: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in _VALUE_FLAGS:
            skip = True
        elif word == "--":
            continue
        elif not word.startswith("-"):
            positional.append(word)
    if not positional:
        return
    key = _bare(positional[0])
    root = re.split(r"[.\[]", key, maxsplit=1)[0]
    if root in SECRET_KEYS and not secret:
        raise Refusal(_secret_refusal(stack, root))
    if root in STRUCTURED_KEYS and (not path or root == key):
        example = f"{key}[0]" if root in ("sshPublicKeys", "adminCidrs", "nodePools") else f"{key}.<field>"
        raise Refusal(
            f"{PROJECT}:{root} is a list or an object: `config set {key} VALUE` would store VALUE as one "
            f"string, which the program refuses. Set one item: bin/deploy {stack} config set --path "
            f"'{example}' VALUE, or write it in Pulumi.{stack}.yaml under config: (two spaces in), e.g. "
            f'{PROJECT}:adminCidrs: ["192.0.2.0/24"]'
        )


def _secret_refusal(stack: str, key: str) -> str:
    return (
        f"{PROJECT}:{key} is a secret: without --secret the CLI would write it to Pulumi.{stack}.yaml in "
        f"clear. Nothing was written. Run: bin/deploy {stack} config set --secret {key} < FILE"
    )


# --- the stack file --------------------------------------------------------------------------------


def check_stack_file(path: Path) -> dict:
    """The stack file's ``config`` mapping, or a Refusal naming file:line and the likely slip."""
    import yaml

    from keybuzz.config import load_stack_yaml

    text = path.read_text()
    try:
        doc = load_stack_yaml(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path.name}:{mark.line + 1}:{mark.column + 1}" if mark else path.name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = ""
        if "mapping values are not allowed" in str(problem) or "expected <block end>" in str(exc):
            hint = (
                "; keys added by hand belong under `config:`, two spaces in, ABOVE the top-level "
                "`encryptionsalt:` line"
            )
        elif "\t" in text:
            hint = "; YAML indents with spaces, never tabs"
        raise Refusal(f"{where}: malformed YAML: {problem}{hint}") from None
    if not isinstance(doc, dict):
        raise Refusal(f"{path.name}:1: a stack file is a mapping with a `config:` key")
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{PROJECT}:"):
            key = line.split(":", 2)[1]
            raise Refusal(
                f"{path.name}:{number}: {PROJECT}:{key} is at column 0, outside `config:`, where the CLI "
                "ignores it: indent it two spaces, under `config:` and above `encryptionsalt:`"
            )
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise Refusal(f"{path.name}: `config:` must map keys to values")
    return config


# --- the Hetzner token ------------------------------------------------------------------------------


def token_format_problem(token: str) -> str | None:
    """Why ``token`` cannot be a Hetzner Cloud API token, without showing it; None when it can."""
    if TOKEN_RE.fullmatch(token):
        return None
    stripped = token.strip().strip("'\"")
    if stripped != token and TOKEN_RE.fullmatch(stripped):
        return "it has spaces, a newline or quotes around it: export HCLOUD_TOKEN=<the 64 characters only>"
    if len(token) != 64:
        return f"it is {len(token)} characters long; a Hetzner Cloud API token has 64 (letters and digits)"
    bad = next(i for i, c in enumerate(token) if not c.isascii() or not c.isalnum())
    return f"character {bad + 1} is not a letter or digit; a Hetzner Cloud API token has only those"


def check_token(environ: Mapping[str, str]) -> None:
    """HCLOUD_TOKEN well-formed and accepted by the API: one GET, a one-line refusal on 401."""
    token = environ.get("HCLOUD_TOKEN", "")
    problem = token_format_problem(token)
    if problem:
        raise Refusal(f"HCLOUD_TOKEN is not a Hetzner Cloud API token: {problem}")
    endpoint = (environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")
    request = urllib.request.Request(
        endpoint + TOKEN_CHECK_PATH, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TOKEN_CHECK_TIMEOUT_SECONDS) as response:  # noqa: S310
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Refusal(f"the Hetzner Cloud API at {endpoint} cannot be reached ({reason}): check the network") from None
    if status == 401:
        raise Refusal(
            "HCLOUD_TOKEN was refused by the Hetzner Cloud API (401 unauthorized: unknown or deleted token). "
            "Create one in the Cloud Console: your project > Security > API tokens (Read & Write)"
        )
    if status >= 400:
        try:
            error = json.loads(body or b"{}").get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        code = error.get("code") or "error"
        message = str(error.get("message") or "").replace(token, "[token]")
        raise Refusal(f"the Hetzner Cloud API answered {status} ({code}: {message}) to a read with HCLOUD_TOKEN")


# --- SSH --------------------------------------------------------------------------------------------


def _public_keys(config: Mapping[str, object]) -> list[str]:
    value = config.get(f"{PROJECT}:sshPublicKeys")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return [k for k in value if isinstance(k, str) and len(k.split()) >= 2] if isinstance(value, list) else []


def _describe(key: str) -> str:
    """``ssh-ed25519 SHA256:... comment``: what ssh-keygen -l would name, never the whole key."""
    parts = key.split()
    try:
        fp = fingerprint(key)
    except ValueError:
        fp = "(not base64)"
    return " ".join([parts[0], fp, *parts[2:3]])


LIKELY_CAUSES = (
    "if SSH still fails later (`ssh: handshake failed`), check that adminCidrs in Pulumi.{stack}.yaml "
    "contains this machine's public address (the Cloud Firewall drops SSH from anywhere else)"
)


def check_ssh(stack: str, config: Mapping[str, object], environ: Mapping[str, str]) -> str:
    """The identity `pulumi up` will use, or a Refusal naming the key tried and the likely causes."""
    configured = _public_keys(config)
    wanted = {key_blob(k) for k in configured}
    private = config.get(f"{PROJECT}:sshPrivateKey")
    if isinstance(private, dict) and set(private) == {"secure"}:
        # Its public half is compared with sshPublicKeys by the program, at preview (keybuzz/ssh_keys).
        return f"sshPrivateKey (a secret in Pulumi.{stack}.yaml)"
    if isinstance(private, str) and private:
        raise Refusal(
            f"{PROJECT}:sshPrivateKey is in Pulumi.{stack}.yaml in clear: remove it (bin/deploy {stack} config "
            f"rm sshPrivateKey, commit) and set it again as a secret: bin/deploy {stack} config set --secret "
            "sshPrivateKey < KEYFILE. Consider the key exposed if the file was pushed"
        )
    fix = (
        f"start an agent holding the key (eval \"$(ssh-agent)\" && ssh-add ~/.ssh/id_ed25519), or give "
        f"Pulumi a key file: bin/deploy {stack} config set --secret sshPrivateKey < ~/.ssh/id_ed25519"
    )
    try:
        done = subprocess.run(
            ["ssh-add", "-L"], capture_output=True, text=True, timeout=SSH_ADD_TIMEOUT_SECONDS,
            env=dict(environ),
        )  # fmt: skip
    except FileNotFoundError:
        raise Refusal(
            f"no SSH identity for `up`: sshPrivateKey is not set and ssh-add (OpenSSH) is not installed, so no "
            f"agent can be asked. {fix}"
        ) from None
    except subprocess.TimeoutExpired:
        raise Refusal(
            f"no SSH identity for `up`: the SSH agent did not answer `ssh-add -L` within 5 s. {fix}"
        ) from None
    if done.returncode == 2:
        socket = environ.get("SSH_AUTH_SOCK")
        where = f"SSH_AUTH_SOCK={socket} does not answer" if socket else "SSH_AUTH_SOCK is not set"
        raise Refusal(
            f"no SSH identity for `up`: sshPrivateKey is not set and no SSH agent is reachable ({where}; "
            f"ssh-add: {(done.stderr or done.stdout).strip()}). {fix}"
        )
    agent_keys = [line.strip() for line in done.stdout.splitlines() if len(line.split()) >= 2]
    if done.returncode == 1 or not agent_keys:
        raise Refusal(
            f"no SSH identity for `up`: the SSH agent holds no key (`ssh-add -L`: {done.stdout.strip()}). {fix}"
        )
    matching = [k for k in agent_keys if key_blob(k) in wanted]
    if matching:
        return f"the SSH agent's key {_describe(matching[0])}"
    tried = "; ".join(_describe(k) for k in agent_keys)
    listed = "; ".join(_describe(k) for k in configured) or "none"
    raise Refusal(
        f"the SSH agent's keys are not in sshPublicKeys, so the nodes would refuse them. Tried: {tried}. "
        f"sshPublicKeys in Pulumi.{stack}.yaml: {listed}. Add the public key to sshPublicKeys (a new key on "
        "a running cluster: add it, `up` with a key already there, then switch), or load one of the listed "
        f"keys into the agent (ssh-add KEYFILE). " + LIKELY_CAUSES.format(stack=stack)
    )


# --- entry point ------------------------------------------------------------------------------------


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """``python -m keybuzz.preflight <check> <stack> [...]``: exit 1 and the refusal on stdout (bin/deploy
    lists it with the others), or exit 0 and, for ``ssh``, the identity `up` will use."""
    environ = dict(os.environ if environ is None else environ)
    check, stack, rest = argv[0], argv[1], list(argv[2:])
    try:
        if check == "config-set":
            check_config_set(stack, rest)
        elif check == "stack-file":
            check_stack_file(Path(f"Pulumi.{stack}.yaml"))
        elif check == "token":
            check_token(environ)
        elif check == "ssh":
            config = check_stack_file(Path(f"Pulumi.{stack}.yaml"))
            print(f"SSH for `up`: {check_ssh(stack, config, environ)}")
        else:
            print(f"unknown preflight check {check!r}")
            return 2
    except Refusal as exc:
        print(exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
