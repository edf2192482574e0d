"""The SPANK plugin's C core agrees with compute_plan() on the recorded machines.

The plan file is written by the Prolog's code (planfile.render) from a
recorded topology; the harness (sai_bind_harness.c, the plugin's core outside
Slurm) computes each rank's binding from it; compute_plan() computes the same
job in Python. CPUs, memory node and every variable must be equal, over
GPU jobs, MIG, more ranks than GPUs, CPU-only jobs and restricted cpusets.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slurm_ai import cbuild
from slurm_ai.sysfs import Sysfs, format_cpu_list
from slurm_ai.topology import planfile, spank
from slurm_ai.topology.alloc import allocation_from_env
from slurm_ai.topology.hwloc_xml import read_hwloc_xml
from slurm_ai.topology.model import NodeTopology
from slurm_ai.topology.plan import JobAllocation, compute_plan, gpu_units
from slurm_ai.topology.settings import TopologySettings
from tests.topology.hwloc_corpus import MPIBIND_MACHINES
from tests.topology.topology_machines import MACHINES, load_machine

pytestmark = pytest.mark.skipif(
    cbuild.find_compiler() is None, reason="no C compiler (scripts/setup-deps installs gcc)"
)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Under ASan and UBSan: any out-of-bounds access or undefined behaviour aborts it."""
    return spank.build_harness(tmp_path_factory.mktemp("spank"), sanitize=True)


def run_harness(
    harness: Path,
    plan: Path,
    ntasks: int,
    rank: int,
    allowed: list[int],
    env: dict[str, str],
    options: tuple[str, ...] = (),
) -> dict[str, object]:
    argv = [str(harness), *options, str(plan), str(ntasks), str(rank), format_cpu_list(allowed)]
    argv += [f"{k}={v}" for k, v in env.items()]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert "Sanitizer" not in out.stderr and "runtime error" not in out.stderr, out.stderr
    assert out.returncode in (0, 1), out.stderr
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
    agree(harness, tmp_path, name, load_machine(name).topology)


@pytest.mark.parametrize("name", sorted(MPIBIND_MACHINES))
def test_core_agrees_on_other_projects_machines(harness: Path, tmp_path: Path, name: str) -> None:
    """mpibind's machines from their hwloc XML: a restricted cpuset (Lassen, NUMA nodes 0
    and 8), AMD GPUs (Corona: the ROCm variables), CPU only (Quartz)."""
    agree(harness, tmp_path, name, read_hwloc_xml(MPIBIND_MACHINES[name]))


def test_rocm_variables_replace_slurms_and_keep_the_users(harness: Path, tmp_path: Path) -> None:
    topo = read_hwloc_xml(MPIBIND_MACHINES["epyc-corona"])
    plan_path = tmp_path / "task-plan"
    plan_path.write_text(planfile.render(topo, [2, 3], TopologySettings(visible_devices="index")))
    env = {"SLURM_STEP_GPUS": "2,3", "ROCR_VISIBLE_DEVICES": "2,3", "CUDA_VISIBLE_DEVICES": "2,3"}
    got = run_harness(harness, plan_path, 2, 1, topo.cpu.online, env)["env"]
    assert got["ROCR_VISIBLE_DEVICES"] == "3,2"  # type: ignore[index]
    assert got["HIP_VISIBLE_DEVICES"] == got["CUDA_VISIBLE_DEVICES"] == "0,1"  # type: ignore[index]
    env["HIP_VISIBLE_DEVICES"] = "1"  # the user's own choice stays
    got = run_harness(harness, plan_path, 2, 1, topo.cpu.online, env)["env"]
    assert "HIP_VISIBLE_DEVICES" not in got  # type: ignore[operator]


def agree(harness: Path, tmp_path: Path, name: str, topo: NodeTopology) -> None:
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


