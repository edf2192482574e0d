"""Helpers shared by the example payloads: distributed setup and `slurm-ai mark`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables, else from srun's."""
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1")))
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))
    return rank, world, local


def mark(**units: float | int | str) -> None:
    """Record work units for this job through `slurm-ai mark` (rank 0 only)."""
    exe = shutil.which("slurm-ai")
    argv = [exe] if exe else [sys.executable, "-m", "slurm_ai"]
    argv += ["mark", *(f"{key}={value}" for key, value in units.items())]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"slurm-ai mark failed: {result.stderr.strip()}", file=sys.stderr)
