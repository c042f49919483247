"""Stand-ins for what a node script calls (k3s kubectl, curl, systemctl, cloud-init, date, sleep).

Rendered node scripts run for real under bash with these first on PATH, so tests check what a
script does (which kubectl calls, which restart decision, which failure) rather than its text.
Each stub reads its behaviour from small files in ``state`` and logs its calls there. ``date``
and ``sleep`` are a fake clock (as tests/fakes/clock.py): time moves only when the script sleeps,
so a 300 s wait costs no real time.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

KUBECTL = r"""#!/bin/bash
# k3s kubectl stand-in: an API at "local" and at each --server address listed in ready_apis.
state=__STATE__
shift  # "kubectl"
api=local
if [ "$1" = --server ]; then api=${2#https://}; api=${api%:6443}; shift 2; fi
echo "$api $*" >> "$state/kubectl"
case " $(cat "$state/ready_apis" 2>/dev/null) " in *" $api "*) ;; *) exit 1 ;; esac
case "$*" in
  *"get --raw /readyz"*) exit 0 ;;
  *"-l node-role.kubernetes.io/etcd=true"*) cat "$state/etcd_nodes" ;;
  *"--ignore-not-found -o name"*) [ -f "$state/registered" ] && echo "node/$(cat "$state/registered")" ;;
  *rollout-fingerprint*) cat "$state/fingerprint" 2>/dev/null ;;
  *managed-taints*) cat "$state/taints" 2>/dev/null ;;
  *'@.type=="Ready"'*) cat "$state/node_ready" 2>/dev/null || printf True ;;
esac
exit 0
"""

CURL = r"""#!/bin/bash
# curl stand-in: the K3s installer download, and the etcd member list.
state=__STATE__
echo "$*" >> "$state/curl"
out=""
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
if [ -n "$out" ]; then
  [ -f "$state/download_fails" ] && exit 22
  cp "$state/installer" "$out"
  exit 0
fi
[ -f "$state/members" ] || exit 7
cat "$state/members"
"""

INSTALLER = r"""#!/bin/sh
# install.sh stand-in: records the restart decision; "starts" K3s unless told to fail.
state=__STATE__
echo "force_restart=$INSTALL_K3S_FORCE_RESTART version=$INSTALL_K3S_VERSION exec=$INSTALL_K3S_EXEC" >> "$state/installs"
if [ -f "$state/start_fails" ]; then rm -f "$state/active"; exit 1; fi
touch "$state/active"
"""

SYSTEMCTL = r"""#!/bin/bash
state=__STATE__
[ "$1" = is-active ] && { [ -f "$state/active" ]; exit $?; }
exit 0
"""

K3S = r"""#!/bin/bash
state=__STATE__
if [ "$1" = kubectl ] && [ "$*" = "kubectl get --raw /readyz" ]; then [ -f "$state/active" ]; exit $?; fi
exec __BIN__/k3s-kubectl "$@"
"""

DATE = r"""#!/bin/bash
# date +%s: the fake clock's seconds.
cat __STATE__/clock
"""

SLEEP = r"""#!/bin/bash
state=__STATE__
echo $(( $(cat "$state/clock") + ${1%.*} )) > "$state/clock"
"""

NOOP = "#!/bin/sh\nexit 0\n"


def make_stubs(tmp_path: Path) -> tuple[Path, Path]:
    """(bin dir to put first on PATH, state dir the stubs read and log to)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir(parents=True)
    state.mkdir(parents=True)
    (state / "clock").write_text("1000000\n")
    (state / "ready_apis").write_text("local")
    stubs = {
        "k3s-kubectl": KUBECTL, "curl": CURL, "systemctl": SYSTEMCTL, "k3s": K3S, "date": DATE, "sleep": SLEEP,
        "cloud-init": NOOP, "journalctl": NOOP, "hostname": "#!/bin/sh\necho test-host\n",
    }
    for name, text in stubs.items():
        path = bin_dir / name
        path.write_text(text.replace("__STATE__", str(state)).replace("__BIN__", str(bin_dir)))
        path.chmod(0o755)
    (state / "installer").write_text(INSTALLER.replace("__STATE__", str(state)))
    return bin_dir, state


def kubectl_calls(state: Path) -> list[str]:
    """Each kubectl call as '<api> <args>', without the /readyz probes that choose the API."""
    log = state / "kubectl"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if "/readyz" not in line]


def run_script(script: str, bin_dir: Path, *, stdin: str = "", root: Path | None = None) -> subprocess.CompletedProcess:
    """Run a rendered node script under bash; with ``root``, its /etc/rancher and /var/lib/rancher live there."""
    if root is not None:
        for prefix in ("/etc/rancher", "/var/lib/rancher"):
            script = script.replace(prefix, f"{root}{prefix}")
    return subprocess.run(
        ["bash", "-c", script], input=stdin, capture_output=True, text=True, timeout=30,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(bin_dir.parent)},
    )
