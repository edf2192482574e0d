"""Drain a node with a reason an admin can read: "slurm_ai: <check>: <detail>".

The reason is built from check output, which can carry device strings and
kernel log text: it is reduced to printable ASCII on one line and cut to fit
Slurm's reason field. scontrol runs through run_command (argv, no shell),
with SLURM_CONF from the config because slurmd gives hooks almost no env.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from slurm_ai.proc import CommandResult, run_command

MAX_REASON = 120  # what the Prolog orchestrator keeps, too


def drain_reason(check: str, detail: str) -> str:
    text = f"slurm_ai: {check}: {detail}"
    text = re.sub(r"[^\x20-\x7e]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def drain_node(
    node: str, reason: str, slurm_env: Mapping[str, str], timeout: float = 10.0
) -> CommandResult:
    """`scontrol update nodename=NODE state=drain reason=...` (CommandError on failure)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", node):
        raise ValueError(f"not a node name: {node[:40]!r}")
    return run_command(
        ["scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}"],
        timeout=timeout,
        extra_env=dict(slurm_env),
    )
