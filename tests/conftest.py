"""Make the project root importable, as the Pulumi CLI does for the program."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def pytest_terminal_summary(terminalreporter) -> None:
    """One line, not one per test, when the Calico CRD schemas were missing (tests/calico/crd_schema.py)."""
    from tests.calico.crd_schema import HOW_TO_GET

    skipped = [r for r in terminalreporter.stats.get("skipped", []) if HOW_TO_GET in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} tests skipped: {HOW_TO_GET}", yellow=True)


def pytest_configure(config) -> None:
    """Offline runs read the stack-file fixtures, never the operator's Pulumi.<stack>.yaml (their keys,
    admin ranges and encryptionsalt are the operator's own); subprocesses (bin/plan) inherit it."""
    import os

    from keybuzz.offline import STACK_FILES_DIR_ENV

    os.environ[STACK_FILES_DIR_ENV] = str(ROOT / "tests" / "fixtures" / "stacks")
