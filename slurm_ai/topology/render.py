"""Human-readable `probe` and `plan` output (the JSON forms are the dicts)."""

from __future__ import annotations

from typing import Any

from slurm_ai.sysfs import format_cpu_list
from slurm_ai.topology.model import NodeTopology
from slurm_ai.topology.plan import AffinityPlan


def _gib(value: int | None) -> str:
    return f"{value / 2**30:.0f} GiB" if value else "?"


def _platform_lines(platform: dict[str, Any]) -> list[str]:
    lines = [f"platform: {platform.get('class')}  ({platform.get('summary')})"]
    for key in ("hypervisor", "vmm", "cloud", "container", "gpu_mode", "nic_mode"):
        if platform.get(key) is not None:
            lines.append(f"  {key}: {platform[key]}")
    if platform.get("override"):
        lines.append("  override: yes (from the config)")
    lines.append("  evidence:")
    lines.extend(f"    - {item}" for item in platform.get("evidence", []))
    return lines


def render_probe(
    topo: NodeTopology, platform: dict[str, Any] | None, source: str | None = None
) -> str:
    """The probe as text; `platform` None for a file (hwloc XML) that has no fingerprint."""
    lines = _platform_lines(platform) if platform is not None else []
    if source:
        lines.append(f"source: {source}")
    cpu = topo.cpu
    lines.append(
        f"cpus: {len(cpu.online)} online ({format_cpu_list(cpu.online)}), "
        f"{len(cpu.sockets)} socket(s), {len(cpu.cores(cpu.online))} core(s)"
    )
    if cpu.allowed and cpu.allowed != cpu.online:
        lines.append(f"  allowed: {format_cpu_list(cpu.allowed)}")
    for node, cpus in sorted(cpu.numa_cpus.items()):
        distance = " ".join(map(str, cpu.numa_distance.get(node, [])))
        lines.append(f"  numa {node}: cpus {format_cpu_list(cpus) or '-'}  distance {distance}")
    lines.append(f"gpus: {len(topo.gpus)}" + (f"  (driver {topo.driver})" if topo.driver else ""))
    for gpu in topo.gpus:
        lines.append(
            f"  gpu {gpu.index}: {gpu.vendor or '?'} {gpu.model or '?'}  {gpu.bus_id or '?'}  "
            f"numa {gpu.numa}  "
            f"{_gib(gpu.memory_bytes)}  virt {gpu.virt_mode}"
            + (f"  nvlinks {gpu.nvlinks}" if gpu.nvlinks else "")
        )
        if gpu.uuid:
            lines.append(f"    uuid {gpu.uuid}")
        if gpu.pci_path:
            lines.append(f"    pci {' > '.join(gpu.pci_path)}")
        for mig in gpu.mig:
            lines.append(f"    mig {mig.index}: {mig.name or '?'}  {mig.uuid or '?'}")
    if topo.gpu_links:
        lines.append("gpu links: " + "  ".join(f"{k}={v}" for k, v in topo.gpu_links.items()))
    lines.append(f"nics: {len(topo.nics)}")
    for nic in topo.nics:
        extra = [x for x in (nic.netdev if nic.netdev != nic.name else None, nic.rate) if x]
        lines.append(
            f"  {nic.name}: {nic.kind}  {nic.bus_id or '?'}  numa {nic.numa}  "
            f"state {nic.state}  {'SR-IOV VF  ' if nic.sriov_vf else ''}" + "  ".join(extra)
        )
    for warning in topo.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def render_plan(plan: AffinityPlan, local_id: int | None = None) -> str:
    lines = [f"job cpus: {format_cpu_list(plan.job_cpus)}  gpus: {plan.gpus or '-'}"]
    for rank in plan.ranks:
        mark = " <- this task" if local_id is not None and rank.rank == local_id else ""
        lines.append(
            f"rank {rank.rank}: gpus {rank.gpus or '-'}  cpus {format_cpu_list(rank.cpus)}  "
            f"numa {rank.numa}  nics {','.join(rank.nics) or '-'}{mark}"
        )
        lines.extend(f"    {k}={v}" for k, v in sorted(rank.env.items()))
    for warning in plan.all_warnings():
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
