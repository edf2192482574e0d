"""--scope node: start the local ranks, all under one hard timeout.

torch backends: one `python -m slurm_ai.health.worker` per rank with a TCP
rendezvous on 127.0.0.1 and a free port. mpi backend: one `mpirun -np N`
running the same worker. Either way the processes form one process group
(`proc.run_group`): on timeout the group and every descendant are killed, so
a hung rank leaves nothing behind, and the verdict is "timeout".

The workers get the caller's environment minus Slurm/PMIx/OpenMPI variables:
inside a Prolog or a job, mpirun would otherwise see SLURM_JOB_ID and try to
launch through srun.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
from collections.abc import Mapping

from slurm_ai.errors import CommandError, CommandTimeout
from slurm_ai.health.errors import HealthCheckError, HealthColdStart, HealthTimeout
from slurm_ai.health.measure import READY_MARKER, RESULT_MARKER, SweepResult, SweepSpec
from slurm_ai.health.rendezvous import free_port
from slurm_ai.health.worker import ERROR_MARKER
from slurm_ai.proc import CommandResult, run_group

_STRIP_PREFIXES = ("SLURM_", "PMIX_", "PMI_", "OMPI_", "SLURMD_")


def worker_env(base: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(_STRIP_PREFIXES)}
    if "SLURM_AI_HEALTH_FAULT" in base:
        env["SLURM_AI_HEALTH_FAULT"] = base["SLURM_AI_HEALTH_FAULT"]
    # The slurm_ai package must be importable by the workers wherever it lives.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    # slurmd runs hooks with almost no environment.
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    # Open MPI 5 (Debian 13) fails opal_init without HOME ("Unable to get the user home
    # directory"), and the Prolog has none. The home of the user the check runs as (root
    # in a hook), never the job owner's: Open MPI reads $HOME/.openmpi/mca-params.conf.
    env.setdefault("HOME", _own_home())
    # Single-threaded math libraries: the ranks share a few cores.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _own_home() -> str:
    try:
        home = pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:  # a uid with no passwd entry
        return "/"
    return home if os.path.isdir(home) else "/"


def mpirun_env(env: Mapping[str, str]) -> dict[str, str]:
    """worker_env's result plus the Open MPI settings mpirun_argv relies on."""
    out = dict(env)
    out["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    # All ranks are local: Open MPI 4's "isolated" launcher needs no ssh/rsh (a Prolog's
    # environment has no PATH to find one, and the rsh launcher refuses to start).
    # As a variable, not `--mca`: Open MPI 5's prterun has no such component and would
    # print a "component was not found" warning; it ignores the variable.
    out["OMPI_MCA_plm"] = "isolated"
    return out


def mpirun_argv(mpirun: str, ranks: int, worker: list[str], as_root: bool) -> list[str]:
    argv = [mpirun, "-np", str(ranks), "--oversubscribe", "--bind-to", "none"]
    if as_root:
        argv.append("--allow-run-as-root")
    # Shared memory between local ranks; CMA single-copy needs ptrace rights that
    # containers and hardened kernels often deny, so use copy-in/copy-out.
    argv += ["--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none"]
    return argv + worker


def launch_local(
    spec: SweepSpec,
    ranks: int,
    *,
    timeout: float,
    mpirun: str = "mpirun",
    python: str = sys.executable,
    base_env: Mapping[str, str] | None = None,
) -> SweepResult:
    """Run the sweep on `ranks` local workers; raises HealthTimeout/HealthCheckError."""
    if ranks < 1:
        raise HealthCheckError("need at least one rank")
    env = worker_env(os.environ if base_env is None else base_env)
    worker = [
        python,
        "-m",
        "slurm_ai.health.worker",
        "--spec",
        json.dumps(spec.to_json()),
        "--timeout",
        f"{timeout:g}",
    ]
    if spec.backend == "mpi":
        env = mpirun_env(env)
        path = shutil.which(mpirun, path=env["PATH"]) or mpirun
        commands = [mpirun_argv(path, ranks, worker, os.geteuid() == 0)]
        envs = [env]
    else:
        init = f"tcp://127.0.0.1:{free_port()}"
        commands, envs = [], []
        for rank in range(ranks):
            rank_env = dict(env)
            rank_env.update(
                SLURM_AI_HEALTH_RANK=str(rank),
                SLURM_AI_HEALTH_WORLD=str(ranks),
                SLURM_AI_HEALTH_LOCAL_RANK=str(rank),
                SLURM_AI_HEALTH_INIT=init,
            )
            commands.append(worker)
            envs.append(rank_env)
    try:
        # The grace for SIGTERM comes out of the budget: the verdict arrives in time.
        grace = min(1.0, timeout * 0.1)
        results = run_group(
            commands, timeout=timeout - grace, envs=envs, grace=grace, fail_fast=True
        )
    except CommandTimeout as exc:
        ready = sum(out.count(READY_MARKER) for out in exc.stdout)  # mpirun: all ranks in one
        if ready < ranks:
            raise HealthColdStart(
                f"cold start: {ready} of {ranks} {spec.backend} ranks ready within {timeout:g} s "
                "(library import, communicator, CUDA init); nothing measured"
            ) from exc
        raise HealthTimeout(
            f"{spec.backend} all-reduce on {ranks} ranks did not finish within {timeout:g} s "
            "after start-up"
        ) from exc
    except CommandError as exc:
        raise HealthCheckError(f"cannot start the {spec.backend} workers: {exc}") from exc
    return parse_results(results, spec.backend)


def parse_results(results: list[CommandResult], backend: str) -> SweepResult:
    """The result line of rank 0, or the first worker error."""
    for result in results:
        for line in result.stdout.splitlines():
            if line.startswith(RESULT_MARKER):
                failed = _first_failure(results)
                if failed is not None:
                    raise HealthCheckError(_why(failed, backend))
                try:
                    return SweepResult.from_json(json.loads(line[len(RESULT_MARKER) :]))
                except (ValueError, KeyError, TypeError) as exc:
                    raise HealthCheckError(f"unreadable worker result: {exc}") from exc
    # The rank that reported its own error explains more than one killed after it.
    bad = next((r for r in results if ERROR_MARKER in r.stderr), None)
    raise HealthCheckError(_why(bad or _first_failure(results) or results[0], backend))


def _first_failure(results: list[CommandResult]) -> CommandResult | None:
    """The worker that failed by itself, before those that fail_fast killed (rc < 0) after it:
    its message is the cause."""
    failed = [r for r in results if r.returncode != 0]
    return next((r for r in failed if r.returncode > 0), failed[0] if failed else None)


def _why(result: CommandResult, backend: str) -> str:
    for line in result.stderr.splitlines():
        if line.startswith(ERROR_MARKER):
            return f"{backend} worker failed: {line[len(ERROR_MARKER) :][:300]}"
    # mpirun frames its messages with lines of dashes: keep lines with words.
    lines = [ln.strip() for ln in result.stderr.splitlines() if any(c.isalpha() for c in ln)]
    tail = " ".join(lines[-2:])[:300] if lines else "no output"
    return f"{backend} worker exited {result.returncode}: {tail}"
