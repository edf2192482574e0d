"""GPU check for issue 5: the real NVML energy counter across a short torch load.

Run on a lent GPU machine from the repo root:  PYTHONPATH=. python3 bench/gpu/check_energy.py

Prints: the energy counter delta of GPU 0 over ~10 s of matmul load, the same
energy from integrating nvmlDeviceGetPowerUsage sampled every 50 ms, their
ratio, and what slurm-ai's energy step (live NVML through slurm_ai.nvml)
records for that window. Never hangs: an alarm ends it after 90 s.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import threading
import time
import traceback


def main() -> int:
    signal.signal(signal.SIGALRM, lambda *_: (print("TIMEOUT after 90 s"), os._exit(2)))
    signal.alarm(90)
    from slurm_ai.config import Config
    from slurm_ai.energy import hook
    from slurm_ai.energy.gpu import snapshot
    from slurm_ai.hooks.context import HookContext
    from slurm_ai.nvml import open_nvml
    from slurm_ai.slurmenv import JobEnv

    nv = open_nvml(timeout=5.0)
    handle = nv.nvmlDeviceGetHandleByIndex(0)
    print("GPU 0:", nv.nvmlDeviceGetName(handle), "driver", nv.nvmlSystemGetDriverVersion())
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            try:
                samples.append((time.perf_counter(), nv.nvmlDeviceGetPowerUsage(handle) / 1000.0))
            except Exception as exc:  # keep sampling; report once
                print("power sample failed:", exc)
                return
            time.sleep(0.05)

    env = {
        "SLURM_JOB_ID": "1",
        "SLURMD_NODENAME": "gpu",
        "SLURM_JOB_NODELIST": "gpu",
        "SLURM_JOB_GPUS": "0",
        "SLURM_SCRIPT_CONTEXT": "epilog_slurmd",
    }
    ctx = HookContext(
        Config(path=None, data={"energy": {"ipmi": "off"}}),
        JobEnv.from_environ(env),
        "gpu",
        __import__("pathlib").Path("/tmp"),
        logging.getLogger("check"),
        env=env,
    )
    settings = hook.EnergySettings.from_ctx(ctx)
    start_snap = hook.take_snapshot(ctx, settings)
    e0 = nv.nvmlDeviceGetTotalEnergyConsumption(handle)
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        import torch

        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        iters = 0
        while time.perf_counter() - t0 < 10.0:
            for _ in range(20):
                a = (a @ b).clamp_(-1, 1)
            torch.cuda.synchronize()
            iters += 20
        print(f"load: {iters} bf16 8192^3 matmuls in {time.perf_counter() - t0:.1f} s")
    except Exception:
        traceback.print_exc()
    time.sleep(1.0)  # let the counter catch up with the tail of the load
    stop.set()
    thread.join(2)
    t1 = time.perf_counter()
    e1 = nv.nvmlDeviceGetTotalEnergyConsumption(handle)
    end_snap = hook.take_snapshot(ctx, settings)
    counter_j = (e1 - e0) / 1000.0
    integ_j = sum((t2 - t1_) * (p1 + p2) / 2 for (t1_, p1), (t2, p2) in itertools.pairwise(samples))
    span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0.0
    print(
        f"window {t1 - t0:.2f} s; counter delta {counter_j:.1f} J "
        f"(mean {counter_j / (t1 - t0):.0f} W)"
    )
    print(
        f"power integration {integ_j:.1f} J over {span:.2f} s from {len(samples)} samples "
        f"(peak {max((p for _, p in samples), default=0):.0f} W)"
    )
    if integ_j > 0:
        print(f"ratio counter / integrated power = {counter_j / integ_j:.3f}")
    out = hook.compute(ctx, settings, start_snap, end_snap)
    print(
        "slurm-ai energy step:", out["gpus"], [s for s in out["sources"] if s["domain"] == "gpu0"]
    )
    _ = snapshot
    nv.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(1)
