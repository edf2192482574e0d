"""GPU check, end to end: the real Prolog and Epilog around a short GPU load.

Run on a lent GPU machine from the repo root:  PYTHONPATH=. python3 bench/gpu/check_hooks.py

It plays slurmd: runs `python -m slurm_ai.hooks prolog` with the environment a
Prolog gets for a one-GPU job (health check on, node scope, NCCL), runs ~8 s of
bf16 matmul on the GPU, then the Epilog. There is no Slurm on that machine, so
delivery to accounting fails and the merged record stays in the spool outbox:
it is printed (platform, plan, health, energy by source, usage, timing).
Bounded: every subprocess has a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_hook(hook: str, config: Path, env: dict[str, str]) -> tuple[int, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "slurm_ai.hooks", hook, "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if proc.stdout.strip() or proc.stderr.strip():
        print(f"{hook} output: {(proc.stdout + proc.stderr).strip()[-800:]}")
    return proc.returncode, elapsed


def job_scope_check(base: dict[str, str]) -> None:
    """`slurm-ai healthcheck --scope job` as one srun task would run it (NCCL, 1 rank)."""
    env = {
        **base,
        "SLURM_STEP_ID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NTASKS": "1",
        "SLURM_NNODES": "1",
        "SLURM_STEP_GPUS": "0",
        "SLURM_AI_HEALTH_MASTER_ADDR": "127.0.0.1",
    }
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "slurm_ai", "healthcheck", "--scope", "job", "--backend", "nccl"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    took = time.perf_counter() - started
    print(f"healthcheck --scope job (nccl, 1 task): exit {proc.returncode} in {took:.1f} s")
    print((proc.stdout + proc.stderr).strip()[-2500:])


def gpu_load(seconds: float) -> None:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        for _ in range(20):
            a @ b
        torch.cuda.synchronize()
        n += 20
    print(
        f"load: {n} bf16 8192^3 matmuls in {seconds:g} s ({n * 2 * 8192**3 / seconds / 1e12:.0f} TFLOP/s)"
    )


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="sai-gpu-"))
    spool, log = root / "spool", root / "log" / "slurm-ai.log"
    config = root / "config.toml"
    config.write_text(
        f'[spool]\ndir = "{spool}"\n[log]\nfile = "{log}"\n'
        '[health]\nenabled = true\nwhen = "every_job"\nbackend = "nccl"\nbudget_s = 20.0\n'
        '[accounting]\nbackend = "slurm-cli"\ntimeout_s = 3.0\ninline_budget_s = 3.0\n'
        f'mark_dir = "{root / "marks"}"\n'
        '[energy]\nipmi = "off"\n'
    )
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.getcwd(),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_USER": "root",
        "SLURM_JOB_UID": "0",
        "SLURM_JOB_PARTITION": "gpu",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_JOB_CPUS_PER_NODE": str(os.cpu_count() or 1),
        "SLURM_NODELIST": "gpunode",
        "SLURM_JOB_NODELIST": "gpunode",
        "SLURMD_NODENAME": "gpunode",
        "SLURM_CLUSTER_NAME": "lent",
        "SLURM_JOB_GPUS": "0",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    job_scope_check(base)
    rc, prolog_s = run_hook("prolog", config, {**base, "SLURM_SCRIPT_CONTEXT": "prolog_slurmd"})
    print(f"prolog: exit {rc} in {prolog_s:.2f} s (health check on, NCCL)")
    gpu_load(8.0)
    rc, epilog_s = run_hook(
        "epilog",
        config,
        {**base, "SLURM_SCRIPT_CONTEXT": "epilog_slurmd", "SLURM_JOB_EXIT_CODE": "0"},
    )
    print(f"epilog: exit {rc} in {epilog_s:.2f} s")
    found = sorted(spool.rglob("*4242*.json")) + sorted((spool / "outbox").glob("*.json"))
    for path in found[:3]:
        data = json.loads(path.read_text())
        print(f"--- {path.relative_to(spool)}")
        print(json.dumps(data, indent=1, sort_keys=True)[:6000])
    if log.exists():
        print("--- log (last lines)")
        print("\n".join(log.read_text().splitlines()[-15:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
