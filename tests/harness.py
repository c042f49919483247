"""The offline runner (keybuzz/offline.py) under the names the tests use."""

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

__all__ = [
    "OPERATOR_VALUES",
    "PROJECT",
    "REPO",
    "SAMPLE_K3S_KUBECONFIG",
    "SECRET_PLACEHOLDER",
    "STACKS",
    "TEST_SSH_KEY",
    "Declared",
    "ProgramRun",
    "run_program",
    "secret_value",
    "stack_config",
]
