"""On the real local Slurm cluster: srun + bind pins ranks; TaskProlog exports reach tasks."""

from __future__ import annotations

import ast
import shutil
import sys
from typing import Any

import pytest
from hooks_fixture import installed_hooks  # noqa: F401  (the fixture)

pytestmark = pytest.mark.cluster

PRINT = (
    "import os;print(os.environ['SLURM_LOCALID'], sorted(os.sched_getaffinity(0)), "
    "os.environ.get('OMP_NUM_THREADS'), os.environ.get('SLURM_AI_CPUS'))"
)


def slurm_ai_argv() -> list[str]:
    exe = shutil.which("slurm-ai")
    return [exe] if exe else [sys.executable, "-m", "slurm_ai"]


def parse(stdout: str) -> dict[int, tuple[list[int], str | None, str | None]]:
    ranks = {}
    for line in stdout.splitlines():
        local, rest = line.split(" ", 1)
        cpus_text, omp, ai = rest.rsplit(" ", 2)
        ranks[int(local)] = (
            ast.literal_eval(cpus_text),
            None if omp == "None" else omp,
            None if ai == "None" else ai,
        )
    return ranks


def test_srun_bind_pins_each_rank_to_different_cpus(slurm_cluster: Any) -> None:
    proc = slurm_cluster.run(
        [
            "srun",
            "-N1",
            "-n2",
            "--cpu-bind=none",
            *slurm_ai_argv(),
            "bind",
            "--",
            sys.executable,
            "-c",
            PRINT,
        ],
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    ranks = parse(proc.stdout)
    assert set(ranks) == {0, 1}
    cpus0, cpus1 = ranks[0][0], ranks[1][0]
    assert cpus0 and cpus1 and not set(cpus0) & set(cpus1), ranks
    assert ranks[0][1] == "1"  # one core each on the 2-CPU nodes


def test_taskprolog_exports_reach_the_task(installed_hooks: Any) -> None:  # noqa: F811
    proc = installed_hooks.cluster.run(
        ["srun", "-N1", "-n2", sys.executable, "-c", PRINT],
        env=installed_hooks.env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    ranks = parse(proc.stdout)
    assert set(ranks) == {0, 1}
    # SLURM_AI_CPUS is set only by our TaskProlog: each task got its own plan.
    assert ranks[0][2] and ranks[1][2] and ranks[0][2] != ranks[1][2], ranks
    assert ranks[0][1] == "1"
