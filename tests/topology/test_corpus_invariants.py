"""Invariants of the plan on every corpus machine (mpibind's and hwloc's XML, hwloc's
sysfs captures, our recorded machines), over task counts and GPU/CPU-only jobs:

- each rank's GPUs and NICs are local to its CPUs' NUMA node where the machine allows
  (the GPU's node holds job CPUs; a NIC exists on that node);
- no two ranks share a core (unless a NUMA node has more ranks than cores: warned);
- all of a job's allowed CPUs are used; in a GPU job, the CPUs of NUMA nodes that hold
  none of the ranks' GPUs stay idle (our rule: a rank's CPUs sit beside its GPU).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from hwloc_corpus import ALL_XML, CAPTURES, HWLOC, V1
from topology_checks import check_plan
from topology_machines import MACHINES, load_machine

from slurm_ai.topology.hwloc_xml import read_hwloc_xml
from slurm_ai.topology.model import NodeTopology
from slurm_ai.topology.plan import (
    AffinityPlan,
    JobAllocation,
    PlanOptions,
    compute_plan,
    gpu_numa,
    gpu_units,
    nic_candidates,
)

XML = {**ALL_XML, **{p.stem: p for p in sorted(V1.glob("*.xml"))}}


@pytest.fixture(scope="module")
def capture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("captures")
    for name in CAPTURES:
        with tarfile.open(HWLOC / "linux" / f"{name}.tar.bz2") as archive:
            archive.extractall(dest, filter="data")
    return dest


def machine(kind: str, name: str, capture_root: Path) -> NodeTopology:
    from slurm_ai.topology.probe import probe_node

    if kind == "xml":
        return read_hwloc_xml(XML[name])
    if kind == "capture":
        return probe_node(capture_root / name, with_fingerprint=False).topology
    return load_machine(name).topology


CORPUS = (
    [("xml", n) for n in sorted(XML)]
    + [("capture", n) for n in CAPTURES]
    + [("recorded", n) for n in MACHINES]
)


def task_counts(topo: NodeTopology, gpus: int) -> list[int]:
    cores = len(topo.cpu.cores(topo.cpu.allowed or topo.cpu.online))
    nodes = len([n for n, c in topo.cpu.numa_cpus.items() if c])
    return sorted({1, 2, 3, nodes, max(1, gpus), 2 * gpus + 1, cores, cores + 1} - {0})


def check_invariants(topo: NodeTopology, alloc: JobAllocation, plan: AffinityPlan) -> None:
    job = set(plan.job_cpus)
    units = {u.index: u for u in gpu_units(topo)}
    warned = " ".join(plan.all_warnings())
    if "share CPUs" not in warned:
        check_plan(topo, alloc, plan)
    else:
        # More ranks than CPUs on some rank's NUMA node (ranks follow their GPUs there).
        per_home: dict[int | None, int] = {}
        for rank in plan.ranks:
            per_home[rank.numa] = per_home.get(rank.numa, 0) + 1
        assert any(
            count > len(set(topo.cpu.numa_cpus.get(home, [])) & job) if home is not None else True
            for home, count in per_home.items()
        )
    # GPUs and NICs beside the rank's CPUs.
    for rank in plan.ranks:
        node = rank.numa
        if rank.gpus:
            gpu_node = gpu_numa(units[rank.gpus[0]].gpu, topo)
            if gpu_node is not None and set(topo.cpu.numa_cpus.get(gpu_node, [])) & job:
                assert node == gpu_node
        if node is None or not rank.nics:
            continue
        chosen = [n for n in topo.nics if n.name in rank.nics]
        local = [n for n in nic_candidates(topo, PlanOptions()) if n.numa == node]
        if local:
            assert all(n.numa == node for n in chosen), f"rank {rank.rank}: NIC off its node"
    # No core shared, unless a node holds more ranks than cores (then warned).
    owner: dict[frozenset[int], int] = {}
    shared = False
    for rank in plan.ranks:
        for core in topo.cpu.cores(rank.cpus):
            whole = frozenset(topo.cpu.siblings.get(core[0], core)) & job
            shared |= owner.setdefault(whole, rank.rank) != rank.rank
    assert shared == ("SMT siblings split" in warned or "share CPUs" in warned)
    # All job CPUs used, except in a GPU job the nodes without any rank's GPU.
    used = {c for r in plan.ranks for c in r.cpus}
    if plan.gpus:
        homes = {r.numa for r in plan.ranks}
        idle = {c for c in job if topo.cpu.numa_of(c) not in homes}
        assert used == job - idle
    else:
        assert used == job


@pytest.mark.parametrize(("kind", "name"), CORPUS, ids=[f"{k}:{n}" for k, n in CORPUS])
def test_plan_invariants(kind: str, name: str, capture_root: Path) -> None:
    topo = machine(kind, name, capture_root)
    allowed = topo.cpu.allowed or topo.cpu.online
    all_gpus = [u.index for u in gpu_units(topo)]
    checked = 0
    for gpus in [all_gpus, []] if all_gpus else [[]]:
        for ntasks in task_counts(topo, len(gpus)):
            alloc = JobAllocation(cpus=list(allowed), gpus=gpus, ntasks=ntasks)
            check_invariants(topo, alloc, compute_plan(topo, alloc))
            checked += 1
    assert checked >= 3
