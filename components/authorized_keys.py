"""The configured SSH keys on every running node, in a managed block of /root/.ssh/authorized_keys.

Servers ignore ``sshKeys`` after creation (a change would replace them); this is how a key added to
or removed from ``sshPublicKeys`` reaches the nodes. The script is rendered in keybuzz/ssh_keys.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command

from components.k3s import _connection
from components.servers import ServerHandle
from keybuzz.config import ClusterConfig, Secrets
from keybuzz.guards import SshKeysRecord
from keybuzz.ssh_keys import authorized_keys_script, fingerprint


class AuthorizedKeys(pulumi.ComponentResource):
    """One remote command per node, re-run whenever the configured key list changes."""

    commands: dict[str, command.remote.Command]
    record: SshKeysRecord

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        secrets: Secrets,
        servers: Sequence[ServerHandle],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keybuzz:hetzner:AuthorizedKeys", name, None, opts)
        script = authorized_keys_script(cfg.ssh_public_keys)
        trigger = sorted(fingerprint(k) for k in cfg.ssh_public_keys)
        self.commands = {
            h.node.name: command.remote.Command(
                f"{name}-{h.node.name}",
                connection=_connection(h, secrets),
                create=script,
                triggers=trigger,
                # Nothing from a previous run is worth sending back to the node.
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[h.server]),
            )
            for h in servers
        }
        # Recorded only once every node has the new block: the next run's preview refuses a key list
        # that a node which missed this update would not accept (keybuzz/guards.py).
        self.record = SshKeysRecord(
            f"{name}-on-every-node",
            trigger,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.commands.values())),
        )
        self.register_outputs({})
