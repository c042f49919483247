"""bin/plan as an operator and a CI gate run it: a clear line and exit 2 for bad input, never a traceback."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from keybuzz import offline_plan

ROOT = Path(__file__).resolve().parents[1]
PLAN = str(ROOT / "bin" / "plan")


def plan(*args, cwd=None):
    return subprocess.run([PLAN, *args], cwd=cwd or ROOT, capture_output=True, text=True, timeout=60)


def stack_file(tmp_path, text, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("config:\n  keybuzz-k3s:adminCidrs: [1.2.3.4/32\n", ":3:1: malformed YAML"),
        ("config:\n\tkeybuzz-k3s:podCidr: 10.42.0.0/16\n", ":2:1: malformed YAML: found character '\\t'"),
        ("# dev\nconfig:\n  - keybuzz-k3s:podCidr\n", ":2: `config:` must map keys to values"),
        ("- config\n", ":1: the file must be a mapping with a `config:` key (found a list)"),
        ("config:\n  podCidr: 10.42.0.0/16\n", "config key 'podCidr' must be namespaced"),
        (
            "config:\n  keybuzz-k3s:clusterName: keybuzz-dev\nkeybuzz-k3s:adminCidrs: [192.0.2.0/24]\n",
            ":3: keybuzz-k3s:adminCidrs is at column 0, outside `config:`, where the CLI ignores it",
        ),
    ],
    ids=["malformed", "tab", "config-list", "top-level-list", "unnamespaced", "column-0"],
)
def test_bad_stack_file_is_exit_2_naming_file_and_line(tmp_path, text, expected):
    path = stack_file(tmp_path, text)
    result = plan("dev", "--stack-file", str(path))
    assert result.returncode == 2
    assert result.stdout.startswith(f"input error: {path}")
    assert expected in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_tab_says_yaml_wants_spaces(tmp_path):
    result = plan("dev", "--stack-file", str(stack_file(tmp_path, "config:\n\tx: 1\n")))
    assert "(YAML indents with spaces, never tabs)" in result.stdout


def test_missing_policy_config_is_exit_2(tmp_path):
    result = plan("dev", "--policy-config", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert f"input error: no policy config file {tmp_path / 'nope.json'}" in result.stdout


def test_malformed_policy_config_names_file_and_line(tmp_path):
    path = stack_file(tmp_path, '{\n  "all": "mandatory",\n}\n', "policy.json")
    result = plan("dev", "--policy-config", str(path))
    assert result.returncode == 2
    assert f"input error: {path}:3:1: malformed JSON" in result.stdout


def test_config_typo_is_exit_2_with_did_you_mean(tmp_path):
    path = stack_file(tmp_path, "config:\n  keybuzz:podCidr: 10.0.0.0/8\n")
    result = plan("dev", "--stack-file", str(path))
    assert result.returncode == 2
    assert "did you mean 'keybuzz-k3s:podCidr'?" in result.stdout


def test_usage_error_is_exit_2():
    assert plan().returncode == 2


def test_paths_are_relative_to_the_callers_directory(tmp_path):
    (tmp_path / "mine.yaml").write_text((ROOT / "tests" / "fixtures" / "stacks" / "Pulumi.dev.yaml").read_text())
    result = plan("dev", "--stack-file", "mine.yaml", "--policy-config", str(ROOT / "policies/config.example.json"),
                  cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert "keybuzz-dev-cp-1" in result.stdout


def test_works_in_a_pipe_and_keeps_its_exit_status():
    result = subprocess.run(
        f"'{PLAN}' prod | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stdout.startswith("keybuzz-k3s offline plan for stack 'prod'")
    assert "BrokenPipe" not in result.stderr and "Traceback" not in result.stderr


def test_internal_error_is_exit_3_with_one_line(monkeypatch):
    def crash(*_args, **_kwargs):
        raise RuntimeError("mock engine fell over")

    monkeypatch.setattr(offline_plan, "run_program", crash)
    out = io.StringIO()
    assert offline_plan.main(["dev"], out) == offline_plan.EXIT_INTERNAL
    assert out.getvalue() == (
        "internal error: RuntimeError: mock engine fell over (rerun with --debug for the traceback)\n"
    )


def test_debug_prints_the_traceback(monkeypatch):
    monkeypatch.setattr(offline_plan, "run_program", lambda *a, **k: 1 / 0)
    out = io.StringIO()
    assert offline_plan.main(["dev", "--debug"], out) == offline_plan.EXIT_INTERNAL
    assert out.getvalue().startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError" in out.getvalue()
