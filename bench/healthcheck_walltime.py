"""Wall time of `slurm-ai healthcheck --scope node` on CPU, process start to verdict,
and how much of it is imports and process start-up.

    python bench/healthcheck_walltime.py [--repeat 5]

Everything is measured in this run, as medians of --repeat runs: a bare
interpreter start (the baseline every figure is divided by), the CLI's own
imports, mpi4py+numpy and torch imports, and the whole check per backend.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slurm_ai.proc import run_command

PY = sys.executable
CHECK = ["-m", "slurm_ai", "healthcheck", "--scope", "node", "--no-gpu-checks"]


def timed(argv: list[str], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        run_command(argv, timeout=300, check=False, extra_env={"SLURM_AI_HEALTH_FAULT": ""})
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = [
        ("python start (baseline)", [PY, "-c", "pass"]),
        ("import CLI + health.cli", [PY, "-c", "import slurm_ai.cli, slurm_ai.health.cli"]),
        ("slurm-ai healthcheck --help", [PY, "-m", "slurm_ai", "healthcheck", "--help"]),
        ("import mpi4py.MPI + numpy", [PY, "-c", "import numpy; from mpi4py import MPI"]),
        ("import torch.distributed", [PY, "-c", "import torch.distributed"]),
        ("healthcheck mpi (2 ranks)", [PY, *CHECK, "--backend", "mpi"]),
        ("healthcheck gloo (2 ranks)", [PY, *CHECK, "--backend", "gloo"]),
    ]
    results = {name: timed(argv, args.repeat) for name, argv in rows}
    base = results["python start (baseline)"]
    print(f"# median of {args.repeat} runs; ratio = time / bare interpreter start")
    print(f"{'what':<30} {'seconds':>8} {'ratio':>7}")
    for name, seconds in results.items():
        print(f"{name:<30} {seconds:>8.3f} {seconds / base:>7.1f}")
    for backend, lib in (
        ("mpi", "import mpi4py.MPI + numpy"),
        ("gloo", "import torch.distributed"),
    ):
        total = results[f"healthcheck {backend} (2 ranks)"]
        startup = results["import CLI + health.cli"] + results[lib]
        print(
            f"{backend}: {total:.2f} s to verdict; start-up + imports ~{startup:.2f} s "
            f"({100 * startup / total:.0f} %: the CLI once, the backend per rank in parallel)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
