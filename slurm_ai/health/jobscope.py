"""--scope job: this process is one rank of an all-reduce across the job's nodes.

Run as `srun slurm-ai healthcheck --scope job --backend gloo` (torch: TCP
rendezvous from the Slurm env, see `rendezvous`) or `srun --mpi=pmix
slurm-ai healthcheck --scope job --backend mpi` (mpi4py: MPI.COMM_WORLD).

Every rank computes the same rows (times and #wrong are reduced across
ranks). Before the all-reduce, the first rank of each node (SLURM_LOCALID 0)
runs that node's GPU checks (nodegpu.py: NVML and kernel-log XIDs); after
it, every rank gathers every node's checks and rank 0's calibration, so all
ranks judge the same checks with the same thresholds and exit with the same
code; rank 0 prints.

Calibration: rank 0 reads the job-scope history of the partition from its
own node's spool (`<spool>/health/history/job/<partition>.json`, root only)
and, with `--record`, adds this run to it. A job-scope history has to live
somewhere: each node's spool is private to it, and the job's first node is
the one place every run of a job has (rank 0 runs there), so the history
grows on whichever node comes first in a job's node list. Runs are compared
only with runs of the same backend, ranks, node count and size. Without
access to the spool (a user's job) only the fixed floors apply. A watchdog enforces the hard timeout in each rank:
a Python timer that prints the timeout verdict and exits (the MPI and gloo
waits release the GIL), backed by faulthandler's C-level watchdog should the
interpreter itself be stuck.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slurm_ai.errors import SlurmAIError
from slurm_ai.health.backends import choose_backend
from slurm_ai.health.errors import HealthCheckError
from slurm_ai.health.history import HealthStore, comparable_busbw
from slurm_ai.health.measure import SweepResult, SweepSpec
from slurm_ai.health.node import HealthReport, history_entry
from slurm_ai.health.phases import PhaseReporter
from slurm_ai.health.rendezvous import Rendezvous, job_rendezvous, scontrol_node_addr
from slurm_ai.health.settings import Floors, HealthSettings
from slurm_ai.health.thresholds import Calibration, calibrate, judge_sweep
from slurm_ai.health.verdict import CheckResult, Verdict, conclude
from slurm_ai.health.worker import run_rank_sharing


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


@dataclass
class JobCheckOptions:
    settings: HealthSettings
    floors: Floors
    partition: str | None = None
    gpu_checks: bool = True
    nvml_recording: str | None = None  # test hook, see docs/health.md
    kernel_log: str | None = None
    store: HealthStore | None = None  # this node's spool (root only), else None
    record: bool = False


def node_name(env: Mapping[str, str]) -> str:
    return env.get("SLURMD_NODENAME") or socket.gethostname()


def local_gpu_checks(
    options: JobCheckOptions, env: Mapping[str, str], budget: float
) -> list[CheckResult]:
    """This node's GPU checks, run by its first rank only (others: none)."""
    from slurm_ai.health.nodegpu import gpu_health
    from slurm_ai.slurmenv import parse_index_list

    if not options.gpu_checks or env.get("SLURM_LOCALID", "0") != "0":
        return []
    gpus, _ = parse_index_list(env.get("SLURM_STEP_GPUS") or env.get("SLURM_JOB_GPUS") or "")
    if not gpus and not options.nvml_recording:  # a recording is another machine's GPUs
        from slurm_ai.topology.gresconf import step_denies_every_gpu

        denied = step_denies_every_gpu(env.get("SLURM_CONF"), node_name(env))
        if denied:
            # The node's GPUs are other jobs' (ConstrainDevices): not this check's to judge.
            return [CheckResult("gpu", Verdict.INFO, f"no GPU ({denied})")]
    try:
        part = gpu_health(
            options.settings,
            budget=budget,
            allocated=gpus or None,
            store=options.store,
            node=node_name(env),
            nvml_recording=options.nvml_recording,
            kernel_log=options.kernel_log,
            step=True,
        )
    except Exception as exc:  # our bug: this node's result is an error, the job goes on
        return [
            CheckResult("gpu", Verdict.ERROR, f"GPU checks failed: {type(exc).__name__}: {exc}")
        ]
    return part.checks


