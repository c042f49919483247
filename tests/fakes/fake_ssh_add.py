"""A stand-in `ssh-add -L`: replays output captured from OpenSSH 9.2p1 (tests/fixtures/ssh-add/).

FAKE_SSH_ADD picks the situation: no-agent, dead-socket, no-identities, one-key (rc 2, 2, 1, 0), or
keys:<file> to list the public keys in <file> (rc 0). Unset: the key of tests/deploy_harness.py's KEYS.
"""

import os
import sys
from pathlib import Path

CAPTURED = Path(__file__).resolve().parents[1] / "fixtures" / "ssh-add"
STATUS = {"no-agent": 2, "dead-socket": 2, "no-identities": 1, "one-key": 0}
HARNESS_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl you@laptop\n"
)

if sys.argv[1:] != ["-L"]:
    sys.exit(f"fake ssh-add: only -L is faked, got {sys.argv[1:]}")
situation = os.environ.get("FAKE_SSH_ADD", "")
if not situation:
    sys.stdout.write(HARNESS_KEY)
    sys.exit(0)
if situation.startswith("keys:"):
    sys.stdout.write(Path(situation[5:]).read_text())
    sys.exit(0)
for stream, out in (("stdout", sys.stdout), ("stderr", sys.stderr)):
    captured = CAPTURED / f"{situation}.{stream}"
    if captured.exists():
        out.write(captured.read_text())
sys.exit(STATUS[situation])
