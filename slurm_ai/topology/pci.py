"""PCI paths from sysfs, and how close two devices are.

A device's place in the PCI tree is the chain of bridges from its host bridge
down to it, read from the resolved sysfs path
(/sys/devices/pci0000:15/0000:15:01.0/0000:16:00.0/0000:18:00.0). Closeness of
a GPU and a NIC comes from that chain, never from index arithmetic: real
machines number GPUs and HCAs in an order unrelated to NUMA nodes.
"""

from __future__ import annotations

import re

from slurm_ai.sysfs import Sysfs, parse_cpu_list, parse_cpu_mask
from slurm_ai.topology.model import CpuTopology

# PCI domains are 16 bits, or 32 bits behind Intel VMD ("10000:00:04.0").
BDF = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
ROOT_BUS = re.compile(r"^pci[0-9a-f]{4,8}:[0-9a-f]{2}$")

# Distances used to rank NICs for a GPU: PCI hops below a shared host bridge
# are small numbers; no shared host bridge costs more, another NUMA node more.
OTHER_HOST_BRIDGE = 100
OTHER_NUMA = 1000
UNKNOWN = 10_000


def normalize_bus_id(bus_id: str | bytes | None) -> str | None:
    """NVML "00000000:1B:00.0" or "0000:1b:00.0" -> sysfs "0000:1b:00.0"."""
    if bus_id is None:
        return None
    text = bus_id.decode(errors="replace") if isinstance(bus_id, bytes) else str(bus_id)
    text = text.strip().lower()
    match = re.fullmatch(r"(?:([0-9a-f]{4,8}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])", text)
    if not match:
        return None
    domain = f"{int(match.group(1) or '0', 16):04x}"  # NVML pads to 8 digits, sysfs to 4
    return f"{domain}:{match.group(2)}:{match.group(3)}.{match.group(4)}"


def path_of(resolved: str | None) -> list[str]:
    """["pci0000:15", "0000:15:01.0", ..., device] from a resolved sysfs path."""
    if not resolved:
        return []
    chain: list[str] = []
    for part in resolved.split("/"):
        if ROOT_BUS.match(part) or BDF.match(part):
            chain.append(part)
    return chain


def device_path(sysfs: Sysfs, bus_id: str) -> list[str]:
    return path_of(sysfs.realpath(f"/sys/bus/pci/devices/{bus_id}"))


def device_locality(
    sysfs: Sysfs, bus_id: str, cpu: CpuTopology | None = None
) -> tuple[list[int], int | None]:
    """A PCI device's local CPUs and NUMA node.

    The CPUs from `local_cpus` (the mask hwloc reads; `local_cpulist` when absent).
    The node from `numa_node`; where the firmware gave none (-1: no ACPI _PXM), the
    one NUMA node holding the device's local CPUs, or the machine's only node, as
    hwloc places such a device. None when its CPUs span several nodes.
    """
    base = f"/sys/bus/pci/devices/{bus_id}"
    cpus: list[int] = []
    try:
        mask = sysfs.read_text(f"{base}/local_cpus")
        cpus = (
            parse_cpu_mask(mask)
            if mask
            else parse_cpu_list(sysfs.read_text(f"{base}/local_cpulist"))
        )
    except ValueError:
        cpus = []
    numa = sysfs.read_int(f"{base}/numa_node")
    if numa is not None and numa >= 0:
        return cpus, numa
    if cpu is None:
        return cpus, None
    local = set(cpus)
    nodes = [n for n, members in cpu.numa_cpus.items() if local & set(members)]
    if not local or len(cpu.numa_cpus) == 1:
        nodes = list(cpu.numa_cpus)
    return cpus, nodes[0] if len(nodes) == 1 else None


def hops(a: list[str], b: list[str]) -> int | None:
    """PCI hops between two devices under one host bridge; None when they share none."""
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    if common == 0:
        return None
    return (len(a) - common) + (len(b) - common)


def relation(a: list[str], b: list[str]) -> str | None:
    """nvidia-smi style PCIe relation: PIX, PXB, PHB, or None (no shared host bridge)."""
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    if common == 0 or not a or not b:
        return None
    if common == 1:
        return "PHB"  # only the host bridge (root complex) in common
    below = max(len(a), len(b)) - common - 1
    return "PIX" if below <= 1 else "PXB"


def distance(a: list[str], b: list[str], numa_a: int | None, numa_b: int | None) -> int:
    """A sortable closeness of two devices (smaller is nearer)."""
    pci = hops(a, b)
    if pci is not None:
        return pci
    if numa_a is None or numa_b is None:
        return UNKNOWN
    return OTHER_HOST_BRIDGE if numa_a == numa_b else OTHER_NUMA + abs(numa_a - numa_b)
