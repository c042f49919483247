"""The README's contract with a new user: exactly two set-up commands, and CI runs the second."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_block_commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_the_readme_starts_with_the_main_job_and_the_test_command_only():
    main_job, tests = first_block_commands()
    assert main_job.endswith("bin/deploy dev preview") and "HCLOUD_TOKEN=" in main_job
    assert tests == "bin/test"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec bin/test$", ci, flags=re.M)
