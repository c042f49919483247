"""The offline runner (keybuzz/offline.py) under the names the tests use."""

from keybuzz.offline import (  # noqa: F401
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
