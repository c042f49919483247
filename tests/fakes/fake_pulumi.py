"""A stand-in for the Pulumi CLI, for driving bin/deploy in tests: no network, no engine.

Records every call (argv, cwd and the environment that matters) as one JSON line in
$FAKE_PULUMI_LOG, keeps stacks and their outputs per backend URL in $FAKE_PULUMI_STATE, and answers
`version`, `stack ls`, `stack init`, `stack select`, `stack output`. `preview`/`up` run the project's own
promotion decision (keybuzz/promotion.py) on the real git checkout with what bin/deploy handed over
in the environment, as the program's gate would; `up` then exports verifiedCommit.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RECORDED_ENV = ("HCLOUD_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_BACKEND_URL")


def main(argv: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if k in RECORDED_ENV or k.startswith("KEYBUZZ_")}
    with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
        log.write(json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env}) + "\n")
    state_file = Path(os.environ["FAKE_PULUMI_STATE"])
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    backend = os.environ.get("PULUMI_BACKEND_URL", "~/.pulumi (pulumi login)")
    stacks = state.setdefault(backend, {})
    flag_stack = argv[argv.index("--stack") + 1] if "--stack" in argv else None
    values = {i + 1 for i, a in enumerate(argv) if a in ("--stack", "--policy-pack", "--policy-pack-config")}
    words = [a for i, a in enumerate(argv) if not a.startswith("-") and i not in values]

    def save() -> None:
        state_file.write_text(json.dumps(state))

    def no_stack(name: str) -> int:
        print(f"error: no stack named '{name}' found", file=sys.stderr)
        return 255

    if words[:1] == ["version"]:
        print(os.environ.get("FAKE_PULUMI_VERSION", "v3.205.0"))
        return 0
    if words[:2] == ["stack", "ls"]:
        print("NAME  LAST UPDATE  RESOURCE COUNT")
        for name in stacks:
            print(f"{name}  n/a  n/a")
        return 0
    if words[:2] == ["stack", "init"]:
        name = words[2] if len(words) > 2 else flag_stack
        if not (os.environ.get("PULUMI_CONFIG_PASSPHRASE") or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
            print("error: passphrase must be set with PULUMI_CONFIG_PASSPHRASE", file=sys.stderr)
            return 255
        if name in stacks:
            print(f"error: stack '{name}' already exists", file=sys.stderr)
            return 255
        stacks[name] = {"outputs": {}}
        save()
        with open(f"Pulumi.{name}.yaml", "a") as stack_file:  # as the real CLI does, at the end
            stack_file.write(f"encryptionsalt: v1:fake-salt-{name}\n")
        print(f"Created stack '{name}'")
        return 0
    if words[:2] == ["stack", "select"]:
        return 0 if words[2] in stacks else no_stack(words[2])
    if words[:2] == ["stack", "output"]:
        if flag_stack not in stacks:
            return no_stack(flag_stack)
        outputs = stacks[flag_stack]["outputs"]
        print(json.dumps(outputs) if len(words) < 3 else outputs.get(words[2], ""))
        return 0
    if words[:1] in (["preview"], ["up"]):
        if flag_stack not in stacks:
            return no_stack(flag_stack)
        return run_program(words[0], flag_stack, stacks, save)
    return 0


def run_program(command: str, stack: str, stacks: dict, save) -> int:
    """What the program's gate and verifiedCommit export decide, with the real decision code."""
    sys.path.insert(0, os.getcwd())
    _stub_pulumi_sdk()
    from keybuzz import promotion
    from keybuzz.config import load_stack_yaml

    config = (load_stack_yaml(Path(f"Pulumi.{stack}.yaml").read_text()) or {}).get("config") or {}
    promotes_from = config.get("keybuzz-k3s:promotesFrom", "")
    commit = promotion.read_commit(Path.cwd())
    handed = promotion.previous_from_env(os.environ)
    if promotes_from and handed is None:
        # The real program would use a StackReference; bin/deploy must always hand the stage over.
        print("error: fake pulumi: no KEYBUZZ_PREVIOUS_* from bin/deploy", file=sys.stderr)
        return 255
    allow = config.get("keybuzz-k3s:allowUnverifiedPromotion") is True or promotion.override_from_env(os.environ)
    decision = promotion.decide(
        stack, promotes_from, handed.verified if handed else "", commit, allow, bool(handed and handed.missing)
    )
    if not decision.allowed:
        print(f"error: promotesFrom: {decision.message}")
        return 255
    if decision.overridden:
        print(f"warning: PROMOTION GATE OVERRIDDEN: {decision.message}")
    if command == "up" and os.environ.get("FAKE_PULUMI_UP_ERROR"):
        # As the engine reports a remote command that could not connect (pulumi-command's dial error).
        print(f"  command:remote:Command (keybuzz-{stack}-k3s-install-keybuzz-{stack}-cp-1):")
        print(f"    error: {os.environ['FAKE_PULUMI_UP_ERROR']}")
        return 255
    if command == "up":
        reason = promotion.withheld_reason(commit, checks_passed=True)
        if reason:
            print(f"warning: {reason}")
        stacks[stack]["outputs"]["verifiedCommit"] = promotion.verified_commit(commit, checks_passed=True)
        save()
    print(f"{command}: ok")
    return 0


def _stub_pulumi_sdk() -> None:
    """keybuzz.promotion defines its dynamic provider on the SDK's classes; the decision needs none of
    them. Stand-ins keep a fake preview at ~0.1 s instead of the SDK's ~0.5 s import."""
    import types

    sdk, dynamic = types.ModuleType("pulumi"), types.ModuleType("pulumi.dynamic")
    for name in ("CheckFailure", "CheckResult", "CreateResult", "DiffResult", "ResourceProvider", "UpdateResult",
                 "Resource"):  # fmt: skip
        setattr(dynamic, name, type(name, (), {}))
    sdk.dynamic = dynamic
    sdk.RunError = type("RunError", (Exception,), {})
    sys.modules.update({"pulumi": sdk, "pulumi.dynamic": dynamic})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
