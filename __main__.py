"""keybuzz-k3s: parse the stack config, build the cluster, export its outputs."""

import pulumi

from components.stack import build
from keybuzz.config import load

cfg, secrets = load()
for key, value in build(cfg, secrets).exports.items():
    pulumi.export(key, value)
