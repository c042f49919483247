"""bin/deploy's preflight (keybuzz/preflight.py), driven as an operator runs it: secrets never reach the
stack file in clear, the stack file's slips are named with file:line, HCLOUD_TOKEN is checked against a
stand-in Hetzner API, and `up` has an SSH identity the nodes will accept. Nothing runs when refused."""

from __future__ import annotations

import pytest
from deploy_harness import SECRETS, Project
from fakes.hetzner_api import GOOD_TOKEN

from keybuzz import preflight
from keybuzz.ssh_keys import fingerprint

PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
CAPTURED_AGENT_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIAjaDF2rpQYbH+bc5eJ2RZcel+ctcvZAWwkDI0PdBAH me@laptop"


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    p.add_keys("dev", "staging", "prod")
    p.commit("keys")
    p.create_stacks("dev")
    return p


def ran(project, command: str) -> bool:
    return any(argv[0] == command for argv in project.argvs())


# --- secrets never touch disk in clear ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["sshPrivateKey", "keybuzz-k3s:sshPrivateKey"])
def test_config_set_of_a_secret_key_without_secret_is_refused_before_the_cli_and_the_file_is_unchanged(
    project, key
):
    before = (project.dir / "Pulumi.dev.yaml").read_bytes()
    result = project.deploy("dev", "config", "set", key, PRIVATE)
    assert result.returncode == 1
    assert "keybuzz-k3s:sshPrivateKey is a secret: without --secret the CLI would write it to Pulumi.dev.yaml " \
        "in clear. Nothing was written. Run: bin/deploy dev config set --secret sshPrivateKey < FILE" in result.stderr
    assert "pulumi config" not in result.stderr and "BEGIN" not in result.stderr + result.stdout
    assert (project.dir / "Pulumi.dev.yaml").read_bytes() == before
    assert not ran(project, "config")


def test_set_all_with_a_plaintext_secret_is_refused_too(project):
    pairs = ["--plaintext", "sshPrivateKey=x", "--plaintext", "location=nbg1"]
    result = project.deploy("dev", "config", "set-all", *pairs)
    assert result.returncode == 1 and "sshPrivateKey is a secret" in result.stderr
    assert not ran(project, "config")


def test_config_set_with_secret_runs(project):
    result = project.deploy("dev", "config", "set", "--secret", "sshPrivateKey", PRIVATE, **SECRETS)
    assert result.returncode == 0, result.stderr
    assert project.last("config")["argv"][:4] == ["config", "set", "--secret", "sshPrivateKey"]
    assert "BEGIN" not in result.stderr  # the echo of the command hides the value


def test_a_list_key_set_as_one_string_is_refused_with_the_path_form(project):
    result = project.deploy("dev", "config", "set", "adminCidrs", '["192.0.2.0/24"]')
    assert result.returncode == 1
    assert "keybuzz-k3s:adminCidrs is a list or an object: `config set adminCidrs VALUE` would store VALUE as one " \
        "string" in result.stderr
    assert "bin/deploy dev config set --path 'adminCidrs[0]' VALUE" in result.stderr
    assert not ran(project, "config")
    ok = project.deploy("dev", "config", "set", "--path", "adminCidrs[0]", "192.0.2.0/24")
    assert ok.returncode == 0, ok.stderr


def test_a_list_the_cli_stored_as_a_string_is_named_with_the_shape_wanted(project):
    path = project.dir / "Pulumi.dev.yaml"
    as_a_list = 'keybuzz-k3s:adminCidrs: ["198.51.100.7/32"]'
    path.write_text(path.read_text().replace(as_a_list, """keybuzz-k3s:adminCidrs: '["192.0.2.0/24"]'"""))
    result = project.deploy("dev", "preview", **SECRETS)
    assert result.returncode == 1
    assert "keybuzz-k3s:adminCidrs in Pulumi.dev.yaml is a quoted string, not a list" in result.stderr
    assert "missing" not in result.stderr.split("keybuzz-k3s:adminCidrs", 1)[1].split("\n")[0]


# --- the stack file -------------------------------------------------------------------------------


def test_a_key_at_column_zero_is_refused_with_its_line(project):
    path = project.dir / "Pulumi.dev.yaml"
    path.write_text(path.read_text() + "keybuzz-k3s:location: nbg1\n")
    line = len(path.read_text().splitlines())
    result = project.deploy("dev", "preview", **SECRETS)
    assert result.returncode == 1
    assert f"Pulumi.dev.yaml:{line}: keybuzz-k3s:location is at column 0, outside `config:`, where the CLI " \
        "ignores it" in result.stderr
    assert not ran(project, "preview")


