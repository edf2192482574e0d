"""GPU verification of the background health mode, for a lent H100/H200 machine (< 90 s).

    PYTHONPATH=. python3 bench/gpu/check_health_background.py

1. The full node check (what the HealthCheckProgram and the Epilog refresh
   run), cold (first after the machine started) and warm: wall time split
   into worker start-up (import torch, NCCL communicator, CUDA context) and
   measurement, and the GPU-local GEMM TFLOP/s and copy GB/s per GPU against
   the published figures (gpubench.PUBLISHED).
2. The Prolog with GPU checks on and a fresh cached verdict (background
   mode): median and P90 of 10 runs as slurmd starts it, against a bare
   python start; target under 300 ms median.
"""

from __future__ import annotations

import faulthandler
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
faulthandler.dump_traceback_later(88, exit=True)  # the whole script never passes 90 s

from health_background import full_checks, prolog_times  # noqa: E402

from slurm_ai.health.gpubench import published_peak  # noqa: E402

T0 = time.monotonic()


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="sai-gpu-bg-"))
    config = tmp / "check.toml"
    config.write_text(f'[spool]\ndir = "{tmp}/spool"\n[health]\nlocal_bench = "gpu"\n')
    print(f"=== 1. full check, cold then warm (t={time.monotonic() - T0:.1f} s)", flush=True)
    for i, row in enumerate(full_checks("auto", 3, config, timeout_s=50)):
        print(
            f"run {i + 1}{' (cold)' if i == 0 else ''}: verdict {row['verdict']}, wall "
            f"{row['wall_s']:.2f} s, start-up {row['startup_s']:.2f} s, measure "
            f"{row['measure_s']:.2f} s; {row['reason']}",
            flush=True,
        )
        for gpu in row["bench"]:
            peak = published_peak(str(gpu.get("model", "")))
            share = (
                f" = {gpu['gemm_tflops'] / peak.gemm_tflops:.0%} of {peak.gemm_tflops:g} TFLOP/s, "
                f"{gpu['mem_gbps'] / peak.mem_gbps:.0%} of {peak.mem_gbps:g} GB/s ({peak.source})"
                if peak and "gemm_tflops" in gpu and "mem_gbps" in gpu
                else ""
            )
            print(f"    {gpu}{share}")
    print(f"=== 2. Prolog, cached verdict (t={time.monotonic() - T0:.1f} s)", flush=True)
    times = prolog_times(10, tmp)
    base = statistics.median(times["python -I -c pass"])
    for name, values in times.items():
        med = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(
            f"{name:40s} median {med * 1e3:7.1f} ms  p90 {p90 * 1e3:7.1f} ms  {med / base:5.2f} x"
        )
    print(f"total {time.monotonic() - T0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
