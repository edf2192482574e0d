"""The health step of the Prolog: run the node check when the policy says so.

Returns {"health": {...}} (the node record's health field). On a real
failure (verdict fail: wrong sums, a floor not met, a fatal GPU fault) it
calls ctx.request_drain("slurm_ai: <check>: <detail>"); the orchestrator then
drains the node and exits 1, so Slurm requeues the job. A timeout, an error
of the check itself or any exception fails open: logged, verdict
timeout/error, no drain.
"""

from __future__ import annotations

import time
from typing import Any

from slurm_ai.hooks.context import HookContext


def prolog_step(ctx: HookContext) -> dict[str, Any] | None:
    started = time.time()
    try:
        return {"health": _prolog(ctx)}
    except Exception as exc:  # fail open: a bug in slurm-ai must not drain a node
        ctx.log.exception("event=health_error error=%s", " ".join(str(exc).split())[:300])
        return {
            "health": {
                "verdict": "error",
                "reason": f"internal error: {type(exc).__name__}",
                "cached": False,
                "checked_at": round(started, 3),
            }
        }


def _prolog(ctx: HookContext) -> dict[str, Any]:
    from slurm_ai.health.drain import drain_reason
    from slurm_ai.health.history import HealthStore
    from slurm_ai.health.node import NodeCheckOptions, run_node_check
    from slurm_ai.health.nodegpu import read_boot_id
    from slurm_ai.health.policy import decide
    from slurm_ai.health.settings import HealthSettings

    settings = HealthSettings.from_config(ctx.config)
    store = HealthStore(ctx.spool_dir)
    last = store.last() if settings.when != "every_job" else None
    boot_id = read_boot_id(settings.boot_id_file)
    decision = decide(settings, ctx.job, last, boot_id, time.time())
    if not decision.run:
        ctx.log.info("event=health_skipped why=%s", decision.why)
        if decision.cached is not None:
            return {**decision.cached, "cached": True}
        return {"verdict": "skipped", "reason": decision.why, "cached": False}
    options = NodeCheckOptions(
        backend=settings.backend,
        timeout_s=settings.budget_s,
        partition=ctx.job.partition,
        allocated_gpus=ctx.job.gpus or None,
        gpu_checks=settings.gpu_checks,
        node=ctx.node,
        # The Prolog acts on the verdict: XIDs it has seen are not judged again.
        advance_xid_cursor=True,
    )
    report = run_node_check(settings, options, store, record=True)
    fragment = report.fragment()
    try:
        store.save_last(boot_id, report.checked_at, fragment)
    except Exception as exc:  # the cache is optional
        ctx.log.warning("event=health_cache_failed error=%s", exc)
    if settings.textfile_dir:
        from slurm_ai.health.prom import write_textfile

        try:
            write_textfile(settings.textfile_dir, fragment, ctx.node)
        except Exception as exc:
            ctx.log.warning("event=health_textfile_failed error=%s", exc)
    ctx.log.info(
        "event=health verdict=%s backend=%s busbw_gbps=%s s=%.2f reason=%s",
        report.verdict.value,
        report.backend,
        fragment.get("busbw_gbps"),
        report.duration_s,
        report.reason,
    )
    if report.verdict.drains:
        top = report.failed_check
        ctx.request_drain(
            drain_reason(top.check if top else "health", top.reason if top else report.reason)
        )
    return fragment
