"""The node check end to end: GPU health, then the all-reduce, then the verdict.

Shared by `slurm-ai healthcheck --scope node` and the Prolog. Everything runs
under one budget: NVML calls have their own timeout, the all-reduce gets
what is left, and its workers die with it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from slurm_ai.errors import SlurmAIError
from slurm_ai.health.backends import choose_backend
from slurm_ai.health.errors import HealthCheckError, HealthColdStart, HealthTimeout
from slurm_ai.health.gpubench import (
    BenchSpec,
    comparable,
    history_entries,
    judge_bench,
    model_key,
)
from slurm_ai.health.history import HealthStore, comparable_busbw
from slurm_ai.health.measure import SweepResult, SweepSpec, size_sweep
from slurm_ai.health.settings import Floors, HealthSettings
from slurm_ai.health.thresholds import Calibration, calibrate, judge_sweep
from slurm_ai.health.verdict import CheckResult, Verdict, conclude, first_worst, worst

CPU_RANKS = 2


@dataclass
class NodeCheckOptions:
    backend: str = "auto"
    ranks: int = 0
    min_size: int | None = None
    max_size: int | None = None
    iters: int | None = None
    warmup: int | None = None
    timeout_s: float | None = None
    gpu_checks: bool = True
    allreduce: bool = True
    partition: str | None = None
    floors: Floors | None = None
    allocated_gpus: list[int] | None = None
    nvml_recording: str | None = None
    kernel_log: str | None = None
    fault: str | None = None
    node: str = "localhost"  # whose XID cursor (the spool may be shared in tests)
    advance_xid_cursor: bool = False  # the Prolog, --drain, --record: see kmsg.py
    local_bench: str | None = None  # gpu | always | off (default [health] local_bench)


@dataclass
class HealthReport:
    verdict: Verdict
    reason: str
    backend: str | None = None
    sweep: SweepResult | None = None
    checks: list[CheckResult] = field(default_factory=list)
    calibration: Calibration | None = None
    duration_s: float = 0.0
    checked_at: float = field(default_factory=time.time)
    cached: bool = False

    @property
    def failed_check(self) -> CheckResult | None:
        return first_worst(self.checks)

    def fragment(self) -> dict[str, Any]:
        """The node record's "health" value (no per-size rows: records stay small)."""
        largest = self.sweep.largest if self.sweep else None
        return {
            "verdict": self.verdict.value,
            "backend": self.backend,
            # What the all-reduce ran on: the report keys busbw by it (a gloo or host-buffer
            # mpi run on a GPU node is a CPU figure, not the GPU model's).
            "device": device_kind(self.sweep.device) if self.sweep else None,
            "busbw_gbps": round(largest.busbw_gbps, 4) if largest else None,
            "algbw_gbps": round(largest.algbw_gbps, 4) if largest else None,
            "size_bytes": largest.size_bytes if largest else None,
            "ranks": self.sweep.ranks if self.sweep else None,
            "wrong": self.sweep.wrong if self.sweep else None,
            "reason": self.reason,
            "cached": self.cached,
            "checked_at": round(self.checked_at, 3),
            "duration_s": round(self.duration_s, 3),
            "checks": [c.to_json() for c in self.checks if c.verdict is not Verdict.PASS],
            "calibration": self.calibration.to_json() if self.calibration else None,
            # Start-up (import, communicator, CUDA) apart from the measurement.
            "startup_s": self.sweep.startup_s if self.sweep else None,
            "measure_s": self.sweep.measure_s if self.sweep else None,
            "bench": [_bench_summary(e) for e in self.sweep.local] if self.sweep else [],
        }

    def to_json(self) -> dict[str, Any]:
        data = self.fragment()
        data["checks"] = [c.to_json() for c in self.checks]
        data["rows"] = self.sweep.to_json()["rows"] if self.sweep else []
        data["device"] = self.sweep.device if self.sweep else None
        return data


def device_kind(device: str | None) -> str | None:
    """A torch device ("cpu", "cuda", "cuda:0") as a record says it: "cpu", "gpu" or None."""
    if device == "cpu":
        return "cpu"
    if device is not None and (device == "cuda" or device.startswith("cuda:")):
        return "gpu"
    return None


