"""The offline runner (keybuzz/offline.py) under the names the tests use."""

from __future__ import annotations

from keybuzz.offline import (
    OPERATOR_VALUES,
    PROJECT,
    REPO,
    SAMPLE_K3S_KUBECONFIG,
    SECRET_PLACEHOLDER,
    STACKS,
    Declared,
    ProgramRun,
    run_program,
    secret_value,
    stack_config,
)
from keybuzz.offline import PLACEHOLDER_SSH_KEY as TEST_SSH_KEY

# The stacks as the project ships them (tests/test_stack_files.py holds the shipped files to their
# shape): tests read these, never the operator's Pulumi.<stack>.yaml, which holds their own values.
STACK_FIXTURES = REPO / "tests" / "fixtures" / "stacks"

__all__ = [
    "OPERATOR_VALUES",
    "PROJECT",
    "REPO",
    "SAMPLE_K3S_KUBECONFIG",
    "SECRET_PLACEHOLDER",
    "STACK_FIXTURES",
    "STACKS",
    "TEST_SSH_KEY",
    "Declared",
    "ProgramRun",
    "run_program",
    "secret_value",
    "stack_config",
    "upstream",
]


def upstream(run: ProgramRun, name: str) -> set[str]:
    """Every resource ``name`` waits for, directly or through others (its recorded ``depends_on``, transitively)."""
    deps = {r.name: r.depends_on for r in run.resources}
    seen: set[str] = set()
    stack = list(deps[name])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(deps.get(current, []))
    return seen
