"""The offline plan: what a stack would deploy, and the policy verdict, with no cloud and no Pulumi CLI.

Runs the program for one stack file under Pulumi's mock engine (keybuzz/offline.py), prints a
readable plan read back from the declared resources, and feeds every resource to the guardrail
policy pack in-process. It is the check a pull request runs:

    bin/plan <stack> [--stack-file FILE] [--policy-config FILE] [--debug]

Exit status: 0 plan clean, 1 a mandatory policy violation, 2 bad config or input (a YAML or JSON
error names the file and line), 3 an internal error (one line; the traceback with --debug). Never a
traceback for bad input, so a CI gate can tell a violation from a crash. Relative paths are the
caller's (bin/plan passes its directory in KEYBUZZ_CALLER_DIR).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from keybuzz import exit_codes, k3s
from keybuzz.config import ConfigError, load_stack_yaml
from keybuzz.etcd_backup import redact_server_config
from keybuzz.offline import (
    CHECK_TYPE_PREFIX,
    OPERATOR_VALUES,
    REPO,
    ProgramRun,
    run_program,
    stack_file_path,
    unwrap_secret,
)
from keybuzz.promotion import read_commit
from keybuzz.verify.rollout_check import BATCH_OVERHEAD_S

# The contract a CI gate reads (shared with bin/check-app).
EXIT_OK, EXIT_POLICY = exit_codes.OK, exit_codes.POLICY
EXIT_CONFIG, EXIT_INTERNAL = exit_codes.INPUT, exit_codes.INTERNAL
SERVER = "hcloud:index/server:Server"
FIREWALL = "hcloud:index/firewall:Firewall"
INSTALLATION = "kubernetes:operator.tigera.io/v1:Installation"
RELEASE = "kubernetes:helm.sh/v3:Release"
LOAD_BALANCER = "hcloud:index/loadBalancer:LoadBalancer"
LB_NETWORK = "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork"
LB_TARGET = "hcloud:index/loadBalancerTarget:LoadBalancerTarget"
BATCH_CHECK = "pulumi-python:dynamic/rollout:BatchOverlayCheck"  # keybuzz/verify/rollout_check.py


def guardrails() -> Any:
    """The policy pack's pure module, imported as the CLI sees it (its folder on sys.path)."""
    pack = str(REPO / "policies")
    if pack not in sys.path:
        sys.path.insert(0, pack)
    return importlib.import_module("guardrails")


def placeholder_keys(stack_doc: dict[str, Any]) -> list[str]:
    """The operator's keys (sshPublicKeys, adminCidrs) this stack file lacks: the plan fills them in."""
    config = stack_doc.get("config") or {}
    return [key.split(":", 1)[1] for key in OPERATOR_VALUES if key not in config]


