"""Capture the real probe output of every lab scenario into tests/verify/captured/.

    sudo .venv/bin/python tests/lab/capture.py [scenario ...]

Each file is one client pod's exec stdout for one check (``<scenario>.<check>.<node>.txt``),
markers included, exactly as the checks receive it; the judges' unit tests parse and judge them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import lab as lab_module  # noqa: E402
import scenarios  # noqa: E402

from keybuzz.verify.checks import run_check  # noqa: E402
from keybuzz.verify.cluster import ExecResult  # noqa: E402

OUT = HERE.parent / "verify" / "captured"


class Recording:
    """A ClusterAccess that keeps the last exec stdout of each pod."""

    def __init__(self, inner: lab_module.LabClusterAccess) -> None:
        self.inner = inner
        self.stdout: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def exec_in_pod(self, namespace: str, pod: str, container: str, command: list[str],
                    timeout: float) -> ExecResult:
        result = self.inner.exec_in_pod(namespace, pod, container, command, timeout)
        self.stdout[pod] = result.stdout
        return result


def main(names: list[str]) -> None:
    reason = lab_module.prerequisites()
    if reason:
        sys.exit(f"cannot capture: {reason}")
    OUT.mkdir(parents=True, exist_ok=True)
    with lab_module.Lab() as lab:
        for scenario in scenarios.SCENARIOS:
            if names and scenario.name not in names:
                continue
            for check in scenario.checks:
                lab.reset()
                scenario.inject(lab)
                rec = Recording(lab.access())
                verdict = run_check(check, scenarios.inputs(lab, **scenario.overrides), lambda rec=rec: rec,
                                    sleep=lambda s: None)
                print(f"{scenario.name}/{check}: {verdict.message(sorted(lab.nodes))}\n")
                for pod, stdout in sorted(rec.stdout.items()):
                    node = pod.rsplit("-", 2)[-2] + "-" + pod.rsplit("-", 1)[-1]
                    (OUT / f"{scenario.name}.{check}.{node}.txt").write_text(stdout)
        lab.reset()


if __name__ == "__main__":
    main(sys.argv[1:])
