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


def cpu_model_joules(cpu_seconds: float, tdp_w: float, cpus_per_package: int) -> tuple[float, str]:
    """CPU energy as CPU time x (package TDP / CPUs per package), with its note."""
    per_cpu = tdp_w / max(1, cpus_per_package)
    return cpu_seconds * per_cpu, f"{cpu_seconds:.1f} CPU-s x {per_cpu:.2f} W/CPU"