def render_plan(run: ProgramRun, out: TextIO, placeholders: Sequence[str] = ()) -> None:
    """Print what the run declared, grouped the way an operator reviews a change."""
    w = out.write
    commit = read_commit(REPO)
    w(
        f"keybuzz-k3s offline plan for stack '{run.stack}' (commit {commit.sha[:12] or 'unknown'}"
        f"{', dirty' if commit.dirty else ''})\n"
    )
    if placeholders:
        w(
            "  config: Pulumi.yaml defaults + the stack file; values it lacks are placeholders: "
            f"{', '.join(placeholders)}\n"
        )
    else:
        w("  config: Pulumi.yaml defaults + the stack file\n")
    if commit.dirty:
        w(
            "  uncommitted changes: nothing is deployed by a plan, but an `up` of this tree would withhold "
            "verifiedCommit (the next stage would refuse it); commit first\n"
        )
    w("  public IPs below are the mock engine's (documentation range); private IPs are the real plan\n\n")

    servers = sorted(run.of_type(SERVER), key=lambda r: r.name)
    if servers:
        first = servers[0].inputs
        w(f"Servers ({len(servers)}) in {first['location']}, image {first['image']}\n")
        w(f"  {'name':<28} {'role':<7} {'pool':<14} {'type':<7} private IP\n")
        for s in servers:
            labels = s.inputs.get("labels", {})
            w(
                f"  {s.name:<28} {labels.get('role', ''):<7} {labels.get('pool', ''):<14} "
                f"{s.inputs['serverType']:<7} {s.inputs['networks'][0]['ip']}\n"
            )
    for fw in run.of_type(FIREWALL):
        w(f"\nFirewall {fw.inputs.get('name', fw.name)} (public interface; no outbound rule, no overlay port)\n")
        for rule in fw.inputs.get("rules", []):
            port = rule.get("port") or "-"
            w(
                f"  {rule['direction']:<3} {rule['protocol']:<5} {port:<5} from {', '.join(rule['sourceIps'])}"
                f"  ({rule.get('description', '')})\n"
            )

    _render_day2(run, w)

    w("\nK3s config.yaml per role\n")
    shown: set[str] = set()
    for s in servers:
        install = _find(run, f"-k3s-install-{s.name}")
        if install is None:
            continue
        # With etcdBackup's S3 keys in it the script is a secret: read it, print the keys redacted.
        script = unwrap_secret(install.inputs.get("create", ""))
        config = redact_server_config(yaml.safe_load(k3s.config_in_install_script(script)))
        bootstrap = k3s.bootstrap_config_in_install_script(script)
        if bootstrap:
            bootstrap = yaml.safe_dump(redact_server_config(yaml.safe_load(bootstrap)), sort_keys=True)
        role = "first server" if bootstrap else _role_label(config)
        if role in shown:
            continue
        shown.add(role)
        w(f"  {role} ({s.name}):\n")
        w("".join(f"    {line}\n" for line in yaml.safe_dump(config, sort_keys=True).splitlines()))
        if bootstrap:
            w("    # only the server recorded as the cluster's creator, while it has no etcd data, initialises with:\n")
            w("".join(f"    {line}\n" for line in bootstrap.splitlines()))

    _render_rollout(run, w)

    for inst in run.of_type(INSTALLATION):
        network = inst.inputs["spec"]["calicoNetwork"]
        w("\nCalico (tigera-operator Installation)\n")
        for pool in network.get("ipPools", []):
            w(
                f"  pool {pool['name']}: {pool['cidr']} encapsulation {pool['encapsulation']}, block /"
                f"{_num(pool['blockSize'])}, natOutgoing {pool['natOutgoing']}, nodeSelector {pool['nodeSelector']}\n"
            )
        w(
            f"  MTU {_num(network['mtu'])}; BGP {network['bgp']}; node address from "
            f"{', '.join(network['nodeAddressAutodetectionV4']['cidrs'])}; "
            f"containerIPForwarding {network['containerIPForwarding']}\n"
        )
    for release in sorted(run.of_type(RELEASE), key=lambda r: r.name):
        w(f"  chart {release.inputs['chart']} {release.inputs['version']} in {release.inputs['namespace']}\n")

    w(f"\nIngress controller: {getattr(_find(run, '-ingress-edge'), 'inputs', {}).get('edge', 'none')}\n")
    gate = _find(run, "-promotion-gate")
    w("\nPromotion gate: ")
    if gate is None:
        w("none (no promotesFrom)\n")
    else:
        w(
            f"preview refuses unless stack '{gate.inputs['promotesFrom']}' exports verifiedCommit == this commit"
            f"{' (override allowUnverifiedPromotion is ON)' if gate.inputs.get('allowUnverified') else ''}\n"
        )

    checks = [r for r in run.resources if r.type.startswith(CHECK_TYPE_PREFIX)]
    w(f"\nChecks run on every `pulumi up` ({len(checks)}; each fails the update when its paths are broken)\n")
    for check in sorted(checks, key=lambda r: r.name):
        w(f"  {check.type.removeprefix(CHECK_TYPE_PREFIX):<20} {check.name}\n")
    if not checks:
        w("  none (verify.enabled is false)\n")


def _render_day2(run: ProgramRun, w: Any) -> None:
    """The API load balancer, deletion protection and what the deployed-stack guard refuses."""
    for lb in run.of_type(LOAD_BALANCER):
        attachments = run.of_type(LB_NETWORK)
        private = attachments[0].inputs.get("ip") if attachments else "?"
        public = "on" if attachments and attachments[0].inputs.get("enablePublicInterface") else "off"
        w(
            f"\nAPI load balancer {lb.inputs.get('name')} ({lb.inputs['loadBalancerType']}, {lb.inputs['location']}): "
            f"private {private}, public interface {public}; tcp 6443 to {len(run.of_type(LB_TARGET))} "
            "server(s) by private IP\n"
        )
    protected = sorted({r.type.split(":")[-1] for r in run.resources if r.options.get("protect")})
    w(f"\nDeletion protection: {'on for ' + ', '.join(protected) if protected else 'off'}\n")
    guard = _find(run, "-deployed-stack")
    if guard is not None:
        w(
            f"Preview refuses: a change of image ({guard.inputs['image']}) or location ({guard.inputs['location']}), "
            f"a K3s version below the deployed one, a key list sharing no key with the deployed one\n"
        )


