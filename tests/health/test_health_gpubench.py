"""The GPU-local check: published floors, calibration, verification, and a real
(small) run with CPU torch through the node check's workers."""

from __future__ import annotations

from typing import Any

import pytest
from health_helpers import needs_mpi, needs_torch

from slurm_ai.config import Config
from slurm_ai.health.gpubench import (
    BenchFloors,
    BenchSpec,
    comparable,
    judge_bench,
    model_key,
    published_peak,
)
from slurm_ai.health.node import NodeCheckOptions, run_node_check
from slurm_ai.health.settings import HealthSettings
from slurm_ai.health.thresholds import calibrate
from slurm_ai.health.verdict import Verdict

H100 = "NVIDIA H100 80GB HBM3"


def entry(**values: Any) -> dict[str, Any]:
    """One rank's result as torch_bench.measure returns it (figures injected)."""
    base = {
        "device": "cuda:0",
        "model": H100,
        "gemm_n": 8192,
        "gemm_dtype": "bfloat16",
        "gemm_tflops": 720.0,
        "gemm_error": 3e-3,
        "mem_gbps": 2900.0,
        "mem_wrong": 0,
    }
    return {**base, **values}


def no_history(model: str, metric: str) -> None:
    return None


def verdicts(local: list[dict[str, Any]], **floors: float) -> list[tuple[str, Verdict]]:
    return [(c.check, c.verdict) for c in judge_bench(local, BenchFloors(**floors), no_history)]


def test_published_peaks_by_model_most_specific_first() -> None:
    sxm, pcie, h200 = (
        published_peak(H100),
        published_peak("NVIDIA H100 PCIe"),
        published_peak("NVIDIA H200"),
    )
    assert sxm is not None and (sxm.gemm_tflops, sxm.mem_gbps) == (989.0, 3350.0)
    assert pcie is not None and (pcie.gemm_tflops, pcie.mem_gbps) == (756.0, 2000.0)
    assert h200 is not None and (h200.gemm_tflops, h200.mem_gbps) == (989.0, 4800.0)
    assert "datasheet" in h200.source
    assert published_peak("NVIDIA T4") is None and published_peak("cpu") is None
    assert model_key("NVIDIA H100 80GB HBM3") == "NVIDIA_H100_80GB_HBM3"


def test_a_healthy_h100_passes_and_a_power_capped_one_fails_against_its_datasheet() -> None:
    assert verdicts([entry()]) == [("gemm", Verdict.PASS), ("gpu-mem", Verdict.PASS)]
    checks = judge_bench([entry(gemm_tflops=380.0, mem_gbps=1500.0)], BenchFloors(), no_history)
    assert [(c.check, c.verdict) for c in checks] == [
        ("gemm", Verdict.FAIL),
        ("gpu-mem", Verdict.FAIL),
    ]
    assert checks[0].reason == (
        f"cuda:0 ({H100}): 380.0 TFLOP/s below the floor 494.5 (0.5 x published 989)"
    )
    assert "below the floor 1675.0 (0.5 x published 3350)" in checks[1].reason
    # A configured floor above the datasheet's share wins.
    capped = judge_bench([entry()], BenchFloors(gemm_min_tflops=800.0), no_history)
    assert capped[0].verdict is Verdict.FAIL and "(configured)" in capped[0].reason


def test_wrong_results_fail_whatever_the_speed() -> None:
    assert verdicts([entry(gemm_error=0.4)]) == [("gemm", Verdict.FAIL), ("gpu-mem", Verdict.PASS)]
    checks = judge_bench([entry(mem_wrong=17)], BenchFloors(), no_history)
    assert checks[1].verdict is Verdict.FAIL and "17 elements wrong after copy" in checks[1].reason


def test_a_bench_that_could_not_run_is_unchecked_and_a_missing_figure_an_error() -> None:
    checks = judge_bench(
        [{"device": "cuda:1", "error": "RuntimeError: CUDA out of memory"}],
        BenchFloors(),
        no_history,
    )
    assert [(c.check, c.verdict) for c in checks] == [("gemm", Verdict.UNCHECKED)]
    assert "not run: RuntimeError: CUDA out of memory" in checks[0].reason
    assert verdicts([entry(mem_gbps=None)])[1] == ("gpu-mem", Verdict.ERROR)


def test_unknown_models_and_cpus_have_only_configured_floors() -> None:
    cpu = entry(device="cpu", model="cpu", gemm_dtype="float32", gemm_tflops=0.05, mem_gbps=5.0)
    cpu["gemm_error"] = 2e-7
    assert verdicts([cpu]) == [("gemm", Verdict.PASS), ("gpu-mem", Verdict.PASS)]
    assert verdicts([cpu], gemm_min_tflops=1.0)[0] == ("gemm", Verdict.FAIL)
    t4 = entry(model="NVIDIA T4", gemm_tflops=40.0, mem_gbps=250.0)
    assert verdicts([t4]) == [("gemm", Verdict.PASS), ("gpu-mem", Verdict.PASS)]


