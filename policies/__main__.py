"""Policy pack entry point: the CLI runs this folder with itself on sys.path."""

import guardrails
import pack
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name=guardrails.PACK_NAME,
    description="keybuzz-k3s guardrails: no host namespaces/ports, no app DaemonSets, no NodePorts, "
    "no literal IPs, Calico IPIP only, admin ports not open to the world.",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=pack.build_policies(),
)
