"""The systemd unit for the agent; `slurm-ai install` renders and installs it.

    unit_text(executable="/opt/slurm-ai/bin/slurm-ai", config="/etc/slurm-ai/config.toml")

Why these settings: the agent must read every process's environ (root), must
not be killed with the jobs it watches (its own slice, not slurmstepd's), and
should cost the node as little as possible (Nice, CPUWeight, IO idle). It
restarts on failure; the store survives restarts.
"""

from __future__ import annotations

import shlex
from string import Template

UNIT_NAME = "slurm-ai-agent.service"

UNIT_TEMPLATE = Template(
    """\
[Unit]
Description=slurm-ai node agent (per-job GPU and CPU telemetry)
Documentation=file://$docs
After=network.target nvidia-persistenced.service
Before=slurmd.service

[Service]
Type=simple
ExecStart=$exec_start
Restart=on-failure
RestartSec=5
Nice=10
CPUWeight=20
IOSchedulingClass=idle
# The store directory lives under /var/lib/slurm-ai/agent (created 0700 by the agent).
StateDirectory=slurm-ai
StateDirectoryMode=0700
ProtectHome=read-only
PrivateTmp=yes
NoNewPrivileges=yes
KillSignal=SIGTERM
TimeoutStopSec=15

[Install]
WantedBy=multi-user.target
"""
)


def unit_text(
    executable: str,
    config: str = "/etc/slurm-ai/config.toml",
    *,
    extra_args: list[str] | None = None,
    docs: str = "/usr/share/doc/slurm-ai/agent.md",
) -> str:
    """The unit file text; arguments are quoted for systemd's command line."""
    argv = [executable, "--config", config, "agent", *(extra_args or [])]
    for arg in argv:
        if "\n" in arg or "%" in arg:
            raise ValueError(f"unit argument {arg!r} has a newline or '%'")
    return UNIT_TEMPLATE.substitute(exec_start=shlex.join(argv), docs=docs)
