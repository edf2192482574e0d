"""Slurm's HealthCheckProgram: the full node check where its cost is hidden.

slurmd runs the program as root every HealthCheckInterval seconds and once
at start-up before the node registers (so a freshly booted node is checked
before it takes jobs), kills it after 60 s, and ignores its exit status: the
program acts itself. Here:

1. A node whose state shows a job (ALLOCATED, MIXED, COMPLETING) is left
   alone at once: its GPUs are in use and a measurement would disturb the
   job and be wrong. (HealthCheckNodeState=IDLE says the same to slurmd.)
2. Otherwise the full check runs within `background_budget_s` (default
   50 s), cut to what is left of slurmd's 60 s once this process's own time
   (a chained NHC included) and the scontrol calls after the check are
   counted, and becomes the node's latest verdict, which every Prolog reads.
   Floors and history are those of the node's first partition with floors
   in [health.floors.NAME] (else its first partition).
3. fail drains with "slurm_ai: <check>: <detail>" unless the node is already
   drained or another's (drain.node_action: another reason is never
   overwritten); pass or warn resumes the node only if its drain reason is
   ours and not an XID's (`auto_resume`). A node drained by an admin or by NHC
   ("NHC: ...") stays drained. Both are decided on the node's state read again
   after the check; a state that cannot be read means no action.

Exit status is always 0; errors are logged (fail open).
Run by the shim `python -I -m slurm_ai.hooks healthcheck --config PATH`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from slurm_ai.errors import ConfigError, SlurmAIError

if TYPE_CHECKING:
    from slurm_ai.config import Config

SLURMD_KILL_S = 60.0  # slurmd kills its HealthCheckProgram after this
SCONTROL_S = 5.0  # each scontrol call of the program
# Kept back from slurmd's limit: the state read after the check and the drain or resume.
RESERVE_S = 2 * SCONTROL_S + 2.0
MIN_BUDGET_S = 10.0  # less than this cannot start a check worth its verdict


def seconds_since_start() -> float:
    """Since this process started, from /proc: the shim execs Python, so this
    counts a chained checker's (NHC's) time and the interpreter's start as well.
    0 when /proc cannot tell."""
    try:
        with open("/proc/self/stat") as handle:
            # Field 22 (starttime, clock ticks after boot) comes after the ")" of comm.
            started = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def time_left(elapsed_s: float) -> float:
    """What the check may spend of slurmd's limit, after `elapsed_s` already spent."""
    return SLURMD_KILL_S - RESERVE_S - elapsed_s


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

    def node_state() -> NodeState:
        try:
            return read_node_state(node, slurm_env, timeout=SCONTROL_S, scontrol=scontrol)
        except (SlurmAIError, ValueError) as exc:
            # slurmctld unreachable (at boot it may not be up yet): the verdict is
            # still stored for the Prologs, but nothing is drained or resumed.
            log.warning("event=node_state_unknown error=%s", exc)
            return NodeState(frozenset(), "", known=False)

    state = node_state()
    if state.busy:
        log.info("event=health_program_skipped why=busy states=%s", "+".join(sorted(state.states)))
        return
    budget = min(settings.background_budget_s, time_left(seconds_since_start()))
    if budget < MIN_BUDGET_S:
        # A chained checker (NHC) ran first and left too little of slurmd's 60 s.
        log.warning("event=health_program_skipped why=only %.0f s left of slurmd's limit", budget)
        return
    report = run_full_check(
        settings,
        HealthStore(config.spool_dir),
        node=node,
        boot_id=read_boot_id(settings.boot_id_file),
        budget_s=budget,
        partition=state.partition_for(settings.partition_floors),
        allocated_gpus=None,
        log=log,
        event="health_program",
    )
    if node_action(report.verdict.value, state, settings.auto_resume) or not state.known:
        # Decide on the state now, not the one of before the check: an admin may
        # have drained the node meanwhile, or a job started on it (or slurmctld,
        # unreachable before, answers now: at boot it may come up late).
        state = node_state()
        if state.busy:
            log.warning(
                "event=no_action why=a job started during the check verdict=%s",
                report.verdict.value,
            )
            return
    action = node_action(report.verdict.value, state, settings.auto_resume)
    try:
        if action == "drain":
            reason = drain_text(report)
            drain_node(node, reason, slurm_env, scontrol=scontrol)
            log.warning("event=drained reason=%s", reason)
        elif action == "resume":
            resume_node(node, slurm_env, scontrol=scontrol)
            log.warning("event=resumed was=%s", state.reason)
        elif state.drained or state.held_elsewhere or not state.known:
            log.info(
                "event=left_as_is verdict=%s states=%s reason=%s",
                report.verdict.value,
                "+".join(sorted(state.states)) or "unknown",
                state.reason,
            )
    except (SlurmAIError, ValueError) as exc:
        log.error("event=%s_failed error=%s", action, exc)
