"""CPU and NUMA topology from sysfs (online CPUs, sockets, SMT siblings, nodes)."""

from __future__ import annotations

from slurm_ai.sysfs import Sysfs, parse_cpu_list
from slurm_ai.topology.model import CpuTopology

CPU_DIR = "/sys/devices/system/cpu"
NODE_DIR = "/sys/devices/system/node"


def _cpu_list(sysfs: Sysfs, path: str, warnings: list[str]) -> list[int] | None:
    text = sysfs.read_text(path)
    if text is None:
        return None
    try:
        return parse_cpu_list(text)
    except ValueError:
        warnings.append(f"unreadable CPU list in {path}: {text[:40]!r}")
        return None


def read_cpu_topology(sysfs: Sysfs, warnings: list[str]) -> CpuTopology:
    """Read CPUs and NUMA nodes; missing files degrade to one flat node."""
    online = _cpu_list(sysfs, f"{CPU_DIR}/online", warnings)
    if not online:
        online = sorted(
            int(name[3:])
            for name in sysfs.listdir(CPU_DIR)
            if name.startswith("cpu") and name[3:].isdigit()
        )
    if not online:
        warnings.append(f"no CPUs found under {CPU_DIR}; assuming CPU 0 only")
        online = [0]
    topo = CpuTopology(online=online)
    for cpu in online:
        base = f"{CPU_DIR}/cpu{cpu}/topology"
        package = sysfs.read_int(f"{base}/physical_package_id")
        topo.package[cpu] = package if package is not None and package >= 0 else 0
        siblings = _cpu_list(sysfs, f"{base}/thread_siblings_list", warnings)
        topo.siblings[cpu] = [c for c in (siblings or [cpu]) if c in online] or [cpu]
    nodes = sorted(
        int(name[4:])
        for name in sysfs.listdir(NODE_DIR)
        if name.startswith("node") and name[4:].isdigit()
    )
    online_set = set(online)
    for node in nodes:
        cpus = _cpu_list(sysfs, f"{NODE_DIR}/node{node}/cpulist", warnings) or []
        topo.numa_cpus[node] = [c for c in cpus if c in online_set]
        row = (sysfs.read_text(f"{NODE_DIR}/node{node}/distance") or "").split()
        if all(part.isdigit() for part in row) and row:
            topo.numa_distance[node] = [int(part) for part in row]
    if not topo.numa_cpus:
        # No NUMA information (a minimal VM or a kernel without CONFIG_NUMA).
        topo.numa_cpus[0] = list(online)
        topo.numa_distance[0] = [10]
        warnings.append("no NUMA nodes in sysfs; treating the node as one NUMA node")
    return topo
