"""Our plan against mpibind's own expected mappings on its three machines (v0.19.0).

Each case of `expected.<machine>` is a set of mpibind parameters and the CPUs (PU
lists) and GPUs each task gets. A case is translated into the job Slurm would give
us: `ntasks`, the CPUs (the whole allowed set, `restr_set` CPUs, or the CPUs of the
`restr_set` NUMA nodes) and the GPUs local to those CPUs (mpibind sees only those).
Then, per task: the GPU set must be mpibind's exactly, and the CPU set mpibind's at
core level (mpibind lists `smt` PUs per core, one when smt is 0; we bind whole cores).

Cases we cannot express, and cases where we differ on purpose, are listed below by
name with the reason; the lists are checked against the rule that picks them, and a
difference is asserted as our rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hwloc_corpus import MPIBIND, MPIBIND_MACHINES
from topology_checks import check_plan

from slurm_ai.sysfs import parse_cpu_list
from slurm_ai.topology.hwloc_xml import read_hwloc_xml
from slurm_ai.topology.model import NodeTopology
from slurm_ai.topology.plan import AffinityPlan, JobAllocation, compute_plan, gpu_numa


@dataclass
class Case:
    machine: str
    number: int
    params: dict
    description: str
    cpus: list[list[int]]  # per task: PU os indices
    gpus: list[list[int]]  # per task: GPU indices

    @property
    def name(self) -> str:
        return f"{self.machine} #{self.number} ({self.description})"


def _task_fields(ntasks: int, where: str) -> Callable[[str], list[str]]:
    def fields(quoted: str) -> list[str]:
        out = quoted.strip().strip('"').split(";")
        assert len(out) == ntasks, f"{where}: {quoted!r} is not {ntasks} tasks"
        return out

    return fields


def parse_expected(path: Path, machine: str) -> list[Case]:
    """The six-line records of mpibind's expected.* files."""
    cases: list[Case] = []
    lines = [line.strip() for line in path.read_text().splitlines()]
    i = 0
    while i < len(lines):
        match = re.fullmatch(r"# (\d+):", lines[i])
        if not match:
            i += 1
            continue
        params = json.loads(lines[i + 1].lstrip("# "))["params"]
        body = [line for line in lines[i + 2 :] if line][:4]
        description, _threads, cpus, gpus = body
        ntasks = params["ntasks"]
        tasks = _task_fields(ntasks, f"{machine} #{match.group(1)}")
        cases.append(
            Case(
                machine=machine,
                number=int(match.group(1)),
                params=params,
                description=description,
                cpus=[parse_cpu_list(t) for t in tasks(cpus)],
                gpus=[[int(g) for g in t.split(",") if g] for t in tasks(gpus)],
            )
        )
        i += 6
    return cases


EXPECTED = {
    "coral-lassen": "expected.coral-lassen",
    "epyc-corona": "expected.epyc-corona",
    "cts1-quartz": "expected.cts1-quartz",
}
_TOPOLOGIES: dict[str, NodeTopology] = {}


def topology(machine: str) -> NodeTopology:
    if machine not in _TOPOLOGIES:
        _TOPOLOGIES[machine] = read_hwloc_xml(MPIBIND_MACHINES[machine])
    return _TOPOLOGIES[machine]


ALL_CASES = [c for m, f in EXPECTED.items() for c in parse_expected(MPIBIND / f, m)]

THREADS = (
    "a thread count per task (in_nthreads) is an input of mpibind's mapping (it spreads "
    "workers over NUMA nodes); our plan takes none (OMP_NUM_THREADS is its output)"
)
NOT_EXPRESSIBLE = {
    "coral-lassen #4": THREADS,
    "epyc-corona #4": THREADS,
    "cts1-quartz #4": THREADS,
    "epyc-corona #10": (
        "gpu_optim=0 with GPUs on only some NUMA nodes: mpibind places tasks by PUs and "
        "leaves the tasks on GPU-less nodes without a GPU; our plan gives every rank of a "
        "GPU job a GPU and places it by that GPU"
    ),
}
FIRST_GPU_NODE = (
    "a rank takes its CPUs from its first GPU's NUMA node only; mpibind (fewer tasks than "
    "NUMA nodes) gives it whole NUMA domains, also the ones of its other GPUs and GPU-less ones"
)
DIFFERENT = {
    "coral-lassen #2": FIRST_GPU_NODE,
    "epyc-corona #2": FIRST_GPU_NODE,
    "epyc-corona #3": FIRST_GPU_NODE,
    "epyc-corona #6": FIRST_GPU_NODE,
    "epyc-corona #7": FIRST_GPU_NODE,
    "epyc-corona #8": FIRST_GPU_NODE,
}


def short(case: Case) -> str:
    return f"{case.machine} #{case.number}"


def job_for(case: Case, topo: NodeTopology) -> JobAllocation:
    """The Slurm job that mpibind's parameters describe."""
    allowed = topo.cpu.allowed or topo.cpu.online
    restriction = case.params["restr_set"]
    if restriction is None:
        cpus = list(allowed)
    elif case.params["restrict_type"] == 1:  # NUMA nodes
        nodes = parse_cpu_list(restriction)
        cpus = sorted(c for n in nodes for c in topo.cpu.numa_cpus.get(n, []) if c in allowed)
    else:
        cpus = sorted(set(parse_cpu_list(restriction)) & set(allowed))
    nodes_of_job = {topo.cpu.numa_of(c) for c in cpus}
    gpus = [g.index for g in topo.gpus if gpu_numa(g, topo) in nodes_of_job]
    return JobAllocation(cpus=cpus, gpus=gpus, ntasks=case.params["ntasks"])


