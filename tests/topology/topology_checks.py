"""Properties every affinity plan must have (used by the plan tests)."""

from __future__ import annotations

from slurm_ai.topology import pci
from slurm_ai.topology.model import NodeTopology
from slurm_ai.topology.plan import (
    FABRIC_KINDS,
    AffinityPlan,
    JobAllocation,
    gpu_numa,
    gpu_units,
)


def check_plan(topo: NodeTopology, alloc: JobAllocation, plan: AffinityPlan) -> None:
    job = set(plan.job_cpus)
    assert len(plan.ranks) == max(1, alloc.ntasks)
    given: dict[int, int] = {}
    for rank in plan.ranks:
        assert rank.cpus, f"rank {rank.rank} got no CPUs"
        assert set(rank.cpus) <= job, f"rank {rank.rank} got CPUs outside the job"
        for cpu in rank.cpus:
            given[cpu] = given.get(cpu, 0) + 1
    if len(plan.ranks) <= len(job):
        shared = [cpu for cpu, count in given.items() if count > 1]
        assert not shared, f"CPUs {shared} given to two ranks"
    units = {u.index: u for u in gpu_units(topo)}
    warned = " ".join(plan.all_warnings())
    for rank in plan.ranks:
        if not rank.gpus:
            continue
        gpu = units[rank.gpus[0]].gpu
        # The GPU's node as the plan reads it: numa_node, else its local CPUs' node.
        home = gpu_numa(gpu, topo)
        node_cpus = set(topo.cpu.numa_cpus.get(home, [])) if home is not None else set()
        if node_cpus & job:
            # Each rank's CPUs on its GPU's NUMA node, and SMT siblings together
            # when the node has at least one core per rank.
            assert set(rank.cpus) <= node_cpus, f"rank {rank.rank} CPUs off GPU's NUMA node"
            assert rank.numa == home
        else:
            assert "no CPUs" in warned or "unknown" in warned
        amd = all(g.vendor == "amd" for g in topo.gpus)  # the node's GPUs: ROCm variables
        variable = "ROCR_VISIBLE_DEVICES" if amd else "CUDA_VISIBLE_DEVICES"
        visible = rank.env.get(variable, "").split(",")
        assert visible[0] in (str(rank.gpus[0]), units[rank.gpus[0]].uuid)
        if units[rank.gpus[0]].mig is None:
            assert len(visible) == len(plan.gpus), "all job GPUs stay visible"
        if amd:  # HIP counts inside ROCr's list, through either variable
            ordinals = ",".join(map(str, range(len(visible))))
            assert rank.env["HIP_VISIBLE_DEVICES"] == rank.env["CUDA_VISIBLE_DEVICES"] == ordinals
        # Nearest NIC: no candidate RDMA NIC is closer than the chosen one.
        rdma = [n for n in topo.nics if (n.is_rdma or n.kind in FABRIC_KINDS) and n.is_up]
        if rank.nics and rdma:
            chosen = [n for n in topo.nics if n.name in rank.nics]
            best = min(pci.distance(gpu.pci_path, n.pci_path, home, n.numa) for n in rdma)
            for nic in chosen:
                assert pci.distance(gpu.pci_path, nic.pci_path, home, nic.numa) == best
    for rank in plan.ranks:
        cores_of_rank = topo.cpu.cores(rank.cpus)
        if "SMT siblings split" not in warned and "share CPUs" not in warned:
            for core in topo.cpu.cores(job):
                overlap = set(core) & set(rank.cpus)
                assert not overlap or overlap == set(core), f"core {core} split"
        assert cores_of_rank
