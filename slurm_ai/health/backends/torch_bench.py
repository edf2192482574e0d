"""The GPU-local measurement with torch (see gpubench.py for what is judged).

Imported only by a torch worker (it imports torch). Each measurement warms
up, estimates the time of one operation, then runs back-to-back for about
`seconds` (long enough for clocks and the power cap to settle, as gpu-burn
and DCGM's targeted stress do), timed with CUDA events on GPUs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from slurm_ai.health.gpubench import BenchSpec

WARMUP = 3


def _timer(device: torch.device) -> Callable[[Callable[[], None], int], float]:
    """Seconds for `iters` calls of `op` on `device`."""

    def run(op: Callable[[], None], iters: int) -> float:
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                op()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end)) / 1e3
        began = time.perf_counter()
        for _ in range(iters):
            op()
        return time.perf_counter() - began

    return run


def _sustained(
    op: Callable[[], None], timer: Callable[[Callable[[], None], int], float], seconds: float
) -> tuple[float, int]:
    """(seconds per call, calls) over about `seconds` after a warm-up."""
    timer(op, WARMUP)
    one = max(timer(op, 1), 1e-6)
    iters = max(1, min(100000, int(seconds / one)))
    return timer(op, iters) / iters, iters


def _digits(value: float) -> float:
    """Four significant digits (a tiny CPU GEMM is 1e-5 TFLOP/s, not 0)."""
    return float(f"{value:.4g}")


def measure(spec: BenchSpec, device: torch.device) -> dict[str, Any]:
    """GEMM TFLOP/s and copy GB/s of one device, each with its verification."""
    timer = _timer(device)
    on_gpu = device.type == "cuda"
    dtype_name = spec.gemm_dtype if on_gpu else "float32"
    dtype = getattr(torch, dtype_name)
    model = torch.cuda.get_device_name(device) if on_gpu else "cpu"
    gen = torch.Generator(device=device).manual_seed(1234)
    n = spec.gemm_n
    a = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
    b = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)

    def gemm() -> None:
        torch.matmul(a, b, out=c)

    per_gemm, gemm_iters = _sustained(gemm, timer, spec.seconds)
    # Freivalds: C x against A (B x), in float32; O(n^2), catches a wrong product.
    x = torch.randn(n, 1, device=device, dtype=torch.float32, generator=gen)
    want = a.float() @ (b.float() @ x)
    got = c.float() @ x
    gemm_error = float((got - want).norm() / want.norm().clamp_min(1e-30))

    count = max(1, spec.mem_bytes // 4)
    src = torch.arange(count, device=device, dtype=torch.int32)
    dst = torch.empty_like(src)

    def copy() -> None:
        dst.copy_(src)

    per_copy, copy_iters = _sustained(copy, timer, spec.seconds / 2)
    mem_wrong = int((dst != src).sum().item())
    return {
        "device": str(device),
        "model": model,
        "gemm_n": n,
        "gemm_dtype": dtype_name,
        "gemm_tflops": _digits(2.0 * n**3 / per_gemm / 1e12),
        "gemm_iters": gemm_iters,
        "gemm_error": gemm_error,
        "mem_bytes": count * 4,
        "mem_gbps": _digits(2.0 * count * 4 / per_copy / 1e9),
        "mem_iters": copy_iters,
        "mem_wrong": mem_wrong,
    }
