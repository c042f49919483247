"""The README's contract with a new user: exactly two set-up commands, and CI runs the second.

The README stays short (clone -> running cluster, the architecture, links); each deep topic has its
own page under docs/. Every command and repository path these pages name must exist.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250


def doc_pages() -> list[Path]:
    """README.md and every page under docs/: what an operator reads."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


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


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move deep topics to docs/"


def test_every_docs_page_is_linked_from_the_readme_and_every_link_resolves():
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", readme))
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert len(pages) >= 7
    assert linked == pages
    for page in doc_pages():
        for target in re.findall(r"\]\(([^)#:]+\.md)", page.read_text()):
            assert (page.parent / target).resolve().is_file(), f"{page.name} links to missing {target}"


# Paths the pages name that are not files of this repository: made at run time, or another project's.
NOT_IN_THE_REPO = ("policies/venv", "docs/content/")


def test_every_repository_path_and_bin_command_named_exists():
    pattern = r"`((?:bin|keybuzz|components|tests|policies|docs|examples|\.ci)/[^`\s]*)`"
    named = 0
    for page in doc_pages():
        for path in re.findall(pattern, page.read_text()):
            if path.startswith(NOT_IN_THE_REPO):
                continue
            named += 1
            assert (ROOT / path.rstrip("/")).exists(), f"{page.name} names {path}, which does not exist"
    assert named > 50
    for page in doc_pages():
        for command in set(re.findall(r"(?<![\w/.-])bin/([a-z][\w-]*)", page.read_text())):
            assert (ROOT / "bin" / command).is_file(), f"{page.name} runs bin/{command}, which does not exist"


def test_the_example_app_stack_builds_the_packs_venv_with_bin_venv():
    text = (ROOT / "examples" / "app-stack" / "README.md").read_text()
    assert "bin/venv policies" in text
    assert "pip install" not in text and "-m venv" not in text
