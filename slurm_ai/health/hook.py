"""The health steps of the Prolog and the Epilog.

Prolog (every job's critical path): with `when = "background"` (the default)
it runs only the quick GPU checks (NVML health, XIDs, GPU count: no torch, no
workers) and reads the node's latest full verdict from the spool; the other
modes run the full check here when the policy says so (every_job costs every
job the check's start-up: about 5 s on a GPU node). Either way it returns
{"health": {...}} with `provenance`: fresh, cached (with its age) or
unchecked (with why), so no job ever ran silently unchecked.

Epilog (background mode): when the latest full verdict is stale or absent,
run the full check on the job's GPUs, which are free now, and store it.

A real failure (verdict fail) drains with "slurm_ai: <check>: <detail>": in
the Prolog through ctx.request_drain (the orchestrator drains and exits 1, so
Slurm requeues the job), in the Epilog by scontrol (an Epilog exit != 0 would
drain with Slurm's own reason). Timeouts, errors of the check itself and any
exception fail open: logged, no drain.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from slurm_ai.hooks.context import HookContext

if TYPE_CHECKING:
    from slurm_ai.health.history import HealthStore
    from slurm_ai.health.node import HealthReport
    from slurm_ai.health.settings import HealthSettings


def prolog_step(ctx: HookContext) -> dict[str, Any] | None:
    started = time.time()
    try:
        return {"health": _prolog(ctx)}
    except Exception as exc:  # fail open: a bug in slurm-ai must not drain a node
        ctx.log.exception("event=health_error error=%s", " ".join(str(exc).split())[:300])
        why = f"internal error: {type(exc).__name__}"
        return {
            "health": {
                "verdict": "error",
                "reason": why,
                "cached": False,
                "checked_at": round(started, 3),
                "provenance": {"source": "unchecked", "age_s": None, "why": why},
            }
        }


def _prolog(ctx: HookContext) -> dict[str, Any]:
    from slurm_ai.health.history import HealthStore
    from slurm_ai.health.nodegpu import read_boot_id
    from slurm_ai.health.policy import decide, provenance
    from slurm_ai.health.settings import HealthSettings

    settings = HealthSettings.from_config(ctx.config)
    store = HealthStore(ctx.spool_dir)
    now = time.time()
    last = store.last() if settings.when != "every_job" else None
    boot_id = read_boot_id(settings.boot_id_file)
    decision = decide(settings, ctx.job, last, boot_id, now)
    if not decision.run:
        if decision.background:
            return _background_prolog(ctx, settings, store, last, now)
        ctx.log.info("event=health_skipped why=%s", decision.why)
        if decision.cached is not None:
            age = _age(decision.cached, now)
            return {
                **decision.cached,
                "cached": True,
                "provenance": provenance(
                    "cached", str(decision.cached.get("verdict")), decision.why, age
                ),
            }
        return {
            "verdict": "skipped",
            "reason": decision.why,
            "cached": False,
            "provenance": provenance("unchecked", "skipped", decision.why, None),
        }
    from slurm_ai.health.fullcheck import drain_text

    report = _full_check(ctx, settings, store, boot_id, settings.budget_s, "health")
    if report.verdict.drains:
        ctx.request_drain(drain_text(report))
    fragment = report.fragment()
    fragment["provenance"] = provenance("fresh", report.verdict.value, report.reason, 0.0)
    return fragment


def _full_check(
    ctx: HookContext,
    settings: HealthSettings,
    store: HealthStore,
    boot_id: str | None,
    budget_s: float,
    event: str,
    partition: str | None = None,
) -> HealthReport:
    """The full check on this job's GPUs (all of them when Slurm gave none), judged
    by `partition`'s floors (default: the job's)."""
    from slurm_ai.health.fullcheck import run_full_check

    return run_full_check(
        settings,
        store,
        node=ctx.node,
        boot_id=boot_id,
        budget_s=budget_s,
        partition=partition or ctx.job.partition,
        allocated_gpus=ctx.job.gpus or None,
        log=ctx.log,
        event=event,
    )


def _age(health: dict[str, Any], now: float) -> float | None:
    checked_at = health.get("checked_at")
    if isinstance(checked_at, (int, float)) and not isinstance(checked_at, bool):
        return round(now - float(checked_at), 1)
    return None


def _background_prolog(
    ctx: HookContext,
    settings: HealthSettings,
    store: HealthStore,
    last: dict[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    """Quick GPU checks now; the node's latest full verdict from the spool.

    Only light modules here (no node.py, backends or launcher): this runs on
    every job's critical path."""
    from slurm_ai.health.drain import drain_reason_for
    from slurm_ai.health.nodegpu import GpuPart, gpu_health, read_boot_id, save_cursor
    from slurm_ai.health.policy import latest, provenance
    from slurm_ai.health.verdict import CheckResult, Verdict, conclude

    began = time.perf_counter()
    quick = GpuPart()
    if settings.gpu_checks:
        quick = gpu_health(
            settings,
            budget=settings.budget_s,
            allocated=ctx.job.gpus or None,
            store=store,
            node=ctx.node,
        )
        # The Prolog acts on the verdict: XIDs it has seen are not judged again.
        problem = save_cursor(store, ctx.node, quick.cursor)
        if problem:
            quick.checks.append(CheckResult("xid", Verdict.INFO, problem))
    quick_verdict, _ = conclude(quick.checks)
    quick_s = time.perf_counter() - began
    view = latest(settings, last, now, read_boot_id(settings.boot_id_file), ctx.job.gpus)
    cached = view.health or {}
    if view.usable:
        full = CheckResult("full-check", Verdict(str(cached.get("verdict"))), _full_reason(cached))
    else:
        full = CheckResult("full-check", Verdict.UNCHECKED, view.why)
    checks = [*quick.checks, full]
    verdict, reason = conclude(checks)
    if quick_verdict.drains:
        ctx.request_drain(drain_reason_for(quick.checks, ""))
    # device: what the all-reduce ran on (the report keys the job's busbw by it)
    keep = (
        "backend", "device", "busbw_gbps", "algbw_gbps", "size_bytes", "ranks", "wrong", "bench",
    )  # fmt: skip
    fragment: dict[str, Any] = {k: cached.get(k) for k in keep if k in cached}
    fragment.update(
        verdict=verdict.value,
        reason=reason,
        cached=view.usable,
        checked_at=cached.get("checked_at", round(now, 3)),
        duration_s=round(quick_s, 3),
        checks=[c.to_json() for c in checks if c.verdict is not Verdict.PASS],
        provenance=provenance(
            "cached" if view.usable else "unchecked",
            str(cached.get("verdict", "unchecked")),
            view.why or str(cached.get("reason", "")),
            view.age_s,
        ),
    )
    ctx.log.info(
        "event=health_quick verdict=%s full=%s age_s=%s s=%.3f",
        verdict.value,
        fragment["provenance"]["source"],
        view.age_s,
        quick_s,
    )
    return fragment


