"""The SPANK plugin's C core agrees with compute_plan() on the recorded machines.

The plan file is written by the Prolog's code (planfile.render) from a
recorded topology; the harness (sai_bind_harness.c, the plugin's core outside
Slurm) computes each rank's binding from it; compute_plan() computes the same
job in Python. CPUs, memory node and every variable must be equal, over
GPU jobs, MIG, more ranks than GPUs, CPU-only jobs and restricted cpusets.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from slurm_ai import cbuild
from slurm_ai.sysfs import format_cpu_list
from slurm_ai.topology import planfile, spank
from slurm_ai.topology.model import NodeTopology
from slurm_ai.topology.plan import JobAllocation, compute_plan, gpu_units
from slurm_ai.topology.settings import TopologySettings
from tests.topology.topology_machines import MACHINES, load_machine

pytestmark = pytest.mark.skipif(
    cbuild.find_compiler() is None, reason="no C compiler (scripts/setup-deps installs gcc)"
)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spank.build_harness(tmp_path_factory.mktemp("spank"))


def run_harness(
    harness: Path, plan: Path, ntasks: int, rank: int, allowed: list[int], env: dict[str, str]
) -> dict[str, object]:
    argv = [str(harness), str(plan), str(ntasks), str(rank), format_cpu_list(allowed)]
    argv += [f"{k}={v}" for k, v in env.items()]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    result: dict[str, object] = {"env": {}, "warnings": [], "rc": out.returncode}
    for line in out.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "env":
            name, _, value = rest.partition("=")
            result["env"][name] = value  # type: ignore[index]
        elif kind == "warning":
            result["warnings"].append(rest)  # type: ignore[attr-defined]
        else:
            result[kind] = rest
    return result


def scenarios(topo: NodeTopology) -> list[tuple[list[int], list[int], int]]:
    """(allowed CPUs, job GPUs, ntasks) covering the plan's cases."""
    units = [u.index for u in gpu_units(topo)]
    online = topo.cpu.online
    first_node = topo.cpu.numa_cpus.get(min(topo.cpu.numa_cpus, default=0), online)
    out = []
    for gpus in ([], units, units[:2], units[1:2], units[::-1][:3]):
        for ntasks in sorted({1, 2, 3, max(1, len(gpus)), 2 * len(gpus) + 1}):
            out.append((online, gpus, ntasks))
            out.append((first_node[:8] or online, gpus, ntasks))
    out.append((online[:2], units[:1], len(online[:2]) * 2 + 1))  # ranks share CPUs
    return out


@pytest.mark.parametrize("name", MACHINES)
def test_core_agrees_with_compute_plan(harness: Path, tmp_path: Path, name: str) -> None:
    topo = load_machine(name).topology
    settings = TopologySettings(visible_devices="index")
    checked = 0
    for allowed, gpus, ntasks in scenarios(topo):
        plan_path = tmp_path / "task-plan"
        plan_path.write_text(planfile.render(topo, gpus, settings))
        expected = compute_plan(topo, JobAllocation(cpus=allowed, gpus=gpus, ntasks=ntasks))
        env = {"SLURM_STEP_GPUS": ",".join(map(str, gpus))} if gpus else {}
        for rank in range(ntasks):
            got = run_harness(harness, plan_path, ntasks, rank, allowed, env)
            want = expected.ranks[rank]
            case = f"{name} cpus={format_cpu_list(allowed)} gpus={gpus} ntasks={ntasks} rank={rank}"
            assert got["rc"] == 0, case
            assert got["cpus"] == format_cpu_list(want.cpus), case
            assert got["numa"] == ("-" if want.numa is None else str(want.numa)), case
            assert got["env"] == want.env, case
            checked += 1
    assert checked > 20


