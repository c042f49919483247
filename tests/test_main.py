"""The program's entry point as the language host runs it (``runpy`` of ``__main__.py``)."""

import runpy

import pulumi
import pytest
from harness import REPO, stack_config

from keybuzz.offline import RecordingMocks


def run_main(overrides):
    config, secret_keys = stack_config("dev", overrides)
    pulumi.runtime.set_mocks(RecordingMocks(preview=True), project="keybuzz-k3s", stack="dev", preview=True)
    pulumi.runtime.set_all_config(config, secret_keys)
    runpy.run_path(str(REPO / "__main__.py"), run_name="__main__")


def test_a_bad_config_value_is_one_run_error_naming_key_value_and_rule_not_a_traceback():
    # The language host logs a RunError's message alone (no stack trace) and fails the run.
    with pytest.raises(pulumi.RunError) as caught:
        run_main({"keybuzz-k3s:controlPlane": {"count": 2, "serverType": "cx23"}})
    message = str(caught.value)
    assert message.startswith("config 'keybuzz-k3s:controlPlane.count' = 2 is invalid:") and "odd" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