def test_gpus_slurm_bound_per_task_keep_slurms_names(harness: Path, tmp_path: Path) -> None:
    """`srun -n2 --gpus-per-task=1` on GPUs 2,3: each task's CUDA_VISIBLE_DEVICES names
    only its own GPU ("0" under ConstrainDevices, "3" without a device cgroup). That is
    Slurm's choice: the plugin keeps it (rewriting it as "1,0" would name a GPU the
    task cannot see, and CUDA would then see none), and pins the task next to the
    GPU Slurm's per-task binding gives it (task i: the step's i-th GPU). Python agrees."""
    topo = load_machine("dgx_h100").topology
    plan_path = tmp_path / "task-plan"
    plan_path.write_text(planfile.render(topo, [2, 3], TopologySettings()))
    for own in (["0", "0"], ["2", "3"]):
        for rank in (0, 1):
            env = {"SLURM_STEP_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": own[rank]}
            got = run_harness(harness, plan_path, 2, rank, topo.cpu.online, env)
            assert "CUDA_VISIBLE_DEVICES" not in got["env"], got  # type: ignore[operator]
            alloc = allocation_from_env(
                {**env, "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_NODEID": "0"},
                Sysfs("/"), topo, own_affinity=topo.cpu.online,
            )  # fmt: skip
            assert alloc.visible == "slurm"
            want = compute_plan(topo, alloc).ranks[rank]
            assert "CUDA_VISIBLE_DEVICES" not in want.env
            assert want.gpus == [2 + rank]
            assert got["cpus"] == format_cpu_list(want.cpus), (got, want)
            assert got["numa"] == str(topo.gpus[2 + rank].numa), got


def test_a_device_cgroup_tells_each_task_its_own_gpu(harness: Path, tmp_path: Path) -> None:
    """ConstrainDevices with per-task GPUs: both tasks of `srun -n2 --gpus-per-task=1` on
    GPUs 0 and 4 (NUMA 0 and 1 of a DGX H100) see SLURM_STEP_GPUS=0 and
    CUDA_VISIBLE_DEVICES=0. The plan file names each GPU's device file, and the
    device cgroup (here --denied, in the plugin access()'s EPERM) tells which GPU is
    the task's own: each task is pinned next to its own GPU, the two apart, and its
    GPU keeps the name 0. The C core and compute_plan agree."""
    topo = load_machine("dgx_h100").topology
    devices = [f"/dev/nvidia{i}" for i in range(len(topo.gpus))]
    plan_path = tmp_path / "task-plan"
    plan_path.write_text(planfile.render(topo, [0, 4], TopologySettings(), devices))
    assert "gpu_dev 4 /dev/nvidia4" in plan_path.read_text()
    env = {"SLURM_STEP_GPUS": "0", "CUDA_VISIBLE_DEVICES": "0"}
    cpus = []
    for rank, (own, other) in enumerate(((0, 4), (4, 0))):
        denied = ("--denied", f"/dev/nvidia{other}")
        got = run_harness(harness, plan_path, 2, rank, topo.cpu.online, env, denied)
        want = compute_plan(topo, JobAllocation(cpus=topo.cpu.online, gpus=[own], ntasks=2))
        assert got["gpus"] == str(own) and got["numa"] == str(topo.gpus[own].numa), got
        assert got["cpus"] == format_cpu_list(want.ranks[rank].cpus), (got, want.ranks[rank])
        assert got["env"]["CUDA_VISIBLE_DEVICES"] == "0", got  # type: ignore[index]
        cpus.append(set(want.ranks[rank].cpus))
    assert cpus[0] and cpus[1] and not cpus[0] & cpus[1]
    # Every GPU allowed (no device cgroup), or a GPU without a device file: as before.
    got = run_harness(harness, plan_path, 2, 1, topo.cpu.online, {"SLURM_STEP_GPUS": "0,4"})
    assert got["env"]["CUDA_VISIBLE_DEVICES"] == "4,0", got  # type: ignore[index]
    plan_path.write_text(planfile.render(topo, [0, 4], TopologySettings()))
    got = run_harness(harness, plan_path, 2, 1, topo.cpu.online, env, ("--denied", "/dev/nvidia0"))
    assert got["numa"] == str(topo.gpus[0].numa), got


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


# ---- what the plugin reads from Slurm and from srun's command line ----------


def flat_plan(tmp_path: Path, ncpus: int = 64) -> Path:
    """One NUMA node, one CPU per core: a single rank gets every allowed CPU."""
    path = tmp_path / "task-plan"
    lines = ["sai-task-plan 1", *(f"cpu {c} 0 {c}" for c in range(ncpus)), ""]
    path.write_text("\n".join(lines))
    return path