def test_a_key_pasted_below_encryptionsalt_gets_file_line_and_the_salt_hint(project):
    path = project.dir / "Pulumi.dev.yaml"
    path.write_text(path.read_text() + "encryptionsalt: v1:abc\n  keybuzz-k3s:location: nbg1\n")
    result = project.deploy("dev", "preview", **SECRETS)
    assert result.returncode == 1
    assert "Pulumi.dev.yaml:" in result.stderr
    assert "malformed YAML: mapping values are not allowed here" in result.stderr
    assert "ABOVE the top-level `encryptionsalt:` line" in result.stderr
    assert "Traceback" not in result.stderr and not ran(project, "preview")


def test_a_config_command_on_a_broken_stack_file_names_file_and_line_too(project):
    path = project.dir / "Pulumi.dev.yaml"
    path.write_text(path.read_text() + "encryptionsalt: v1:abc\n  keybuzz-k3s:location: nbg1\n")
    result = project.deploy("dev", "config", "set", "location", "nbg1")
    assert result.returncode == 1
    assert "Pulumi.dev.yaml:" in result.stderr and "ABOVE the top-level `encryptionsalt:` line" in result.stderr
    assert not ran(project, "config")


# --- the Hetzner token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("abc", "it is 3 characters long; a Hetzner Cloud API token has 64 (letters and digits)"),
        (GOOD_TOKEN[:63] + "-", "character 64 is not a letter or digit"),
        (GOOD_TOKEN + "\n", "it has spaces, a newline or quotes around it"),
    ],
    ids=["short", "symbol", "newline"],
)
def test_a_malformed_token_is_refused_in_one_line_without_showing_it(project, token, why):
    result = project.deploy("dev", "preview", HCLOUD_TOKEN=token, PULUMI_CONFIG_PASSPHRASE="pass")
    assert result.returncode == 1
    assert f"HCLOUD_TOKEN is not a Hetzner Cloud API token: {why}" in result.stderr
    assert token.strip() not in result.stderr and "Traceback" not in result.stderr
    assert project.hetzner.requests == [] and not ran(project, "preview")


def test_a_token_the_api_refuses_is_one_line_naming_the_401(project):
    wrong = "Z" * 64
    result = project.deploy("dev", "up", HCLOUD_TOKEN=wrong, PULUMI_CONFIG_PASSPHRASE="pass")
    assert result.returncode == 1
    assert "HCLOUD_TOKEN was refused by the Hetzner Cloud API (401 unauthorized: unknown or deleted token)" \
        in result.stderr
    assert wrong not in result.stderr and not ran(project, "up")
    assert project.hetzner.requests == [("GET", "/v1/locations", f"Bearer {wrong}")]


def test_a_token_the_api_accepts_costs_one_read_then_the_cli_runs(project):
    result = project.deploy("dev", "preview", **SECRETS)
    assert result.returncode == 0, result.stderr
    assert project.hetzner.requests == [("GET", "/v1/locations", f"Bearer {GOOD_TOKEN}")]
    assert ran(project, "preview")


def test_an_unreachable_api_is_one_line(project):
    result = project.deploy("dev", "preview", HCLOUD_ENDPOINT="http://127.0.0.1:9/v1", **SECRETS)
    assert result.returncode == 1
    assert "the Hetzner Cloud API at http://127.0.0.1:9/v1 cannot be reached" in result.stderr


# --- SSH before `up` ------------------------------------------------------------------------------


def test_up_without_an_agent_or_a_key_file_is_refused_naming_both_ways(project):
    result = project.deploy("dev", "up", FAKE_SSH_ADD="no-agent", **SECRETS)
    assert result.returncode == 1
    err = result.stderr
    assert "no SSH identity for `up`: sshPrivateKey is not set and no SSH agent is reachable (SSH_AUTH_SOCK is " \
        "not set; ssh-add: Could not open a connection to your authentication agent.)" in err
    assert "bin/deploy dev config set --secret sshPrivateKey < ~/.ssh/id_ed25519" in err
    assert not ran(project, "up")


