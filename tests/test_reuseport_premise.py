"""The kernel rules the gapless ingress switch is built on, checked on this machine's kernel.

Traefik joins ingress-nginx on the nodes' :80/:443 (the `overlap` step) through SO_REUSEPORT. The
kernel lets a socket join a port only when every socket on it set SO_REUSEPORT and belongs to the
same effective uid: ingress-nginx's nginx runs as uid 101 (chart 4.15 `controller.image.runAsUser`,
and it listens with `reuseport`, ConfigMap `reuse-port` default true), so Traefik runs as uid 101
too, and binds below 1024 thanks to `net.ipv4.ip_unprivileged_port_start=80` (a per-network-namespace
sysctl; a hostNetwork pod sees the node's). A root Traefik could not join. Needs root (to change uid
and to create the network namespace).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
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

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing uid and creating a network namespace need root")

NGINX_UID = 101  # ingress-nginx chart 4.15: controller.image.runAsUser (runAsGroup 82; only the uid matters)


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


def test_two_uid_101_processes_share_a_port_so_a_traefik_surge_pod_can_bind():
    assert second_bind(NGINX_UID, NGINX_UID) == "ok"


def test_root_cannot_join_a_port_held_by_uid_101_so_traefik_must_not_run_as_root():
    assert second_bind(NGINX_UID, NGINX_UID) == "ok"
    assert second_bind(NGINX_UID, 0) == f"errno {errno.EADDRINUSE}"


# Runs as root inside a network namespace of its own (`unshare --net`): the sysctl and port 80 are the
# namespace's, never this machine's. Every loop is bounded; the namespace dies with the process.
HANDOVER = r"""
import errno, fcntl, json, os, signal, socket, struct, sys

UID, CONNECTIONS, STOP_AT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
SYSCTL = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
# `ip link set lo up` without iproute2: SIOCGIFFLAGS / SIOCSIFFLAGS with IFF_UP.
with socket.socket() as ctl:
    flags = struct.unpack("16sh", fcntl.ioctl(ctl, 0x8913, struct.pack("16sh", b"lo", 0)))[1]
    fcntl.ioctl(ctl, 0x8914, struct.pack("16sh", b"lo", flags | 1))


def listener(family, uid, v6only=0):
    # As nginx (0.0.0.0:80 and [::]:80 ipv6only, reuseport) or Traefik/Go ([::]:80 dual-stack, reuseport).
    if uid and os.getuid() != uid:
        os.setgid(uid)
        os.setuid(uid)  # from root: every capability is dropped here
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 80))
    return s


def in_child(fn):
    # Run fn in a forked child; return (pid, first line it writes).
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            fn(w)
        except OSError as e:
            os.write(w, (errno.errorcode[e.errno] + "\n").encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        return pid, f.readline().strip()


def bind_only(family, uid):
    def run(w):
        listener(family, uid)
        os.write(w, b"ok\n")
    pid, out = in_child(run)
    os.waitpid(pid, 0)
    return out


def server(family, name, nginx=False):
    # Serves its name; on SIGTERM it closes its listening socket(s) at the next connection, answers it
    # and exits, as nginx's graceful quit closes the listeners before finishing what it accepted.
    def run(w):
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        s = listener(family, UID)
        s.listen(128)
        if nginx:  # nginx also holds [::]:80 ipv6only=on (its default) beside 0.0.0.0:80
            s6 = listener(socket.AF_INET6, UID, v6only=1)
            s6.listen(128)
        os.write(w, b"up\n")
        os.close(w)
        for _ in range(10 * CONNECTIONS):
            c, _ = s.accept()
            if stop:
                s.close()
                if nginx:
                    s6.close()
            c.sendall(name.encode())
            c.close()
            if stop:
                return
    pid, out = in_child(run)
    assert out == "up", out
    return pid


out = {"before_sysctl": bind_only(socket.AF_INET, UID)}
with open(SYSCTL, "w") as f:
    f.write("80")
a = server(socket.AF_INET, "A", nginx=True)  # ingress-nginx
b = server(socket.AF_INET6, "B")  # Traefik, joining beside it
out["root_joins"] = [bind_only(socket.AF_INET6, 0), bind_only(socket.AF_INET, 0)]
answers, failures = [], []
for i in range(CONNECTIONS):
    if i == STOP_AT:
        os.kill(a, signal.SIGTERM)
    try:
        with socket.create_connection(("127.0.0.1", 80), timeout=2) as c:
            answers.append(c.recv(8).decode())
    except OSError as e:
        failures.append(f"{i}: {e!r}")
out["a_exited"] = os.waitpid(a, os.WNOHANG)[0] == a
os.kill(b, signal.SIGKILL)
os.waitpid(b, 0)
out.update(answers="".join(answers), failures=failures)
print(json.dumps(out))
"""


def run_handover(uid: int = NGINX_UID, connections: int = 300, stop_at: int = 100) -> dict:
    """Run HANDOVER in a new network namespace; its JSON result."""
    assert shutil.which("unshare"), "needs util-linux's unshare"
    done = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", HANDOVER, str(uid), str(connections),
                           str(stop_at)], capture_output=True, text=True, timeout=4)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_uid_101_traefik_takes_port_80_from_uid_101_nginx_with_no_refused_connection():
    out = run_handover()
    # Without the sysctl a uid-101 process with no capability cannot bind :80 ...
    assert out["before_sysctl"] == "EACCES"
    # ... a root process cannot join the uid-101 sockets, whatever the family ...
    assert out["root_joins"] == ["EADDRINUSE", "EADDRINUSE"]
    # ... a uid-101 dual-stack [::]:80 (Traefik) joined nginx's 0.0.0.0:80 and [::]:80 ipv6only (the
    # servers started), and of 300 connections, while the first listener quits at the 100th, none is
    # refused. The one residual (README): a connection the kernel had already queued on the closing
    # listener is reset; it can only be the one at the hand-over, and a loaded machine shows it.
    assert not [f for f in out["failures"] if "Refused" in f], out["failures"]
    assert [f.split(":")[0] for f in out["failures"]] in ([], ["100"], ["101"]), out["failures"]
    assert len(out["answers"]) == 300 - len(out["failures"])
    assert out["a_exited"]
    # The IPv4 listener (nginx's AF_INET socket) wins IPv4 while it exists; the dual-stack one (Traefik's)
    # takes over when it closes, and nothing is ever refused in between.
    first_b = out["answers"].index("B")
    assert first_b >= 100
    assert set(out["answers"][:first_b]) == {"A"}
    assert set(out["answers"][first_b:]) == {"B"}