@pytest.mark.parametrize(
    "kind, cpu_list, want",
    [
        ("map_cpu:", "0x1,0x3", "1,3"),  # hex after 0x, as task/affinity reads a map
        ("map_cpu:", "1,3", "1,3"),
        ("map_cpu:", "10,0xa,0X1f", "10,31"),  # decimal without 0x
        ("map_cpu:", "1*2,0x2", "1-2"),  # a repeat count
        ("mask_cpu:", "0x1,0x6", "0-2"),
        ("mask_cpu:", "1,6", "0-2"),  # srun strips 0x: still hex
        ("mask_cpu:", "10,0X00f0", "4-7"),
        ("map_cpu:", "0x", None),
        ("map_cpu:", "a", None),  # hex without 0x is no CPU id
        ("map_cpu:", "1-3", None),  # no ranges in a map
        ("map_cpu:", "4096", None),
        ("map_cpu:", "1*0", None),
        ("mask_cpu:", "0xg", None),
        ("mask_cpu:", "1 2", None),
        ("mask_cpu:", "1" + "0" * 1024, None),  # CPU 4096
    ],
)
def test_map_and_mask_lists_read_as_slurm_reads_them(
    harness: Path, tmp_path: Path, kind: str, cpu_list: str, want: str | None
) -> None:
    """The step's masks add to the task's own CPUs; a list not understood leaves the
    task as Slurm started it (the plugin logs the reason)."""
    env = {"SLURM_CPU_BIND_TYPE": kind, "SLURM_CPU_BIND_LIST": cpu_list}
    got = run_harness(harness, flat_plan(tmp_path), 1, 0, [1], env)
    if want is None:
        assert got["rc"] == 1 and "SLURM_CPU_BIND_LIST" in str(got["error"]), got
    else:
        assert got["rc"] == 0 and got["cpus"] == format_cpu_list(sorted({1, *parse_cpu(want)}))


def parse_cpu(text: str) -> list[int]:
    from slurm_ai.sysfs import parse_cpu_list

    return parse_cpu_list(text)


@pytest.mark.parametrize(
    "env, want",
    [
        # Slurm 22.05.8 in a task: the list in both variables.
        (
            {"SLURM_CPU_BIND_TYPE": "mask_cpu:", "SLURM_CPU_BIND_LIST": "0x1,0x6",
             "SLURM_CPU_BIND": "quiet,mask_cpu:0x1,0x6"},
            "0-2",
        ),
        # The list variable empty or unset: SLURM_CPU_BIND holds the binding.
        (
            {"SLURM_CPU_BIND_TYPE": "mask_cpu:", "SLURM_CPU_BIND_LIST": "",
             "SLURM_CPU_BIND": "quiet,mask_cpu:0x1,0x6"},
            "0-2",
        ),
        ({"SLURM_CPU_BIND": "verbose,cores,mask_cpu:0x3,0xc"}, "0-3"),
        ({"SLURM_CPU_BIND": "quiet,map_cpu:5,0x2"}, "1-2,5"),
        # The unit Slurm bound to kept in the type ("cores,mask_cpu:").
        ({"SLURM_CPU_BIND_TYPE": "cores,mask_cpu:", "SLURM_CPU_BIND_LIST": "0x3,0xc"}, "0-3"),
        # No map or mask: the task's own CPUs only.
        ({"SLURM_CPU_BIND_TYPE": "none", "SLURM_CPU_BIND_LIST": "",
          "SLURM_CPU_BIND": "quiet,none"}, "1"),
        # A mask type without any list, or a list that does not parse: not pinned.
        ({"SLURM_CPU_BIND_TYPE": "mask_cpu:", "SLURM_CPU_BIND_LIST": "",
          "SLURM_CPU_BIND": "quiet,none"}, None),
        ({"SLURM_CPU_BIND_LIST": "", "SLURM_CPU_BIND": "quiet,mask_cpu:zz"}, None),
    ],
)  # fmt: skip
def test_slurm_cpu_bind_is_read_when_the_list_is_empty(
    harness: Path, tmp_path: Path, env: dict[str, str], want: str | None
) -> None:
    got = run_harness(harness, flat_plan(tmp_path), 1, 0, [1], env)
    if want is None:
        assert got["rc"] == 1 and "SLURM_CPU_BIND" in str(got["error"]), got
    else:
        assert got["rc"] == 0 and got["cpus"] == want, got


