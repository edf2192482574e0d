"""Missing sysfs, NVML faults, garbage environment: warnings and a plan, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from topology_machines import DATA, load_machine

from slurm_ai.sysfs import Sysfs
from slurm_ai.topology.alloc import (
    allocation_from_env,
    cpus_from_cpu_bind,
    tasks_on_node,
    visible_style,
)
from slurm_ai.topology.plan import compute_plan
from slurm_ai.topology.probe import probe_node
from slurm_ai.topology.settings import TopologySettings
from slurm_ai.topology.task import plan_for_task
from slurm_ai.topology.taskenv import export_lines, task_env


def test_empty_root_gives_a_one_cpu_plan(tmp_path: Path) -> None:
    probe = probe_node(tmp_path)
    assert probe.topology.cpu.online == [0]
    assert any("no CPUs found" in w for w in probe.topology.warnings)
    plan = compute_plan(probe.topology, allocation_from_env({}, Sysfs(tmp_path), probe.topology))
    assert plan.ranks[0].cpus == [0]


def test_corrupt_sysfs_files(tmp_path: Path) -> None:
    root = tmp_path / "m"
    shutil.copytree(DATA / "dgx_h100", root, symlinks=True)
    (root / "sys/devices/system/cpu/online").write_text("0-3,x\n")
    (root / "sys/devices/system/node/node1/cpulist").write_text("garbage\n")
    (root / "sys/devices/system/cpu/cpu5/topology/thread_siblings_list").write_text("?\n")
    gpu0 = root / "sys/bus/pci/devices/0000:1b:00.0"
    (gpu0 / "numa_node").write_text("-1\n")
    (gpu0 / "local_cpulist").write_text("not a list\n")
    probe = probe_node(root)
    warned = " ".join(probe.topology.warnings)
    assert "unreadable CPU list" in warned
    assert probe.topology.gpus[0].numa is None
    alloc = allocation_from_env(
        {"SLURM_JOB_GPUS": "0,1"},
        Sysfs(root),
        probe.topology,
        own_affinity=probe.topology.cpu.online,
    )
    plan = compute_plan(probe.topology, alloc)
    assert all(r.cpus for r in plan.ranks)
    assert any("unknown" in w for w in plan.all_warnings())


def test_nvml_raising_or_hanging_falls_back_to_pci_bus(tmp_path: Path) -> None:
    root = tmp_path / "m"
    shutil.copytree(DATA / "kvm_passthrough", root, symlinks=True)
    (root / "nvml.json").unlink()
    recording = json.loads((DATA.parent / "nvml" / "topo_kvm_passthrough.json").read_text())
    recording["devices"][0]["nvmlDeviceGetUUID"] = {"hang": True}
    (root / "nvml.json").write_text(json.dumps(recording))
    probe = probe_node(root)
    assert [g.bus_id for g in probe.topology.gpus] == ["0000:41:00.0", "0000:81:00.0"]
    assert any("NVML unavailable" in w for w in probe.topology.warnings)
    (root / "nvml.json").write_text("{not json")
    probe = probe_node(root)
    assert len(probe.topology.gpus) == 2 and probe.topology.gpus[0].uuid is None


def test_garbage_environment_gives_warnings_not_errors() -> None:
    topo = load_machine("dgx_h100").topology
    env = {
        "SLURM_JOB_ID": "12",
        "SLURM_LOCALID": "0",
        "SLURM_JOB_GPUS": "0,banana,1;rm -rf /,99",
        "SLURM_STEP_TASKS_PER_NODE": "lots",
        "SLURM_CPU_BIND": "quiet,mask_cpu:0xZZ",
        "CUDA_VISIBLE_DEVICES": "\n",
    }
    alloc = allocation_from_env(env, Sysfs(DATA / "dgx_h100"), topo, own_affinity=[0, 1, 112, 113])
    plan = compute_plan(topo, alloc)
    warned = " ".join(plan.all_warnings())
    assert "not a GPU index" in warned and "GPU 99 of the job is not on this node" in warned
    assert plan.gpus == [0]  # "1;rm -rf /" is not an index
    assert plan.ranks[0].cpus == [0, 1, 112, 113]


def test_env_parsers() -> None:
    assert tasks_on_node("2(x3),1", 3) == 1
    assert tasks_on_node("2(x3),1", 0) == 2
    assert tasks_on_node("4", None) == 4
    assert tasks_on_node("x(y)", 0) is None
    assert cpus_from_cpu_bind({"SLURM_CPU_BIND": "quiet,mask_cpu:0x1,0x6"}) == [0, 1, 2]
    assert cpus_from_cpu_bind(
        {"SLURM_CPU_BIND_TYPE": "map_cpu:", "SLURM_CPU_BIND_LIST": "3,5"}
    ) == [3, 5]
    assert visible_style({"CUDA_VISIBLE_DEVICES": "0,1"}, [4, 5], "auto") == "relative"
    assert visible_style({"CUDA_VISIBLE_DEVICES": "4,5"}, [4, 5], "auto") == "index"
    assert visible_style({"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"}, [4, 5], "auto") == "uuid"


def test_unsafe_values_are_not_exported() -> None:
    warnings: list[str] = []
    env = task_env(
        {
            "OK": "mlx5_0:1",
            "BAD": "x\nexport LD_PRELOAD=/tmp/evil.so",
            "lower": "1",
            "NCCL_IB_HCA": "=mlx5_0:1",
            "CUDA_VISIBLE_DEVICES": "1,0",
        },
        {"NCCL_IB_HCA": "user-choice", "CUDA_VISIBLE_DEVICES": "0,1"},
        override_user_env=False,
        warnings=warnings,
    )
    assert env == {"OK": "mlx5_0:1", "CUDA_VISIBLE_DEVICES": "1,0"}
    assert len(warnings) == 2
    assert export_lines(env) == ["export CUDA_VISIBLE_DEVICES=1,0", "export OK=mlx5_0:1"]


def test_task_plan_on_recorded_machine() -> None:
    env = {
        "SLURM_JOB_ID": "7",
        "SLURM_LOCALID": "3",
        "SLURM_STEP_GPUS": "0,1,2,3",
        "SLURM_STEP_TASKS_PER_NODE": "4",
        "SLURM_NODEID": "0",
    }
    task = plan_for_task(
        env, TopologySettings(), root=str(DATA / "dgx_a100"), own_affinity=list(range(256))
    )
    assert task.rank.gpus == [3] and task.rank.nics == ["mlx5_3"] and task.rank.numa == 1
    env["SLURM_LOCALID"] = "9"
    task = plan_for_task(
        env, TopologySettings(), root=str(DATA / "dgx_a100"), own_affinity=list(range(256))
    )
    assert any("beyond" in w for w in task.warnings)
