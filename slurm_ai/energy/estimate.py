"""Estimates where no energy counter exists, and shares on shared nodes."""

from __future__ import annotations

import re

from slurm_ai.sysfs import Sysfs, parse_cpu_list

DEFAULT_TDP_W = 200.0  # assumed package TDP when neither config nor RAPL says


def job_cpus_on_node(cpus_per_node: str | None, nodelist: list[str], node: str) -> int | None:
    """This node's CPU count from SLURM_JOB_CPUS_PER_NODE ("4(x2),2")."""
    if not cpus_per_node:
        return None
    counts: list[int] = []
    for part in cpus_per_node.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not match:
            return None
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    if node in nodelist and nodelist.index(node) < len(counts):
        return counts[nodelist.index(node)]
    return counts[0] if len(counts) == 1 else None


def node_cpus(sysfs: Sysfs) -> int | None:
    online = sysfs.read_text("/sys/devices/system/cpu/online")
    try:
        cpus = parse_cpu_list(online)
    except ValueError:
        return None
    return len(cpus) or None


def packages(sysfs: Sysfs) -> int:
    ids = set()
    for name in sysfs.listdir("/sys/devices/system/cpu"):
        if re.fullmatch(r"cpu\d+", name):
            pkg = sysfs.read_int(f"/sys/devices/system/cpu/{name}/topology/physical_package_id")
            if pkg is not None:
                ids.add(pkg)
    return max(1, len(ids))


def cpu_model_joules(
    allocated_cpu_s: float,
    busy_cpu_s: float,
    tdp_w: float,
    cpus_per_package: int,
    idle_fraction: float,
) -> tuple[float, str]:
    """CPU energy from the package TDP shared per CPU, with its note.

    Allocated CPUs draw `idle_fraction` of their TDP share even when idle (a
    server package idles at roughly a quarter to a third of TDP); busy CPU time
    adds the rest. So a job that only sleeps is not counted as free."""
    per_cpu = tdp_w / max(1, cpus_per_package)
    busy_cpu_s = min(max(busy_cpu_s, 0.0), allocated_cpu_s)
    joules = per_cpu * (idle_fraction * allocated_cpu_s + (1 - idle_fraction) * busy_cpu_s)
    note = (
        f"{allocated_cpu_s:.1f} CPU-s allocated, {busy_cpu_s:.1f} busy, x {per_cpu:.2f} W/CPU "
        f"(idle share {idle_fraction:g})"
    )
    return joules, note
