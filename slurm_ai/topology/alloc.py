"""What a job was given on this node, read from the places Slurm leaves it.

CPUs, in order of trust:
1. the job's cpuset cgroup (task/cgroup): the whole job's CPUs on this node,
   under `slurm/` or, where slurmd is built for several slurmd per host (Debian),
   under `slurm_<node>/`;
2. the per-task masks in SLURM_CPU_BIND_LIST (task/affinity binds every task
   of the step and lists all their masks): their union is the step's CPUs;
3. the caller's own affinity (os.sched_getaffinity), or in the Prolog, which
   runs outside the job: the job's CPU_IDs on this node from `scontrol show job
   -d` (with PrologFlags=Contain the Prolog runs before slurmstepd makes the job's
   cgroup), else every online CPU, with a note saying why.
GPUs: SLURM_STEP_GPUS / SLURM_JOB_GPUS (global indices on the node; in the
Prolog also CUDA_VISIBLE_DEVICES). Tasks: SLURM_STEP_TASKS_PER_NODE or
SLURM_TASKS_PER_NODE ("2(x3),1" form) at this node's SLURM_NODEID.
Garbage in any of them gives a warning and a best-effort allocation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from slurm_ai.slurmenv import expand_hostlist, parse_index_list
from slurm_ai.sysfs import Sysfs, parse_cpu_list, parse_cpu_mask
from slurm_ai.topology.model import CpuTopology, NodeTopology
from slurm_ai.topology.plan import JobAllocation, rocm_node

CGROUP = "/sys/fs/cgroup"


def tasks_on_node(text: str | None, node_id: int | None) -> int | None:
    """ "2(x3),1" with node id 3 -> 1; None when absent or garbage."""
    if not text:
        return None
    counts: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not match:
            return None
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    if not counts:
        return None
    index = node_id if node_id is not None and 0 <= node_id < len(counts) else 0
    return counts[index]


def cpus_from_cpu_bind(env: Mapping[str, str]) -> list[int]:
    """Union of the task masks of SLURM_CPU_BIND_LIST (mask_cpu or map_cpu)."""
    kind = env.get("SLURM_CPU_BIND_TYPE", "")
    listed = env.get("SLURM_CPU_BIND_LIST", "")
    if not listed:
        bind = env.get("SLURM_CPU_BIND", "")
        match = re.search(r"(mask_cpu|map_cpu):([0-9a-fA-Fx,]+)", bind)
        if not match:
            return []
        kind, listed = match.group(1), match.group(2)
    cpus: set[int] = set()
    for item in listed.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if "map_cpu" in kind:
                cpus.add(int(item, 0))
            else:
                cpus.update(parse_cpu_mask(item[2:] if item.lower().startswith("0x") else item))
        except ValueError:
            return []
    return sorted(cpus)


def _cgroup_cpus(sysfs: Sysfs, rel: str) -> list[int]:
    for name in ("cpuset.cpus.effective", "cpuset.cpus"):
        text = sysfs.read_text(f"{rel}/{name}")
        if text:
            try:
                return parse_cpu_list(text)
            except ValueError:
                return []
    return []


def cpus_from_cgroup(sysfs: Sysfs, job_id: str | None, node: str | None = None) -> list[int]:
    """The job-level cpuset of this process's cgroup (v2 or v1 cpuset)."""
    for line in (sysfs.read_text("/proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not (parts[1] == "" or "cpuset" in parts[1].split(",")):
            continue
        match = re.match(r"^(.*?/job_\d+)(?:/|$)", parts[2])
        if not match:
            continue
        base = CGROUP if parts[1] == "" else f"{CGROUP}/cpuset"
        cpus = _cgroup_cpus(sysfs, f"{base}{match.group(1)}")
        if cpus:
            return cpus
    if job_id and job_id.isdigit():
        # The Prolog runs outside the job: look the job's cgroup up by id. A slurmd
        # built for several slurmd per host names its root after the node.
        roots = ["slurm", *([f"slurm_{node}"] if node and "/" not in node else [])]
        for rel in (
            f"{CGROUP}/system.slice/slurmstepd.scope/job_{job_id}",
            *(
                f"{CGROUP}/cpuset/{root}/{uid}/job_{job_id}"
                for root in roots
                for uid in sysfs.listdir(f"{CGROUP}/cpuset/{root}")
                if uid.startswith("uid_")
            ),
        ):
            cpus = _cgroup_cpus(sysfs, rel)
            if cpus:
                return cpus
    return []


def slurm_cpu_order(cpu: CpuTopology) -> list[int]:
    """Online CPUs in Slurm's abstract numbering: socket by socket, core by core,
    the threads of a core one after the other (hwloc's logical order)."""
    cores = cpu.cores(cpu.online)
    cores.sort(key=lambda core: (cpu.package.get(core[0], 0), core[0]))
    return [c for core in cores for c in core]


def cpus_from_show_job(text: str, node: str, cpu: CpuTopology) -> tuple[list[int], str]:
    """The job's CPUs on `node` from `scontrol show job -d` output (its `Nodes=...
    CPU_IDs=...` lines, Slurm's abstract CPU indices mapped to this node's CPUs);
    ([], why) when they are not there."""
    order = slurm_cpu_order(cpu)
    for match in re.finditer(r"\bNodes=(\S+)\s+CPU_IDs=(\S+)", text):
        try:
            if node not in expand_hostlist(match.group(1)):
                continue
            ids = parse_cpu_list(match.group(2))
        except ValueError:
            return [], f"scontrol show job -d: unreadable {match.group(0)!r}"
        if not ids or max(ids) >= len(order):
            return [], (
                f"scontrol show job -d: CPU_IDs={match.group(2)} do not fit the "
                f"{len(order)} online CPUs of this node"
            )
        return sorted(order[i] for i in ids), ""
    return [], f"scontrol show job -d lists no CPU_IDs for node {node}"


def job_gpus(env: Mapping[str, str], in_prolog: bool) -> tuple[list[int], list[str]]:
    text = env.get("SLURM_STEP_GPUS") or env.get("SLURM_JOB_GPUS")
    if text is None and in_prolog:
        text = env.get("CUDA_VISIBLE_DEVICES")
    gpus, problems = parse_index_list(text)
    return gpus, [f"GPU list {p}" for p in problems]


def visible_style(
    env: Mapping[str, str], gpus: list[int], configured: str, rocm: bool = False
) -> str:
    """How CUDA_VISIBLE_DEVICES must name GPUs for CUDA inside this task ("slurm":
    not at all, Slurm gave the task fewer GPUs than the step has and named them).

    With a device cgroup (ConstrainDevices=yes) the task sees only its GPUs,
    renumbered from 0, and Slurm then sets CUDA_VISIBLE_DEVICES to 0..n-1:
    global indices would name the wrong GPUs. UUIDs are right in both cases.
    On an AMD node (`rocm`) without CUDA_VISIBLE_DEVICES (gres.conf
    AutoDetect=rsmi sets only ROCR_VISIBLE_DEVICES), Slurm's ROCR_VISIBLE_DEVICES.
    """
    if configured in ("index", "relative", "uuid"):
        return configured
    name = "CUDA_VISIBLE_DEVICES"
    if rocm and name not in env:
        name = "ROCR_VISIBLE_DEVICES"
    seen = (env.get(name) or "").split(",")
    if gpus and 0 < len([s for s in seen if s.strip()]) < len(gpus):
        # Slurm bound GPUs per task (--gpus-per-task, --ntasks-per-gpu, --gpu-bind):
        # the task's list is Slurm's choice, and under ConstrainDevices it counts from
        # 0 among the GPUs the task can open. Kept as Slurm wrote it.
        return "slurm"
    if (
        seen
        and all(s.strip().startswith(("GPU-", "MIG-")) for s in seen if s.strip())
        and any(s.strip() for s in seen)
    ):
        return "uuid"
    indices, problems = parse_index_list(env.get(name))
    if (
        gpus
        and not problems
        and indices == list(range(len(gpus)))
        and sorted(gpus) != list(range(len(gpus)))
    ):
        return "relative"
    return "index"


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() else None


def allocation_from_env(
    env: Mapping[str, str],
    sysfs: Sysfs,
    topo: NodeTopology,
    *,
    own_affinity: list[int] | None = None,
    in_prolog: bool = False,
    visible: str = "auto",
    prolog_cpus: Callable[[], tuple[list[int], str]] | None = None,
) -> JobAllocation:
    """`prolog_cpus`: in the Prolog, where the job's cgroup may not exist yet, the
    job's CPUs from elsewhere (the hook asks `scontrol show job -d`), or ([], why)."""
    warnings: list[str] = []
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    cpus = cpus_from_cgroup(sysfs, job_id, env.get("SLURMD_NODENAME"))
    if not cpus and not in_prolog:
        cpus = sorted(set(cpus_from_cpu_bind(env)) | set(own_affinity or []))
    if not cpus:
        cpus = list(own_affinity or []) if not in_prolog else []
    why = "no job cgroup"
    if not cpus and in_prolog and prolog_cpus is not None:
        cpus, found_why = prolog_cpus()
        why = f"no job cgroup yet, and {found_why}" if not cpus else why
    if not cpus:
        cpus = list(topo.cpu.online)
        if in_prolog:
            warnings.append(
                f"job cpuset not visible to the Prolog ({why}): planned over all online CPUs; "
                "the SPANK plugin plans each task over the CPUs Slurm allows it"
            )
    gpus, problems = job_gpus(env, in_prolog)
    warnings.extend(problems)
    node_id = _int(env, "SLURM_NODEID")
    ntasks = tasks_on_node(env.get("SLURM_STEP_TASKS_PER_NODE"), node_id) or tasks_on_node(
        env.get("SLURM_TASKS_PER_NODE"), node_id
    )
    if ntasks is None:
        ntasks = _int(env, "SLURM_NTASKS_PER_NODE")
    if ntasks is None and in_prolog:
        # The Prolog does not know the task count: one rank per GPU.
        ntasks = max(1, len(gpus))
    elif ntasks is None:
        if env.get("SLURM_JOB_ID"):
            warnings.append("task count on this node unknown: planned for one task")
        ntasks = 1
    return JobAllocation(
        cpus=cpus,
        gpus=gpus,
        ntasks=ntasks,
        visible=visible_style(env, gpus, visible, rocm_node(topo)) if not in_prolog else "index",
        warnings=warnings,
    )
