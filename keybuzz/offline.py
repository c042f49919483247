"""Run the Pulumi program offline, under Pulumi's mock engine, the way the CLI would run a stack.

Used by the tests and by the offline plan (``bin/plan``): no Pulumi CLI, no cloud token, no network.
The mock engine neither reads stack files nor applies Pulumi.yaml defaults, so this module does:
Pulumi.yaml defaults, then ``Pulumi.<stack>.yaml``, then what an operator sets per stack
(``OPERATOR_VALUES``, placeholders here), then overrides. ``secure:`` values become placeholders
marked secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from keybuzz.promotion import Commit, read_commit

REPO = Path(__file__).resolve().parents[1]  # the project root
PROJECT = "keybuzz-k3s"
STACKS = ("dev", "staging", "prod")
SECRET_PLACEHOLDER = "mock-secret-value"
PLACEHOLDER_SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl placeholder@keybuzz"
)
# What the README's "First run" asks the team to set in each stack file (the CLI refuses a stack
# without them), with placeholder values from the documentation ranges, used where a file lacks them.
OPERATOR_VALUES: dict[str, Any] = {
    f"{PROJECT}:sshPublicKeys": [PLACEHOLDER_SSH_KEY],
    f"{PROJECT}:adminCidrs": ["198.51.100.0/24"],
}

# Where ``Pulumi.<stack>.yaml`` is read from when no stack file is given: the project root, except
# under the test suite, which points this at its fixtures (tests/conftest.py): the operator's stack
# files hold their own keys, ranges and salt, and no test may depend on them.
STACK_FILES_DIR_ENV = "KEYBUZZ_STACK_FILES_DIR"


def stack_file_path(stack: str) -> Path:
    """The stack file an offline run of ``stack`` reads by default."""
    return Path(os.environ.get(STACK_FILES_DIR_ENV) or REPO) / f"Pulumi.{stack}.yaml"


CHECK_TYPE_PREFIX = "pulumi-python:dynamic/keybuzz:"
# pulumi.dynamic.serialize_provider wraps pickle's _batch_setitems again on every dynamic resource
# and never unwraps it (pulumi 3.272, dynamic.py): one process that runs the program many times
# (the test session) ends in a RecursionError. Each run starts from the original.
_PICKLE_BATCH_SETITEMS = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]
RECORDED_OPTIONS = (
    "protect",
    "ignore_changes",
    "delete_before_replace",
    "replace_on_changes",
    "retain_on_delete",
    "additional_secret_outputs",
    "custom_timeouts",
    "aliases",
)  # the overlay checks (keybuzz/verify/providers.py)

SAMPLE_K3S_KUBECONFIG = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EtREFUQQ==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
"""