def _bench_summary(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("device", "model", "gemm_tflops", "mem_gbps", "error")
    return {k: entry[k] for k in keys if entry.get(k) is not None}


def run_node_check(
    settings: HealthSettings,
    options: NodeCheckOptions,
    store: HealthStore | None = None,
    *,
    record: bool = False,
) -> HealthReport:
    from slurm_ai.health.nodegpu import GpuPart, gpu_count, gpu_health, save_cursor

    started = time.monotonic()
    budget = options.timeout_s or settings.budget_s
    gpu = GpuPart()
    if options.gpu_checks:
        gpu = gpu_health(
            settings,
            budget=budget,
            allocated=options.allocated_gpus,
            store=store,
            node=options.node,
            nvml_recording=options.nvml_recording,
            kernel_log=options.kernel_log,
        )
    elif options.allreduce:
        gpu.count = gpu_count(options.nvml_recording, budget)
    report = HealthReport(Verdict.PASS, "")
    if options.allreduce:
        from slurm_ai.nvml import site_recording

        # Recorded GPUs (`[nvml] recording`) have no driver: the all-reduce runs on CPUs.
        usable_gpus = 0 if site_recording() else gpu.count
        report = _allreduce_part(
            settings, options, store, usable_gpus, budget - (time.monotonic() - started)
        )
    report.checks = gpu.checks + report.checks
    if options.advance_xid_cursor:
        problem = save_cursor(store, options.node, gpu.cursor)
        if problem:
            report.checks.append(CheckResult("xid", Verdict.INFO, problem))
    report.verdict, report.reason = conclude(report.checks)
    report.duration_s = time.monotonic() - started
    if record and store is not None and report.sweep is not None:
        _record(settings, store, options.partition, report)
    return report


def _allreduce_part(
    settings: HealthSettings,
    options: NodeCheckOptions,
    store: HealthStore | None,
    gpus: int,
    remaining: float,
) -> HealthReport:
    from slurm_ai.health.launcher import launch_local

    try:
        backend = choose_backend(options.backend or settings.backend, gpus, settings.mpirun)
    except ValueError as exc:
        return HealthReport(
            Verdict.ERROR, str(exc), checks=[CheckResult("allreduce", Verdict.ERROR, str(exc))]
        )
    on_gpu = backend == "nccl"
    ranks = (
        options.ranks
        or settings.ranks
        or ((len(options.allocated_gpus or []) or gpus) if on_gpu else CPU_RANKS)
    )
    max_size = options.max_size or (settings.gpu_max_size if on_gpu else settings.cpu_max_size)
    min_size = min(options.min_size or settings.min_size, max_size)
    bench_wanted = (options.local_bench or settings.local_bench) == "always" or (
        (options.local_bench or settings.local_bench) == "gpu" and gpus > 0
    )
    spec = SweepSpec(
        sizes=size_sweep(min_size, max_size, settings.size_factor, settings.dtype),
        dtype=settings.dtype,
        warmup=options.warmup if options.warmup is not None else settings.warmup,
        iters=options.iters or (max(settings.iters, 20) if on_gpu else settings.iters),
        backend=backend,
        fault=options.fault,
        bench=bench_spec(settings).to_json() if bench_wanted and backend != "mpi" else None,
    )
    report = HealthReport(Verdict.PASS, "", backend=backend)
    if remaining < 1.0:
        report.checks = [CheckResult("allreduce", Verdict.TIMEOUT, "no time left in the budget")]
        return report
    try:
        report.sweep = launch_local(spec, ranks, timeout=remaining, mpirun=settings.mpirun)
    except HealthColdStart as exc:
        # Nothing was measured: say so, never a timeout that reads like a node fault.
        report.checks = [CheckResult("allreduce", Verdict.UNCHECKED, str(exc))]
        return report
    except HealthTimeout as exc:
        report.checks = [CheckResult("allreduce", Verdict.TIMEOUT, str(exc))]
        return report
    except (HealthCheckError, SlurmAIError) as exc:
        report.checks = [CheckResult("allreduce", Verdict.ERROR, str(exc))]
        return report
    report.calibration = _calibration(settings, store, options.partition, report.sweep)
    floors = options.floors or settings.floors_for(options.partition)
    report.checks = judge_sweep(
        report.sweep,
        floors,
        report.calibration,
        outlier_verdict=Verdict(settings.outlier_verdict),
    )
    if bench_wanted:
        bench = _judge_bench(settings, store, report.sweep)
        if backend == "mpi":
            bench = [CheckResult("gemm", Verdict.UNCHECKED, "not run: needs a torch backend")]
        report.checks += bench
        _one_rank_judged_by_bench(report.checks, floors)
    return report


def bench_spec(settings: HealthSettings) -> BenchSpec:
    return BenchSpec(
        gemm_n=settings.bench_gemm_n,
        mem_bytes=settings.bench_mem_size,
        seconds=settings.bench_seconds,
    )


def _judge_bench(
    settings: HealthSettings, store: HealthStore | None, sweep: SweepResult
) -> list[CheckResult]:
    def calibration(model: str, metric: str) -> Calibration | None:
        if not settings.calibrate or store is None:
            return None
        try:
            entries = store.history(model_key(model), scope="gpu")
        except (SlurmAIError, OSError):
            return None
        return calibrate(
            comparable(entries, model, metric),
            k=settings.calib_k,
            min_drop=settings.calib_min_drop,
            min_samples=settings.calib_min_samples,
        )

    return judge_bench(
        sweep.local,
        settings.bench_floors,
        calibration,
        outlier_verdict=Verdict(settings.outlier_verdict),
    )


def _one_rank_judged_by_bench(checks: list[CheckResult], floors: Floors) -> None:
    """On one rank the all-reduce judges nothing; when every GPU-local check
    passed and no all-reduce floor was asked for, the GPU is judged by those:
    the all-reduce's "not judged" becomes a note (info) instead of the verdict."""
    bench = [c for c in checks if c.check in ("gemm", "gpu-mem")]
    if not bench or any(c.verdict is not Verdict.PASS for c in bench):
        return
    if floors.min_busbw_gbps > 0 or floors.max_small_time_us > 0:
        return
    for i, check in enumerate(checks):
        if check.check == "allreduce" and check.verdict is Verdict.UNCHECKED:
            checks[i] = CheckResult(check.check, Verdict.INFO, check.reason)


def _calibration(
    settings: HealthSettings, store: HealthStore | None, partition: str | None, sweep: SweepResult
) -> Calibration | None:
    largest = sweep.largest
    if not settings.calibrate or store is None or largest is None:
        return None
    try:
        entries = store.history(partition)
    except (SlurmAIError, OSError):
        return None
    values = comparable_busbw(entries, sweep.backend, sweep.ranks, largest.size_bytes)
    return calibrate(
        values,
        k=settings.calib_k,
        min_drop=settings.calib_min_drop,
        min_samples=settings.calib_min_samples,
    )


def history_entry(report: HealthReport) -> dict[str, Any]:
    frag = report.fragment()
    keys = ("verdict", "backend", "busbw_gbps", "algbw_gbps", "size_bytes", "ranks", "checked_at")
    return {k: frag[k] for k in keys}


def _record(
    settings: HealthSettings, store: HealthStore, partition: str | None, report: HealthReport
) -> None:
    # History is a nicety: it never changes the verdict.
    with contextlib.suppress(SlurmAIError, OSError):
        store.append_history(partition, history_entry(report), settings.history_max)
    if report.sweep is None or not report.sweep.local:
        return
    verdicts: dict[str, str] = {}
    for check in report.checks:
        if check.check in ("gemm", "gpu-mem"):
            device = check.reason.split(" (", 1)[0]
            old = Verdict(verdicts.get(device, "pass"))
            verdicts[device] = worst([old, check.verdict]).value
    for entry in history_entries(report.sweep.local, verdicts):
        with contextlib.suppress(SlurmAIError, OSError):
            store.append_history(
                model_key(str(entry["model"])), entry, settings.history_max, scope="gpu"
            )
