"""``bin/check-app``: the guardrail pack on any Pulumi Python program, offline.

    bin/check-app DIR [--stack NAME] [--stack-file F] [--policy-config F] [--debug]

Runs the program in DIR under Pulumi's mock engine (keybuzz/offline.py ``run_app``: its own
Pulumi.yaml defaults, then its stack file) in a fresh process with the program's own Python
environment, records every resource it declares, feeds them all to the policy pack and prints the
verdict. No Pulumi CLI, no cluster, no cloud account, no network (except PyPI to build a venv once).

Exit status (keybuzz/exit_codes.py, the same contract as ``bin/plan``): 0 clean, 1 a mandatory
violation, 2 bad input (no such folder, no Pulumi.yaml, a YAML/JSON error with file and line, a bad
policy config), 3 internal error or the program raised (one line; the traceback with ``--debug``).

Which Python runs the program: the program's own ``requirements.txt`` when it has one, else the
pack's (``policies/requirements.txt``). When every line of that file is pinned exactly as in this
project's ``requirements.txt``, the project's ``.venv`` already is that environment and is used as
is (no build, no network); otherwise a venv per requirements file (keyed by its hash) is built once
under the cache folder (``$KEYBUZZ_CACHE_DIR`` or ``~/.cache/keybuzz-k3s``) with a printed line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from keybuzz import exit_codes
from keybuzz.config import load_stack_yaml
from keybuzz.offline import REPO, ProjectError, read_project, redact_secrets, run_app

PACK_DIR = REPO / "policies"
PROJECT_REQUIREMENTS = REPO / "requirements.txt"
PACK_REQUIREMENTS = PACK_DIR / "requirements.txt"
V4_CHART = "kubernetes:helm.sh/v4:Chart"
CHILD_TIMEOUT_S = 600
# What pulumi.Config raises for a missing or mistyped key: the stack's input, not the program, is wrong.
CONFIG_ERRORS = ("ConfigMissingError", "ConfigTypeError")
# The child imports the runner from this checkout, then drops it from sys.path so that the program
# sees only its own folder and its venv.
_CHILD_BOOT = (
    "import sys; sys.path.append(sys.argv[1]); from keybuzz.check_app import child_main; "
    "sys.path.remove(sys.argv[1]); sys.exit(child_main(sys.argv[2]))"
)


class InputError(Exception):
    """Bad input, said in one line (exit 2)."""


class InternalError(Exception):
    """The run failed for a reason that is not the input's (exit 3); ``detail`` is shown with --debug."""

    def __init__(self, summary: str, detail: str = "") -> None:
        super().__init__(summary)
        self.detail = detail


# --------------------------------------------------------------------------------------------
# Reading input: every error names the file (and line)
# --------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    """Parse a YAML file as the CLI does (YAML 1.2: `off`, `yes` stay strings); an error names the file,
    line and column (1-based)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return load_stack_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise InputError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}") from None


def load_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def find_project_file(app_dir: Path) -> Path:
    if not app_dir.is_dir():
        raise InputError(f"no such folder: {app_dir}")
    for name in ("Pulumi.yaml", "Pulumi.yml"):
        if (app_dir / name).is_file():
            return app_dir / name
    raise InputError(f"no Pulumi.yaml in {app_dir}: not a Pulumi project folder")


def pick_stack(app_dir: Path, stack: str | None, stack_file: Path | None) -> tuple[str, Path | None]:
    """(stack name, stack file or None). Without --stack: the only Pulumi.<name>.yaml, else 'dev'."""
    if stack_file is not None:
        if not stack_file.is_file():
            raise InputError(f"no such stack file: {stack_file}")
        return stack or _stack_name(stack_file) or "dev", stack_file
    if stack is None:
        found = sorted(n for p in app_dir.glob("Pulumi.*.y*ml") if (n := _stack_name(p)))
        if len(found) > 1:
            raise InputError(f"{app_dir} has several stack files ({', '.join(found)}): choose one with --stack")
        stack = found[0] if found else "dev"
    for suffix in ("yaml", "yml"):
        if (app_dir / f"Pulumi.{stack}.{suffix}").is_file():
            return stack, app_dir / f"Pulumi.{stack}.{suffix}"
    return stack, None


def _stack_name(path: Path) -> str | None:
    parts = path.name.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "Pulumi" and parts[2] in ("yaml", "yml") else None


# --------------------------------------------------------------------------------------------
# Which Python runs the program
# --------------------------------------------------------------------------------------------


def requirement_lines(text: str) -> set[str] | None:
    """Normalised requirement lines; None when the file uses pip options (-r, -e, --index-url ...)."""
    lines = set()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            return None
        name, sep, rest = line.partition("==")
        lines.add(f"{name.strip().lower().replace('_', '-')}{sep}{rest.strip()}" if sep else line.lower())
    return lines


