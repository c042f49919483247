"""The shipped stack files are templates: checked for their shape and keys, never read for values.

Tests read tests/fixtures/stacks/ (the stack files as shipped); the operator then adds keys, admin
ranges and the CLI's `encryptionsalt:` line to the real ones, and the CLI may write booleans back as
strings. None of that may turn `bin/test` red: the last test here proves it on a copy of the project.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import OPERATOR_VALUES, PROJECT, REPO, STACK_FIXTURES, STACKS

from keybuzz.config import check_keys, load_stack_yaml, parse_config, project_defaults

# What the CLI itself may write at the top of a stack file (pkg/workspace ProjectStack), besides config.
TOP_LEVEL_KEYS = {"config", "encryptionsalt", "secretsprovider", "encryptedkey", "environment"}
# Keys each operator adds (README, "First run"); the secret one is optional.
OPERATOR_KEYS = {*OPERATOR_VALUES, f"{PROJECT}:sshPrivateKey"}


def config_of(path: Path) -> dict:
    doc = load_stack_yaml(path.read_text()) or {}
    assert isinstance(doc, dict) and set(doc) <= TOP_LEVEL_KEYS, f"{path.name}: top-level keys {sorted(doc)}"
    return doc.get("config") or {}


def parsed(stack: str, config: dict):
    """The stack's config as the program would parse it; the operator's values where the file lacks them."""
    raw = {**project_defaults(), **{k.split(":", 1)[1]: v for k, v in OPERATOR_VALUES.items()}}
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue  # a secret (sshPrivateKey): checked by the program, not readable here
        raw[key.split(":", 1)[1]] = value
    return parse_config(raw, stack, project_defaults())


@pytest.mark.parametrize("stack", STACKS)
def test_a_shipped_stack_file_parses_holds_only_known_keys_and_valid_values(stack):
    config = config_of(REPO / f"Pulumi.{stack}.yaml")
    check_keys(config)
    assert parsed(stack, config).stack == stack


@pytest.mark.parametrize("stack", STACKS)
def test_a_shipped_stack_file_keeps_the_templates_keys(stack):
    shipped = set(config_of(REPO / f"Pulumi.{stack}.yaml"))
    template = set(config_of(STACK_FIXTURES / f"Pulumi.{stack}.yaml"))
    assert template - OPERATOR_KEYS <= shipped
    assert not template & OPERATOR_KEYS, "the fixtures are the templates: no operator values in them"


@pytest.mark.parametrize("stack", STACKS)
def test_the_fixtures_parse_as_their_stack(stack):
    cfg = parsed(stack, config_of(STACK_FIXTURES / f"Pulumi.{stack}.yaml"))
    assert cfg.cluster_name == f"keybuzz-{stack}"
    assert cfg.deletion_protection is (stack == "prod")


def test_a_boolean_the_cli_wrote_back_as_a_string_is_read_as_the_boolean():
    config = {**config_of(STACK_FIXTURES / "Pulumi.prod.yaml"), f"{PROJECT}:deletionProtection": "true"}
    assert parsed("prod", config).deletion_protection is True
    config[f"{PROJECT}:deletionProtection"] = "false"
    assert parsed("prod", config).deletion_protection is False


# What a user's edit looks like (README, "First run"), and what `bin/deploy <stack> stack init` adds.
USER_KEYS = (
    '  keybuzz-k3s:sshPublicKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVn2GB8i6lP4G7w7mJdmTQOq8sV7lYp7Ck5d7kq1m3x '
    'me@laptop"]\n  keybuzz-k3s:adminCidrs: ["192.0.2.7/32"]\n'
)
# The stack-file tests: the template checks above, and every test that failed on a user's edited stack
# files when tests still read them for values (issue 19). The whole suite there would take minutes.
STACK_FILE_TESTS = (
    "tests/test_stack_files.py",
    "tests/test_bin_deploy.py::test_every_missing_item_is_reported_in_one_run",
    "tests/test_bin_deploy.py::test_stack_creation_says_which_file_changed_and_to_commit_it",
    "tests/test_cluster_program.py::test_firewall_rules_are_exactly_admin_ports_web_and_icmp",
    "tests/test_config.py::test_prod_protects_its_resources_and_upgrade_disk_defaults_off",
    "tests/test_offline_plan.py::test_plan_prints_servers_firewall_k3s_calico_and_checks",
    "tests/test_bin_plan.py::test_paths_are_relative_to_the_callers_directory",
    "tests/test_promotion_walkthrough.py",
)


def users_copy(tmp_path: Path) -> Path:
    """This project as a user has it after "First run": keys, an admin range and a salt in every stack
    file, prod's boolean re-serialised by the CLI as a string, all committed."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    copy = tmp_path / "project"
    for name in filter(None, files):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    (copy / ".venv").symlink_to((REPO / ".venv").resolve())
    for stack in STACKS:
        path = copy / f"Pulumi.{stack}.yaml"
        text = path.read_text().replace("config:\n", "config:\n" + USER_KEYS, 1)
        text = text.replace("deletionProtection: true", 'deletionProtection: "true"')
        path.write_text(text + f"encryptionsalt: v1:c2FsdA==:v1:{stack}salt:Zm9v\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "stacks: keys and salts"]):
        subprocess.run(["git", *argv], cwd=copy, env=env, check=True, capture_output=True)
    return copy


@pytest.mark.skipif(os.environ.get("KEYBUZZ_USERS_COPY") == "1", reason="already inside the user's copy")
def test_a_users_edited_salted_committed_stack_files_leave_the_stack_file_tests_green(tmp_path):
    copy = users_copy(tmp_path)
    assert "192.0.2.7/32" in (copy / "Pulumi.dev.yaml").read_text()
    assert (copy / "Pulumi.prod.yaml").read_text().endswith("encryptionsalt: v1:c2FsdA==:v1:prodsalt:Zm9v\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYBUZZ_", "PYTEST_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *STACK_FILE_TESTS],
        cwd=copy, env={**env, "KEYBUZZ_USERS_COPY": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "[100%]" in result.stdout and result.stdout.count(".") >= 20  # the tests ran, none failed