def test_calibrated_history_per_model_catches_what_the_datasheet_floor_misses() -> None:
    history = [
        {"model": H100, "gemm_tflops": 700.0 + i % 5, "mem_gbps": 2900.0, "verdict": "pass"}
        for i in range(12)
    ] + [{"model": H100, "gemm_tflops": 100.0, "mem_gbps": 2900.0, "verdict": "fail"}]
    assert 100.0 not in comparable(history, H100, "gemm_tflops")  # failed runs never count
    assert comparable(history, "NVIDIA H200", "gemm_tflops") == []

    def calibrations(model: str, metric: str) -> Any:
        return calibrate(comparable(history, model, metric), k=3.0, min_drop=0.1, min_samples=10)

    slow = judge_bench([entry(gemm_tflops=600.0)], BenchFloors(), calibrations)
    assert slow[0].verdict is Verdict.FAIL and "is an outlier (median 701.5" in slow[0].reason
    dip = judge_bench([entry(gemm_tflops=699.0)], BenchFloors(), calibrations)
    assert dip[0].verdict is Verdict.WARN and "below P5" in dip[0].reason


def test_bench_spec_round_trip_and_bad_values() -> None:
    spec = BenchSpec(gemm_n=64, mem_bytes=65536, seconds=0.05)
    assert BenchSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="out of range"):
        BenchSpec.from_json({"gemm_n": 4})
    with pytest.raises(ValueError, match="bench dtype"):
        BenchSpec.from_json({"gemm_dtype": "int8"})


@needs_torch
def test_cpu_torch_measures_and_verifies() -> None:
    import torch

    from slurm_ai.health.backends.torch_bench import measure

    result = measure(BenchSpec(gemm_n=64, mem_bytes=65536, seconds=0.05), torch.device("cpu"))
    assert result["model"] == "cpu" and result["gemm_dtype"] == "float32"
    assert result["gemm_tflops"] > 0 and result["gemm_iters"] >= 1
    assert result["gemm_error"] < 1e-4  # Freivalds' check of a correct product
    assert result["mem_gbps"] > 0 and result["mem_wrong"] == 0 and result["mem_bytes"] == 65536


def bench_settings(**health: Any) -> HealthSettings:
    base = {
        "backend": "gloo",
        "min_size": "4K",
        "cpu_max_size": "16K",
        "iters": 1,
        "local_bench": "always",
        "bench_gemm_n": 64,
        "bench_mem_size": "64K",
        "bench_seconds": 0.05,
        "calibrate": False,
    }
    return HealthSettings.from_config(Config(None, {"health": {**base, **health}}))


@needs_torch
def test_node_check_runs_the_bench_on_every_rank_and_fails_a_gemm_below_its_floor() -> None:
    settings = bench_settings(gemm_min_tflops=1e6)
    report = run_node_check(
        settings, NodeCheckOptions(backend="gloo", ranks=2, timeout_s=120, gpu_checks=False)
    )
    assert report.verdict is Verdict.FAIL, report.checks
    gemm = [c for c in report.checks if c.check == "gemm"]
    assert len(gemm) == 2 and all(c.verdict is Verdict.FAIL for c in gemm)
    assert "below the floor 1000000.0 (configured)" in gemm[0].reason
    assert report.reason.startswith("gemm: cpu (cpu): ")
    fragment = report.fragment()
    assert [b["device"] for b in fragment["bench"]] == ["cpu", "cpu"]
    # Start-up (import torch, gloo) and measurement are timed apart.
    assert fragment["startup_s"] > 0 and fragment["measure_s"] > 0


@needs_torch
def test_one_rank_is_judged_by_the_bench_unless_an_all_reduce_floor_was_asked() -> None:
    plain = run_node_check(
        bench_settings(), NodeCheckOptions(backend="gloo", ranks=1, timeout_s=120, gpu_checks=False)
    )
    allreduce = next(c for c in plain.checks if c.check == "allreduce")
    assert allreduce.verdict is Verdict.INFO and allreduce.reason.startswith("not judged: 1 rank")
    assert plain.verdict is Verdict.PASS
    floored = run_node_check(
        bench_settings(min_busbw_gbps=1e9),
        NodeCheckOptions(backend="gloo", ranks=1, timeout_s=120, gpu_checks=False),
    )
    assert floored.verdict is Verdict.UNCHECKED
    assert floored.reason.endswith("floor not applied: min busbw 1e+09 GB/s")


@needs_mpi
def test_the_mpi_backend_cannot_run_the_bench_and_says_so() -> None:
    report = run_node_check(
        bench_settings(), NodeCheckOptions(backend="mpi", ranks=2, timeout_s=120, gpu_checks=False)
    )
    gemm = [c for c in report.checks if c.check == "gemm"]
    assert [(c.verdict, c.reason) for c in gemm] == [
        (Verdict.UNCHECKED, "not run: needs a torch backend")
    ]
    assert report.verdict is Verdict.UNCHECKED  # the all-reduce passed; the GPU was not judged