def _full_reason(cached: dict[str, Any]) -> str:
    text = str(cached.get("reason") or "")
    return f"last full check: {cached.get('verdict')}" + (f" ({text})" if text else "")


def epilog_step(ctx: HookContext) -> dict[str, Any] | None:
    try:
        return _epilog(ctx)
    except Exception as exc:  # fail open: the Epilog must never fail for our bug
        ctx.log.exception("event=health_refresh_error error=%s", " ".join(str(exc).split())[:300])
        return None


def _epilog(ctx: HookContext) -> dict[str, Any] | None:
    """Refresh a stale or missing full verdict on the job's (now free) GPUs."""
    from slurm_ai.health.fullcheck import drain_text
    from slurm_ai.health.history import HealthStore
    from slurm_ai.health.nodegpu import gpu_count, read_boot_id
    from slurm_ai.health.policy import latest
    from slurm_ai.health.settings import HealthSettings

    settings = HealthSettings.from_config(ctx.config)
    if not (settings.enabled and settings.when == "background" and settings.epilog_refresh):
        return None
    if settings.partitions and ctx.job.partition not in settings.partitions:
        return None
    store = HealthStore(ctx.spool_dir)
    boot_id = read_boot_id(settings.boot_id_file)
    view = latest(settings, store.last(), time.time(), boot_id, ctx.job.gpus)
    if view.usable:
        return None
    if not ctx.job.gpus and gpu_count(None, settings.budget_s) > 0:
        # The job had none of this node's GPUs: other jobs may be using them.
        ctx.log.info("event=health_refresh_skipped why=job had no GPUs of this node")
        return None
    ctx.log.info("event=health_refresh why=%s", view.why)
    from slurm_ai.errors import SlurmAIError
    from slurm_ai.health.drain import drain_unless_held, read_node_state, scontrol_for

    scontrol, slurm_env = scontrol_for(ctx.config), ctx.config.slurm_env()
    # The node's verdict, judged as the HealthCheckProgram judges it: by the node's
    # partition with floors, not by whichever partition this job came through.
    try:
        partition = read_node_state(ctx.node, slurm_env, scontrol=scontrol).partition_for(
            settings.partition_floors
        )
    except (SlurmAIError, ValueError):
        partition = None
    report = _full_check(
        ctx, settings, store, boot_id, settings.background_budget_s, "health_refreshed", partition
    )
    if report.verdict.drains:
        drain_unless_held(ctx.node, drain_text(report), slurm_env, ctx.log, scontrol=scontrol)
    fragment = report.fragment()
    refresh = {
        k: fragment.get(k)
        for k in ("verdict", "reason", "checked_at", "duration_s", "startup_s", "measure_s")
    }
    steps = ctx.prolog_state.get("health")
    health = steps.get("health") if isinstance(steps, dict) else None
    return {"health": {**(health if isinstance(health, dict) else {}), "refresh": refresh}}
