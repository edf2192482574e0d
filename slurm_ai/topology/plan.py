"""The affinity plan: which GPU, CPUs, memory node and NIC each local rank gets.

A pure function of the node topology and the job's allocation (no file, no
environment, no NVML), so every rule below is checked by tests on recorded
machines:

- A rank's CPUs come from its GPU's NUMA node (read from the GPU's PCI device,
  never guessed from its index); ranks on one node split its cores evenly.
- Whole cores: SMT siblings stay together unless there are more ranks than
  cores on the node (then threads are split, with a warning).
- No CPU goes to two ranks, unless there are more ranks than CPUs (warning).
- A GPU whose NUMA node holds none of the job's CPUs: the rank takes CPUs from
  the nearest node (SLIT distance) that has some, with a warning.
- CPU-only jobs spread their ranks over the NUMA nodes holding job CPUs.
- More ranks than GPUs: neighbouring ranks share a GPU; fewer ranks than GPUs:
  each rank gets a contiguous group of GPUs.
- MIG: each MIG instance is one GPU unit (as Slurm's AutoDetect=nvml counts
  them); CUDA enumerates one MIG instance per process, so only the rank's own
  is made visible.
- NICs: the nearest by PCI path (hops below a shared host bridge, then same
  NUMA node, then other nodes); ties keep all tied NICs.
- CUDA_VISIBLE_DEVICES keeps all of the job's GPUs visible with the rank's own
  first, so CUDA IPC and peer-to-peer keep working (per-task GPU cgroups break
  them). AMD GPUs (every GPU of the node AMD): the same list in
  ROCR_VISIBLE_DEVICES (what Slurm sets for them, applied below HIP), and
  HIP_VISIBLE_DEVICES = CUDA_VISIBLE_DEVICES = 0..n-1 (HIP counts inside ROCr's
  list and reads both), so the order is ROCr's.
- NICs of other fabrics (HPE Slingshot, AWS EFA) are chosen by the same
  nearness; NCCL_IB_HCA/UCX_NET_DEVICES name only InfiniBand/RoCE devices
  (libfabric providers pick their NIC themselves), the socket netdev still follows.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from slurm_ai.sysfs import format_cpu_list
from slurm_ai.topology import pci
from slurm_ai.topology.model import Gpu, MigInstance, Nic, NodeTopology

VISIBLE_STYLES = ("index", "relative", "uuid")
VERBS_KINDS = ("infiniband", "roce")  # fabrics NCCL_IB_HCA and UCX_NET_DEVICES can name
FABRIC_KINDS = ("slingshot", "efa")  # high-speed NICs reached through libfabric


@dataclass(frozen=True)
class GpuUnit:
    """What one Slurm GPU index names: a whole GPU or one MIG instance."""

    index: int
    gpu: Gpu
    mig: MigInstance | None = None

    @property
    def uuid(self) -> str | None:
        return self.mig.uuid if self.mig is not None else self.gpu.uuid


@dataclass
class JobAllocation:
    """What the job has on this node (built by `alloc` from the environment)."""

    cpus: list[int]
    gpus: list[int] = field(default_factory=list)  # Slurm GPU indices on this node
    ntasks: int = 1
    visible: str = "index"  # how CUDA_VISIBLE_DEVICES names GPUs: index|relative|uuid
    warnings: list[str] = field(default_factory=list)
    # `gpus` are this task's own (its device cgroup's), not the step's: every rank
    # planned over them shares them by design (task.py).
    task_gpus: bool = False


@dataclass
class PlanOptions:
    nic_exclude: list[str] = field(default_factory=list)  # fnmatch patterns
    own_gpu_only: bool = False  # CUDA_VISIBLE_DEVICES = the rank's GPUs only


@dataclass
class RankPlan:
    rank: int
    gpus: list[int] = field(default_factory=list)
    cpus: list[int] = field(default_factory=list)
    numa: int | None = None
    nics: list[str] = field(default_factory=list)
    socket_ifname: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "gpus": self.gpus,
            "cpus": format_cpu_list(self.cpus),
            "numa": self.numa,
            "nics": self.nics,
            "socket_ifname": self.socket_ifname,
            "env": self.env,
            "warnings": self.warnings,
        }


@dataclass
class AffinityPlan:
    ranks: list[RankPlan]
    job_cpus: list[int]
    gpus: list[int]
    warnings: list[str] = field(default_factory=list)

    def rank(self, local_id: int) -> RankPlan:
        return self.ranks[local_id % len(self.ranks)]

    def all_warnings(self) -> list[str]:
        seen = dict.fromkeys(self.warnings)
        for rank in self.ranks:
            seen.update(dict.fromkeys(rank.warnings))
        return list(seen)

    def summary(self) -> dict[str, Any]:
        """The node record's "plan" entry."""
        return {
            "ranks": len(self.ranks),
            "gpus": self.gpus,
            "cpus_per_rank": [format_cpu_list(r.cpus) for r in self.ranks],
            "numa": [r.numa for r in self.ranks],
            "nics": [",".join(r.nics) for r in self.ranks],
            "warnings": self.all_warnings(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_cpus": format_cpu_list(self.job_cpus),
            "gpus": self.gpus,
            "ranks": [r.to_dict() for r in self.ranks],
            "warnings": self.warnings,
        }


def gpu_units(topo: NodeTopology) -> list[GpuUnit]:
    """Slurm's GPU numbering on this node: MIG instances flattened in GPU order."""
    units: list[GpuUnit] = []
    for gpu in sorted(topo.gpus, key=lambda g: g.index):
        if gpu.mig_enabled and gpu.mig:
            units.extend(GpuUnit(len(units), gpu, mig) for mig in gpu.mig)
        elif not gpu.mig_enabled:
            units.append(GpuUnit(len(units), gpu))
    return units


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    """Contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def gpu_numa(gpu: Gpu, topo: NodeTopology) -> int | None:
    if gpu.numa is not None:
        return gpu.numa
    for cpu in gpu.local_cpus:
        node = topo.cpu.numa_of(cpu)
        if node is not None:
            return node
    return None


def _homes(
    topo: NodeTopology,
    rank_units: list[list[GpuUnit]],
    node_cores: dict[int, list[list[int]]],
    warnings: list[str],
) -> list[tuple[int, ...]]:
    """The NUMA node(s) each rank takes its CPUs from."""
    nodes = sorted(n for n, cores in node_cores.items() if cores)
    homes: list[tuple[int, ...] | None] = []
    for rank, units in enumerate(rank_units):
        if not units:
            homes.append(None)
            continue
        gpu = units[0].gpu
        numa = gpu_numa(gpu, topo)
        if numa is None:
            warnings.append(
                f"NUMA node of GPU {units[0].index} ({gpu.bus_id or 'no bus id'}) unknown; "
                "rank CPUs spread over the job's NUMA nodes"
            )
            homes.append(None)
        elif numa in nodes:
            homes.append((numa,))
        else:
            nearest = min(nodes, key=lambda n: (topo.cpu.distance(numa, n), -len(node_cores[n])))
            warnings.append(
                f"GPU {units[0].index} is on NUMA node {numa}, where the job has no CPUs: "
                f"rank {rank} uses CPUs of the nearest NUMA node {nearest}"
            )
            homes.append((nearest,))
    # Ranks without a known home (CPU-only jobs, GPUs of unknown NUMA node) spread.
    free = [r for r, h in enumerate(homes) if h is None]
    if free:
        if len(free) >= len(nodes):
            for i, rank in enumerate(free):
                homes[rank] = (nodes[i * len(nodes) // len(free)],)
        else:
            for i, group in enumerate(_split(nodes, len(free))):
                homes[free[i]] = tuple(group)
    return [h if h is not None else tuple(nodes) for h in homes]


def _assign_cpus(
    ranks: list[int], cores: list[list[int]], warnings: list[str]
) -> dict[int, list[int]]:
    """Split `cores` between `ranks`: whole cores, then threads, then sharing."""
    threads = [cpu for core in cores for cpu in core]
    if len(ranks) <= len(cores):
        chunks = _split(cores, len(ranks))
        return {
            r: sorted(c for core in chunk for c in core)
            for r, chunk in zip(ranks, chunks, strict=True)
        }
    if len(ranks) <= len(threads):
        warnings.append(
            f"{len(ranks)} ranks on {len(cores)} cores: SMT siblings split between ranks"
        )
        return {
            r: sorted(chunk) for r, chunk in zip(ranks, _split(threads, len(ranks)), strict=True)
        }
    warnings.append(f"{len(ranks)} ranks on {len(threads)} CPUs: ranks share CPUs")
    if not threads:
        return {r: [] for r in ranks}
    return {r: [threads[i % len(threads)]] for i, r in enumerate(ranks)}


def nic_candidates(topo: NodeTopology, options: PlanOptions) -> list[Nic]:
    def allowed(nic: Nic) -> bool:
        names = [n for n in (nic.name, nic.netdev, nic.rdma) if n]
        return not any(fnmatch.fnmatch(n, p) for n in names for p in options.nic_exclude)

    nics = [n for n in topo.nics if allowed(n)]
    rdma = [n for n in nics if n.is_rdma or n.kind in FABRIC_KINDS]
    up = [n for n in rdma if n.is_up]
    return up or rdma


def _nearest(
    nics: list[Nic], path: list[str], numa: int | None, max_distance: int = pci.UNKNOWN - 1
) -> list[Nic]:
    if not nics:
        return []
    scored = [(pci.distance(path, n.pci_path, numa, n.numa), n) for n in nics]
    best = min(score for score, _ in scored)
    if best > max_distance:
        return []
    return sorted((n for score, n in scored if score == best), key=lambda n: n.name)


def _socket_ifname(
    topo: NodeTopology, options: PlanOptions, path: list[str], numa: int | None, hcas: list[Nic]
) -> str | None:
    ethernet = [
        n
        for n in topo.nics
        if n.netdev and not n.is_rdma and n.kind == "ethernet" and n.is_up
        if not any(fnmatch.fnmatch(n.netdev, p) for p in options.nic_exclude)
    ]
    nearest = _nearest(ethernet, path, numa, max_distance=pci.UNKNOWN)
    if nearest:
        return nearest[0].netdev
    for hca in hcas:
        if hca.netdev:
            return hca.netdev  # IPoIB or the RoCE netdev
    return None


def nic_route(
    topo: NodeTopology,
    options: PlanOptions,
    hca_pool: list[Nic],
    gpu: Gpu | None,
    numa: int | None,
) -> tuple[list[Nic], str | None]:
    """The NICs nearest a rank's first GPU (or, without one, its NUMA node) and
    the netdev for socket traffic."""
    path = gpu.pci_path if gpu else []
    if gpu is not None:
        numa = gpu_numa(gpu, topo)
    hcas = _nearest(hca_pool, path, numa)
    return hcas, _socket_ifname(topo, options, path, numa, hcas)


def nic_env(hcas: list[Nic], socket_ifname: str | None) -> dict[str, str]:
    """NCCL/UCX/Gloo variables naming a rank's NICs."""
    env: dict[str, str] = {}
    rdma = [n for n in hcas if n.rdma and n.kind in VERBS_KINDS]
    if rdma:
        # "=" makes NCCL match names exactly (mlx5_1 would also match mlx5_10).
        env["NCCL_IB_HCA"] = "=" + ",".join(f"{n.rdma}:{n.port or 1}" for n in rdma)
        env["UCX_NET_DEVICES"] = ",".join(f"{n.rdma}:{n.port or 1}" for n in rdma)
    if socket_ifname:
        env["NCCL_SOCKET_IFNAME"] = "=" + socket_ifname
        env["GLOO_SOCKET_IFNAME"] = socket_ifname
    return env


def rocm_node(topo: NodeTopology) -> bool:
    """Every GPU of the node is AMD: the ROCm variables name them (node-wide, as the
    plan file tells the SPANK plugin)."""
    return bool(topo.gpus) and all(g.vendor == "amd" for g in topo.gpus)


def _visible_label(unit: GpuUnit, alloc: JobAllocation, job_units: list[GpuUnit]) -> str:
    if alloc.visible == "uuid" and unit.uuid:
        return unit.uuid
    if alloc.visible == "relative":
        return str(sorted(u.index for u in job_units).index(unit.index))
    return str(unit.index)


def compute_plan(
    topo: NodeTopology, alloc: JobAllocation, options: PlanOptions | None = None
) -> AffinityPlan:
    options = options or PlanOptions()
    warnings = list(alloc.warnings)
    online = set(topo.cpu.online)
    job_cpus = sorted(set(alloc.cpus) & online)
    if set(alloc.cpus) - online:
        warnings.append(
            f"job CPUs {format_cpu_list(set(alloc.cpus) - online)} are not online here; ignored"
        )
    if not job_cpus:
        warnings.append("no usable job CPUs known; planning over all online CPUs")
        job_cpus = sorted(online)
    units = gpu_units(topo)
    by_index = {u.index: u for u in units}
    job_units: list[GpuUnit] = []
    for index in alloc.gpus:
        if index in by_index:
            job_units.append(by_index[index])
        else:
            warnings.append(f"GPU {index} of the job is not on this node ({len(units)} GPUs)")
    if any(g.mig_enabled and not g.mig for g in topo.gpus):
        warnings.append("a GPU has MIG enabled but no MIG instances: it cannot run work")
    ntasks = max(1, alloc.ntasks)

    rank_units: list[list[GpuUnit]] = [[] for _ in range(ntasks)]
    if job_units:
        count = len(job_units)
        if ntasks >= count:
            for r in range(ntasks):
                rank_units[r] = [job_units[r * count // ntasks]]
        else:
            for k, unit in enumerate(job_units):
                rank_units[k * ntasks // count].append(unit)
        if ntasks > count and not alloc.task_gpus:
            warnings.append(f"{ntasks} ranks share {count} GPU(s)")

    node_cores: dict[int, list[list[int]]] = {}
    for core in topo.cpu.cores(job_cpus):
        node = topo.cpu.numa_of(core[0])
        node_cores.setdefault(node if node is not None else -1, []).append(core)
    homes = _homes(topo, rank_units, node_cores, warnings)

    ranks = [RankPlan(rank=r) for r in range(ntasks)]
    by_home: dict[tuple[int, ...], list[int]] = {}
    for r, home in enumerate(homes):
        by_home.setdefault(home, []).append(r)
    for home, members in by_home.items():
        cores = [core for node in home for core in node_cores.get(node, [])]
        for r, cpus in _assign_cpus(members, cores, warnings).items():
            ranks[r].cpus = cpus
            ranks[r].numa = home[0] if len(home) == 1 and home[0] >= 0 else None

    hca_pool = nic_candidates(topo, options)
    for plan, units in zip(ranks, rank_units, strict=True):
        plan.gpus = [u.index for u in units]
        hcas, plan.socket_ifname = nic_route(
            topo, options, hca_pool, units[0].gpu if units else None, plan.numa
        )
        plan.nics = [n.name for n in hcas]
        plan.env = _env(plan, units, job_units, alloc, options, hcas, topo)
    return AffinityPlan(
        ranks=ranks, job_cpus=job_cpus, gpus=[u.index for u in job_units], warnings=warnings
    )


def _env(
    plan: RankPlan,
    units: list[GpuUnit],
    job_units: list[GpuUnit],
    alloc: JobAllocation,
    options: PlanOptions,
    hcas: list[Nic],
    topo: NodeTopology,
) -> dict[str, str]:
    env: dict[str, str] = {}
    if units and alloc.visible != "slurm":  # "slurm": the task's GPUs as Slurm named them
        if any(u.mig is not None for u in units):
            visible = units[:1]  # CUDA enumerates a single MIG instance per process
        elif options.own_gpu_only:
            visible = units
        else:
            visible = units + [u for u in job_units if u not in units]
        labels = ",".join(_visible_label(u, alloc, job_units) for u in visible)
        if rocm_node(topo):
            # ROCr takes the list; HIP counts inside it, through HIP_VISIBLE_DEVICES or
            # CUDA_VISIBLE_DEVICES (it reads both): 0..n-1 keeps ROCr's order.
            ordinals = ",".join(str(i) for i in range(len(visible)))
            env["ROCR_VISIBLE_DEVICES"] = labels
            env["HIP_VISIBLE_DEVICES"] = ordinals
            env["CUDA_VISIBLE_DEVICES"] = ordinals
        else:
            env["CUDA_VISIBLE_DEVICES"] = labels
    env.update(nic_env(hcas, plan.socket_ifname))
    if plan.cpus:
        env["OMP_NUM_THREADS"] = str(max(1, len(topo.cpu.cores(plan.cpus))))
    return env
