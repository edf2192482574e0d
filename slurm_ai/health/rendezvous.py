"""Who is who in a job-scope check: rank, size and the master's address.

Under `srun`, every task runs `slurm-ai healthcheck --scope job`. mpi4py needs
nothing more (PMIx wires the ranks). torch.distributed needs a TCP
rendezvous, derived from the Slurm environment so no rank has to talk to
another first:

- rank = SLURM_PROCID, size = SLURM_NTASKS, local rank = SLURM_LOCALID;
- port = 20000 + (job id * 16 + step id) mod 10000: the same on every task of a
  step, different for consecutive steps, and below Linux's ephemeral range;
- master = the first host of the step's node list, if its name resolves.
  Node names need not resolve (the local test cluster's n1 and n2 do not;
  many sites use names only Slurm knows). Then, in order:
  SLURM_AI_HEALTH_MASTER_ADDR (or --master-addr) always wins; the node's
  NodeAddr from `scontrol show node` (what slurmd itself connects to); and
  SLURM_LAUNCH_NODE_IPADDR (where srun ran: the first node when srun runs in a
  batch script, which is what the sbatch templates do).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from slurm_ai.health.errors import HealthCheckError
from slurm_ai.slurmenv import expand_hostlist

PORT_BASE = 20000
PORT_SPAN = 10000
ADDR_ENV = "SLURM_AI_HEALTH_MASTER_ADDR"
PORT_ENV = "SLURM_AI_HEALTH_MASTER_PORT"


@dataclass(frozen=True)
class Rendezvous:
    rank: int
    world: int
    local_rank: int
    master_addr: str
    master_port: int

    @property
    def init_method(self) -> str:
        host = f"[{self.master_addr}]" if ":" in self.master_addr else self.master_addr
        return f"tcp://{host}:{self.master_port}"


def port_for_job(job_id: str, step_id: str | None) -> int:
    try:
        job = int(re.sub(r"\D", "", job_id) or "0")
        step = int(step_id) if step_id and step_id.isdigit() else 0
    except ValueError:
        job, step = 0, 0
    return PORT_BASE + (job * 16 + step) % PORT_SPAN


def _int_env(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
        return True
    except (OSError, UnicodeError):
        return False


def job_rendezvous(
    env: Mapping[str, str],
    *,
    master_addr: str | None = None,
    resolves: Callable[[str], bool] = _resolves,
    node_addr: Callable[[str], str | None] | None = None,
) -> Rendezvous:
    """The rendezvous of this task; HealthCheckError when the env is not a Slurm step."""
    rank = _int_env(env, "SLURM_PROCID")
    world = _int_env(env, "SLURM_NTASKS", "SLURM_NPROCS")
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or ""
    if rank is None or world is None or not job_id.strip():
        raise HealthCheckError(
            "--scope job runs under srun (SLURM_PROCID, SLURM_NTASKS, SLURM_JOB_ID missing)"
        )
    if not 0 <= rank < world:
        raise HealthCheckError(f"SLURM_PROCID {rank} is outside 0..{world - 1}")
    local_rank = _int_env(env, "SLURM_LOCALID") or 0
    port = _int_env(env, PORT_ENV)
    if port is None or not 0 < port < 65536:
        port = port_for_job(job_id, env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID"))
    addr = master_addr or env.get(ADDR_ENV) or ""
    if not addr:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
        try:
            first = expand_hostlist(nodelist)[0] if nodelist else ""
        except (ValueError, IndexError):
            first = ""
        if first and resolves(first):
            addr = first
        elif first and node_addr is not None and (found := node_addr(first)):
            addr = found
        else:
            addr = env.get("SLURM_LAUNCH_NODE_IPADDR", "")
    if not addr or not re.fullmatch(r"[A-Za-z0-9._:%-]+", addr):
        raise HealthCheckError(f"cannot find the master address for the rendezvous: set {ADDR_ENV}")
    return Rendezvous(rank, world, local_rank, addr, port)


def scontrol_node_addr(node: str, slurm_env: Mapping[str, str], timeout: float = 5.0) -> str | None:
    """NodeAddr of `node` from `scontrol show node -o` (None when unknown)."""
    from slurm_ai.errors import CommandError
    from slurm_ai.proc import run_command

    if not re.fullmatch(r"[A-Za-z0-9._-]+", node):
        return None
    try:
        out = run_command(
            ["scontrol", "-o", "show", "node", node], timeout=timeout, extra_env=slurm_env
        ).stdout
    except CommandError:
        return None
    return parse_node_addr(out)


def parse_node_addr(text: str) -> str | None:
    match = re.search(r"(?:^|\s)NodeAddr=(\S+)", text)
    return match.group(1) if match else None


def free_port() -> int:
    """A free local TCP port for a node-scope rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
