"""The GPU-local check: GEMM throughput and device-memory bandwidth (pure logic).

On a one-GPU node or VM an all-reduce crosses no link and says almost nothing
about the GPU. What catches a throttled, degraded or misconfigured GPU (power
capped, wrong clocks, PCIe downtrained, a bad HBM stack) is what DCGM's
diagnostic (targeted stress, memory bandwidth) and gpu-burn look at: a few
seconds of dense GEMM and of device-memory copies, with verified results.

Rules this module implements (each checked by tests/health/test_health_gpubench.py):

1. Every rank measures its own GPU (CPU in tests): GEMM TFLOP/s over
   `seconds` of back-to-back matmuls (2 n^3 flops each) and copy GB/s
   (a copy reads and writes: 2 x bytes, as STREAM and nvbandwidth count).
2. Results are verified: the GEMM by Freivalds' check (C x against A (B x),
   relative error below a per-dtype tolerance), the copy by comparing
   destination and source. A wrong result fails, whatever the speed.
3. Fixed floors per GPU model: `gemm_min_fraction` and `mem_min_fraction` of
   the published dense peak (PUBLISHED, with its source), or the configured
   absolute floors, whichever is higher. Unknown models (and CPUs) have only
   the configured floors.
4. Calibrated floors per GPU model from this node's history of earlier
   passing runs: the same median/MAD outlier test as the all-reduce busbw
   (thresholds.calibrate); below P5 but not an outlier warns.
5. A bench that could not run (no torch, mpi backend) is "unchecked", never pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from slurm_ai.health.verdict import CheckResult, Verdict

if TYPE_CHECKING:  # thresholds imports settings, which imports this module
    from slurm_ai.health.thresholds import Calibration

GEMM_TOLERANCE = {"bfloat16": 2e-2, "float16": 5e-3, "float32": 1e-4}


@dataclass(frozen=True)
class Peak:
    """Published dense (no sparsity) bf16 tensor TFLOP/s and memory GB/s."""

    gemm_tflops: float
    mem_gbps: float
    source: str


# Most specific names first: "H100 PCIe" must not match the SXM entry.
# Sources: NVIDIA datasheets. H100/H200 SXM: 1979 TFLOPS bf16 "with sparsity",
# i.e. 989 dense; HBM3 3.35 TB/s (H100 SXM), HBM3e 4.8 TB/s (H200).
PUBLISHED: list[tuple[str, Peak]] = [
    ("H200", Peak(989.0, 4800.0, "NVIDIA H200 Tensor Core GPU datasheet (SXM)")),
    ("H100 PCIe", Peak(756.0, 2000.0, "NVIDIA H100 Tensor Core GPU datasheet (PCIe)")),
    ("H100 NVL", Peak(835.0, 3900.0, "NVIDIA H100 Tensor Core GPU datasheet (NVL)")),
    ("H100", Peak(989.0, 3350.0, "NVIDIA H100 Tensor Core GPU datasheet (SXM5, HBM3)")),
    ("A100-SXM4-80GB", Peak(312.0, 2039.0, "NVIDIA A100 datasheet (SXM4 80GB)")),
    ("A100-SXM4-40GB", Peak(312.0, 1555.0, "NVIDIA A100 datasheet (SXM4 40GB)")),
    ("A100 80GB PCIe", Peak(312.0, 1935.0, "NVIDIA A100 datasheet (PCIe 80GB)")),
    ("L40S", Peak(362.0, 864.0, "NVIDIA L40S datasheet")),
]


def published_peak(model: str) -> Peak | None:
    for name, peak in PUBLISHED:
        if name.lower() in model.lower():
            return peak
    return None


def model_key(model: str) -> str:
    """A GPU model as a history file name ("NVIDIA H200" -> "NVIDIA_H200")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("_")[:64] or "unknown"


@dataclass(frozen=True)
class BenchSpec:
    """What each rank runs; JSON-able, it travels inside the SweepSpec."""

    gemm_n: int = 8192
    gemm_dtype: str = "bfloat16"  # GPUs; on CPUs the worker uses float32
    mem_bytes: int = 1024**3
    seconds: float = 2.0  # per measurement, after a short warm-up

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchSpec:
        spec = cls(
            gemm_n=int(data.get("gemm_n", 8192)),
            gemm_dtype=str(data.get("gemm_dtype", "bfloat16")),
            mem_bytes=int(data.get("mem_bytes", 1024**3)),
            seconds=float(data.get("seconds", 2.0)),
        )
        if spec.gemm_n < 16 or spec.mem_bytes < 4096 or spec.seconds <= 0:
            raise ValueError(f"bench spec out of range: {spec}")
        if spec.gemm_dtype not in GEMM_TOLERANCE:
            raise ValueError(f"bench dtype {spec.gemm_dtype!r} not one of {list(GEMM_TOLERANCE)}")
        return spec


