"""All-reduce backends: each module imports its heavy library only when used."""

from __future__ import annotations

import importlib.util
import shutil

BACKENDS = ("mpi", "gloo", "nccl")


def have_module(name: str) -> bool:
    """Is `name` importable? (find_spec does not import it: torch costs seconds.)"""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def available(mpirun: str = "mpirun") -> dict[str, bool]:
    """What could run here, without importing anything heavy."""
    torch = have_module("torch")
    return {
        "mpi": have_module("mpi4py") and have_module("numpy") and shutil.which(mpirun) is not None,
        "gloo": torch,
        "nccl": torch,
    }


def choose_backend(requested: str, gpus: int, mpirun: str = "mpirun") -> str:
    """`auto`: NCCL on GPUs when torch is there; on CPUs mpi4py first (no 2.6 s torch
    import), then gloo. Raises ValueError when nothing fits."""
    have = available(mpirun)
    if requested != "auto":
        if requested not in BACKENDS:
            raise ValueError(
                f"unknown backend {requested!r} (choose from auto, {', '.join(BACKENDS)})"
            )
        if not have[requested]:
            need = "mpi4py, numpy and mpirun" if requested == "mpi" else "torch"
            raise ValueError(f"backend {requested} needs {need}, not found here")
        return requested
    from slurm_ai.nvml import site_recording

    # GPUs answered from a recording (`[nvml] recording`) have no driver behind them.
    on_gpus = gpus > 0 and site_recording() is None
    order = ["nccl", "mpi", "gloo"] if on_gpus else ["mpi", "gloo"]
    for name in order:
        if have[name]:
            return name
    raise ValueError("no all-reduce backend here: install mpi4py+numpy (and MPI) or torch")
