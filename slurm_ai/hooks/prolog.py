"""The node Prolog: run the steps, keep their fragments for the Epilog.

Exit status: 0 always, except when a step asked for a drain (a real health
failure): then the node is drained with the step's readable reason and the
Prolog exits 1 (Slurm requeues the job held). Internal errors never drain.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from slurm_ai.errors import SlurmAIError, SpoolError
from slurm_ai.hooks import runner
from slurm_ai.hooks.context import HookContext

DRAIN_REASON_MAX = 120
NODE_STATE_VERSION = 1


def drain_reason(reasons: list[str]) -> str:
    text = "; ".join(reasons) or "slurm_ai: drain requested"
    text = re.sub(r"[\x00-\x1f\x7f]", " ", text)
    return text[:DRAIN_REASON_MAX]


def drain_node(ctx: HookContext, reason: str) -> bool:
    """Drain this node, unless it is drained already or another's (health.drain's
    rule: an admin's or NHC's reason is never overwritten)."""
    from slurm_ai.health.drain import drain_unless_held, scontrol_for

    return drain_unless_held(
        ctx.node, reason, ctx.config.slurm_env(), ctx.log, 15, scontrol_for(ctx.config)
    )


def run_prolog(config_path: str | None, environ: Mapping[str, str]) -> int:
    """The whole Prolog; returns the exit status for slurmd."""
    return runner.run_hook("prolog", config_path, environ, _prolog)


def _prolog(
    config: Any,
    job: Any,
    node: str,
    environ: Mapping[str, str],
    log: Any,
    started: float,
    t0: float,
) -> int:
    from slurm_ai.accounting.outbox import Spool

    spool = Spool(config.spool_dir, log)
    try:
        spool.ensure_job_dir(job.job_id)
    except SpoolError as exc:
        # Still run the steps (the health check above all); the state is held below.
        log.warning("event=spool_unwritable error=%s", runner.one_line(exc))
    ctx = HookContext(config, job, node, config.spool_dir, log, env=dict(environ))
    _prepare_marks(ctx)
    fragments, errors, durations = runner.run_steps(ctx, "prolog", runner.step_names(config))
    timing = {"prolog_start": round(started, 3), "prolog_s": round(time.perf_counter() - t0, 4)}
    if "health" in durations:
        timing["health_s"] = round(durations["health"], 4)
    state = {
        "v": NODE_STATE_VERSION,
        "node": node,
        "job": runner.job_meta(ctx),
        "time": timing,
        "steps": fragments,
        "errors": errors,
    }
    try:
        spool.write_node_file(job.job_id, node, "prolog", state)
    except SlurmAIError as exc:
        _hold_state(config, job.job_id, node, state, exc, log)
    log.info(
        "event=prolog_done s=%.3f steps=%s errors=%d",
        time.perf_counter() - t0,
        ",".join(f"{k}:{v:.3f}" for k, v in durations.items()),
        len(errors),
    )
    if ctx.drain_reasons:
        drain_node(ctx, drain_reason(ctx.drain_reasons))
        return 1
    return 0


def _hold_state(
    config: Any, job_id: str, node: str, state: dict[str, Any], exc: Exception, log: Any
) -> None:
    """The spool refused the Prolog state: keep it in the hold directory for the
    Epilog (accounting/held.py)."""
    from slurm_ai.accounting import held
    from slurm_ai.accounting.settings import AccountingSettings

    try:
        where = held.hold(AccountingSettings.from_config(config).hold_dir, job_id, node,
                          "prolog", state)  # fmt: skip
    except SlurmAIError as hold_exc:
        log.error(
            "event=spool_write_failed spool=%s error=%s hold_error=%s",
            config.spool_dir,
            runner.one_line(exc),
            runner.one_line(hold_exc),
        )
        return
    log.error(
        "event=prolog_state_held spool=%s spool_error=%s held_in=%s",
        config.spool_dir,
        runner.one_line(exc),
        where,
    )


def _prepare_marks(ctx: HookContext) -> None:
    """The directory `slurm-ai mark` writes into (owned by the job's user)."""
    from slurm_ai.accounting import marks
    from slurm_ai.accounting.settings import AccountingSettings

    try:
        settings = AccountingSettings.from_config(ctx.config)
        gid_text = ctx.env.get("SLURM_JOB_GID", "")
        gid = int(gid_text) if gid_text.isdigit() else None
        marks.prepare(settings.mark_dir, str(ctx.job.job_id), ctx.job.uid, gid)
    except (OSError, SlurmAIError) as exc:
        ctx.log.warning("event=mark_dir_failed error=%s", runner.one_line(exc))