def _render_rollout(run: ProgramRun, w: Any) -> None:
    """The rollout order, with the barrier and the overlay check after each batch where there is one."""
    waves = rollout_order(run)
    if not waves:
        return
    checked, barred = checked_waves(run, waves), barrier_waves(run, waves)
    w("\nRollout order (day 2: each node drained, changed, Ready and uncordoned before the next)\n  ")
    steps = []
    for i, wave in enumerate(waves):
        steps.append(wave[0] if len(wave) == 1 else f"[{', '.join(wave)}]")
        if i in barred:
            steps.append("barrier")
        if i in checked:
            steps.append("check")
    w(" -> ".join(steps) + "\n")
    if barred:
        w(
            f"  barrier = <cluster>-k3s-batch-<n> ({len(barred)} in all): runs nothing, waits for every node of its "
            "batch; the next batch waits for it (a batch of one node needs none)\n"
        )
    checks = run.of_type(BATCH_CHECK)
    if not checks:
        w("  no overlay check between batches (verify.betweenBatches or verify.enabled is false)\n")
        return
    timeout = _num(checks[0].inputs.get("timeoutSeconds"))
    w(
        f"  check = the overlay checks focused on the batch just rolled ({len(checks)} in all, verify.betweenBatches): "
        f"at most {timeout} s + {BATCH_OVERHEAD_S} s each, only for a batch that changed; a failure stops the "
        "rollout there. The first agent batch is a canary of one.\n"
    )


def _boundaries(run: ProgramRun) -> dict[str, list[str]]:
    """What stands between two batches (components/k3s.py): batch barriers and overlay checks, with
    what each waits for."""
    return {
        r.name: list(r.depends_on)
        for r in run.resources
        if "-k3s-batch-" in r.name or r.type == BATCH_CHECK
    }


def _readies(deps: Sequence[str], boundaries: Mapping[str, Sequence[str]]) -> set[str]:
    """Node names whose ready step ``deps`` wait for, directly or through barriers and checks."""
    found: set[str] = set()
    pending, seen = list(deps), set()
    while pending:
        dep = pending.pop()
        if dep in seen:
            continue
        seen.add(dep)
        if "-k3s-ready-" in dep:
            found.add(dep.split("-k3s-ready-", 1)[1])
        pending.extend(boundaries.get(dep, ()))
    return found


def checked_waves(run: ProgramRun, waves: Sequence[Sequence[str]]) -> set[int]:
    """Indexes of the waves an overlay check follows: a check waits for exactly that wave's ready
    steps (through the wave's barrier when it has several nodes)."""
    boundaries = _boundaries(run)
    after = [_readies(r.depends_on, boundaries) for r in run.of_type(BATCH_CHECK)]
    return {i for i, wave in enumerate(waves) if set(wave) in after}


def barrier_waves(run: ProgramRun, waves: Sequence[Sequence[str]]) -> set[int]:
    """Indexes of the waves a batch barrier follows (waves of several nodes)."""
    boundaries = _boundaries(run)
    after = [_readies(deps, boundaries) for name, deps in boundaries.items() if "-k3s-batch-" in name]
    return {i for i, wave in enumerate(waves) if set(wave) in after}


def rollout_order(run: ProgramRun) -> list[list[str]]:
    """Node names in rollout order, one list per step (a batch of agents shares a step), read back
    from each node's drain and the readies it waits for (through the barrier and check before it)."""
    boundaries = _boundaries(run)
    after = {
        r.name.split("-k3s-drain-", 1)[1]: _readies(r.depends_on, boundaries)
        for r in run.resources
        if "-k3s-drain-" in r.name
    }
    waves: list[list[str]] = []
    placed: set[str] = set()
    while len(placed) < len(after):
        wave = sorted(n for n, deps in after.items() if n not in placed and deps <= placed)
        if not wave:
            break
        waves.append(wave)
        placed |= set(wave)
    return waves


def _num(value: Any) -> Any:
    """Numbers come back from the engine as floats (protobuf Struct); print whole ones as ints."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _find(run: ProgramRun, suffix: str) -> Any:
    return next((r for r in run.resources if r.name.endswith(suffix)), None)


def _role_label(config: dict[str, Any]) -> str:
    if config.get("cluster-init"):
        return "first server"
    return "joining server" if "flannel-backend" in config else "agent"


def render_verdict(violations: Sequence[Any], checked: int, out: TextIO) -> bool:
    """Print the policy verdict; True when nothing blocks."""
    blocking = [v for v in violations if v.blocking]
    out.write(
        f"\nPolicy pack: {checked} resources checked, {len(blocking)} mandatory violation(s), "
        f"{len(violations) - len(blocking)} advisory\n"
    )
    for v in violations:
        out.write(f"  {v}\n")
    return not blocking


class InputError(Exception):
    """Bad input the operator can fix (a file missing or malformed); exit 2 with this one line."""


def _caller_path(arg: Path) -> Path:
    """A path as the caller meant it: relative to the directory bin/plan was started from."""
    base = Path(os.environ.get("KEYBUZZ_CALLER_DIR") or os.getcwd())
    return arg if arg.is_absolute() else base / arg


def _line_of(text: str, key: str) -> int:
    """1-based line of a top-level ``key:`` in a YAML text (1 when absent)."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{key}:"):
            return number
    return 1


