"""keybuzz-k3s: parse the stack config, build the cluster, export its outputs."""

from pathlib import Path

import pulumi

from components.stack import build
from keybuzz.config import load
from keybuzz.promotion import read_commit

cfg, secrets = load()
for key, value in build(cfg, secrets, read_commit(Path(__file__).resolve().parent)).exports.items():
    pulumi.export(key, value)
