"""TaskProlog: print `export NAME=value` lines for this task.

slurmstepd runs the TaskProlog as the job user with the task's environment
and reads its stdout: `export NAME=value` sets a variable for the task. Only
those lines go to stdout; warnings go to stderr (slurmd's log). Any fault
prints nothing and exits 0: a TaskProlog failure must not stop the task.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from slurm_ai.sysfs import format_cpu_list


def taskprolog_lines(env: Mapping[str, str], settings: object | None = None) -> list[str]:
    from slurm_ai.topology.settings import TopologySettings
    from slurm_ai.topology.task import in_slurm_task, plan_for_task
    from slurm_ai.topology.taskenv import export_lines, task_env

    if not isinstance(settings, TopologySettings):
        settings = TopologySettings()
    why_not = in_slurm_task(env)
    if why_not is not None:
        print(f"slurm-ai taskprolog: {why_not}: nothing to export", file=sys.stderr)
        return []
    task = plan_for_task(env, settings, own_affinity=sorted(os.sched_getaffinity(0)))
    warnings: list[str] = []
    exports = task_env(
        task.rank.env, env, override_user_env=settings.override_user_env, warnings=warnings
    )
    if task.rank.cpus:
        exports["SLURM_AI_CPUS"] = format_cpu_list(task.rank.cpus)
    for warning in dict.fromkeys(task.warnings + task.plan.all_warnings() + warnings):
        print(f"slurm-ai taskprolog: warning: {warning}", file=sys.stderr)
    return export_lines(exports)
