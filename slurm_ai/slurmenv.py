"""The Slurm job environment, parsed once and typed.

Pure functions: the hooks, the TaskProlog and the CLI pass `os.environ` in, and
tests pass dictionaries. Nothing here runs a Slurm command.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_BRACKET = re.compile(r"^(?P<prefix>[^\[]*)\[(?P<body>[^\]]+)\](?P<rest>.*)$")


def expand_hostlist(hostlist: str) -> list[str]:
    """Expand a Slurm hostlist ("gpu[01-03,07],login1") into host names.

    Handles zero padding and several bracket groups per name
    ("rack[1-2]-n[1-2]"). Raises ValueError on malformed input.
    """
    hosts: list[str] = []
    for item in _split_top_level(hostlist.strip()):
        hosts.extend(_expand_one(item))
    return hosts


def _split_top_level(text: str) -> list[str]:
    items: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in hostlist {text!r}")
        if char == "," and depth == 0:
            if current:
                items.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError(f"unbalanced '[' in hostlist {text!r}")
    if current:
        items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _expand_one(item: str) -> list[str]:
    match = _BRACKET.match(item)
    if not match:
        return [item]
    prefix, body, rest = match.group("prefix"), match.group("body"), match.group("rest")
    expanded: list[str] = []
    for part in body.split(","):
        if "-" in part:
            lo_text, hi_text = part.split("-", 1)
            if not (lo_text.isdigit() and hi_text.isdigit()):
                raise ValueError(f"bad range {part!r} in hostlist")
            width = len(lo_text) if lo_text.startswith("0") else 0
            lo, hi = int(lo_text), int(hi_text)
            if hi < lo:
                raise ValueError(f"descending range {part!r} in hostlist")
            numbers = [str(n).zfill(width) for n in range(lo, hi + 1)]
        else:
            if not part.isdigit():
                raise ValueError(f"bad index {part!r} in hostlist")
            numbers = [part]
        for number in numbers:
            expanded.extend(_expand_one(f"{prefix}{number}{rest}"))
    return expanded


def parse_index_list(text: str | None) -> tuple[list[int], list[str]]:
    """Parse "0,1,3" or "0-3" (SLURM_JOB_GPUS, CUDA_VISIBLE_DEVICES).

    Returns (indices, problems): garbage is reported, never raised, because a
    bad value must not kill a task. UUID/MIG entries are reported as problems
    here; callers that understand them look at the raw value.
    """
    indices: list[int] = []
    problems: list[str] = []
    if not text:
        return indices, problems
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if re.fullmatch(r"\d+-\d+", part):
            lo, hi = (int(x) for x in part.split("-"))
            if hi < lo:
                problems.append(f"descending range {part!r}")
                continue
            indices.extend(range(lo, hi + 1))
        elif part.isdigit():
            indices.append(int(part))
        else:
            problems.append(f"not a GPU index: {part[:40]!r}")
    return list(dict.fromkeys(indices)), problems


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    try:
        return int(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class JobEnv:
    """What a hook or task knows about its job from the environment."""

    job_id: str | None
    user: str | None = None
    uid: int | None = None
    partition: str | None = None
    account: str | None = None
    cluster: str | None = None
    nodename: str | None = None
    nodelist: list[str] = field(default_factory=list)
    num_nodes: int | None = None
    gpus: list[int] = field(default_factory=list)
    gpu_problems: list[str] = field(default_factory=list)
    local_id: int | None = None
    proc_id: int | None = None
    ntasks: int | None = None
    tasks_per_node: int | None = None
    context: str | None = None
    exit_code: int | None = None

    @property
    def in_job(self) -> bool:
        return bool(self.job_id)

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> JobEnv:
        job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or None
        if job_id is not None and not job_id.isdigit():
            # Array/het suffixes are not expected here; keep only a safe value.
            job_id = job_id if re.fullmatch(r"[0-9_+]+", job_id) else None
        nodelist_text = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
        try:
            nodelist = expand_hostlist(nodelist_text) if nodelist_text else []
        except ValueError:
            nodelist = []
        gpu_text = env.get("SLURM_JOB_GPUS") or env.get("SLURM_STEP_GPUS")
        if gpu_text is None and env.get("SLURM_SCRIPT_CONTEXT", "").startswith(
            ("prolog", "epilog")
        ):
            gpu_text = env.get("CUDA_VISIBLE_DEVICES")
        gpus, gpu_problems = parse_index_list(gpu_text)
        tasks_per_node = _int(env, "SLURM_NTASKS_PER_NODE")
        if tasks_per_node is None:
            tasks_text = env.get("SLURM_TASKS_PER_NODE", "")
            match = re.match(r"^(\d+)", tasks_text)
            tasks_per_node = int(match.group(1)) if match else None
        return cls(
            job_id=job_id,
            user=env.get("SLURM_JOB_USER") or env.get("USER"),
            uid=_int(env, "SLURM_JOB_UID"),
            partition=env.get("SLURM_JOB_PARTITION"),
            account=env.get("SLURM_JOB_ACCOUNT"),
            cluster=env.get("SLURM_CLUSTER_NAME"),
            nodename=env.get("SLURMD_NODENAME") or env.get("SLURM_TOPOLOGY_ADDR"),
            nodelist=nodelist,
            num_nodes=_int(env, "SLURM_JOB_NUM_NODES") or _int(env, "SLURM_NNODES"),
            gpus=gpus,
            gpu_problems=gpu_problems,
            local_id=_int(env, "SLURM_LOCALID"),
            proc_id=_int(env, "SLURM_PROCID"),
            ntasks=_int(env, "SLURM_NTASKS"),
            tasks_per_node=tasks_per_node,
            context=env.get("SLURM_SCRIPT_CONTEXT"),
            exit_code=_int(env, "SLURM_JOB_EXIT_CODE"),
        )
