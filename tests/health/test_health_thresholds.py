"""Fixed floors and calibration from history."""

from __future__ import annotations

import pytest

from slurm_ai.health.measure import SizeResult, SweepResult
from slurm_ai.health.settings import Floors
from slurm_ai.health.thresholds import calibrate, judge_sweep, percentile
from slurm_ai.health.verdict import Verdict


def sweep(busbw: float, small_us: float = 10.0, wrong: int = 0, ranks: int = 2) -> SweepResult:
    return SweepResult(
        "nccl",
        ranks,
        "cuda:0",
        [
            SizeResult(8, 2, "float32", "sum", small_us, 0.0, 0.0, 0),
            SizeResult(2**28, 2**26, "float32", "sum", 1000.0, busbw, busbw, wrong),
        ],
    )


def test_percentile_and_calibration() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([7.0], 5) == 7.0
    values = [400.0, 402.0, 398.0, 401.0, 399.0, 400.0, 403.0, 397.0, 400.0, 401.0]
    cal = calibrate(values, k=3.0, min_drop=0.1, min_samples=10)
    assert cal is not None
    assert cal.median == 400.0
    assert cal.mad == 1.0
    # The MAD test alone would flag 395; the 10 % drop guard keeps the floor at 360.
    assert cal.floor == pytest.approx(360.0)
    assert calibrate(values[:5], k=3.0, min_drop=0.1, min_samples=10) is None
    assert calibrate([float("nan")] * 20, k=3, min_drop=0.1, min_samples=10) is None


def test_outlier_fails_and_below_p5_warns() -> None:
    values = [float(v) for v in range(380, 420, 2)]  # 20 runs, 380..418
    cal = calibrate(values, k=3.0, min_drop=0.1, min_samples=10)
    assert cal is not None
    checks = judge_sweep(sweep(200.0), Floors(), cal)
    assert [c.check for c in checks] == ["allreduce-outlier"]
    assert checks[0].verdict is Verdict.FAIL
    assert "median 399.00" in checks[0].reason
    warn = judge_sweep(sweep(381.0), Floors(), cal)
    assert [(c.check, c.verdict) for c in warn] == [("allreduce-p5", Verdict.WARN)]
    assert (
        judge_sweep(sweep(200.0), Floors(), cal, outlier_verdict=Verdict.WARN)[0].verdict
        is Verdict.WARN
    )
    assert judge_sweep(sweep(405.0), Floors(), cal)[0].verdict is Verdict.PASS


def test_fixed_floors_and_wrong_elements() -> None:
    checks = judge_sweep(sweep(100.0, small_us=500.0, wrong=7), Floors(350.0, 100.0), None)
    by_name = {c.check: c for c in checks}
    assert set(by_name) == {"allreduce", "allreduce-busbw", "allreduce-latency"}
    assert all(c.verdict is Verdict.FAIL for c in checks)
    assert "7 wrong elements" in by_name["allreduce"].reason
    assert "below the floor 350 GB/s" in by_name["allreduce-busbw"].reason
    assert judge_sweep(sweep(400.0), Floors(350.0, 100.0), None)[0].verdict is Verdict.PASS


def test_single_rank_verifies_sums_but_judges_no_bandwidth() -> None:
    one = sweep(0.0, ranks=1)
    checks = judge_sweep(one, Floors(min_busbw_gbps=500.0), None)
    # Never "pass": the floor cannot apply on one rank, and the reason says so.
    assert [(c.check, c.verdict) for c in checks] == [("allreduce", Verdict.UNCHECKED)]
    assert checks[0].reason == (
        "not judged: 1 rank, sums verified, no bandwidth (no link crossed); "
        "floor not applied: min busbw 500 GB/s"
    )
    plain = judge_sweep(one, Floors(), None)
    assert [c.verdict for c in plain] == [Verdict.UNCHECKED]
    assert "floor not applied" not in plain[0].reason
    bad = judge_sweep(sweep(0.0, ranks=1, wrong=3), Floors(min_busbw_gbps=500.0), None)
    assert [(c.check, c.verdict) for c in bad] == [("allreduce", Verdict.FAIL)]


def test_empty_sweep_is_an_error() -> None:
    assert judge_sweep(SweepResult("mpi", 2, "cpu"), Floors(), None)[0].verdict is Verdict.ERROR
