"""SSH keys as data, and the authorized_keys script run for real against a temporary file."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from shell_lint import assert_valid_bash

from keybuzz import ssh_keys

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN+xOLk6Ei7b/R0LzkywSfoIlTyxwyF5QCqtzba+pFGQ bob's key; $(rm -rf /)"
KEY_C = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDtaDny92Nhk+uADeirR7mihzrG74NVd7b8EIWOKY3Cp carol"
OPERATOR_LINE = 'command="/usr/bin/backup",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJx9 backup@vault'


# Printed by `ssh-keygen -l -E sha256 -f key.pub` (OpenSSH_9.2p1 Debian-2+deb12u6) for KEY_A and KEY_B.
SSH_KEYGEN_SAYS = {
    "KEY_A": "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU",
    "KEY_B": "SHA256:TQP6zWy6SWJ4+tJ1BkqtDFzYA/WO4ht5z7LDvuOHx/o",
}


def test_fingerprint_is_what_ssh_keygen_printed():
    assert ssh_keys.fingerprint(KEY_A) == SSH_KEYGEN_SAYS["KEY_A"]
    assert ssh_keys.fingerprint(KEY_B) == SSH_KEYGEN_SAYS["KEY_B"]


def test_fingerprint_matches_the_installed_ssh_keygen(tmp_path):
    if not shutil.which("ssh-keygen"):
        print("ssh-keygen not installed: compared with the captured output only")
        pytest.skip("ssh-keygen not installed (the captured-output test still ran)")
    for key in (KEY_A, KEY_B):
        (tmp_path / "k.pub").write_text(key + "\n")
        printed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "k.pub")],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
        assert printed.split()[1] == ssh_keys.fingerprint(key)


def test_key_names_follow_the_key_not_its_position():
    names = ssh_keys.key_resource_names("keybuzz-dev", "keybuzz-dev-nodes", [KEY_A, KEY_B])
    reordered = ssh_keys.key_resource_names("keybuzz-dev", "keybuzz-dev-nodes", [KEY_B, KEY_A])
    assert sorted(names) == sorted(reordered)
    assert names[0] == (f"keybuzz-dev-nodes-key-{ssh_keys.key_id(KEY_A)}", f"keybuzz-dev-{ssh_keys.key_id(KEY_A)}",
                        KEY_A)
    assert len({ssh_keys.key_id(k) for k in (KEY_A, KEY_B, KEY_C)}) == 3
    assert all(len(ssh_keys.key_id(k)) == 12 for k in (KEY_A, KEY_B))


@pytest.mark.parametrize(
    ("deployed", "configured", "refused"),
    [
        ([], ["b"], False),  # a new stack
        (["a"], ["a", "b"], False),  # add
        (["a", "b"], ["b"], False),  # remove the old one
        (["a", "b"], ["b", "a"], False),  # reorder
        (["a"], ["b"], True),  # swap in one step: Pulumi would connect with a key not on the nodes
        (["a", "b"], ["c"], True),
    ],
)
def test_a_key_change_must_keep_one_deployed_key(deployed, configured, refused):
    problem = ssh_keys.rotation_problem(deployed, configured)
    assert (problem is not None) == refused
    if refused:
        assert "add the new key, `pulumi up`, then remove the old one" in problem


def test_script_passes_bash_n_and_shellcheck():
    assert_valid_bash(ssh_keys.authorized_keys_script([KEY_A, KEY_B]))


def run_script(path, keys):
    script = ssh_keys.authorized_keys_script(keys, str(path))
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10)


def block(keys):
    return [ssh_keys.BLOCK_BEGIN, *keys, ssh_keys.BLOCK_END]


def test_first_run_moves_hetzner_written_keys_into_the_block_and_keeps_other_lines(tmp_path):
    path = tmp_path / ".ssh" / "authorized_keys"
    path.parent.mkdir()
    # What Hetzner wrote at creation (the keys of that time), plus a line an operator added by hand.
    path.write_text(f"{KEY_A}\n{OPERATOR_LINE}\n")
    done = run_script(path, [KEY_A, KEY_B])
    assert done.returncode == 0, done.stderr
    assert path.read_text().splitlines() == [OPERATOR_LINE, *block([KEY_A, KEY_B])]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "2 managed key(s)" in done.stdout


def test_rerun_is_idempotent_and_a_dropped_key_is_removed(tmp_path):
    path = tmp_path / "authorized_keys"
    path.write_text(f"{KEY_A}\n{OPERATOR_LINE}\n")
    run_script(path, [KEY_A, KEY_B])
    first = path.read_text()
    run_script(path, [KEY_A, KEY_B])
    assert path.read_text() == first
    assert run_script(path, [KEY_B, KEY_C]).returncode == 0
    assert path.read_text().splitlines() == [OPERATOR_LINE, *block([KEY_B, KEY_C])]
    assert KEY_A.split()[1] not in path.read_text()


def test_a_missing_file_is_created(tmp_path):
    path = tmp_path / "new" / "authorized_keys"
    assert run_script(path, [KEY_A]).returncode == 0
    assert path.read_text().splitlines() == block([KEY_A])


def test_a_broken_block_is_left_alone_and_fails(tmp_path):
    path = tmp_path / "authorized_keys"
    original = f"{OPERATOR_LINE}\n{ssh_keys.BLOCK_BEGIN}\n{KEY_A}\n"
    path.write_text(original)
    done = run_script(path, [KEY_B])
    assert done.returncode == 1
    assert "managed block without its end line" in done.stderr
    assert path.read_text() == original
    assert [p.name for p in tmp_path.iterdir()] == ["authorized_keys"]  # no temporary file left behind
