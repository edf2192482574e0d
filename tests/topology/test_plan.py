"""Affinity plans on recorded machines: checked by the properties that must hold."""

from __future__ import annotations

import pytest
from topology_checks import check_plan
from topology_machines import load_machine

from slurm_ai.sysfs import parse_cpu_list
from slurm_ai.topology.plan import JobAllocation, PlanOptions, compute_plan, gpu_units


def whole_node(name: str, ntasks: int, gpus: list[int] | None = None) -> JobAllocation:
    topo = load_machine(name).topology
    units = [u.index for u in gpu_units(topo)]
    return JobAllocation(cpus=topo.cpu.online, gpus=units if gpus is None else gpus, ntasks=ntasks)


H100_HCA = {
    0: "mlx5_0",
    1: "mlx5_3",
    2: "mlx5_4",
    3: "mlx5_5",
    4: "mlx5_6",
    5: "mlx5_9",
    6: "mlx5_10",
    7: "mlx5_11",
}
A100_HCA = {
    0: "mlx5_0",
    1: "mlx5_1",
    2: "mlx5_2",
    3: "mlx5_3",
    4: "mlx5_6",
    5: "mlx5_7",
    6: "mlx5_8",
    7: "mlx5_9",
}


@pytest.mark.parametrize(("name", "hcas"), [("dgx_h100", H100_HCA), ("dgx_a100", A100_HCA)])
def test_one_rank_per_gpu_gets_its_numa_node_and_switch_hca(name: str, hcas: dict) -> None:
    topo = load_machine(name).topology
    alloc = whole_node(name, 8)
    plan = compute_plan(topo, alloc)
    check_plan(topo, alloc, plan)
    for rank in plan.ranks:
        assert rank.gpus == [rank.rank]
        assert rank.nics == [hcas[rank.rank]]
        assert rank.env["NCCL_IB_HCA"] == f"={hcas[rank.rank]}:1"
        assert rank.env["UCX_NET_DEVICES"] == f"{hcas[rank.rank]}:1"
        visible = rank.env["CUDA_VISIBLE_DEVICES"].split(",")
        assert visible[0] == str(rank.rank) and sorted(visible) == [str(i) for i in range(8)]
    assert not plan.all_warnings()


def test_dgx_a100_numa_order_is_not_index_order() -> None:
    # GPU0/1 on NUMA 3, GPU2/3 on NUMA 1, 4/5 on 7, 6/7 on 5 (nvidia-smi topo -m).
    topo = load_machine("dgx_a100").topology
    plan = compute_plan(topo, whole_node("dgx_a100", 8))
    assert [r.numa for r in plan.ranks] == [3, 3, 1, 1, 7, 7, 5, 5]
    # Two ranks split NUMA 3's 16 cores: 8 whole cores (16 CPUs) each, siblings together.
    assert plan.ranks[0].cpus == [*range(48, 56), *range(176, 184)]
    assert plan.ranks[1].cpus == [*range(56, 64), *range(184, 192)]
    assert plan.ranks[0].env["OMP_NUM_THREADS"] == "8"


def test_dgx_h100_smt_siblings_together() -> None:
    topo = load_machine("dgx_h100").topology
    plan = compute_plan(topo, whole_node("dgx_h100", 8))
    for rank in plan.ranks:
        for cpu in rank.cpus:
            assert set(topo.cpu.siblings[cpu]) <= set(rank.cpus)
        assert len(rank.cpus) == 28  # 56 cores / 4 ranks per socket, 2 threads each
    assert plan.ranks[0].env["NCCL_SOCKET_IFNAME"] == "=eno3"
    assert plan.ranks[0].env["GLOO_SOCKET_IFNAME"] == "eno3"


