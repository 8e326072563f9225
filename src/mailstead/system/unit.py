"""The systemd service that ``mailstead init --system`` installs (systemd.service(5))."""

from __future__ import annotations

import shlex
from pathlib import Path

__all__ = ["UNIT_PATH", "unit_text"]

#: Where the unit goes: the administrator's units, which packages never touch.
UNIT_PATH = Path("/etc/systemd/system/mailstead.service")


def unit_text(
    *, command: list[str], config: Path, data_dir: Path, user: str, group: str, stop_timeout: int
) -> str:
    """The unit's text: ``Type=notify``, unprivileged with one capability, read-only system.

    ``command`` starts Mailstead (the interpreter and ``-m mailstead``, or
    the script); ``stop_timeout`` is ``[limits] shutdown_timeout``, to which
    systemd's own stop deadline adds a margin.
    """
    exec_start = shlex.join([*command, "--config", str(config), "serve"])
    return f"""\
# Written by `mailstead init --system`; see docs/operations.md.
[Unit]
Description=Mailstead mail server
After=network-online.target
Wants=network-online.target

[Service]
# serve says READY=1 once every worker listens, STOPPING=1 on SIGTERM.
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# Reload config, certificates and webhooks without dropping sessions.
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
# Only the supervisor gets SIGTERM; it stops the workers itself.
KillMode=mixed
TimeoutStopSec={stop_timeout + 15}s
User={user}
Group={group}
# Ports below 1024 without root; nothing else, and never more.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={data_dir}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
UMask=0077
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""
