"""The virtualization tax on the local cluster: partition vm (KVM guests v1, v2)
against partition bare (the host's nodes n1, n2), measured in one run.

    python bench/vm_tax.py [--rounds 5] [--size 1M] [--iters 50]

Needs a cluster instance with VM nodes (scripts/localcluster up; the
SLURM_AI_CLUSTER_* variables name the instance).  Prints:

- each guest's boot time (its kernel's uptime when slurmd started, from its console);
- all-reduce busbw between the two nodes of each partition (mpi4py over PMIx,
  float32, nccl-tests' busbw = bytes / time x 2(n-1)/n), --rounds jobs per side,
  alternating bare and vm so that load from elsewhere hits both alike;
- a CPU-bound kernel's compute time in one task per node (pure Python loop);
- for each, the vm/bare ratio of medians with a 95% bootstrap interval (resampling
  the jobs of both sides).  busbw: below 1 is a tax; time: above 1 is a tax.

The figures come from whatever shares the machine with the cluster; the interval
says how much of a ratio is noise.  With emulated guests (`up --vms tcg`) the
ratio measures QEMU's emulator, not KVM: the bench says so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from localcluster_lib import vm  # noqa: E402

from slurm_ai.proc import run_command  # noqa: E402

ALLREDUCE = """\
import sys, time
import numpy as np
from mpi4py import MPI
comm = MPI.COMM_WORLD
size, iters = int(sys.argv[1]), int(sys.argv[2])
buf = np.ones(size // 4, dtype=np.float32)
out = np.empty_like(buf)
for _ in range(3):
    comm.Allreduce(buf, out)
comm.Barrier()
start = time.perf_counter()
for _ in range(iters):
    comm.Allreduce(buf, out)
elapsed = (time.perf_counter() - start) / iters
n = comm.Get_size()
if comm.Get_rank() == 0:
    print("busbw", size / elapsed * 2 * (n - 1) / n / 1e9)
"""

CPU_KERNEL = """\
import time
start = time.perf_counter()
total = 0
for i in range(2_000_000):
    total += i * i % 7
print("seconds", time.perf_counter() - start)
"""

SIZES = {"K": 1024, "M": 1024**2}


def parse_size(text: str) -> int:
    unit = text[-1].upper()
    return int(text[:-1]) * SIZES[unit] if unit in SIZES else int(text)


def figure(stdout: str, key: str) -> float | None:
    for line in stdout.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[1])
    return None


def ratio_interval(
    vm_side: list[float], bare: list[float], resamples: int = 2000
) -> tuple[float, float, float]:
    """Ratio of medians vm/bare and its 95% percentile-bootstrap interval."""
    rng = random.Random(15)
    point = statistics.median(vm_side) / statistics.median(bare)
    draws = sorted(
        statistics.median(rng.choices(vm_side, k=len(vm_side)))
        / statistics.median(rng.choices(bare, k=len(bare)))
        for _ in range(resamples)
    )
    return point, draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", default="1M", help="all-reduce message size (default 1M)")
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    prefix = Path(os.environ.get("SLURM_AI_CLUSTER_PREFIX", "/var/tmp/slurm-ai-cluster"))
    marker = prefix / "etc" / "vm-nodes"
    if not marker.exists():
        reason = vm.reason_file(prefix)
        why = reason.read_text().strip() if reason.exists() else "not up"
        print(f"vm_tax: the cluster at {prefix} has no VM nodes ({why})")
        return 2
    accel = json.loads(marker.read_text())["accel"]
    env = {"SLURM_CONF": str(prefix / "etc" / "slurm.conf")}
    shared = prefix / "shared"
    shared.mkdir(exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=shared, suffix=".py", delete=False) as script:
        script.write(ALLREDUCE)
    with tempfile.NamedTemporaryFile("w", dir=shared, suffix=".py", delete=False) as kernel:
        kernel.write(CPU_KERNEL)
    print(f"# guests under {accel}" + ("" if accel == "kvm" else
          " (emulation: the ratios measure QEMU's emulator, not KVM)"))  # fmt: skip
    for node in vm.GUESTS:
        print(f"boot {node}: {vm.boot_seconds(prefix, node)} s (kernel start to slurmd)")
    size = parse_size(args.size)
    # figure key -> (srun options, program and its arguments)
    jobs = {
        "busbw": (["-N2", "-n2", "--mpi=pmix"], [script.name, str(size), str(args.iters)]),
        "seconds": (["-N1", "-n1"], [kernel.name]),
    }
    series: dict[str, dict[str, list[float]]] = {k: {"bare": [], "vm": []} for k in jobs}
    try:
        for _ in range(args.rounds):
            for part in ("bare", "vm"):
                for key, (options, program) in jobs.items():
                    job = run_command(
                        ["srun", "-p", part, *options, sys.executable, *program],
                        timeout=600, check=False, extra_env=env,
                    )  # fmt: skip
                    value = figure(job.stdout, key)
                    if value is None:
                        print(f"{key} job on {part} failed: {job.stderr.strip()[-300:]}")
                        return 1
                    series[key][part].append(value)
    finally:
        Path(script.name).unlink(missing_ok=True)
        Path(kernel.name).unlink(missing_ok=True)
    print(f"{'figure':<28} {'bare med':>10} {'vm med':>10} {'vm/bare':>8}  95% interval")
    names = {"busbw": f"busbw GB/s ({args.size})", "seconds": "CPU kernel s"}
    for key, sides in series.items():
        point, low, high = ratio_interval(sides["vm"], sides["bare"])
        print(f"{names[key]:<28} {statistics.median(sides['bare']):>10.4f} "
              f"{statistics.median(sides['vm']):>10.4f} {point:>8.3f}  [{low:.3f}, {high:.3f}]")  # fmt: skip
    print(f"# {args.rounds} jobs per side, alternating; noisy shared machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