def job_calibration(options: JobCheckOptions, sweep: SweepResult, nodes: int) -> Calibration | None:
    """Rank 0's calibration from its node's job-scope history (None: fixed floors only)."""
    settings, largest = options.settings, sweep.largest
    if not settings.calibrate or options.store is None or largest is None:
        return None
    try:
        entries = options.store.history(options.partition, scope="job")
    except (SlurmAIError, OSError):
        return None
    values = comparable_busbw(entries, sweep.backend, sweep.ranks, largest.size_bytes, nodes)
    return calibrate(
        values,
        k=settings.calib_k,
        min_drop=settings.calib_min_drop,
        min_samples=settings.calib_min_samples,
    )


def _share(
    options: JobCheckOptions, node: str, nodes: int, checks: list[CheckResult]
) -> Callable[[int, SweepResult], str]:
    def share(rank: int, sweep: SweepResult) -> str:
        data: dict[str, Any] = {"node": node, "checks": [c.to_json() for c in checks]}
        if rank == 0:
            try:
                calibration = job_calibration(options, sweep, nodes)
            except Exception:  # a rank must always reach the gather, or all others wait
                calibration = None
            data["calibration"] = calibration.to_json() if calibration else None
        return json.dumps(data)

    return share


def fold_shared(shared: list[str]) -> tuple[list[CheckResult], Calibration | None]:
    """Every node's GPU checks (reasons prefixed with the node) and rank 0's calibration."""
    checks: list[CheckResult] = []
    calibration: Calibration | None = None
    for index, text in enumerate(shared):
        try:
            data = json.loads(text)
            node = str(data.get("node", f"rank{index}"))[:64]
            for item in data.get("checks", []):
                checks.append(
                    CheckResult(
                        str(item["check"]), Verdict(item["verdict"]), f"{node}: {item['reason']}"
                    )
                )
            cal = data.get("calibration") if index == 0 else None
            if isinstance(cal, dict):
                calibration = Calibration(
                    int(cal["samples"]),
                    float(cal["median"]),
                    float(cal["p5"]),
                    float(cal["mad"]),
                    float(cal["floor"]),
                )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            checks.append(CheckResult("gpu", Verdict.ERROR, f"rank {index}: unreadable: {exc}"))
    return checks, calibration


def run_job_check(
    spec: SweepSpec,
    options: JobCheckOptions,
    *,
    timeout: float,
    env: Mapping[str, str],
    master_addr: str | None,
    slurm_env: Mapping[str, str],
    on_timeout: Callable[[int | None], None],
    reporter: PhaseReporter | None = None,
) -> tuple[int, HealthReport]:
    """Run this rank; returns (rank, report). The report is the same on every rank."""
    started = time.monotonic()
    rank_hint = env.get("SLURM_PROCID")
    rank_guess = int(rank_hint) if rank_hint and rank_hint.isdigit() else None
    nodes_text = env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES") or "1"
    nodes = int(nodes_text) if nodes_text.isdigit() else 1
    # Supervised (stepwatch.py), the supervisor ends this rank at the deadline and
    # prints the verdict; the rank's own limits sit behind it, so a peer's hang is
    # never mistaken for an error of this rank (gloo raises at its own timeout).
    own = timeout + 10.0 if reporter is not None else timeout
    with Watchdog(own, lambda: on_timeout(rank_guess)):
        gpu_checks = local_gpu_checks(options, env, timeout)
        rdv = job_rank_and_rendezvous(spec.backend, env, master_addr, slurm_env)
        share = _share(options, node_name(env), nodes, gpu_checks)
        rank, sweep, shared = run_rank_sharing(spec, rdv, own, share, reporter=reporter)
    report = HealthReport(Verdict.PASS, "", backend=spec.backend, sweep=sweep)
    checks, report.calibration = fold_shared(shared)
    report.checks = checks + judge_sweep(
        sweep,
        options.floors,
        report.calibration,
        outlier_verdict=Verdict(options.settings.outlier_verdict),
    )
    report.verdict, report.reason = conclude(report.checks)
    report.duration_s = time.monotonic() - started
    if rank == 0 and options.record and options.store is not None:
        entry = {**history_entry(report), "nodes": nodes}
        with contextlib.suppress(SlurmAIError, OSError):
            options.store.append_history(
                options.partition, entry, options.settings.history_max, scope="job"
            )
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
