"""keybuzz-k3s: parse the stack config, build the cluster, export its outputs."""

from pathlib import Path

import pulumi

from components.stack import build
from keybuzz.config import ConfigError, load
from keybuzz.promotion import read_commit

try:
    cfg, secrets = load()
except ConfigError as exc:
    # The language host prints a RunError as one error line, not a Python traceback: the message
    # already names the key, the value and what is allowed.
    raise pulumi.RunError(str(exc)) from None
for key, value in build(cfg, secrets, read_commit(Path(__file__).resolve().parent)).exports.items():
    pulumi.export(key, value)
