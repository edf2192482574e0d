"""The Prolog's view of the job's CPUs under a production configuration: the job
cgroup under Debian's `slurm_<node>` root, and `scontrol show job -d` CPU_IDs while
the cgroup does not exist yet (PrologFlags=Contain)."""

from __future__ import annotations

from pathlib import Path

from topology_machines import DATA

from slurm_ai.sysfs import Sysfs
from slurm_ai.topology.alloc import (
    allocation_from_env,
    cpus_from_cgroup,
    cpus_from_show_job,
    slurm_cpu_order,
)
from slurm_ai.topology.probe import probe_node

# `scontrol show job -d` of a two-node GPU job (Slurm 22.05 layout, the detail lines).
SHOW_JOB = """\
JobId=12 JobName=train
   JobState=RUNNING Reason=None Dependency=(null)
   NodeList=n[1-2]
   NumNodes=2 NumCPUs=4 NumTasks=2 CPUs/Task=2 ReqB:S:C:T=0:0:*:*
   JOB_GRES=gpu:2
     Nodes=n1 CPU_IDs=0-1 Mem=200 GRES=gpu:1(IDX:0)
     Nodes=n2 CPU_IDs=2-3 Mem=200 GRES=gpu:1(IDX:1)
   MinCPUsNode=2 MinMemoryNode=200M MinTmpDiskNode=0
"""


def test_slurm_numbers_the_threads_of_a_core_one_after_the_other() -> None:
    cpu = probe_node(DATA / "dgx_h100", with_gpus=False, with_fingerprint=False).topology.cpu
    order = slurm_cpu_order(cpu)
    assert sorted(order) == sorted(cpu.online)
    # Core 0 is CPUs 0 and its SMT sibling; Slurm's abstract 0 and 1 are those two.
    assert order[:2] == sorted(cpu.siblings[0]) and order[0] == 0
    cpus, why = cpus_from_show_job(SHOW_JOB, "n1", cpu)
    assert cpus == sorted(cpu.siblings[0]) and why == ""


def test_show_job_cpu_ids_of_this_node_only() -> None:
    cpu = probe_node(DATA / "this_machine", with_gpus=False, with_fingerprint=False).topology.cpu
    wide = probe_node(DATA / "dgx_h100", with_gpus=False, with_fingerprint=False).topology.cpu
    assert cpus_from_show_job(SHOW_JOB, "n2", wide)[0] == sorted(wide.siblings[1])
    none, why = cpus_from_show_job(SHOW_JOB, "n3", cpu)
    assert none == [] and "no CPU_IDs for node n3" in why
    too_many, why = cpus_from_show_job(SHOW_JOB, "n2", cpu)
    if len(cpu.online) < 4:
        assert too_many == [] and "do not fit" in why
    bad, why = cpus_from_show_job("     Nodes=n[1 CPU_IDs=0 Mem=1\n", "n1", cpu)
    assert bad == [] and "unreadable" in why


def _cgroup_tree(root: Path, top: str, job: str, cpus: str) -> None:
    job_dir = root / "sys/fs/cgroup/cpuset" / top / "uid_0" / f"job_{job}"
    job_dir.mkdir(parents=True)
    (job_dir / "cpuset.cpus").write_text(cpus + "\n")
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/cgroup").write_text("3:cpuset:/\n")


def test_the_prolog_finds_the_job_cgroup_under_the_nodes_own_root(tmp_path: Path) -> None:
    _cgroup_tree(tmp_path, "slurm_n1", "7", "1")
    _cgroup_tree(tmp_path, "slurm_n2", "8", "0")
    sysfs = Sysfs(tmp_path)
    assert cpus_from_cgroup(sysfs, "7", "n1") == [1]
    assert cpus_from_cgroup(sysfs, "7", "n2") == []  # another node's job is not ours
    assert cpus_from_cgroup(sysfs, "7") == []
    _cgroup_tree(tmp_path, "slurm", "9", "0-1")
    assert cpus_from_cgroup(sysfs, "9") == [0, 1]


def test_the_prolog_asks_scontrol_when_the_cgroup_is_not_there_yet(tmp_path: Path) -> None:
    topo = probe_node(DATA / "dgx_h100", with_gpus=False, with_fingerprint=False).topology
    env = {"SLURM_JOB_ID": "12", "SLURMD_NODENAME": "n1", "SLURM_JOB_GPUS": "0"}
    calls: list[int] = []

    def from_scontrol() -> tuple[list[int], str]:
        calls.append(1)
        return cpus_from_show_job(SHOW_JOB, "n1", topo.cpu)

    alloc = allocation_from_env(
        env, Sysfs(tmp_path), topo, in_prolog=True, prolog_cpus=from_scontrol
    )
    assert alloc.cpus == sorted(topo.cpu.siblings[0]) and calls == [1]
    assert not alloc.warnings
    # The cgroup, when there, wins and scontrol is not asked.
    _cgroup_tree(tmp_path, "slurm_n1", "12", "2-3")
    alloc = allocation_from_env(
        env, Sysfs(tmp_path), topo, in_prolog=True, prolog_cpus=from_scontrol
    )
    assert alloc.cpus == [2, 3] and calls == [1]


def test_the_prolog_says_why_it_plans_over_all_cpus(tmp_path: Path) -> None:
    topo = probe_node(DATA / "dgx_h100", with_gpus=False, with_fingerprint=False).topology
    alloc = allocation_from_env(
        {"SLURM_JOB_ID": "12"},
        Sysfs(tmp_path),
        topo,
        in_prolog=True,
        prolog_cpus=lambda: ([], "`scontrol show job -d 12` failed: exit 1"),
    )
    assert alloc.cpus == topo.cpu.online
    (warning,) = alloc.warnings
    assert "no job cgroup yet, and `scontrol show job -d 12` failed: exit 1" in warning
    assert "SPANK plugin plans each task" in warning
