"""busbw of the mpi4py health check against a native C MPI all-reduce, same run.

    python bench/allreduce_vs_native.py [--ranks 2] [--rounds 5] [--iters 20]

Builds bench/allreduce_native.c with mpicc, then alternates the two programs
`rounds` times at the same sizes, ranks and mpirun options (those of
`slurm_ai.health.launcher`), and prints per size the median busbw of each
and their ratio. Target: mpi4py >= 0.9 x native for sizes >= 4 MiB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slurm_ai.health.launcher import launch_local, mpirun_argv, mpirun_env, worker_env
from slurm_ai.health.measure import SweepSpec, format_bytes
from slurm_ai.proc import run_command

SIZES = [64 * 1024, 256 * 1024, 1024**2, 4 * 1024**2, 16 * 1024**2, 64 * 1024**2]


def build(out_dir: Path) -> Path:
    binary = out_dir / "allreduce_native"
    source = Path(__file__).resolve().parent / "allreduce_native.c"
    run_command(["mpicc", "-O2", "-o", str(binary), str(source)], timeout=120)
    return binary


def native(binary: Path, ranks: int, iters: int, warmup: int) -> dict[int, tuple[float, int]]:
    argv = mpirun_argv(
        "mpirun", ranks, [str(binary), str(iters), str(warmup), *map(str, SIZES)], os.geteuid() == 0
    )
    out = run_command(argv, timeout=600, env=mpirun_env(worker_env(os.environ))).stdout
    result = {}
    for line in out.splitlines():
        size, _time, _alg, busbw, wrong = line.split()
        result[int(size)] = (float(busbw), int(float(wrong)))
    return result


def mpi4py(ranks: int, iters: int, warmup: int) -> dict[int, tuple[float, int]]:
    spec = SweepSpec(sizes=SIZES, iters=iters, warmup=warmup, backend="mpi")
    sweep = launch_local(spec, ranks, timeout=600)
    return {row.size_bytes: (row.busbw_gbps, row.wrong) for row in sweep.rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        binary = build(Path(tmp))
        runs_c: dict[int, list[float]] = {s: [] for s in SIZES}
        runs_py: dict[int, list[float]] = {s: [] for s in SIZES}
        for _ in range(args.rounds):  # alternate so drift hits both alike
            for size, (bw, wrong) in native(binary, args.ranks, args.iters, args.warmup).items():
                assert wrong == 0, f"native: {wrong} wrong at {size}"
                runs_c[size].append(bw)
            for size, (bw, wrong) in mpi4py(args.ranks, args.iters, args.warmup).items():
                assert wrong == 0, f"mpi4py: {wrong} wrong at {size}"
                runs_py[size].append(bw)
    print(f"# {args.ranks} ranks, {args.iters} iters, median of {args.rounds} alternating rounds")
    print(f"{'size':>8} {'native busbw':>13} {'mpi4py busbw':>13} {'ratio':>7}")
    ok = True
    for size in SIZES:
        c, py = statistics.median(runs_c[size]), statistics.median(runs_py[size])
        ratio = py / c if c else float("nan")
        flag = ""
        if size >= 4 * 1024**2:
            flag = "  ok (>= 0.9)" if ratio >= 0.9 else "  BELOW 0.9"
            ok = ok and ratio >= 0.9
        print(f"{format_bytes(size):>8} {c:>10.2f} GB/s {py:>8.2f} GB/s {ratio:>7.3f}{flag}")
    print("target mpi4py >= 0.9 x native for sizes >= 4 MiB:", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