@dataclass(frozen=True)
class BenchFloors:
    gemm_min_tflops: float = 0.0
    mem_min_gbps: float = 0.0
    gemm_min_fraction: float = 0.5
    mem_min_fraction: float = 0.5


def fixed_floor(configured: float, fraction: float, peak: float | None) -> tuple[float, str]:
    """The higher of the configured floor and `fraction` of the published peak."""
    from_peak = fraction * peak if peak and fraction > 0 else 0.0
    if from_peak > configured:
        return from_peak, f"{fraction:g} x published {peak:g}"
    return configured, "configured"


def _judge_one(
    check: str,
    who: str,
    value: float,
    unit: str,
    floor: tuple[float, str],
    calibration: Calibration | None,
    outlier_verdict: Verdict,
) -> CheckResult:
    limit, origin = floor
    if limit > 0 and value < limit:
        return CheckResult(
            check, Verdict.FAIL, f"{who}: {value:.1f} {unit} below the floor {limit:.1f} ({origin})"
        )
    if calibration is not None:
        history = f"median {calibration.median:.1f}, over {calibration.samples} runs"
        if value < calibration.floor:
            return CheckResult(
                check, outlier_verdict, f"{who}: {value:.1f} {unit} is an outlier ({history})"
            )
        if value < calibration.p5:
            return CheckResult(
                check, Verdict.WARN, f"{who}: {value:.1f} {unit} below P5 ({history})"
            )
    return CheckResult(check, Verdict.PASS, f"{who}: {value:.1f} {unit}")


def judge_bench(
    local: Sequence[dict[str, Any]],
    floors: BenchFloors,
    calibrations: Callable[[str, str], Calibration | None],
    *,
    outlier_verdict: Verdict = Verdict.FAIL,
) -> list[CheckResult]:
    """Checks "gemm" and "gpu-mem" for every rank's result.

    `calibrations(model, metric)` gives the calibrated floor of a GPU model's
    "gemm_tflops" or "mem_gbps" history (None with too little history).
    """
    checks: list[CheckResult] = []
    for entry in local:
        who = f"{entry.get('device', '?')} ({entry.get('model', '?')})"
        error = entry.get("error")
        if error:
            checks.append(CheckResult("gemm", Verdict.UNCHECKED, f"{who}: not run: {error}"))
            continue
        model = str(entry.get("model", "unknown"))
        peak = published_peak(model) if str(entry.get("device", "")).startswith("cuda") else None
        for check, metric, unit, wrong_key, configured, fraction, peak_value in (
            (
                "gemm",
                "gemm_tflops",
                "TFLOP/s",
                "gemm_error",
                floors.gemm_min_tflops,
                floors.gemm_min_fraction,
                peak.gemm_tflops if peak and entry.get("gemm_dtype") == "bfloat16" else None,
            ),
            (
                "gpu-mem",
                "mem_gbps",
                "GB/s",
                "mem_wrong",
                floors.mem_min_gbps,
                floors.mem_min_fraction,
                peak.mem_gbps if peak else None,
            ),
        ):
            value = entry.get(metric)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                checks.append(CheckResult(check, Verdict.ERROR, f"{who}: no {metric} measured"))
                continue
            bad = entry.get(wrong_key)
            if (
                check == "gemm"
                and isinstance(bad, (int, float))
                and bad > GEMM_TOLERANCE.get(str(entry.get("gemm_dtype")), 1e-4)
            ):
                checks.append(
                    CheckResult(
                        check, Verdict.FAIL, f"{who}: GEMM result wrong (relative error {bad:.2g})"
                    )
                )
                continue
            if check == "gpu-mem" and bad:
                checks.append(
                    CheckResult(check, Verdict.FAIL, f"{who}: {bad} elements wrong after copy")
                )
                continue
            checks.append(
                _judge_one(
                    check,
                    who,
                    float(value),
                    unit,
                    fixed_floor(configured, fraction, peak_value),
                    calibrations(model, metric),
                    outlier_verdict,
                )
            )
    return checks


def history_entries(
    local: Sequence[dict[str, Any]], verdicts: dict[str, str]
) -> list[dict[str, Any]]:
    """One history entry per rank: model, both figures, and the rank's verdict."""
    entries = []
    for entry in local:
        if entry.get("error"):
            continue
        device = str(entry.get("device", "?"))
        entries.append(
            {
                "model": entry.get("model"),
                "gemm_tflops": entry.get("gemm_tflops"),
                "mem_gbps": entry.get("mem_gbps"),
                "gemm_n": entry.get("gemm_n"),
                "gemm_dtype": entry.get("gemm_dtype"),
                "verdict": verdicts.get(device, "pass"),
            }
        )
    return entries


def comparable(entries: Sequence[dict[str, Any]], model: str, metric: str) -> list[float]:
    """Past values of one metric for one GPU model, from passing or warning runs."""
    values = []
    for entry in entries:
        value = entry.get(metric)
        if (
            entry.get("model") == model
            and entry.get("verdict") in ("pass", "warn")
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            values.append(float(value))
    return values
