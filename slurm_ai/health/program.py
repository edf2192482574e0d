"""Slurm's HealthCheckProgram: the full node check where its cost is hidden.

slurmd runs the program as root every HealthCheckInterval seconds and once
at start-up before the node registers (so a freshly booted node is checked
before it takes jobs), kills it after 60 s, and ignores its exit status: the
program acts itself. Here:

1. A node whose state shows a job (ALLOCATED, MIXED, COMPLETING) is left
   alone at once: its GPUs are in use and a measurement would disturb the
   job and be wrong. (HealthCheckNodeState=IDLE says the same to slurmd.)
2. Otherwise the full check runs within `background_budget_s` (default
   50 s, under slurmd's 60 s kill) and becomes the node's latest verdict,
   which every Prolog reads.
   Floors and history are those of the node's first partition with floors
   in [health.floors.NAME] (else its first partition).
3. fail drains with "slurm_ai: <check>: <detail>" unless the node is already
   drained (another reason is never overwritten); pass or warn resumes the
   node only if its drain reason is ours (`auto_resume`). A node drained by
   an admin or by NHC ("NHC: ...") stays drained.

Exit status is always 0; errors are logged (fail open).
Run by the shim `python -I -m slurm_ai.hooks healthcheck --config PATH`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from slurm_ai.errors import ConfigError, SlurmAIError

if TYPE_CHECKING:
    from slurm_ai.config import Config


def run_program(config_path: str | None, environ: Mapping[str, str]) -> int:
    from slurm_ai.config import load_config
    from slurm_ai.hooks.runner import one_line, setup_log

    node = (environ.get("SLURMD_NODENAME") or socket.gethostname()).split(".")[0]
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        setup_log(None, "healthcheck", None, node).error("event=config_error error=%s", exc)
        return 0
    log = setup_log(config, "healthcheck", None, node)
    try:
        _program(config, node, log)
    except Exception as exc:  # fail open: never drain a node for our own bug
        log.exception("event=internal_error error=%s", one_line(exc))
    return 0


def _program(config: Config, node: str, log: logging.Logger) -> None:
    from slurm_ai.health.drain import (
        NodeState,
        drain_node,
        node_action,
        read_node_state,
        resume_node,
        scontrol_for,
    )
    from slurm_ai.health.fullcheck import drain_text, run_full_check
    from slurm_ai.health.history import HealthStore
    from slurm_ai.health.nodegpu import read_boot_id
    from slurm_ai.health.settings import HealthSettings

    settings = HealthSettings.from_config(config)
    if not settings.enabled:
        log.info("event=health_program_skipped why=disabled")
        return
    scontrol, slurm_env = scontrol_for(config), config.slurm_env()
    try:
        state = read_node_state(node, slurm_env, scontrol=scontrol)
    except (SlurmAIError, ValueError) as exc:
        # slurmctld unreachable (at boot it may not be up yet): still check and
        # store the verdict for the Prologs; drain/resume will be tried and logged.
        log.warning("event=node_state_unknown error=%s", exc)
        state = NodeState(frozenset(), "")
    if state.busy:
        log.info("event=health_program_skipped why=busy states=%s", "+".join(sorted(state.states)))
        return
    report = run_full_check(
        settings,
        HealthStore(config.spool_dir),
        node=node,
        boot_id=read_boot_id(settings.boot_id_file),
        budget_s=settings.background_budget_s,
        partition=state.partition_for(settings.partition_floors),
        allocated_gpus=None,
        log=log,
        event="health_program",
    )
    action = node_action(report.verdict.value, state, settings.auto_resume)
    try:
        if action == "drain":
            reason = drain_text(report)
            drain_node(node, reason, slurm_env, scontrol=scontrol)
            log.warning("event=drained reason=%s", reason)
        elif action == "resume":
            resume_node(node, slurm_env, scontrol=scontrol)
            log.warning("event=resumed was=%s", state.reason)
        elif state.drained:
            log.info("event=left_drained verdict=%s reason=%s", report.verdict.value, state.reason)
    except (SlurmAIError, ValueError) as exc:
        log.error("event=%s_failed error=%s", action, exc)