def test_a_bad_list_is_quoted_printable_only(harness: Path, tmp_path: Path) -> None:
    """The reason goes to slurmd's log: a variable's control characters do not."""
    env = {"SLURM_CPU_BIND": "quiet,mask_cpu:z\nslurmd: forged line"}
    got = run_harness(harness, flat_plan(tmp_path), 1, 0, [1], env)
    assert got["rc"] == 1 and "z?slurmd: forged" in str(got["error"]), got


def test_a_long_user_variable_is_the_users_choice(harness: Path, tmp_path: Path) -> None:
    """Variables are read whole (the plugin's buffer grows past spank_getenv's first
    8 KiB); one too long to read at all still counts as set: never overridden, and a
    CUDA_VISIBLE_DEVICES that cannot be read is left as it is, with a warning."""
    topo = load_machine("dgx_h100").topology
    plan_path = tmp_path / "task-plan"
    plan_path.write_text(planfile.render(topo, [0, 1], TopologySettings()))
    long_omp = "4," * 4600  # 9200 bytes
    env = {"SLURM_STEP_GPUS": "0,1", "OMP_NUM_THREADS": long_omp}
    got = run_harness(harness, plan_path, 2, 0, topo.cpu.online, env)
    assert got["rc"] == 0 and "OMP_NUM_THREADS" not in got["env"], got  # type: ignore[operator]
    got = run_harness(harness, plan_path, 2, 0, topo.cpu.online, env, ("--env-max", "8192"))
    assert got["rc"] == 0 and "OMP_NUM_THREADS" not in got["env"], got  # type: ignore[operator]
    # CUDA_VISIBLE_DEVICES read whole: 200 UUIDs are no device cgroup's index list.
    uuids = ",".join(f"GPU-{i:08x}-aaaa-bbbb-cccc-dddddddddddd" for i in range(200))
    env = {"SLURM_STEP_GPUS": "0,1", "CUDA_VISIBLE_DEVICES": uuids}
    got = run_harness(harness, plan_path, 2, 1, topo.cpu.online, env)
    assert got["env"]["CUDA_VISIBLE_DEVICES"].startswith("GPU-"), got  # type: ignore[index]
    got = run_harness(harness, plan_path, 2, 1, topo.cpu.online, env, ("--env-max", "8192"))
    assert "CUDA_VISIBLE_DEVICES" not in got["env"], got  # type: ignore[operator]
    assert any("too long to read" in w for w in got["warnings"]), got  # type: ignore[attr-defined]


