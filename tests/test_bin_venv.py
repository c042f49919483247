"""bin/venv: says what it installs on a first run, never reinstalls unchanged requirements, rebuilds a
broken venv; the policy pack gets its own (the CLI does not create it for a local pack)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE_PYTHON = """#!/bin/sh
# Stands in for python3: version checks pass; -m venv DIR makes a venv whose pip only records its arguments.
case "$1" in
  -c) exit 0 ;;
  --version) echo "Python 3.11.9" ;;
  -m) mkdir -p "$3/bin"
      printf '#!/bin/sh\\nexit 0\\n' > "$3/bin/python"
      printf '#!/bin/sh\\necho "$0 $*" >> "%s"\\n' "$PIP_LOG" > "$3/bin/pip"
      chmod +x "$3/bin/python" "$3/bin/pip" ;;
esac
"""


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "policies").mkdir()
    shutil.copy2(ROOT / "bin" / "venv", tmp_path / "bin" / "venv")
    shutil.copy2(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    shutil.copy2(ROOT / "policies" / "requirements.txt", tmp_path / "policies" / "requirements.txt")
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return tmp_path


def venv(tree, *args):
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(tree / "python3"), "PIP_LOG": str(tree / "pip.log")}
    return subprocess.run([str(tree / "bin" / "venv"), *args], env=env, capture_output=True, text=True, timeout=20)


def pip_calls(tree):
    log = tree / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(("arg", "folder", "requirements"), [
    ((), ".venv", "requirements.txt"),
    (("policies",), "policies/venv", "policies/requirements.txt"),
])  # fmt: skip
def test_first_run_says_what_it_does_and_installs_once(tree, arg, folder, requirements):
    first = venv(tree, *arg)
    assert first.returncode == 0, first.stderr
    assert f"bin/venv: creating {folder} (first run)" in first.stderr
    assert f"bin/venv: installing {requirements} into {folder} (pip, about a minute on a first run)" in first.stderr
    assert pip_calls(tree) == [f"{folder}/bin/pip install --quiet --disable-pip-version-check -r {requirements}"]
    second = venv(tree, *arg)
    assert second.returncode == 0 and second.stderr == ""
    assert len(pip_calls(tree)) == 1  # the stamp matched: no reinstall


def test_changed_requirements_reinstall_without_recreating(tree):
    venv(tree, "policies")
    with (tree / "policies" / "requirements.txt").open("a") as handle:
        handle.write("jsonschema==4.25.1\n")
    again = venv(tree, "policies")
    assert "creating" not in again.stderr and "installing policies/requirements.txt" in again.stderr
    assert len(pip_calls(tree)) == 2


def test_a_venv_whose_python_does_not_run_is_rebuilt(tree):
    venv(tree, "policies")
    (tree / "policies" / "venv" / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    again = venv(tree, "policies")
    assert "creating policies/venv (first run)" in again.stderr
    assert len(pip_calls(tree)) == 2


def test_an_old_python_is_refused_with_what_to_set(tree):
    (tree / "python3").write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.9.2'\nexit 1\n")
    result = venv(tree)
    assert result.returncode == 1
    assert "needs Python 3.11+" in result.stderr and "Python 3.9.2" in result.stderr
    assert "set PYTHON=python3.11" in result.stderr


def test_unknown_argument_is_a_usage_error(tree):
    assert venv(tree, "nope").returncode == 2
