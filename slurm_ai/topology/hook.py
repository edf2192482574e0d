"""Prolog step: the node's platform fingerprint and the job's affinity plan.

Returns {"platform": ..., "plan": ...}; the orchestrator stores each key in
the node record. The fingerprint comes from the per-boot cache in the spool,
so the step costs a file read on all but the first job after a boot.
"""

from __future__ import annotations

import os
from typing import Any

from slurm_ai.accounting.settings import AccountingSettings
from slurm_ai.errors import SlurmAIError
from slurm_ai.hooks.context import HookContext
from slurm_ai.sysfs import Sysfs
from slurm_ai.topology import planfile
from slurm_ai.topology.alloc import allocation_from_env
from slurm_ai.topology.model import NodeTopology
from slurm_ai.topology.plan import PlanOptions, compute_plan
from slurm_ai.topology.probe import probe_live_cached
from slurm_ai.topology.settings import TopologySettings, load_settings
from slurm_ai.topology.virt import platform_record


def prolog_step(ctx: HookContext) -> dict[str, Any] | None:
    try:
        settings = load_settings(ctx.config)
    except SlurmAIError as exc:
        ctx.log.warning("topology: bad [topology] config (%s); using defaults", exc)
        settings = TopologySettings()
    probe = probe_live_cached(
        ctx.spool_dir,
        max_age_s=settings.cache_max_age_s,
        nvml_timeout=settings.nvml_timeout_s,
    )
    for note in probe.notes:
        ctx.log.warning("topology: %s", note)
    fragment: dict[str, Any] = {}
    try:
        fragment["platform"] = platform_record(
            probe.fingerprint, ctx.config.section("platform"), ctx.node, ctx.job.partition
        )
    except SlurmAIError as exc:
        ctx.log.warning("topology: [platform] override ignored: %s", exc)
        fragment["platform"] = platform_record(probe.fingerprint)
        fragment["platform"]["evidence"].append(f"override ignored: {exc}")
    alloc = allocation_from_env(
        os.environ,
        Sysfs("/"),
        probe.topology,
        in_prolog=True,
        prolog_cpus=lambda: _cpus_from_scontrol(ctx, probe.topology),
    )
    plan = compute_plan(
        probe.topology,
        alloc,
        PlanOptions(nic_exclude=settings.nic_exclude, own_gpu_only=settings.own_gpu_only),
    )
    fragment["plan"] = plan.summary()
    _write_task_plan(ctx, probe.topology, alloc.gpus, settings)
    return fragment


SHOW_JOB_TIMEOUT_S = 5.0


def _cpus_from_scontrol(ctx: HookContext, topo: NodeTopology) -> tuple[list[int], str]:
    """The job's CPUs on this node from `scontrol show job -d` (its CPU_IDs): with
    PrologFlags=Contain the Prolog runs before the job's cgroup exists."""
    from slurm_ai.proc import run_command
    from slurm_ai.topology.alloc import cpus_from_show_job

    scontrol = ctx.config.section("slurm").get_str("scontrol", "/usr/bin/scontrol")
    argv = [scontrol, "show", "job", "-d", str(ctx.job.job_id)]
    try:
        result = run_command(argv, timeout=SHOW_JOB_TIMEOUT_S, extra_env=ctx.config.slurm_env())
    except SlurmAIError as exc:
        return [], f"`{' '.join(argv)}` failed: {exc}"
    return cpus_from_show_job(result.stdout, ctx.node, topo.cpu)


def _write_task_plan(
    ctx: HookContext, topo: NodeTopology, gpus: list[int], settings: TopologySettings
) -> None:
    """The SPANK plugin's input; without it the job's tasks run unpinned (logged)."""
    devices: list[str] = []
    if topo.gpus:
        from slurm_ai.topology.gresconf import device_files

        devices, source = device_files(ctx.config.slurm_conf, ctx.node, len(topo.gpus))
        ctx.log.debug("topology: GPU device files from %s", source)
    try:
        planfile.write(ctx.job_dir, planfile.render(topo, gpus, settings, devices))
    except (planfile.PlanFileError, SlurmAIError, OSError) as exc:
        ctx.log.warning("topology: no task plan for the SPANK plugin: %s", exc)


def epilog_step(ctx: HookContext) -> dict[str, Any] | None:
    """The Prolog's fragment, its plan saying which path pinned the tasks."""
    fragment = dict(ctx.prolog_state.get("topology") or {})
    try:
        mark_dir = AccountingSettings.from_config(ctx.config).mark_dir
    except SlurmAIError as exc:
        ctx.log.warning("topology: [accounting] unreadable (%s); default mark_dir", exc)
        mark_dir = AccountingSettings().mark_dir
    plan = dict(fragment.get("plan") or {})
    plan["pinned_by"] = planfile.pinned_by(ctx.job_dir, mark_dir, str(ctx.job.job_id))
    fragment["plan"] = plan
    return fragment
