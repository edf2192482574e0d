"""Judge a sweep: fixed floors from the config, and calibration from history.

Fixed floors (per partition): minimum busbw at the largest size, maximum time
at the smallest. Published fixed thresholds are often miscalibrated (one
cloud suite expects 800 GB/s from 8 H100s whose peak is about 480, at 128 MB,
too small to reach it), so the partition's own history is the better judge:

- median and P5 of the busbw of earlier passing checks with the same
  backend, rank count and size;
- a robust outlier test: busbw below median - k * 1.4826 * MAD (the scaled
  median absolute deviation estimates a standard deviation without being
  dragged by the outliers themselves) AND more than `min_drop` below the
  median (a very stable history has a MAD near 0; a 1 % dip is not a fault);
- below P5 but not an outlier: warn.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from slurm_ai.health.measure import SweepResult
from slurm_ai.health.settings import Floors
from slurm_ai.health.verdict import CheckResult, Verdict

MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Calibration:
    samples: int
    median: float
    p5: float
    mad: float
    floor: float  # the outlier threshold

    def to_json(self) -> dict[str, float]:
        return {
            "samples": self.samples,
            "median": round(self.median, 4),
            "p5": round(self.p5, 4),
            "mad": round(self.mad, 4),
            "floor": round(self.floor, 4),
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def calibrate(
    values: Sequence[float], *, k: float, min_drop: float, min_samples: int
) -> Calibration | None:
    """Calibration from past busbw values; None with too little history."""
    clean = [v for v in values if v == v and v >= 0]  # drop NaN and negatives
    if len(clean) < min_samples:
        return None
    median = statistics.median(clean)
    mad = statistics.median(abs(v - median) for v in clean)
    floor = min(median - k * MAD_SCALE * mad, median * (1.0 - min_drop))
    return Calibration(len(clean), median, percentile(clean, 5), mad, floor)


def one_rank_reason(floors: Floors) -> str:
    """Why a one-rank all-reduce is not judged, naming each floor it cannot apply."""
    text = "not judged: 1 rank, sums verified, no bandwidth (no link crossed)"
    skipped = [
        f"{name} {value:g} {unit}"
        for name, value, unit in (
            ("min busbw", floors.min_busbw_gbps, "GB/s"),
            ("max small time", floors.max_small_time_us, "us"),
        )
        if value > 0
    ]
    return text + (f"; floor not applied: {', '.join(skipped)}" if skipped else "")


def judge_sweep(
    result: SweepResult,
    floors: Floors,
    calibration: Calibration | None,
    *,
    outlier_verdict: Verdict = Verdict.FAIL,
) -> list[CheckResult]:
    """Every verdict the sweep earns: correctness, fixed floors, calibration."""
    checks: list[CheckResult] = []
    largest, smallest = result.largest, result.smallest
    if largest is None or smallest is None:
        return [CheckResult("allreduce", Verdict.ERROR, "no sizes measured")]
    if result.wrong:
        bad = next(r for r in result.rows if r.wrong)
        checks.append(
            CheckResult(
                "allreduce",
                Verdict.FAIL,
                f"{result.wrong} wrong elements in the reduced data "
                f"(first at {bad.size_bytes} B, {result.backend}, {result.ranks} ranks)",
            )
        )
    if result.ranks < 2:
        # One rank: NCCL/MPI all-reduce in place is a no-op (on an H200 it took
        # 26 us at every size up to 1 GiB), so there is no bandwidth to judge;
        # the run still proves the stack works and the sums are right.
        if not checks:
            checks.append(CheckResult("allreduce", Verdict.UNCHECKED, one_rank_reason(floors)))
        return checks
    bw, label = largest.busbw_gbps, "busbw"
    size_text = f"at {largest.size_bytes} B"
    if floors.min_busbw_gbps > 0 and bw < floors.min_busbw_gbps:
        checks.append(
            CheckResult(
                "allreduce-busbw",
                Verdict.FAIL,
                f"{label} {bw:.2f} GB/s {size_text} below the floor {floors.min_busbw_gbps:g} GB/s",
            )
        )
    if floors.max_small_time_us > 0 and smallest.time_us > floors.max_small_time_us:
        checks.append(
            CheckResult(
                "allreduce-latency",
                Verdict.FAIL,
                f"{smallest.time_us:.1f} us at {smallest.size_bytes} B above the limit "
                f"{floors.max_small_time_us:g} us",
            )
        )
    if calibration is not None:
        history = (
            f"median {calibration.median:.2f}, P5 {calibration.p5:.2f} GB/s "
            f"over {calibration.samples} runs"
        )
        if bw < calibration.floor:
            checks.append(
                CheckResult(
                    "allreduce-outlier",
                    outlier_verdict,
                    f"{label} {bw:.2f} GB/s {size_text} is an outlier ({history})",
                )
            )
        elif bw < calibration.p5:
            checks.append(
                CheckResult(
                    "allreduce-p5", Verdict.WARN, f"{label} {bw:.2f} GB/s below P5 ({history})"
                )
            )
    if not checks:
        checks.append(
            CheckResult("allreduce", Verdict.PASS, f"{label} {bw:.2f} GB/s {size_text}, 0 wrong")
        )
    return checks
