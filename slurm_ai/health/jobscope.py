"""--scope job: this process is one rank of an all-reduce across the job's nodes.

Run as `srun slurm-ai healthcheck --scope job --backend gloo` (torch: TCP
rendezvous from the Slurm env, see `rendezvous`) or `srun --mpi=pmix
slurm-ai healthcheck --scope job --backend mpi` (mpi4py: MPI.COMM_WORLD).

Every rank computes the same rows (times and #wrong are reduced across
ranks), judges them with the same fixed floors, so every rank exits with the
same code; rank 0 prints. A watchdog enforces the hard timeout in each rank:
a Python timer that prints the timeout verdict and exits (the MPI and gloo
waits release the GIL), backed by faulthandler's C-level watchdog should the
interpreter itself be stuck.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping

from slurm_ai.health.backends import choose_backend
from slurm_ai.health.errors import HealthCheckError
from slurm_ai.health.measure import SweepSpec
from slurm_ai.health.node import HealthReport, conclude
from slurm_ai.health.rendezvous import Rendezvous, job_rendezvous, scontrol_node_addr
from slurm_ai.health.settings import Floors
from slurm_ai.health.thresholds import judge_sweep
from slurm_ai.health.verdict import CheckResult, Verdict
from slurm_ai.health.worker import run_rank


class Watchdog:
    def __init__(self, timeout: float, on_timeout: Callable[[], None]) -> None:
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True
        self._on_timeout = on_timeout
        self._timeout = timeout

    def _fire(self) -> None:
        try:
            self._on_timeout()
        finally:
            os._exit(Verdict.TIMEOUT.exit_code)

    def __enter__(self) -> Watchdog:
        self._timer.start()
        try:
            faulthandler.dump_traceback_later(self._timeout + 3.0, exit=True)
        except (ValueError, OSError, AttributeError):
            # stderr without a file descriptor (an embedding test runner): use the real one.
            with contextlib.suppress(ValueError, OSError, AttributeError):
                faulthandler.dump_traceback_later(self._timeout + 3.0, exit=True, file=2)
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        faulthandler.cancel_dump_traceback_later()


def job_rank_and_rendezvous(
    backend: str, env: Mapping[str, str], master_addr: str | None, slurm_env: Mapping[str, str]
) -> Rendezvous | None:
    if backend == "mpi":
        return None  # PMIx wires the ranks
    return job_rendezvous(
        env, master_addr=master_addr, node_addr=lambda node: scontrol_node_addr(node, slurm_env)
    )


def run_job_check(
    spec: SweepSpec,
    floors: Floors,
    *,
    timeout: float,
    env: Mapping[str, str],
    master_addr: str | None,
    slurm_env: Mapping[str, str],
    on_timeout: Callable[[int | None], None],
) -> tuple[int, HealthReport]:
    """Run this rank; returns (rank, report). The report is the same on every rank."""
    started = time.monotonic()
    rank_hint = env.get("SLURM_PROCID")
    rank_guess = int(rank_hint) if rank_hint and rank_hint.isdigit() else None
    with Watchdog(timeout, lambda: on_timeout(rank_guess)):
        rdv = job_rank_and_rendezvous(spec.backend, env, master_addr, slurm_env)
        rank, sweep = run_rank(spec, rdv, timeout)
    report = HealthReport(Verdict.PASS, "", backend=spec.backend, sweep=sweep)
    report.checks = judge_sweep(sweep, floors, None)
    report.verdict, report.reason = conclude(report.checks)
    report.duration_s = time.monotonic() - started
    return rank, report


def backend_for_job(requested: str, mpirun: str) -> str:
    """`auto` in a job: NCCL when the step has GPUs, else mpi4py, else gloo."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    gpus = len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return choose_backend(requested, gpus, mpirun)
    except ValueError as exc:
        raise HealthCheckError(str(exc)) from exc


def error_report(exc: BaseException) -> HealthReport:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, HealthCheckError) else str(exc)
    check = CheckResult("allreduce", Verdict.ERROR, text[:300])
    return HealthReport(Verdict.ERROR, f"allreduce: {check.reason}", checks=[check])


def flush() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
