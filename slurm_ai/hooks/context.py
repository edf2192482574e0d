"""What every hook step receives, and the contract between hook steps.

The Prolog and Epilog are thin orchestrators: they build one `HookContext` and
call the steps of each feature in turn (topology/affinity, health, energy,
telemetry). Each step returns a JSON-able fragment that becomes part of the
node's record under the step's key ("plan", "platform", "health", "energy",
"usage", ...). A step that raises is logged and skipped: internal errors fail
open. Only a step that calls `ctx.request_drain(reason)` (a real health
failure) makes the Prolog drain the node and exit non-zero.

Step signature, looked up by the orchestrator in each feature module:

    def prolog_step(ctx: HookContext) -> dict[str, Any] | None
    def epilog_step(ctx: HookContext) -> dict[str, Any] | None

`ctx.prolog_state` holds, in the Epilog, what the Prolog's steps returned for
this job on this node (read back from the spool), keyed by step name.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_ai.config import Config
from slurm_ai.slurmenv import JobEnv


@dataclass
class HookContext:
    config: Config
    job: JobEnv
    node: str
    spool_dir: Path
    log: logging.Logger
    started: float = field(default_factory=time.time)
    prolog_state: dict[str, Any] = field(default_factory=dict)
    drain_reasons: list[str] = field(default_factory=list)
    # The hook's environment as slurmd gave it (SLURM_JOB_CPUS_PER_NODE, ...).
    env: dict[str, str] = field(default_factory=dict)
    # What the steps that already ran in this hook returned, keyed by step name
    # (steps run in the order topology, health, agent, energy).
    fragments: dict[str, Any] = field(default_factory=dict)

    @property
    def job_dir(self) -> Path:
        """Per-job spool directory (created by the orchestrator before steps run)."""
        return self.spool_dir / "jobs" / str(self.job.job_id)

    def request_drain(self, reason: str) -> None:
        """Ask the orchestrator to drain this node with a readable reason.

        Reasons look like "slurm_ai: <check>: <detail>" and are cut to fit
        Slurm's reason field.
        """
        self.drain_reasons.append(reason)
