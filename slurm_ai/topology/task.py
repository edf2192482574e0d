"""The plan for the task running now (bind, TaskProlog, `plan`), from its environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from slurm_ai.sysfs import Sysfs
from slurm_ai.topology.alloc import allocation_from_env, job_gpus
from slurm_ai.topology.plan import AffinityPlan, PlanOptions, RankPlan, compute_plan
from slurm_ai.topology.probe import probe_node
from slurm_ai.topology.settings import TopologySettings


@dataclass
class TaskPlan:
    plan: AffinityPlan
    local_id: int
    warnings: list[str] = field(default_factory=list)

    @property
    def rank(self) -> RankPlan:
        return self.plan.rank(self.local_id)


def in_slurm_task(env: Mapping[str, str]) -> str | None:
    """None inside a Slurm task, else why not."""
    if not (env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")):
        return "SLURM_JOB_ID is not set (not inside a Slurm job)"
    if not env.get("SLURM_LOCALID", "").strip().isdigit():
        return "SLURM_LOCALID is not set (not a task launched by srun)"
    return None


def plan_for_task(
    env: Mapping[str, str],
    settings: TopologySettings,
    *,
    root: str = "/",
    own_affinity: list[int] | None = None,
) -> TaskPlan:
    """Probe (GPUs only when the job has some), read the allocation, plan."""
    sysfs = Sysfs(root)
    gpus, _ = job_gpus(env, in_prolog=False)
    probe = probe_node(
        root,
        env=env,
        nvml_timeout=settings.nvml_timeout_s,
        with_gpus=bool(gpus),
        with_fingerprint=False,
    )
    if own_affinity is None and sysfs.is_live:
        own_affinity = sorted(os.sched_getaffinity(0))
    own = own_gpus(env, len(probe.topology.gpus)) if gpus and sysfs.is_live else None
    if own is not None:
        env = {**env, "SLURM_STEP_GPUS": ",".join(str(g) for g in own)}
    alloc = allocation_from_env(
        env, sysfs, probe.topology, own_affinity=own_affinity, visible=settings.visible_devices
    )
    alloc.task_gpus = own is not None
    plan = compute_plan(
        probe.topology,
        alloc,
        PlanOptions(nic_exclude=settings.nic_exclude, own_gpu_only=settings.own_gpu_only),
    )
    local = env.get("SLURM_LOCALID", "").strip()
    local_id = int(local) if local.isdigit() else 0
    warnings = list(probe.topology.warnings)
    if local_id >= len(plan.ranks):
        warnings.append(
            f"SLURM_LOCALID {local_id} beyond the {len(plan.ranks)} planned ranks; wrapping"
        )
    return TaskPlan(plan=plan, local_id=local_id, warnings=warnings)


def own_gpus(env: Mapping[str, str], node_gpus: int) -> list[int] | None:
    """This task's own GPUs by the node's numbering, where its device cgroup says which
    they are: with `--gpus-per-task` under ConstrainDevices every task sees
    SLURM_STEP_GPUS=0 (and no SLURM_JOB_GPUS), so each would be planned next to GPU 0.
    The plan then takes them for SLURM_STEP_GPUS, and CUDA_VISIBLE_DEVICES keeps the
    name the task sees (0: "relative"). None: Slurm's variables as they are."""
    from slurm_ai.topology.gresconf import confined_gpus

    node = env.get("SLURMD_NODENAME") or ""
    return confined_gpus(env.get("SLURM_CONF"), node, node_gpus) if node else None