def test_more_ranks_than_gpus_share_neighbouring_gpus() -> None:
    topo = load_machine("dgx_h100").topology
    alloc = whole_node("dgx_h100", 16)
    plan = compute_plan(topo, alloc)
    check_plan(topo, alloc, plan)
    assert [r.gpus[0] for r in plan.ranks] == [i // 2 for i in range(16)]
    assert any("share" in w for w in plan.all_warnings())


def test_fewer_ranks_than_gpus_get_gpu_groups() -> None:
    topo = load_machine("dgx_h100").topology
    alloc = whole_node("dgx_h100", 2)
    plan = compute_plan(topo, alloc)
    check_plan(topo, alloc, plan)
    assert plan.ranks[0].gpus == [0, 1, 2, 3] and plan.ranks[1].gpus == [4, 5, 6, 7]
    assert plan.ranks[1].env["CUDA_VISIBLE_DEVICES"].startswith("4,5,6,7,")


def test_cpu_only_job_spreads_over_numa_nodes() -> None:
    topo = load_machine("dgx_a100").topology
    alloc = JobAllocation(cpus=topo.cpu.online, gpus=[], ntasks=8)
    plan = compute_plan(topo, alloc)
    check_plan(topo, alloc, plan)
    assert sorted(r.numa for r in plan.ranks) == list(range(8))
    assert all("CUDA_VISIBLE_DEVICES" not in r.env for r in plan.ranks)
    # Fewer ranks than nodes: each rank spans a group of nodes, no memory node.
    plan2 = compute_plan(topo, JobAllocation(cpus=topo.cpu.online, ntasks=2))
    assert [r.numa for r in plan2.ranks] == [None, None]
    assert len(plan2.ranks[0].cpus) == len(plan2.ranks[1].cpus) == 128


def test_gpu_numa_node_without_job_cpus_falls_back_with_warning() -> None:
    topo = load_machine("dgx_h100").topology
    numa0 = topo.cpu.numa_cpus[0][:8]  # the job got 8 CPUs of NUMA node 0 only
    alloc = JobAllocation(cpus=numa0, gpus=[0, 4], ntasks=2)
    plan = compute_plan(topo, alloc)
    check_plan(topo, alloc, plan)
    assert set(plan.ranks[1].cpus) <= set(numa0)
    assert any("NUMA node 1, where the job has no CPUs" in w for w in plan.all_warnings())
    assert not set(plan.ranks[0].cpus) & set(plan.ranks[1].cpus)


def test_mig_instances_are_units_with_only_own_visible() -> None:
    topo = load_machine("mig_a100").topology
    units = gpu_units(topo)
    assert len(units) == 5 and units[4].mig is not None and units[4].gpu.index == 1
    alloc = JobAllocation(cpus=topo.cpu.online, gpus=[1, 4], ntasks=2, visible="uuid")
    plan = compute_plan(topo, alloc)
    check_plan(topo, alloc, plan)
    assert plan.ranks[0].env["CUDA_VISIBLE_DEVICES"] == units[1].uuid
    assert plan.ranks[1].env["CUDA_VISIBLE_DEVICES"] == units[4].uuid
    assert plan.ranks[0].numa == 0 and plan.ranks[1].numa == 1
    assert plan.ranks[0].nics == ["mlx5_0"] and plan.ranks[1].nics == ["mlx5_1"]


def test_more_ranks_than_cores_split_siblings_then_share() -> None:
    topo = load_machine("dgx_h100").topology
    cpus = [0, 112, 1, 113]  # two cores with their siblings
    plan = compute_plan(topo, JobAllocation(cpus=cpus, ntasks=4))
    assert sorted(c for r in plan.ranks for c in r.cpus) == sorted(cpus)
    assert any("SMT siblings split" in w for w in plan.all_warnings())
    plan = compute_plan(topo, JobAllocation(cpus=[0], ntasks=3))
    assert all(r.cpus == [0] for r in plan.ranks)
    assert any("share CPUs" in w for w in plan.all_warnings())


def test_vm_and_vgpu_and_this_machine_plans_hold() -> None:
    for name in ("kvm_passthrough", "azure_vgpu", "this_machine"):
        topo = load_machine(name).topology
        for ntasks in (1, 2, 3):
            alloc = whole_node(name, ntasks)
            check_plan(topo, alloc, compute_plan(topo, alloc))
    kvm = compute_plan(load_machine("kvm_passthrough").topology, whole_node("kvm_passthrough", 2))
    assert kvm.ranks[0].nics == ["mlx5_0"]  # the VF beside GPU 0
    assert kvm.ranks[1].nics == ["mlx5_0"]  # the only HCA, across NUMA nodes
    assert parse_cpu_list("8-15") == kvm.ranks[1].cpus


def test_unknown_gpu_index_and_offline_cpus_warn() -> None:
    topo = load_machine("kvm_passthrough").topology
    alloc = JobAllocation(cpus=[0, 1, 999], gpus=[0, 7], ntasks=1)
    plan = compute_plan(topo, alloc)
    warned = " ".join(plan.all_warnings())
    assert "GPU 7 of the job is not on this node" in warned
    assert "not online" in warned
    assert plan.gpus == [0] and plan.ranks[0].cpus == [0, 1]


def test_nic_exclude_and_own_gpu_only() -> None:
    topo = load_machine("dgx_h100").topology
    options = PlanOptions(nic_exclude=["mlx5_0"], own_gpu_only=True)
    plan = compute_plan(topo, whole_node("dgx_h100", 8), options)
    assert "mlx5_0" not in plan.ranks[0].nics
    assert plan.ranks[0].env["CUDA_VISIBLE_DEVICES"] == "0"


def test_relative_and_uuid_visible_devices() -> None:
    topo = load_machine("dgx_h100").topology
    plan = compute_plan(
        topo, JobAllocation(cpus=topo.cpu.online, gpus=[5, 6], ntasks=2, visible="relative")
    )
    assert plan.ranks[1].env["CUDA_VISIBLE_DEVICES"] == "1,0"
    plan = compute_plan(topo, JobAllocation(cpus=topo.cpu.online, gpus=[5], visible="uuid"))
    assert plan.ranks[0].env["CUDA_VISIBLE_DEVICES"] == topo.gpus[5].uuid


def test_plan_summary_is_the_record_shape() -> None:
    topo = load_machine("dgx_h100").topology
    summary = compute_plan(topo, whole_node("dgx_h100", 8)).summary()
    assert set(summary) == {"ranks", "gpus", "cpus_per_rank", "numa", "nics", "warnings"}
    assert summary["cpus_per_rank"][0] == "0-13,112-125"
