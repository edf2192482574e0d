"""--scope node: start the local ranks, all under one hard timeout.

torch backends: one `python -m slurm_ai.health.worker` per rank with a TCP
rendezvous on 127.0.0.1 and a free port. mpi backend: one `mpirun -np N`
running the same worker. Either way the processes form one process group
(`proc.run_group`): on timeout the group and every descendant are killed, so
a hung rank leaves nothing behind, and the verdict is "timeout".

The workers report readiness, rank 0's result and their errors as files in a
private directory made for this run (rankfiles.py), never on stdout: mpirun
interleaves its ranks' output. Their stdout and stderr serve only to explain a
worker or an mpirun that failed without a report.

The workers get the caller's environment minus Slurm/PMIx/OpenMPI variables:
inside a Prolog or a job, mpirun would otherwise see SLURM_JOB_ID and try to
launch through srun.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import sys
import time
from collections.abc import Mapping

from slurm_ai.errors import CommandError, CommandTimeout
from slurm_ai.health.errors import HealthCheckError, HealthColdStart, HealthTimeout
from slurm_ai.health.measure import SweepResult, SweepSpec
from slurm_ai.health.phases import PHASES, SILENT_S, describe, proc_state
from slurm_ai.health.rankfiles import RankReports, read_phases, read_reports, report_dir
from slurm_ai.health.rendezvous import free_port
from slurm_ai.health.worker import LAUNCHER_ENV
from slurm_ai.proc import CommandResult, run_group

# Open MPI's report of a rank that died: "process rank 1 with PID 0 on node vm exited on
# signal 9 (Killed)" (4.1 on one line, the PID wrong under the isolated launcher; Open MPI
# 5's prterun wraps the same sentence over two lines, so any white space between words).
_MPIRUN_SIGNALLED = re.compile(
    r"process\s+rank\s+(\d+)\s+with\s+PID\s+\d+\s+on\s+node\s+\S+\s+exited\s+on\s+signal"
)
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
    env[LAUNCHER_ENV] = str(os.getpid())
    with report_dir() as reports:
        worker = [
            python,
            "-m",
            "slurm_ai.health.worker",
            "--spec",
            json.dumps(spec.to_json()),
            "--timeout",
            f"{timeout:g}",
            "--report-dir",
            reports,
        ]
        if spec.backend == "mpi":
            env = mpirun_env(env)
            path = shutil.which(mpirun, path=env["PATH"]) or mpirun
            commands = [mpirun_argv(path, ranks, worker, os.geteuid() == 0)]
            envs = [env]
        else:
            commands, envs = [worker] * ranks, _rank_envs(env, ranks)
        try:
            # The grace for SIGTERM comes out of the budget: the verdict arrives in time.
            grace = min(1.0, timeout * 0.1)
            stuck: list[str] = []
            results = run_group(
                commands,
                timeout=timeout - grace,
                envs=envs,
                grace=grace,
                fail_fast=True,
                before_kill=lambda: stuck.extend(stuck_ranks(reports, socket.gethostname())),
            )
        except CommandTimeout as exc:
            if stuck:
                # A stopped or silent rank is a hang, never a cold start: name it.
                raise HealthTimeout(
                    f"{'; '.join(stuck)}: the {spec.backend} check on {ranks} ranks did not "
                    f"finish within {timeout:g} s"
                ) from exc
            ready = read_reports(reports).ready
            if ready < ranks:
                raise HealthColdStart(
                    f"cold start: {ready} of {ranks} {spec.backend} ranks ready within "
                    f"{timeout:g} s (library import, communicator, CUDA init); nothing measured"
                ) from exc
            raise HealthTimeout(
                f"{spec.backend} all-reduce on {ranks} ranks did not finish within {timeout:g} s "
                "after start-up"
            ) from exc
        except CommandError as exc:
            raise HealthCheckError(f"cannot start the {spec.backend} workers: {exc}") from exc
        return parse_results(results, read_reports(reports), spec.backend, reports)


def stuck_ranks(directory: str, node: str) -> list[str]:
    """Ranks that are stopped, silent (no heartbeat) or behind the others, named."""
    views = read_phases(directory)
    if not views:
        return []
    now = time.time()
    stuck = []
    for view in views:
        state = proc_state(view.pid)
        if state == "stopped":
            stuck.append(describe(view.rank, node, "is stopped (SIGSTOP)", view.phase))
        elif state in ("gone", "zombie"):
            stuck.append(describe(view.rank, node, "died", view.phase))
        elif now - view.beat > SILENT_S:
            stuck.append(describe(view.rank, node, "stopped answering", view.phase))
    if stuck:
        return stuck
    order = {name: i for i, name in enumerate(PHASES)}
    least = min(order.get(v.phase, 0) for v in views)
    if all(order.get(v.phase, 0) == least for v in views):
        return []  # all in the same phase: no rank to blame (a cold start, or all slow)
    return [
        describe(v.rank, node, "fell behind the others", v.phase)
        for v in views
        if order.get(v.phase, 0) == least
    ]


def _rank_envs(env: Mapping[str, str], ranks: int) -> list[dict[str, str]]:
    """torch backends: one process per rank, a TCP rendezvous on a free local port."""
    init = f"tcp://127.0.0.1:{free_port()}"
    return [
        {
            **env,
            "SLURM_AI_HEALTH_RANK": str(rank),
            "SLURM_AI_HEALTH_WORLD": str(ranks),
            "SLURM_AI_HEALTH_LOCAL_RANK": str(rank),
            "SLURM_AI_HEALTH_INIT": init,
        }
        for rank in range(ranks)
    ]


def parse_results(
    results: list[CommandResult], reports: RankReports, backend: str, directory: str | None = None
) -> SweepResult:
    """Rank 0's result when every worker ended well; otherwise why not."""
    failed = _first_failure(results)
    if failed is not None and directory is not None:
        # A rank killed by a signal: name it and the phase it died in (torch: one
        # command per rank, in rank order; mpirun says which rank in its message).
        index: int | None = None
        if backend != "mpi" and failed.returncode < 0:
            index = results.index(failed)
        elif backend == "mpi" and (found := _MPIRUN_SIGNALLED.search(failed.stderr)):
            index = int(found.group(1))
        if index is not None:
            views = [v for v in read_phases(directory) if v.rank == index]
            phase = views[0].phase if len(views) == 1 else None
            why = f"died ({_why(failed, backend)})"
            raise HealthCheckError(describe(index, socket.gethostname(), why, phase))
    if reports.errors:  # a worker's own words explain more than an exit code
        raise HealthCheckError(f"{backend} worker failed: {reports.errors[0][:300]}")
    if failed is not None:
        raise HealthCheckError(_why(failed, backend))
    if reports.result is None:
        raise HealthCheckError(
            f"{backend} workers exited 0 without a result: {_why(results[0], backend)}"
        )
    try:
        return SweepResult.from_json(json.loads(reports.result))
    except (ValueError, KeyError, TypeError) as exc:
        raise HealthCheckError(f"unreadable worker result: {exc}") from exc


def _first_failure(results: list[CommandResult]) -> CommandResult | None:
    """The worker that failed by itself, before those that fail_fast killed (rc < 0) after it:
    its message is the cause."""
    failed = [r for r in results if r.returncode != 0]
    return next((r for r in failed if r.returncode > 0), failed[0] if failed else None)


def _why(result: CommandResult, backend: str) -> str:
    # mpirun frames its messages with lines of dashes: keep lines with words.
    lines = [ln.strip() for ln in result.stderr.splitlines() if any(c.isalpha() for c in ln)]
    tail = " ".join(lines[-2:])[:300] if lines else "no output"
    return f"{backend} worker exited {result.returncode}: {tail}"