def user_binding(
    harness: Path, args: list[str], cpu_env: str | None = None, gpu_env: str | None = None
) -> tuple[str, str]:
    argv = [str(harness), "--user-binding", cpu_env or "-", gpu_env or "-", "srun", *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0 and not out.stderr, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    return lines["user"], lines.get("why", "")


@pytest.mark.parametrize(
    "args, want",
    [
        (["--cpu-bind=cores", "cmd"], "cpu"),
        (["--cpu-bind", "cores", "cmd"], "cpu"),
        # "do not bind my tasks" is the user's CPU choice (docs/spank.md); verbose is not
        (["--cpu-bind=verbose,none", "cmd"], "cpu"),
        (["--cpu-bind=NONE", "cmd"], "cpu"),  # Slurm ignores the case
        (["--cpu-bind=no", "cmd"], "cpu"),
        (["--cpu-bind=verbose", "cmd"], "none"),
        (["--cpu-bind=q", "cmd"], "none"),
        (["--gpu-bind=none", "cmd"], "none"),  # Slurm's GPU default: no choice
        (["--cpu-bind=quiet,map_cpu:1,0", "--gpu-bind=closest", "cmd"], "cpu,gpu"),
        (["--cpu-bind=cores", "--cpu-bind=verbose", "cmd"], "none"),  # the last one
        (["--cpu-bind=none", "--cpu-bind=v", "cmd"], "none"),
        # getopt_long's unambiguous prefixes (gap 4)
        (["--cpu-b=cores", "cmd"], "cpu"),
        (["--cpu-bi", "map_cpu:1", "cmd"], "cpu"),
        (["--cpu_=map_cpu:1", "cmd"], "cpu"),
        (["--gpu-bi=closest", "cmd"], "gpu"),
        (["--gpu-b", "single:1", "cmd"], "gpu"),
        (["--cpu-b=none", "cmd"], "cpu"),
        (["--exa", "--cpu-bind=cores", "cmd"], "cpu"),  # --exact takes no value
        (["--ntasks-per-n", "2", "--cpu-bind=cores", "cmd"], "cpu"),
        (["--tres-bind=gres/gpu:closest", "cmd"], "gpu"),
        # short options
        (["-F", "nodes.txt", "--cpu-bind=cores", "cmd"], "cpu"),  # -F takes a value
        (["-ln2", "--cpu-bind=cores", "cmd"], "cpu"),
        (["-l", "-n", "2", "cmd", "--cpu-bind=cores"], "none"),  # the command's own
        (["-I60", "--gpu-bind=closest", "cmd"], "gpu"),
        (["--", "cmd", "--cpu-bind=cores"], "none"),
        # heterogeneous steps: every component's options (gap 5)
        (["-n1", "cmd", ":", "-n1", "--cpu-bind=cores", "cmd2"], "cpu"),
        (["-n1", "cmd", ":", "-n1", "--cpu-bind=none", "cmd2"], "cpu"),
        (["-n1", "cmd", ":", "-n1", "--cpu-bind=verbose", "cmd2"], "none"),
        (["--cpu-bind=cores", "cmd", ":", "--cpu-bind=verbose", "cmd2"], "cpu"),
        (["-n1", "cmd", "--cpu-bind=cores", ":", "-n1", "cmd2"], "none"),
        (["-n1", "cmd", "a", ":", "--gpu-b=closest", "cmd2", ":", "-n1", "cmd3"], "gpu"),
        (["-J", ":", "--cpu-bind=cores", "cmd"], "cpu"),  # a ":" that is a value
    ],
)
def test_which_srun_options_are_the_users_binding(
    harness: Path, args: list[str], want: str
) -> None:
    assert user_binding(harness, args)[0] == want


def test_srun_input_variables_count_unless_slurm_set_them(harness: Path) -> None:
    assert user_binding(harness, ["cmd"], cpu_env="cores")[0] == "cpu"
    assert user_binding(harness, ["cmd"], gpu_env="closest")[0] == "gpu"
    assert user_binding(harness, ["cmd"], cpu_env="quiet,mask_cpu:0x1")[0] == "none"
    assert user_binding(harness, ["cmd"], cpu_env="quiet,none")[0] == "none"  # Slurm's
    assert user_binding(harness, ["cmd"], cpu_env="none")[0] == "cpu"  # the user's
    assert user_binding(harness, ["--cpu-bind=verbose", "cmd"], cpu_env="cores")[0] == "none"
    # Each heterogeneous component reads them.
    args = ["--cpu-bind=verbose", "cmd", ":", "-n1", "cmd2"]
    assert user_binding(harness, args, cpu_env="cores")[0] == "cpu"


def test_options_srun_s_table_does_not_hold_are_read_both_ways(harness: Path) -> None:
    """Another SPANK plugin's option, or a prefix of options that differ: whether the
    next word is its value is unknown, so a binding found either way counts."""
    got = user_binding(harness, ["--container-image", "img", "--cpu-bind=cores", "cmd"])
    assert got == ("cpu", "srun option not known here: --container-image")
    got = user_binding(harness, ["--container-image", "--cpu-bind=cores", "img", "cmd"])
    assert got[0] == "cpu"
    assert user_binding(harness, ["--container-image=img", "cmd"]) == ("none", "")
    got = user_binding(harness, ["--ext", "1", "cmd"])  # --extra or --external-launcher
    assert got == ("none", "srun option prefix of several: --ext")
    assert user_binding(harness, ["--cpu=cores", "cmd"])[0] == "cpu"  # maybe --cpu-bind
    many = [w for i in range(6) for w in (f"--plugin-opt{i}", "x")]
    assert user_binding(harness, [*many, "cmd"])[0] == "cpu,gpu"  # past guessing


def test_the_option_table_is_srun_s_own() -> None:
    """sai_args.c's table is the union of srun 22.05.8's and 24.11.5's long options
    (tests/topology/data, read off srun itself), plus the plugin's own two."""
    import re

    data = Path(__file__).parent / "data"
    want: dict[str, int] = {"sai-bind": 1, "sai-workload": 1}
    for name in ("srun-22.05.8-options.txt", "srun-24.11.5-options.txt"):
        for line in (data / name).read_text().splitlines():
            if line and not line.startswith("#"):
                option, kind = line.split()
                assert want.setdefault(option, int(kind == "value")) == int(kind == "value")
    text = spank.source("sai_args.c").decode()
    got = {m[0]: int(m[1]) for m in re.findall(r'\{ "([a-z0-9_-]+)", ([01]), ', text)}
    assert got == want


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_parsers_survive_hostile_input(harness: Path, seed: int) -> None:
    """Random lists, variables, command lines and plan files into every parser, under
    ASan/UBSan (the harness aborts on any out-of-bounds access)."""
    out = subprocess.run(
        [str(harness), "--fuzz", str(seed), "30000"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "fuzz 30000 rounds", out.stderr[-3000:]


# set_mempolicy(MPOL_PREFERRED, node 0), then exec the harness: a policy the task had
# before task_init, as Slurm's task/affinity leaves it for `srun --mem-bind=...`.
PREFER_THEN_EXEC = """
import ctypes, os, sys
number = {"x86_64": 238, "aarch64": 237}.get(os.uname().machine)
libc = ctypes.CDLL(None, use_errno=True)
mask = ctypes.c_ulong(1)
if number is None or libc.syscall(number, 1, ctypes.byref(mask), 64) != 0:
    print("denied", ctypes.get_errno())
    sys.exit(0)
os.execv(sys.argv[1], [sys.argv[1], "--memory-policy"])
"""


def test_a_memory_policy_set_before_the_task_is_left_alone(harness: Path) -> None:
    """The plugin prefers the plan's NUMA node only where the task has no memory policy
    yet: one it has (the user's --mem-bind, applied by Slurm before task_init) stays."""

    def probe(*argv: str) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        assert "Sanitizer" not in out.stderr and "runtime error" not in out.stderr, out.stderr
        return out.stdout.strip()

    plain = probe(str(harness), "--memory-policy")
    chosen = probe(sys.executable, "-c", PREFER_THEN_EXEC, str(harness))
    if chosen.startswith("denied"):
        # A host that forbids memory policies (a container's seccomp without CAP_SYS_NICE,
        # a kernel without NUMA): nothing to keep, and the probe must not claim one.
        assert plain in ("memory-policy default", "memory-policy unknown"), plain
    else:
        assert (plain, chosen) == ("memory-policy default", "memory-policy set")


def test_rocr_renumbering_sets_the_style_on_amd_nodes(harness: Path, tmp_path: Path) -> None:
    """AutoDetect=rsmi: Slurm sets only ROCR_VISIBLE_DEVICES; under ConstrainDevices it
    counts 0..n-1, and the labels must follow (C core and Python alike)."""
    topo = read_hwloc_xml(MPIBIND_MACHINES["epyc-corona"])
    plan_path = tmp_path / "task-plan"
    plan_path.write_text(planfile.render(topo, [2, 3], TopologySettings()))
    for seen, want in (("0,1", "1,0"), ("2,3", "3,2")):
        env = {"SLURM_JOB_ID": "7", "SLURM_STEP_GPUS": "2,3", "ROCR_VISIBLE_DEVICES": seen}
        env["SLURM_STEP_TASKS_PER_NODE"] = "2"
        got = run_harness(harness, plan_path, 2, 1, topo.cpu.online, env)["env"]
        assert got["ROCR_VISIBLE_DEVICES"] == want  # type: ignore[index]
        alloc = allocation_from_env(env, Sysfs(tmp_path), topo, own_affinity=topo.cpu.online)
        assert compute_plan(topo, alloc).ranks[1].env["ROCR_VISIBLE_DEVICES"] == want
