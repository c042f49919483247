"""`bash -n` and shellcheck for rendered scripts; installs shellcheck from apt when it is missing."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _shellcheck() -> str | None:
    found = shutil.which("shellcheck")
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    # A fresh CI machine (bin/test normally installs it first): the Debian/Ubuntu package is enough.
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "shellcheck"]):
        subprocess.run(step, capture_output=True, timeout=300, check=False)
    return shutil.which("shellcheck")


def assert_valid_bash(script: str) -> None:
    """Fails on a syntax error or any shellcheck finding; skips (saying why) only without shellcheck."""
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=10)
    assert syntax.returncode == 0, syntax.stderr
    tool = _shellcheck()
    if tool is None:
        print("shellcheck not installed and not installable here (needs root and apt-get): lint skipped")
        pytest.skip("shellcheck unavailable: not installed, and apt-get install shellcheck is not possible here")
    lint = subprocess.run([tool, "--shell=bash", "-"], input=script, capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