def read_stack_file(path: Path) -> dict[str, Any]:
    """The stack file as the CLI reads it, or an InputError naming the file and line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"no stack file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read stack file {path}: {exc}") from None
    try:
        doc = load_stack_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = " (YAML indents with spaces, never tabs)" if "\\t" in str(problem) else ""
        raise InputError(f"{where}: malformed YAML: {problem}{hint}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(
            f"{path}:1: the file must be a mapping with a `config:` key (found a {type(doc).__name__}); "
            "e.g.\nconfig:\n  keybuzz-k3s:clusterName: keybuzz-dev"
        )
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("keybuzz-k3s:"):
            key = line.split(":", 2)[1]
            raise InputError(
                f"{path}:{number}: keybuzz-k3s:{key} is at column 0, outside `config:`, where the CLI ignores it: "
                "indent it two spaces, under `config:` and above `encryptionsalt:`"
            )
    config = doc.get("config")
    if config is not None and not isinstance(config, dict):
        raise InputError(
            f"{path}:{_line_of(text, 'config')}: `config:` must map keys to values "
            f"(`  keybuzz-k3s:podCidr: 10.42.0.0/16`), found a {type(config).__name__}"
        )
    for key in config or {}:
        if not isinstance(key, str) or ":" not in key:
            raise InputError(
                f"{path}: config key {key!r} must be namespaced, e.g. keybuzz-k3s:{key} "
                "(keys added below the `encryptionsalt:` line also land here: keep them under `config:`)"
            )
    return doc


def read_policy_config(path: Path | None) -> Any:
    """The --policy-config JSON, or an InputError naming the file and line."""
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no policy config file {path} (try policies/config.example.json)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read policy config {path}: {exc}") from None


class PipeSafe:
    """A writer that stops writing when the reader went away (``bin/plan prod | head``) instead of
    raising BrokenPipeError; the plan still runs to its verdict, so the exit status stays true."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.out.write(text)
                self.out.flush()
            except BrokenPipeError:
                self.broken = True
                # Python would report the pipe again when it flushes stdout at exit.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.out.fileno())
        return len(text)


class _NotAnUp(logging.Filter):
    """The program runs as under `up` (the mock engine is not a dry run), but a plan deploys nothing: its
    "verifiedCommit withheld" warning is said once, in the plan's header, in the plan's own words."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "VERIFIEDCOMMIT WITHHELD" not in record.getMessage()


def plan(args: argparse.Namespace, out: TextIO) -> int:
    """Read the inputs, run the program offline, print the plan and the verdict."""
    stack_file = _caller_path(args.stack_file) if args.stack_file else stack_file_path(args.stack)
    doc = read_stack_file(stack_file)
    policy_config = read_policy_config(_caller_path(args.policy_config) if args.policy_config else None)
    quiet = _NotAnUp()
    logging.getLogger().addFilter(quiet)  # the mock engine logs the program's warnings on the root logger
    try:
        run = run_program(args.stack, stack_doc=doc)
    except ConfigError as exc:
        out.write(f"config error in {stack_file.name}: {exc}\n")
        return EXIT_CONFIG
    finally:
        logging.getLogger().removeFilter(quiet)
    render_plan(run, out, placeholder_keys(doc))
    pack = guardrails()
    try:
        violations = pack.evaluate(run.for_policies(), policy_config)
    except pack.ConfigError as exc:
        out.write(f"config error in the policy config: {exc}\n")
        return EXIT_CONFIG
    return EXIT_OK if render_verdict(violations, len(run.resources), out) else EXIT_POLICY


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="bin/plan", description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="dev, staging or prod (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--stack-file", type=Path, help="plan this stack file instead of Pulumi.<stack>.yaml")
    parser.add_argument("--policy-config", type=Path, help="a --policy-pack-config JSON file for the pack")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    args = parser.parse_args(argv)  # exits 2 on a usage error, as bad input should
    safe = PipeSafe(out) if hasattr(out, "fileno") else out
    try:
        return plan(args, safe)
    except InputError as exc:
        safe.write(f"input error: {exc}\n")
        return EXIT_CONFIG
    except Exception as exc:  # noqa: BLE001 (a crash must not look like a policy violation)
        if args.debug:
            safe.write(traceback.format_exc())
        safe.write(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)\n")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