def test_mig_uuid_style_and_own_instance_only(harness: Path, tmp_path: Path) -> None:
    topo = load_machine("mig_a100").topology
    units = gpu_units(topo)
    plan_path = tmp_path / "task-plan"
    plan_path.write_text(planfile.render(topo, [1, 4], TopologySettings(visible_devices="uuid")))
    for rank, unit in enumerate((units[1], units[4])):
        got = run_harness(harness, plan_path, 2, rank, topo.cpu.online, {"SLURM_STEP_GPUS": "1,4"})
        assert got["env"]["CUDA_VISIBLE_DEVICES"] == unit.uuid  # type: ignore[index]


def test_auto_style_follows_a_renumbering_device_cgroup(harness: Path, tmp_path: Path) -> None:
    """ConstrainDevices: Slurm says CUDA_VISIBLE_DEVICES=0,1 for GPUs 2,3: relative labels."""
    topo = load_machine("dgx_h100").topology
    plan_path = tmp_path / "task-plan"
    plan_path.write_text(planfile.render(topo, [2, 3], TopologySettings()))
    env = {"SLURM_STEP_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0,1"}
    got = [run_harness(harness, plan_path, 2, r, topo.cpu.online, env) for r in (0, 1)]
    assert [g["env"]["CUDA_VISIBLE_DEVICES"] for g in got] == ["0,1", "1,0"]  # type: ignore[index]
    env["CUDA_VISIBLE_DEVICES"] = "2,3"  # no device cgroup: global indices
    got = [run_harness(harness, plan_path, 2, r, topo.cpu.online, env) for r in (0, 1)]
    assert [g["env"]["CUDA_VISIBLE_DEVICES"] for g in got] == ["2,3", "3,2"]  # type: ignore[index]


def test_user_choices_win_unless_the_site_overrides(harness: Path, tmp_path: Path) -> None:
    topo = load_machine("dgx_h100").topology
    plan_path = tmp_path / "task-plan"
    env = {"SLURM_STEP_GPUS": "0", "OMP_NUM_THREADS": "3", "NCCL_IB_HCA": "mine"}
    plan_path.write_text(planfile.render(topo, [0], TopologySettings()))
    got = run_harness(harness, plan_path, 1, 0, topo.cpu.online, env)["env"]
    assert "OMP_NUM_THREADS" not in got and "NCCL_IB_HCA" not in got  # type: ignore[operator]
    assert got["CUDA_VISIBLE_DEVICES"].startswith("0")  # type: ignore[index]
    plan_path.write_text(planfile.render(topo, [0], TopologySettings(override_user_env=True)))
    got = run_harness(harness, plan_path, 1, 0, topo.cpu.online, env)["env"]
    assert "OMP_NUM_THREADS" in got and "NCCL_IB_HCA" in got  # type: ignore[operator]


def test_allowed_cpus_outside_the_plan_are_split_evenly(harness: Path, tmp_path: Path) -> None:
    topo = load_machine("kvm_passthrough").topology
    plan_path = tmp_path / "task-plan"
    plan_path.write_text(planfile.render(topo, [], TopologySettings()))
    outside = [4000, 4001, 4002, 4003]
    got = [run_harness(harness, plan_path, 2, r, outside, {}) for r in (0, 1)]
    assert [g["cpus"] for g in got] == ["4000-4001", "4002-4003"]
    assert all("split evenly" in " ".join(g["warnings"]) for g in got)  # type: ignore[arg-type]


def test_more_tasks_than_a_plan_covers_run_unpinned(harness: Path, tmp_path: Path) -> None:
    """MaxTasksPerNode may exceed the CPUs a plan can describe: fail open, say why."""
    topo = load_machine("kvm_passthrough").topology
    plan_path = tmp_path / "task-plan"
    plan_path.write_text(planfile.render(topo, [], TopologySettings()))
    got = run_harness(harness, plan_path, 5000, 4999, topo.cpu.online, {})
    assert got["rc"] == 1 and "5000 tasks on the node, over the 4096" in str(got["error"])