def not_expressible(case: Case, topo: NodeTopology, job: JobAllocation) -> bool:
    """The rule behind NOT_EXPRESSIBLE."""
    if case.params["in_nthreads"]:
        return True
    if case.params["gpu_optim"] or not job.gpus:
        return False
    # gpu_optim=0: tasks go by PUs. Same as by GPUs only where each NUMA node holds the
    # same share of the job's GPUs as of its CPUs.
    for node in {topo.cpu.numa_of(c) for c in job.cpus}:
        pus = sum(1 for c in job.cpus if topo.cpu.numa_of(c) == node)
        gpus = sum(1 for g in topo.gpus if g.index in job.gpus and gpu_numa(g, topo) == node)
        if pus * len(job.gpus) != gpus * len(job.cpus):
            return True
    return False


def differs_by_design(topo: NodeTopology, job: JobAllocation, plan: AffinityPlan) -> bool:
    """The rule behind DIFFERENT: a rank whose GPUs span NUMA nodes, or fewer ranks than
    the job's NUMA nodes while some of them hold no GPU."""
    gpu_nodes = {gpu_numa(g, topo) for g in topo.gpus if g.index in job.gpus}
    job_nodes = {topo.cpu.numa_of(c) for c in job.cpus}
    by_index = {g.index: g for g in topo.gpus}
    spans = any(len({gpu_numa(by_index[i], topo) for i in r.gpus}) > 1 for r in plan.ranks)
    idle_nodes = bool(job.gpus) and job.ntasks < len(job_nodes) and job_nodes - gpu_nodes
    return spans or bool(idle_nodes)


def cores_of(topo: NodeTopology, cpus: list[int]) -> set[frozenset[int]]:
    return {frozenset(topo.cpu.siblings.get(c, [c])) for c in cpus}


def test_every_file_parsed() -> None:
    assert len(ALL_CASES) == 36
    assert all(len(c.cpus) == c.params["ntasks"] for c in ALL_CASES)


def test_the_lists_name_what_the_rules_pick() -> None:
    picked_not, picked_diff = set(), set()
    for case in ALL_CASES:
        topo = topology(case.machine)
        job = job_for(case, topo)
        if not_expressible(case, topo, job):
            picked_not.add(short(case))
        elif differs_by_design(topo, job, compute_plan(topo, job)):
            picked_diff.add(short(case))
    assert picked_not == set(NOT_EXPRESSIBLE)
    assert picked_diff == set(DIFFERENT)


COMPARED = [c for c in ALL_CASES if short(c) not in NOT_EXPRESSIBLE and short(c) not in DIFFERENT]


@pytest.mark.parametrize("case", COMPARED, ids=short)
def test_same_gpus_and_cores_as_mpibind(case: Case) -> None:
    topo = topology(case.machine)
    job = job_for(case, topo)
    plan = compute_plan(topo, job)
    check_plan(topo, job, plan)
    for task, rank in enumerate(plan.ranks):
        assert rank.gpus == case.gpus[task], f"{case.name}: task {task} GPUs"
        assert cores_of(topo, rank.cpus) == cores_of(topo, case.cpus[task]), (
            f"{case.name}: task {task} cores"
        )
        # Our rule where mpibind's smt picks PUs: whole cores, unless the ranks of a NUMA
        # node outnumber its cores (then threads are split, with a warning).
        if not any("SMT siblings split" in w or "share" in w for w in plan.all_warnings()):
            whole = {c for core in cores_of(topo, rank.cpus) for c in core} & set(job.cpus)
            assert set(rank.cpus) == whole


@pytest.mark.parametrize("case", [c for c in ALL_CASES if short(c) in DIFFERENT], ids=short)
def test_our_rule_where_we_differ(case: Case) -> None:
    """Same GPUs; CPUs from the first GPU's NUMA node only, which mpibind's set holds."""
    topo = topology(case.machine)
    job = job_for(case, topo)
    plan = compute_plan(topo, job)
    check_plan(topo, job, plan)
    by_index = {g.index: g for g in topo.gpus}
    for task, rank in enumerate(plan.ranks):
        assert rank.gpus == case.gpus[task]
        node = gpu_numa(by_index[rank.gpus[0]], topo)
        sharing = [r for r in plan.ranks if gpu_numa(by_index[r.gpus[0]], topo) == node]
        assert rank.numa == node
        assert set(rank.cpus) <= set(topo.cpu.numa_cpus[node])
        assert sum(len(r.cpus) for r in sharing) == len(topo.cpu.numa_cpus[node])
        assert cores_of(topo, rank.cpus) < cores_of(topo, case.cpus[task])  # mpibind: more


def test_nics_are_ours_only() -> None:
    """mpibind finds NICs but assigns none; each of our ranks gets the HCA ports of its
    GPU's NUMA node (Lassen: one dual-port ConnectX-5 per socket, both ports tie)."""
    topo = topology("coral-lassen")
    plan = compute_plan(topo, JobAllocation(cpus=topo.cpu.allowed, gpus=[0, 1, 2, 3], ntasks=4))
    assert [r.nics for r in plan.ranks] == [
        ["mlx5_0", "mlx5_1"],
        ["mlx5_0", "mlx5_1"],
        ["mlx5_2", "mlx5_3"],
        ["mlx5_2", "mlx5_3"],
    ]
    assert plan.ranks[2].env["NCCL_IB_HCA"] == "=mlx5_2:1,mlx5_3:1"
