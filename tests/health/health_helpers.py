"""Shared markers of the health tests (a module name no other area uses)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest


def have(module: str) -> bool:

    return importlib.util.find_spec(module) is not None


needs_mpi = pytest.mark.skipif(
    not (have("mpi4py") and have("numpy") and shutil.which("mpirun")),
    reason="needs mpi4py, numpy and mpirun (apt-get install openmpi-bin libopenmpi-dev)",
)
needs_torch = pytest.mark.skipif(not have("torch"), reason="needs torch")
