"""A throwaway copy of the project, a git repo of its own, with a fake `pulumi` on PATH (tests/fakes/fake_pulumi.py).

bin/deploy cds to its own project root, so each test runs the copy's bin/deploy; .venv is a link to
this checkout's, policies/venv a stand-in with a current stamp (so nothing is installed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from fakes.hetzner_api import GOOD_TOKEN, HetznerApi

ROOT = Path(__file__).resolve().parents[1]
FAKE_PULUMI = ROOT / "tests" / "fakes" / "fake_pulumi.py"
FAKE_SSH_ADD = ROOT / "tests" / "fakes" / "fake_ssh_add.py"
KEYS = (
    "  keybuzz-k3s:sshPublicKeys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl "
    "you@laptop\"]\n  keybuzz-k3s:adminCidrs: [\"198.51.100.7/32\"]\n"
)
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


class Project:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "project"
        files = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.split("\0")  # fmt: skip
        for name in filter(None, files):
            if (ROOT / name).is_file():
                (self.dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, self.dir / name)
        # The stack files as shipped (fixtures), not this checkout's: an operator's keys and salt are theirs.
        for fixture in (ROOT / "tests" / "fixtures" / "stacks").glob("Pulumi.*.yaml"):
            shutil.copy2(fixture, self.dir / fixture.name)
        (self.dir / ".venv").symlink_to((ROOT / ".venv").resolve())
        venv = self.dir / "policies" / "venv"
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
        (venv / "bin" / "python").chmod(0o755)
        digest = hashlib.sha256((self.dir / "policies" / "requirements.txt").read_bytes()).hexdigest()
        (venv / ".requirements.sha256").write_text(digest + "\n")
        fakebin = tmp / "fakebin"
        fakebin.mkdir()
        (fakebin / "pulumi").write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_PULUMI} \"$@\"\n")
        (fakebin / "pulumi").chmod(0o755)
        # `up` asks the SSH agent for its keys (keybuzz/preflight.py): by default it holds KEYS's key.
        (fakebin / "ssh-add").write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_SSH_ADD} \"$@\"\n")
        (fakebin / "ssh-add").chmod(0o755)
        # preview/up check HCLOUD_TOKEN with one API call: against a stand-in Hetzner API, on 127.0.0.1.
        self.hetzner = HetznerApi().__enter__()
        self.log = tmp / "pulumi-calls.jsonl"
        self.state = tmp / "pulumi-state.json"
        self.base_env = {
            "PATH": f"{fakebin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp),
            "FAKE_PULUMI_LOG": str(self.log),
            "FAKE_PULUMI_STATE": str(self.state),
            "HCLOUD_ENDPOINT": self.hetzner.endpoint,
            **GIT_ENV,
        }
        self.git("init", "-q")
        self.commit("the project")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.dir, capture_output=True, text=True, check=True, env={**os.environ, **GIT_ENV}
        ).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-qm", message, "--allow-empty")
        return self.git("rev-parse", "HEAD")

    def add_keys(self, *stacks: str) -> None:
        """The README's "First run": the team's keys and admin ranges under config:."""
        for stack in stacks:
            path = self.dir / f"Pulumi.{stack}.yaml"
            path.write_text(path.read_text().replace("config:\n", "config:\n" + KEYS, 1))

    def deploy(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.dir / "bin" / "deploy"), *args],
            cwd=self.dir, env={**self.base_env, **env}, capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls()]

    def last(self, command: str) -> dict:
        return [c for c in self.calls() if c["argv"][0] == command][-1]

    def create_stacks(self, *stacks: str, backend: str | None = None, verified: str = "") -> None:
        """Stacks that already exist in the (fake) backend, without their stack file changing."""
        state = json.loads(self.state.read_text()) if self.state.exists() else {}
        url = backend or f"file://{self.dir}/.pulumi-state"
        for stack in stacks:
            state.setdefault(url, {})[stack] = {"outputs": {"verifiedCommit": verified} if verified else {}}
        self.state.write_text(json.dumps(state))


SECRETS = {"HCLOUD_TOKEN": GOOD_TOKEN, "PULUMI_CONFIG_PASSPHRASE": "pass"}