@dataclass(frozen=True)
class Interpreter:
    """The Python that runs the program, and the venv to build first (None: it exists)."""

    python: Path
    requirements: Path
    build_venv: Path | None = None


def choose_interpreter(app_dir: Path, cache_dir: Path, project_python: Path) -> Interpreter:
    """The program's requirements (else the pack's): the project's venv if it pins all of them, else a cached one."""
    requirements = app_dir / "requirements.txt"
    if not requirements.is_file():
        requirements = PACK_REQUIREMENTS
    text = requirements.read_text()
    wanted = requirement_lines(text)
    have = requirement_lines(PROJECT_REQUIREMENTS.read_text()) or set()
    if wanted is not None and wanted <= have:
        return Interpreter(project_python, requirements)
    venv = cache_dir / "venvs" / hashlib.sha256(text.encode()).hexdigest()[:16]
    python = venv / "bin" / "python"
    built = (venv / ".complete").is_file()
    return Interpreter(python, requirements, None if built else venv)


def cache_dir() -> Path:
    if os.environ.get("KEYBUZZ_CACHE_DIR"):
        return Path(os.environ["KEYBUZZ_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "keybuzz-k3s"


def build_venv(interpreter: Interpreter, err: TextIO) -> None:
    """Create the venv once (pip needs PyPI); a stamp file marks it complete, so later runs start at once."""
    venv = interpreter.build_venv
    if venv is None:
        return
    err.write(f"check-app: first use of {interpreter.requirements}: building a venv in {venv} (pip, needs PyPI)\n")
    err.flush()
    steps = (
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(interpreter.requirements),
        ],
    )
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise InternalError(f"building the venv failed: {last}", done.stderr)
    (venv / ".complete").write_text(interpreter.requirements.read_text())


# --------------------------------------------------------------------------------------------
# The child: runs the program, writes what it declared (or what it raised) as JSON
# --------------------------------------------------------------------------------------------


def child_main(request_path: str) -> int:
    """Entry point of the fresh process: run the program under mocks and write the result file."""
    request = json.loads(Path(request_path).read_text())
    result: dict[str, Any]
    try:
        project = read_project(load_stack_yaml(Path(request["project_file"]).read_text()), Path(request["dir"]))
        run = run_app(project, request["stack"], request["stack_doc"])
        result = {
            "resources": [{"type": r.type, "name": r.name, "inputs": redact_secrets(r.inputs)} for r in run.resources]
        }
    except BaseException as exc:  # noqa: BLE001 - whatever the program raised is the report
        result = {"error": _describe(exc, Path(request["dir"]))}
    Path(request["result"]).write_text(json.dumps(result, default=str))
    return 0


def _describe(exc: BaseException, app_dir: Path) -> dict[str, str]:
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if Path(f.filename).resolve().is_relative_to(app_dir.resolve())]
    where = f" at {Path(inside[-1].filename).relative_to(app_dir.resolve())}:{inside[-1].lineno}" if inside else ""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return {
        "type": type(exc).__name__,
        "summary": f"{type(exc).__name__}{': ' + message if message else ''}{where}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


def run_in_child(interpreter: Interpreter, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the program in a fresh process; the declared resources, or InternalError with the program's error."""
    with tempfile.TemporaryDirectory(prefix="check-app-") as tmp:
        request = {**request, "result": str(Path(tmp) / "result.json")}
        request_file = Path(tmp) / "request.json"
        request_file.write_text(json.dumps(request))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_") and k != "PYTHONPATH"}
        try:
            done = subprocess.run(
                [str(interpreter.python), "-c", _CHILD_BOOT, str(REPO), str(request_file)],
                cwd=request["dir"],
                env=env,
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise InternalError(f"the program did not finish within {CHILD_TIMEOUT_S} s") from None
        output = (done.stdout + done.stderr).strip()
        result_file = Path(request["result"])
        if not result_file.is_file():
            last = (output.splitlines() or [f"exit status {done.returncode}"])[-1]
            raise InternalError(f"the mock engine run failed: {last}", output)
        result = json.loads(result_file.read_text())
    if "error" in result:
        if result["error"].get("type") in CONFIG_ERRORS:
            raise InputError(f"the stack's config: {result['error']['summary']}")
        detail = result["error"]["traceback"] + (f"\nprogram output:\n{output}" if output else "")
        raise InternalError(f"the program raised {result['error']['summary']}", detail)
    return result["resources"]


# --------------------------------------------------------------------------------------------
# The verdict
# --------------------------------------------------------------------------------------------


def guardrails() -> Any:
    """The pack's pure module, imported as the CLI sees it (its folder on sys.path)."""
    if str(PACK_DIR) not in sys.path:
        sys.path.insert(0, str(PACK_DIR))
    import guardrails as module

    return module


def render(
    app_dir: Path,
    project: str,
    stack: str,
    stack_file: Path | None,
    resources: list[dict[str, Any]],
    violations: Sequence[Any],
    out: TextIO,
) -> bool:
    """Print what was declared and the verdict; True when nothing blocks."""
    w = out.write
    w(
        f"check-app {app_dir}: project {project}, stack {stack} "
        f"(config: Pulumi.yaml defaults{' + ' + stack_file.name if stack_file else ', no stack file'})\n"
    )
    w(f"  {len(resources)} resources declared under the mock engine\n")
    for r in resources:
        w(f"    {r['type']}  {r['name']}\n")
    charts = [r["name"] for r in resources if r["type"] == V4_CHART]
    for name in charts:
        w(
            f"  note: {name} ({V4_CHART}) is rendered by the engine at `pulumi preview`, not offline: its objects "
            "are checked by `pulumi preview --policy-pack`, not here\n"
        )
    blocking = [v for v in violations if v.blocking]
    w(
        f"\nPolicy pack: {len(resources)} resources checked, {len(blocking)} mandatory violation(s), "
        f"{len(violations) - len(blocking)} advisory\n"
    )
    for v in violations:
        w(f"  {v}\n")
    w("verdict: " + ("REFUSED (a mandatory policy failed)\n" if blocking else "clean\n"))
    return not blocking


def check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    shown = Path(args.dir)
    app_dir = shown.resolve() if shown.exists() else shown
    project_file = find_project_file(app_dir)
    try:
        project = read_project(load_yaml(project_file), app_dir)
    except ProjectError as exc:
        raise InputError(f"{project_file}: {exc}") from None
    if project.runtime != "python":
        raise InputError(f"{project_file}: runtime {project.runtime!r}: check-app runs Python programs only")
    entry = project.main / "__main__.py" if project.main.is_dir() else project.main
    if not entry.is_file():
        raise InputError(f"{project_file}: the program's entry {entry} does not exist")
    stack, stack_file = pick_stack(app_dir, args.stack, args.stack_file)
    stack_doc = load_yaml(stack_file) if stack_file else {}
    if stack_doc is not None and not isinstance(stack_doc, dict):
        raise InputError(f"{stack_file}: a stack file must be a mapping, got {type(stack_doc).__name__}")
    pack = guardrails()
    policy_config = load_json(args.policy_config) if args.policy_config else None
    try:
        pack.resolve_config(policy_config)
    except pack.ConfigError as exc:
        raise InputError(f"{args.policy_config}: {exc}") from None

    interpreter = choose_interpreter(app_dir, cache_dir(), Path(sys.executable))
    build_venv(interpreter, err)
    resources = run_in_child(
        interpreter,
        {"dir": str(app_dir), "project_file": str(project_file), "stack": stack, "stack_doc": stack_doc or {}},
    )
    violations = pack.evaluate([(r["type"], r["name"], r["inputs"]) for r in resources], policy_config)
    code = exit_codes.POLICY if any(v.blocking for v in violations) else exit_codes.OK
    try:
        render(shown, project.name, stack, stack_file, resources, violations, out)
        out.flush()
    except BrokenPipeError:
        if out is sys.stdout:
            _silence_stdout()  # the reader went away (`| head`); the verdict stands
    return code


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bin/check-app", description=__doc__.splitlines()[0])
    p.add_argument("dir", help="the Pulumi Python program's folder (holds Pulumi.yaml)")
    p.add_argument("--stack", help="stack name (reads DIR/Pulumi.<stack>.yaml); default: the only stack file")
    p.add_argument("--stack-file", type=Path, help="a stack file instead of DIR/Pulumi.<stack>.yaml")
    p.add_argument("--policy-config", type=Path, help="a --policy-pack-config JSON file for the pack")
    p.add_argument("--debug", action="store_true", help="print tracebacks and the program's output on errors")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the check; never a traceback unless --debug; a closed pipe is not an error."""
    args = parser().parse_args(argv)
    try:
        return check(args, out, err)
    except InputError as exc:
        err.write(f"check-app: {exc}\n")
        return exit_codes.INPUT
    except InternalError as exc:
        err.write(f"check-app: {exc}\n")
        if args.debug and exc.detail:
            err.write(exc.detail.rstrip() + "\n")
        elif exc.detail:
            err.write("check-app: rerun with --debug for the traceback\n")
        return exit_codes.INTERNAL
    except Exception as exc:  # noqa: BLE001 - the contract: one line, traceback under --debug
        err.write(f"check-app: internal error: {type(exc).__name__}: {exc}\n")
        if args.debug:
            traceback.print_exc(file=err)
        return exit_codes.INTERNAL


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; pointing it at /dev/null keeps that from raising.
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