def test_a_dead_agent_socket_is_named(project):
    result = project.deploy("dev", "up", FAKE_SSH_ADD="dead-socket", SSH_AUTH_SOCK="/tmp/gone.sock", **SECRETS)
    assert result.returncode == 1
    assert "SSH_AUTH_SOCK=/tmp/gone.sock does not answer" in result.stderr


def test_an_empty_agent_is_refused(project):
    result = project.deploy("dev", "up", FAKE_SSH_ADD="no-identities", **SECRETS)
    assert result.returncode == 1
    assert "the SSH agent holds no key (`ssh-add -L`: The agent has no identities.)" in result.stderr


def test_an_agent_key_missing_from_ssh_public_keys_is_named_with_the_likely_causes(project):
    result = project.deploy("dev", "up", FAKE_SSH_ADD="one-key", **SECRETS)
    assert result.returncode == 1
    err = result.stderr
    assert f"Tried: ssh-ed25519 {fingerprint(CAPTURED_AGENT_KEY)} me@laptop." in err
    assert "sshPublicKeys in Pulumi.dev.yaml: ssh-ed25519 SHA256:" in err
    assert "adminCidrs in Pulumi.dev.yaml contains this machine's public address" in err
    assert not ran(project, "up")


def test_an_agent_key_in_ssh_public_keys_passes_and_is_named(project):
    result = project.deploy("dev", "up", **SECRETS)
    assert result.returncode == 0, result.stderr
    assert "bin/deploy: SSH for `up`: the SSH agent's key ssh-ed25519 SHA256:" in result.stderr
    assert ran(project, "up")


def test_a_secret_private_key_is_the_identity_without_an_agent(project):
    path = project.dir / "Pulumi.dev.yaml"
    secret = "config:\n  keybuzz-k3s:sshPrivateKey:\n    secure: v1:abc\n"
    path.write_text(path.read_text().replace("config:\n", secret, 1))
    project.commit("key file")
    result = project.deploy("dev", "up", FAKE_SSH_ADD="no-agent", **SECRETS)
    assert result.returncode == 0, result.stderr
    assert "SSH for `up`: sshPrivateKey (a secret in Pulumi.dev.yaml)" in result.stderr


def test_a_private_key_in_clear_in_the_stack_file_is_refused_before_up(project):
    path = project.dir / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("config:\n", "config:\n  keybuzz-k3s:sshPrivateKey: abc\n", 1))
    result = project.deploy("dev", "up", **SECRETS)
    assert result.returncode == 1
    assert "keybuzz-k3s:sshPrivateKey is in Pulumi.dev.yaml in clear: remove it (bin/deploy dev config rm " \
        "sshPrivateKey, commit)" in result.stderr


def test_an_up_that_fails_says_which_key_was_tried_and_the_likely_causes(project):
    result = project.deploy("dev", "up", FAKE_PULUMI_UP_ERROR="ssh: handshake failed: EOF", **SECRETS)
    assert result.returncode == 255
    assert "keybuzz-dev-k3s-install-keybuzz-dev-cp-1" in result.stdout  # the engine names the node's resource
    hint = result.stderr.split("`up` failed (exit 255).", 1)[1]
    assert "Pulumi connected as root with the SSH agent's key ssh-ed25519 SHA256:" in hint
    assert "adminCidrs in Pulumi.dev.yaml does not contain this machine's public address" in hint
    assert "the agent no longer holds that key" in hint


def test_a_successful_up_gives_no_ssh_hint(project):
    result = project.deploy("dev", "up", **SECRETS)
    assert result.returncode == 0 and "Likely causes" not in result.stderr


def test_preview_needs_no_ssh_identity(project):
    result = project.deploy("dev", "preview", FAKE_SSH_ADD="no-agent", **SECRETS)
    assert result.returncode == 0, result.stderr


# --- pure logic -----------------------------------------------------------------------------------


def test_token_format_follows_the_provider_length_rule():
    assert preflight.token_format_problem(GOOD_TOKEN) is None
    assert "65 characters" in preflight.token_format_problem(GOOD_TOKEN + "a")


@pytest.mark.parametrize(
    "args",
    [["set", "location", "nbg1"], ["set", "--secret", "sshPrivateKey"], ["get", "sshPrivateKey"],
     ["set", "--path", "verify.timeoutSeconds", "90"], ["set", "--path", "nodePools[0].count", "2"]],
)  # fmt: skip
def test_config_set_passes_what_the_cli_stores_right(args):
    preflight.check_config_set("dev", args)
