"""The kernel rule the ingress switch is built on, checked on this machine's kernel.

Traefik's upgrades (maxSurge with `reusePort`) rely on two root processes sharing a host port; the
switch from ingress-nginx cannot rely on it, because SO_REUSEPORT refuses a socket of another
effective uid (ingress-nginx's nginx runs as uid 101, Traefik as root). Needs root to change uid.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

BIND = """
import os, socket, sys
uid = int(sys.argv[1]); port = int(sys.argv[2])
if uid: os.setgid(uid); os.setuid(uid)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind(("127.0.0.1", port)); print("ok")
except OSError as e:
    print(f"errno {e.errno}")
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing uid needs root")


def second_bind(holder_uid: int, other_uid: int) -> str:
    """Hold a SO_REUSEPORT socket as ``holder_uid``, then bind the same port as ``other_uid``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", BIND.replace('print("ok")', 'print(s.getsockname()[1], flush=True); s.listen(); '
                                            'sys.stdin.read()'), str(holder_uid), "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        port = holder.stdout.readline().strip()
        done = subprocess.run([sys.executable, "-c", BIND, str(other_uid), port], capture_output=True, text=True,
                              timeout=4)
        return done.stdout.strip()
    finally:
        holder.kill()
        holder.wait()


def test_two_root_processes_share_a_port_so_a_traefik_surge_pod_can_bind():
    assert second_bind(0, 0) == "ok"


def test_root_cannot_join_a_port_held_by_uid_101_so_traefik_cannot_overlap_ingress_nginx():
    assert second_bind(101, 101) == "ok"
    assert second_bind(101, 0) == f"errno {errno.EADDRINUSE}"