def stack_config(
    stack: str, overrides: dict[str, Any] | None = None, stack_doc: dict[str, Any] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The config the CLI would hand the program: ({"project:key": json-or-string}, secret keys)."""
    from keybuzz.config import load_stack_yaml, project_defaults

    values: dict[str, Any] = {f"{PROJECT}:{key}": value for key, value in project_defaults().items()}
    if stack_doc is None:
        stack_doc = load_stack_yaml(stack_file_path(stack).read_text()) or {}
    # Placeholders fill in only what the stack file lacks.
    values.update(OPERATOR_VALUES)
    values.update(stack_doc.get("config") or {})
    values.update(overrides or {})
    return encode_config(values)


@dataclass(frozen=True)
class Secret:
    """An override that reaches the program as a secret with this plain value (a test's real key), where a
    ``secure:`` value from a stack file can only become a placeholder."""

    value: str


def encode_config(values: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Values as the CLI hands them to a program: strings as they are, the rest as JSON; ``secure:``
    values become a placeholder and are listed as secret keys."""
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in values.items():
        if isinstance(value, Secret):
            config[key] = value.value
            secret_keys.append(key)
        elif isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        elif isinstance(value, str):
            config[key] = value
        else:
            config[key] = json.dumps(value)
    return config, secret_keys


@dataclass
class Declared:
    """One resource the program registered, with its inputs and the options it was given."""

    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None
    parent: str | None = None
    depends_on: list[str] = field(default_factory=list)
    # Resource options the program set, as given: protect, ignore_changes, delete_before_replace,
    # replace_on_changes, retain_on_delete, additional_secret_outputs, custom_timeouts, aliases.
    options: dict[str, Any] = field(default_factory=dict)


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like a cloud would; on a preview, leaves server-assigned values unknown."""

    def __init__(
        self,
        preview: bool,
        stack_outputs: dict[str, dict[str, Any]] | None = None,
        failing_checks: frozenset[str] = frozenset(),
        recorded_outputs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.preview = preview
        self.stack_outputs = stack_outputs or {}
        self.failing_checks = failing_checks
        self.recorded_outputs = recorded_outputs or {}
        self.declared: dict[str, Declared] = {}
        self._next_id = 1000

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        self._next_id += 1
        # Derived from the name, not the registration order (which is asynchronous): two runs of the
        # program give every resource the same id, so day-2 tests can compare them.
        rid = str(zlib.crc32(args.name.encode()) % 900_000_000 + 100_000_000)
        self.declared[args.name] = Declared(args.typ, args.name, dict(args.inputs), args.provider)
        state = dict(args.inputs)
        # A resource already in state whose diff says "no change": the engine hands back its old outputs.
        state.update(self.recorded_outputs.get(args.name, {}))
        if args.typ == "pulumi:pulumi:StackReference":
            # Other stacks' outputs are read, not created: known during a preview too.
            name = args.inputs.get("name", args.name)
            return name, {"name": name, "outputs": self.stack_outputs.get(name, {}), "secretOutputNames": []}
        if self.preview:
            return (None if args.custom else rid), state
        if args.typ == "hcloud:index/server:Server":
            # Stable across runs too: the private IP's last octet (unique per node) in the documentation range.
            private = (args.inputs.get("networks") or [{}])[0].get("ip", "0.0.0.1")
            state["ipv4Address"] = f"203.0.113.{private.rsplit('.', 1)[-1]}"
        elif args.typ == "hcloud:index/loadBalancer:LoadBalancer":
            # Hetzner assigns a public IPv4 to every load balancer (used when its interface is on).
            state["ipv4"] = "198.51.100.5"
        elif args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = "x" * int(args.inputs.get("length", 16))
        elif args.typ.startswith(CHECK_TYPE_PREFIX):
            # A check that passed; ``failing_checks`` stands in for a cluster where some did not.
            failed = args.name.rsplit("-", 1)[-1] in self.failing_checks
            state.update(passed=not failed, skipped=False, total=1, failed=int(failed), tested="(mock)")
        elif args.typ == "command:remote:Command":
            create = args.inputs.get("create", "")
            state["stdout"] = SAMPLE_K3S_KUBECONFIG if "k3s.yaml" in create else ""
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


@dataclass
class ProgramRun:
    """What one run of the program declared and exported."""

    stack: str
    preview: bool
    resources: list[Declared]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    unknown_outputs: set[str]

    def of_type(self, type_token: str) -> list[Declared]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, name: str) -> Declared:
        return next(r for r in self.resources if r.name == name)

    def for_policies(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(type, name, inputs) as a policy pack sees them, with every secret value redacted."""
        return [(r.type, r.name, redact_secrets(r.inputs)) for r in self.resources]


_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # pulumi.runtime.rpc's secret signature


def secret_value(value: Any) -> Any:
    """The plain value of a secret input as the mock engine receives it; fails if it is not secret."""
    if not (isinstance(value, dict) and _SECRET_SIG in value.values()):
        raise AssertionError(f"expected a secret, got plain {type(value).__name__}")
    return value["value"]


def unwrap_secret(value: Any) -> Any:
    """The plain value of an input, whether or not the mock engine received it as a secret."""
    return value["value"] if isinstance(value, dict) and _SECRET_SIG in value.values() else value


def redact_secrets(value: Any) -> Any:
    """A copy of mock-engine inputs with each secret replaced by "[secret]", for printing and policies."""
    if isinstance(value, dict):
        if _SECRET_SIG in value.values():
            return "[secret]"
        return {k: redact_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return value


async def _resolve(output: Any) -> tuple[Any, bool, bool]:
    out = pulumi.Output.from_input(output)
    known = await out.is_known()
    secret = await out.is_secret()
    value = await out.future(with_unknowns=True) if known else None
    return value, known, secret


def run_program(
    stack: str,
    *,
    preview: bool = False,
    overrides: dict[str, Any] | None = None,
    stack_doc: dict[str, Any] | None = None,
    probe: Callable[[Any], dict[str, Any]] | None = None,
    commit: Commit | None = None,
    stack_outputs: dict[str, dict[str, Any]] | None = None,
    failing_checks: frozenset[str] = frozenset(),
    recorded_outputs: dict[str, dict[str, Any]] | None = None,
) -> ProgramRun:
    """Run ``components.stack.build`` for a stack under mocks, as ``pulumi preview``/``up`` would.

    ``probe`` picks extra Outputs from the built components (e.g. the join token) to resolve like exports.
    ``commit`` is the program's git commit (default: read from the checkout); ``stack_outputs`` holds the
    outputs of other stacks, by fully qualified name, for StackReferences (the promotion gate).
    ``failing_checks`` names overlay checks (e.g. "mesh") that report ``passed: false``.
    ``recorded_outputs``: outputs the engine already holds, by resource name, for resources that keep
    what they recorded at creation (e.g. the cluster origin's server id after cp-1 was replaced).
    """
    from components.stack import build
    from keybuzz.config import load

    pickle._Pickler._batch_setitems = _PICKLE_BATCH_SETITEMS  # type: ignore[attr-defined]
    config, secret_keys = stack_config(stack, overrides, stack_doc)
    mocks = RecordingMocks(preview, stack_outputs, failing_checks, recorded_outputs)
    commit = commit or read_commit(REPO)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview)
    pulumi.runtime.set_all_config(config, secret_keys)
    options: dict[str, tuple[str | None, list[str], dict[str, Any]]] = {}

    def record_options(args: pulumi.ResourceTransformationArgs) -> None:
        opts = args.opts
        parent = getattr(opts.parent, "_name", None) if opts.parent is not None else None
        deps = opts.depends_on or []
        deps = deps if isinstance(deps, list) else [deps]
        recorded = {key: getattr(opts, key, None) for key in RECORDED_OPTIONS}
        options[args.name] = (parent, [getattr(d, "_name", repr(d)) for d in deps], recorded)
        return None

    outputs: dict[str, Any] = {}
    secret: set[str] = set()
    unknown: set[str] = set()

    @pulumi.runtime.test
    def program() -> Any:
        pulumi.runtime.register_stack_transformation(record_options)
        cfg, secrets = load()
        built = build(cfg, secrets, commit)
        exported = {**built.exports, **(probe(built) if probe else {})}

        async def collect() -> None:
            for key, value in exported.items():
                resolved, known, is_secret = await _resolve(value)
                outputs[key] = resolved
                if is_secret:
                    secret.add(key)
                if not known:
                    unknown.add(key)

        return pulumi.Output.from_input(asyncio.ensure_future(collect()))

    program()
    for name, (parent, deps, recorded) in options.items():
        if name in mocks.declared:
            mocks.declared[name].parent = parent
            mocks.declared[name].depends_on = deps
            mocks.declared[name].options = recorded
    return ProgramRun(stack, preview, list(mocks.declared.values()), outputs, secret, unknown)


# --------------------------------------------------------------------------------------------
# Any Pulumi Python program (bin/check-app): the same mock engine, driven by the program's own
# Pulumi.yaml and stack file instead of this project's.
# --------------------------------------------------------------------------------------------

# Keys a Pulumi.yaml `config:` entry may hold in its long form; anything else is a plain value.
_PROJECT_CONFIG_FIELDS = frozenset({"type", "default", "value", "description", "secret", "items"})


class ProjectError(ValueError):
    """A Pulumi.yaml or stack file the CLI would refuse (wrong shape), said in one line."""


@dataclass(frozen=True)
class AppProject:
    """What the CLI reads from a program's Pulumi.yaml before running it."""

    dir: Path
    name: str
    runtime: str
    main: Path  # the file or folder the language host runs
    config_defaults: dict[str, Any]  # fully qualified key ("project:key") -> default value


def _qualify(project: str, key: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def read_project(doc: Any, app_dir: Path) -> AppProject:
    """Parse a loaded Pulumi.yaml: name, runtime name, main entry, config defaults (short and long form)."""
    if not isinstance(doc, dict):
        raise ProjectError(f"Pulumi.yaml must be a mapping, got {type(doc).__name__}")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ProjectError("Pulumi.yaml has no `name:`")
    runtime = doc.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if not isinstance(runtime_name, str):
        raise ProjectError("Pulumi.yaml has no `runtime:` (or `runtime: {name: ...}`)")
    main = doc.get("main", ".")
    if not isinstance(main, str):
        raise ProjectError(f"Pulumi.yaml `main:` must be a path, got {main!r}")
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ProjectError(f"Pulumi.yaml `config:` must be a mapping of keys, got {type(config).__name__}")
    defaults: dict[str, Any] = {}
    for key, entry in config.items():
        if isinstance(entry, dict) and entry and set(entry) <= _PROJECT_CONFIG_FIELDS:
            if "value" in entry or "default" in entry:
                defaults[_qualify(name, str(key))] = entry.get("value", entry.get("default"))
        else:
            defaults[_qualify(name, str(key))] = entry  # short form: the value itself
    return AppProject(app_dir, name, runtime_name, app_dir / main, defaults)


def app_config(project: AppProject, stack_doc: Any) -> tuple[dict[str, str], list[str]]:
    """Config as the CLI hands it to the program: Pulumi.yaml defaults, then the stack file; secrets as placeholders."""
    if stack_doc is None:
        stack_doc = {}
    if not isinstance(stack_doc, dict):
        raise ProjectError(f"a stack file must be a mapping, got {type(stack_doc).__name__}")
    stack_values = stack_doc.get("config") or {}
    if not isinstance(stack_values, dict):
        raise ProjectError(f"the stack file's `config:` must be a mapping, got {type(stack_values).__name__}")
    values = dict(project.config_defaults)
    values.update({_qualify(project.name, str(k)): v for k, v in stack_values.items()})
    return encode_config(values)


class _EveryResourceMocks(RecordingMocks):
    """RecordingMocks that keep every resource: apps reuse a name across types (Deployment "web", Service "web")."""

    def __init__(self, preview: bool) -> None:
        super().__init__(preview)
        self.every: list[Declared] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        result = super().new_resource(args)
        self.every.append(self.declared[args.name])
        return result


def run_app(project: AppProject, stack: str, stack_doc: Any = None, *, preview: bool = True) -> ProgramRun:
    """Run any Pulumi Python program under mocks, as ``pulumi preview`` would, recording every resource.

    Like the language host: cwd is the project folder, the program's folder is first on sys.path,
    and the entry runs as ``__main__``. Call it in a fresh process (``bin/check-app`` does): the
    program's modules stay in ``sys.modules`` afterwards. Whatever the program raises propagates.
    """
    import os
    import runpy
    import sys

    config, secret_keys = app_config(project, stack_doc)
    mocks = _EveryResourceMocks(preview)
    pulumi.runtime.set_mocks(mocks, project=project.name, stack=stack, preview=preview)
    pulumi.runtime.set_all_config(config, secret_keys)
    entry = project.main
    if entry.is_dir():
        entry = entry / "__main__.py"
    sys.path.insert(0, str(entry.parent))
    sys.argv = [str(entry)]
    os.chdir(project.dir)

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(entry), run_name="__main__")

    program()
    return ProgramRun(stack, preview, mocks.every, {}, set(), set())
