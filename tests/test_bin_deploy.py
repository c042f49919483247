"""bin/deploy, driven as an operator runs it, against a fake Pulumi CLI that records what it was asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_harness import SECRETS, Project

POLICY = ["--policy-pack", "policies", "--policy-pack-config", "policies/config.example.json"]


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)


def test_no_argument_prints_the_usage_and_exits_2(project):
    result = project.deploy()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: bin/deploy <stack> [pulumi command...]")
    assert project.calls() == []


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("before", [(), ("dev",)], ids=["alone", "after-a-stack"])
def test_help_is_help_not_a_stack(project, flag, before):
    result = project.deploy(*before, flag)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: bin/deploy <stack>")
    assert "KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION=1 bin/deploy prod up" in result.stdout
    assert project.calls() == []


@pytest.mark.parametrize("command", ["preview", "up"])
def test_preview_and_up_run_the_policy_pack(project, command):
    project.add_keys("dev")
    project.commit("keys")
    result = project.deploy("dev", command, **SECRETS)
    assert result.returncode == 0, result.stderr
    call = project.last(command)
    assert call["argv"] == [command, *POLICY, "--stack", "dev"]
    assert call["env"]["HCLOUD_TOKEN"] == SECRETS["HCLOUD_TOKEN"]
    assert call["env"]["PULUMI_BACKEND_URL"] == f"file://{project.dir}/.pulumi-state"


def test_default_command_is_preview(project):
    project.add_keys("dev")
    assert project.deploy("dev", **SECRETS).returncode == 0
    assert project.argvs()[-1] == ["preview", *POLICY, "--stack", "dev"]


def test_every_missing_item_is_reported_in_one_run(project):
    result = project.deploy("dev", "up", FAKE_PULUMI_VERSION="v3.150.2")
    assert result.returncode == 1
    err = result.stderr
    assert err.startswith("bin/deploy dev up: 5 thing(s) missing, nothing was run:")
    assert "the Pulumi CLI >= 3.190 (found v3.150.2" in err
    assert "export PULUMI_CONFIG_PASSPHRASE=..." in err
    assert "export HCLOUD_TOKEN=..." in err
    assert "keybuzz-k3s:sshPublicKeys in Pulumi.dev.yaml, under config:" in err
    assert "keybuzz-k3s:adminCidrs in Pulumi.dev.yaml" in err
    assert "ABOVE any top-level encryptionsalt: line" in err
    assert project.argvs() == [["version"]]  # nothing but the version check ran


def test_an_old_cli_alone_is_refused(project):
    project.add_keys("dev")
    result = project.deploy("dev", "preview", FAKE_PULUMI_VERSION="v3.189.9", **SECRETS)
    assert result.returncode == 1
    assert "1 thing(s) missing" in result.stderr and "found v3.189.9" in result.stderr


def test_a_missing_cli_is_reported_with_how_to_install(project):
    result = project.deploy("dev", "config", PATH="/usr/bin:/bin")
    assert result.returncode == 1
    assert "the Pulumi CLI >= 3.190: curl -fsSL https://get.pulumi.com | sh" in result.stderr


def test_unknown_stack_names_the_known_ones(project):
    result = project.deploy("qa", "config")
    assert result.returncode == 1
    assert "Pulumi.qa.yaml (stacks here: dev prod staging)" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["config"], ["stack", "output", "verifiedCommit"], ["config", "set", "location", "nbg1"]],
    ids=["config", "stack-output", "config-set"],
)
def test_config_and_output_need_no_token_and_no_passphrase(project, args):
    project.create_stacks("dev")
    result = project.deploy("dev", *args)
    assert result.returncode == 0, result.stderr
    call = project.last(args[0])
    assert call["argv"] == [*args, "--stack", "dev"]
    assert "HCLOUD_TOKEN" not in call["env"] and "PULUMI_CONFIG_PASSPHRASE" not in call["env"]


def test_stack_ls_targets_no_stack(project):
    result = project.deploy("-", "stack", "ls")
    assert result.returncode == 0, result.stderr
    assert project.argvs()[-1] == ["stack", "ls"]


def test_a_secret_needs_the_passphrase_but_not_the_token(project):
    project.create_stacks("dev")
    result = project.deploy("dev", "config", "set", "--secret", "sshPrivateKey")
    assert result.returncode == 1
    assert "export PULUMI_CONFIG_PASSPHRASE" in result.stderr and "HCLOUD_TOKEN" not in result.stderr
    ok = project.deploy("dev", "config", "set", "--secret", "sshPrivateKey", PULUMI_CONFIG_PASSPHRASE="pass")
    assert ok.returncode == 0
    assert project.argvs()[-1] == ["config", "set", "--secret", "sshPrivateKey", "--stack", "dev"]


def test_our_flags_go_before_a_double_dash(project):
    project.create_stacks("dev")
    assert project.deploy("dev", "config", "set", "note", "--", "-x").returncode == 0
    assert project.argvs()[-1] == ["config", "set", "note", "--stack", "dev", "--", "-x"]


def test_the_backend_variable_is_honoured(project):
    url = "s3://keybuzz-state?endpoint=fsn1.your-objectstorage.com&region=fsn1"
    project.add_keys("dev")
    missing = project.deploy("dev", "preview", PULUMI_BACKEND_URL=url, **SECRETS)
    assert missing.returncode == 1
    assert "export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=..." in missing.stderr
    creds = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    result = project.deploy("dev", "preview", PULUMI_BACKEND_URL=url, **creds, **SECRETS)
    assert result.returncode == 0, result.stderr
    assert {c["env"]["PULUMI_BACKEND_URL"] for c in project.calls()[1:]} == {url}
    assert f"creating stack 'dev' in {url}" in result.stderr
    assert not (project.dir / ".pulumi-state").exists()


def test_stack_creation_says_which_file_changed_and_to_commit_it(project):
    project.add_keys("dev")
    project.commit("keys")
    result = project.deploy("dev", "preview", **SECRETS)
    assert result.returncode == 0, result.stderr
    assert ["stack", "init", "dev", "--secrets-provider", "passphrase"] in project.argvs()
    assert "Pulumi.dev.yaml changed: stack init wrote its encryptionsalt" in result.stderr
    assert "git add Pulumi.dev.yaml && git commit" in result.stderr
    assert project.git("status", "--porcelain") == "M Pulumi.dev.yaml"


def test_explicit_stack_init_uses_passphrase_secrets(project):
    result = project.deploy("staging", "stack", "init", PULUMI_CONFIG_PASSPHRASE="pass")
    assert result.returncode == 0, result.stderr
    assert project.argvs()[-1] == ["stack", "init", "staging", "--secrets-provider", "passphrase"]
    assert "Pulumi.staging.yaml changed" in result.stderr


def test_an_up_on_a_dirty_tree_says_verified_commit_is_withheld(project):
    project.add_keys("dev")
    result = project.deploy("dev", "up", **SECRETS)  # keys not committed
    assert result.returncode == 0
    assert "verifiedCommit withheld" in result.stdout and "uncommitted changes" in result.stdout


def test_a_missing_previous_stage_is_the_gates_own_refusal(project):
    project.add_keys("prod")
    project.create_stacks("prod")
    project.commit("keys")
    result = project.deploy("prod", "preview", **SECRETS)
    assert result.returncode != 0
    assert "stack 'staging' does not exist in" in result.stderr  # bin/deploy says what it found
    assert "promotion to 'prod' refused: stack 'staging' does not exist in this state backend" in result.stdout
    assert project.last("preview")["env"]["KEYBUZZ_PREVIOUS_STACK_MISSING"] == "1"
    assert "Traceback" not in result.stdout + result.stderr


def test_the_override_for_one_run_is_passed_on_and_logged_loudly(project):
    project.add_keys("prod")
    project.create_stacks("prod")
    project.commit("keys")
    result = project.deploy("prod", "preview", KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION="1", **SECRETS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION=1: the promotion gate is OVERRIDDEN for this run" in result.stderr
    assert "PROMOTION GATE OVERRIDDEN" in result.stdout
    assert project.last("preview")["env"]["KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION"] == "1"
    assert project.git("status", "--porcelain") == ""  # the override left no trace in the stack file


def _readme_shell_lines():
    import re

    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]  # the README and its docs/ pages
    readme = "\n".join(page.read_text() for page in pages)
    for block in re.findall(r"```sh\n(.*?)```", readme, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                yield command


def test_the_readme_runs_pulumi_only_through_bin_deploy():
    lines = list(_readme_shell_lines())
    assert lines, "no shell blocks found"
    for line in lines:
        if line.startswith("cd ") and "keybuzz" not in line.split("&&")[0]:
            continue  # an app team's own stack (Guardrails for app stacks): its Pulumi, not ours
        for part in line.split("&&"):
            first = part.split()[0]
            assert first in ("bin/deploy", "bin/plan", "bin/test", "bin/verify", "bin/check-app", "export", "git",
                             "HCLOUD_TOKEN=...", "KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION=1"), line  # fmt: skip
            assert not part.strip().startswith("pulumi"), line


def test_the_readme_walkthrough_is_the_one_tested():
    lines = list(_readme_shell_lines())
    assert "bin/deploy dev stack init && bin/deploy staging stack init && bin/deploy prod stack init" in lines
    for step in ("bin/deploy dev up", "bin/deploy staging preview && bin/deploy staging up",
                 "bin/deploy prod preview && bin/deploy prod up"):  # fmt: skip
        assert step in lines


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["config", "set", "--secret", "sshPrivateKey", "s3cr3t-value"],
         "pulumi config set --secret sshPrivateKey [not shown] --stack dev"),
        (["config", "set", "sshPrivateKey", "s3cr3t-value", "--secret"],
         "pulumi config set sshPrivateKey [not shown] --secret --stack dev"),
        (["config", "set-all", "--secret", "sshPrivateKey=s3cr3t-value", "--plaintext", "location=nbg1"],
         "pulumi config set-all --secret sshPrivateKey=[not shown] --plaintext location=[not shown] --stack dev"),
    ],
    ids=["set", "set-flag-last", "set-all"],
)  # fmt: skip
def test_a_secret_given_on_the_command_line_is_passed_on_but_never_echoed(project, args, shown):
    project.create_stacks("dev")
    result = project.deploy("dev", *args, PULUMI_CONFIG_PASSPHRASE="pass")
    assert result.returncode == 0, result.stderr
    assert project.argvs()[-1] == [*args, "--stack", "dev"]  # pulumi still gets the value
    assert "s3cr3t-value" not in result.stderr + result.stdout
    assert f"bin/deploy: {shown}\n" in result.stderr


@pytest.mark.parametrize("value", ["yes", "on", "TRUE"])
def test_an_override_value_the_program_would_refuse_is_refused_before_anything_runs(project, value):
    project.add_keys("prod")
    project.create_stacks("prod")
    project.commit("keys")
    result = project.deploy("prod", "preview", KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION=value, **SECRETS)
    assert result.returncode == 1
    assert "1 thing(s) missing, nothing was run" in result.stderr
    assert "KEYBUZZ_ALLOW_UNVERIFIED_PROMOTION=1 or true (the promotion gate overridden for this run), 0, false" in (
        result.stderr
    )
    assert f"or unset (not overridden); it is '{value}'" in result.stderr
    assert "OVERRIDDEN" not in result.stderr
    assert project.argvs() == [["version"]]