def test_a_long_gpu_list_names_whole_uuids_only(harness: Path, tmp_path: Path) -> None:
    """30 GPUs in UUID style do not fit CUDA_VISIBLE_DEVICES' 1023 characters: the list
    stops at the last whole UUID, with a warning, never at half a UUID."""
    uuids = [f"GPU-{i:08x}-aaaa-bbbb-cccc-dddddddddddd" for i in range(30)]
    lines = ["sai-task-plan 1", *(f"cpu {c} 0 {c}" for c in range(32))]
    lines += [f"gpu {i} 0 0 {u}" for i, u in enumerate(uuids)] + ["job_gpus 0-29", ""]
    plan_path = tmp_path / "task-plan"
    plan_path.write_text("\n".join(lines))
    env = {"SLURM_STEP_GPUS": "0-29", "CUDA_VISIBLE_DEVICES": ",".join(uuids)}
    got = run_harness(harness, plan_path, 30, 3, list(range(32)), env)
    assert got["rc"] == 0, got
    listed = got["env"]["CUDA_VISIBLE_DEVICES"].split(",")  # type: ignore[index]
    assert listed[0] == uuids[3] and set(listed) <= set(uuids), listed
    assert 20 <= len(listed) < 30
    assert any("CUDA_VISIBLE_DEVICES longer than" in w for w in got["warnings"])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "empty"),
        ("sai-task-plan 2\n", "not a version 1"),
        ("sai-task-plan 1\ncpu 0 0 0", "no final newline"),
        ("sai-task-plan 1\ncpu 99999 0 0\n", "bad 'cpu' line"),
        ("sai-task-plan 1\ncpu 0 0 0 extra 1\n", "too many fields"),
        ("sai-task-plan 1\ngpu_env 7 NCCL_IB_HCA x\n", "bad 'gpu_env'"),
        ("sai-task-plan 1\nnode_env 0 NCCL_IB_HCA a;rm\n", "bad 'node_env'"),
        ("sai-task-plan 1\ncpu 0 0 0\x00\n", "binary"),
        ("sai-task-plan 1\n" + "x" * 5000 + "\n", "too long"),
    ],
)
def test_corrupt_plan_files_are_refused(harness: Path, tmp_path: Path, text: str, why: str) -> None:
    plan_path = tmp_path / "task-plan"
    plan_path.write_text(text)
    got = run_harness(harness, plan_path, 1, 0, [0], {})
    assert got["rc"] == 1 and why in str(got["error"])


def test_oversized_and_symlinked_plans_are_refused(harness: Path, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_text("sai-task-plan 1\n" + "# padding\n" * 200_000)
    assert "over the" in str(run_harness(harness, big, 1, 0, [0], {})["error"])
    link = tmp_path / "link"
    link.symlink_to(big)
    assert "cannot open" in str(run_harness(harness, link, 1, 0, [0], {})["error"])


def test_plugin_workloads_are_the_marks_workloads() -> None:
    import re

    from slurm_ai.accounting.marks import WORKLOADS

    text = spank.source("sai_spank.c").decode()
    match = re.search(r"workloads\[\] = \{([^}]*)\}", text)
    assert match and tuple(re.findall(r'"([^"]+)"', match.group(1))) == WORKLOADS


def test_option_workload_reads_only_a_known_name(tmp_path: Path) -> None:
    from slurm_ai.accounting.marks import OPTION_WORKLOAD_NAME, option_workload

    path = tmp_path / OPTION_WORKLOAD_NAME
    assert option_workload(tmp_path) is None
    path.write_text("inference")
    assert option_workload(tmp_path) == "inference"
    path.write_text("mining")
    assert option_workload(tmp_path) is None
    path.write_bytes(b"x" * 100)
    assert option_workload(tmp_path) is None
    path.unlink()
    (tmp_path / "elsewhere").write_text("training")
    path.symlink_to(tmp_path / "elsewhere")
    assert option_workload(tmp_path) is None
