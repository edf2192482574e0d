"""The task plan file: what the SPANK plugin reads at task start.

The Prolog cannot plan the tasks itself: it knows neither the step's task
count on the node nor the CPUs each task may use. So it writes the node's
layout for the plugin's C core (`native/sai_bind.c`), which applies
`compute_plan`'s rules in each task with the real task count and allowed
CPUs. Line-based text, because C reads it; one record per line, fields
separated by single spaces, values restricted to `taskenv.VALUE`'s
characters so no field can hold a space or a newline:

    sai-task-plan 1
    option visible auto|index|relative|uuid
    option own_gpu_only 0|1
    option override_user_env 0|1
    option gpu_runtime cuda|rocm # rocm: every GPU is AMD (ROCR_/HIP_VISIBLE_DEVICES)
    cpu CPU NUMA CORE            # each online CPU; NUMA -1 unknown; CORE = lowest sibling
    dist A B D                   # SLIT distance where it is not 20
    gpu INDEX NUMA MIG UUID|-    # each GPU unit in Slurm's numbering
    gpu_dev INDEX PATH           # its device file (gres.conf File=; whole GPUs only)
    gpu_env INDEX NAME VALUE     # NIC variables of a rank whose first GPU it is
    node_env NUMA NAME VALUE     # NIC variables of a GPU-less rank (-1: no single node)
    job_gpus LIST|-              # the job's GPUs as the Prolog saw them

Written atomically, root-only, into the job's spool directory (never a
user-writable path; the spool is node-local, so each node has its own); the plugin refuses a file that is not root-owned, not
regular, or over `MAX_BYTES`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from slurm_ai import spool
from slurm_ai.slurmenv import parse_index_list
from slurm_ai.sysfs import format_cpu_list
from slurm_ai.topology.model import NodeTopology
from slurm_ai.topology.plan import (
    PlanOptions,
    gpu_numa,
    gpu_units,
    nic_candidates,
    nic_env,
    nic_route,
    rocm_node,
)
from slurm_ai.topology.settings import TopologySettings
from slurm_ai.topology.taskenv import NAME, VALUE

PLAN_NAME = "task-plan"
PINNED_NAME = "pinned-by-plugin"  # in the job's spool dir: the plugin pinned its tasks
BIND_MARK_NAME = "pinned-by-bind"  # in the job's mark dir: `slurm-ai bind` pinned a rank
FORMAT_VERSION = 1
MAX_BYTES = 1 << 20  # SAI_PLAN_MAX_BYTES
MAX_CPUS = 4096  # SAI_MAX_CPUS
MAX_NODES = 64  # SAI_MAX_NODES
MAX_UNITS = 64  # SAI_MAX_UNITS
MAX_ENV = 8  # SAI_MAX_ENV
MAX_VALUE = 1023  # SAI_VALUE_MAX - 1
MAX_UUID = 95  # SAI_UUID_MAX - 1


class PlanFileError(ValueError):
    """A node the C core cannot hold (too many CPUs, NUMA nodes or GPU units)."""


def _env_lines(kind: str, key: int, env: dict[str, str]) -> list[str]:
    return [
        f"{kind} {key} {name} {value}"
        for name, value in list(env.items())[:MAX_ENV]
        if NAME.match(name) and VALUE.match(value) and 0 < len(value) <= MAX_VALUE
    ]


MAX_DEV = 127  # SAI_DEV_MAX - 1


def render(
    topo: NodeTopology,
    job_gpus: list[int],
    settings: TopologySettings,
    devices: Sequence[str] = (),
) -> str:
    """The plan file's text for this node and job. Raises PlanFileError.

    `devices`: each GPU's device file by Slurm's index (gresconf.py), so that the
    plugin can tell which GPUs a device cgroup lets a task open."""
    cpu = topo.cpu
    if any(not 0 <= c < MAX_CPUS for c in cpu.online):
        raise PlanFileError(f"CPU ids beyond {MAX_CPUS - 1}")
    nodes = sorted(cpu.numa_cpus)
    units = gpu_units(topo)
    numas = {gpu_numa(u.gpu, topo) for u in units} | set(nodes)
    if any(n is not None and not 0 <= n < MAX_NODES for n in numas):
        raise PlanFileError(f"NUMA node ids beyond {MAX_NODES - 1}")
    if len(units) > MAX_UNITS:
        raise PlanFileError(f"{len(units)} GPU units, more than {MAX_UNITS}")
    options = PlanOptions(nic_exclude=settings.nic_exclude, own_gpu_only=settings.own_gpu_only)
    lines = [
        f"sai-task-plan {FORMAT_VERSION}",
        f"option visible {settings.visible_devices}",
        f"option own_gpu_only {int(settings.own_gpu_only)}",
        f"option override_user_env {int(settings.override_user_env)}",
        f"option gpu_runtime {'rocm' if rocm_node(topo) else 'cuda'}",
    ]
    for c in cpu.online:
        siblings = cpu.siblings.get(c, [c])
        node = cpu.numa_of(c)
        lines.append(
            f"cpu {c} {-1 if node is None else node} {min(siblings) if c in siblings else c}"
        )
    for a in sorted(n for n in numas if n is not None):
        lines.extend(
            f"dist {a} {b} {cpu.distance(a, b)}"
            for b in nodes
            if a != b and cpu.distance(a, b) != 20
        )
    pool = nic_candidates(topo, options)
    any_mig = any(u.mig is not None for u in units)  # MIG devices are not gres.conf's File=
    for unit in units:
        numa = gpu_numa(unit.gpu, topo)
        uuid = (
            unit.uuid
            if unit.uuid and VALUE.match(unit.uuid) and len(unit.uuid) <= MAX_UUID
            else "-"
        )
        lines.append(
            f"gpu {unit.index} {-1 if numa is None else numa} {int(unit.mig is not None)} {uuid}"
        )
        dev = devices[unit.index] if unit.index < len(devices) and not any_mig else ""
        if dev.startswith("/") and len(dev) <= MAX_DEV and VALUE.match(dev):
            lines.append(f"gpu_dev {unit.index} {dev}")
        lines.extend(
            _env_lines(
                "gpu_env", unit.index, nic_env(*nic_route(topo, options, pool, unit.gpu, None))
            )
        )
    for node in [*nodes, None]:
        env = nic_env(*nic_route(topo, options, pool, None, node))
        lines.extend(_env_lines("node_env", -1 if node is None else node, env))
    lines.append(f"job_gpus {format_cpu_list(job_gpus) if job_gpus else '-'}")
    text = "\n".join(lines) + "\n"
    if len(text.encode()) > MAX_BYTES:
        raise PlanFileError(f"plan file of {len(text)} bytes exceeds {MAX_BYTES}")
    return text


def write(job_dir: Path, text: str) -> Path:
    """Atomically, root-only, in the job's spool directory. Raises SpoolError."""
    path = job_dir / PLAN_NAME
    spool.atomic_write_bytes(path, text.encode())
    return path


def job_gpu_list(text: str | None) -> list[int]:
    return parse_index_list(text)[0]


def pinned_by(job_dir: Path, mark_dir: Path, job_id: str) -> str:
    """Which path pinned the job's tasks on this node: bind (it runs last, in the
    task), plugin, or none. Plain files only; a link names no path."""
    for path, name in (
        (mark_dir / job_id / BIND_MARK_NAME, "bind"),
        (job_dir / PINNED_NAME, "plugin"),
    ):
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                return name
    return "none"
