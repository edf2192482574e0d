"""Shared markers of the health tests (a module name no other area uses)."""

from __future__ import annotations

import importlib.util
import shutil

from core_parts import SETUP_DEPS, needs


def have(module: str) -> bool:

    return importlib.util.find_spec(module) is not None


# The all-reduce health check's two backends on the CPU: core parts, tested everywhere.
needs_mpi = needs(
    "mpi4py, numpy and mpirun (MPI health check)",
    bool(have("mpi4py") and have("numpy") and shutil.which("mpirun")),
    f"openmpi-bin libopenmpi-dev, then pip install -e '.[all]' ({SETUP_DEPS})",
)
needs_torch = needs("torch (torch.distributed health check)", have("torch"), SETUP_DEPS)
