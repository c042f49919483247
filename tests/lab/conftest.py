"""The lab fixture: built once per test module, faults reset between tests.

Skips (with the reason printed) only where the lab cannot run: not root, no network namespaces.
Under CI=true a missing prerequisite fails instead: CI runs as root and must run the lab.
"""

import os
import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import lab as lab_module  # noqa: E402 - needs the path above


@pytest.fixture(scope="module")
def lab():
    reason = lab_module.prerequisites(install=True)
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the network lab cannot run under CI: {reason}")
        print(f"\nlab skipped: {reason}", file=sys.stderr)
        pytest.skip(reason)
    with lab_module.Lab() as built:
        yield built


@pytest.fixture
def clean_lab(lab):
    """The module's lab with every fault removed and every PMTU cache flushed."""
    lab.reset()
    yield lab
    lab.reset()
