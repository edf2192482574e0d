"""GPU verification of the health check, for a lent H100/H200 machine (< 90 s).

    PYTHONPATH=. python3 bench/gpu/check_health.py

1. NVML health checks on the real GPU(s), with the raw values they read.
2. NCCL all-reduce (torch.distributed, CUDA events) on all local GPUs, sizes
   64 KiB .. 1 GiB; with one GPU busbw is 0 by definition, so algbw is the
   figure (a device-local copy through NCCL).
3. The product path: `python -m slurm_ai healthcheck --json` (backend auto,
   default 10 s budget) and its verdict and wall time.
4. mpi4py: is the MPI CUDA-aware; a 2-rank host-buffer run if mpirun exists.
Every step is bounded by a timeout and prints its error instead of hanging.
"""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))
faulthandler.dump_traceback_later(88, exit=True)  # the whole script never passes 90 s

from slurm_ai.health.gpu import GpuCheckOptions, read_kmsg, run_gpu_checks  # noqa: E402
from slurm_ai.health.launcher import launch_local  # noqa: E402
from slurm_ai.health.measure import SweepSpec, format_table, size_sweep  # noqa: E402
from slurm_ai.health.settings import DEFAULT_XID_FATAL, DEFAULT_XID_IGNORE  # noqa: E402
from slurm_ai.nvml import open_nvml, text  # noqa: E402

T0 = time.monotonic()


def step(title: str) -> None:
    print(f"\n=== {title} (t={time.monotonic() - T0:.1f} s)", flush=True)


def nvml_part() -> int:
    step("1. NVML health checks on the real GPU")
    nv = open_nvml(timeout=5)
    count = nv.device_count()
    print(f"driver {text(nv.nvmlSystemGetDriverVersion())}, {count} GPU(s)")
    raw = [
        ("nvmlDeviceGetTotalEccErrors", (1, 0)),
        ("nvmlDeviceGetTotalEccErrors", (1, 1)),
        ("nvmlDeviceGetRetiredPages", (1,)),
        ("nvmlDeviceGetRetiredPagesPendingStatus", ()),
        ("nvmlDeviceGetRemappedRows", ()),
        ("nvmlDeviceGetCurrentClocksEventReasons", ()),
        ("nvmlDeviceGetCurrPcieLinkGeneration", ()),
        ("nvmlDeviceGetMaxPcieLinkGeneration", ()),
        ("nvmlDeviceGetCurrPcieLinkWidth", ()),
        ("nvmlDeviceGetMaxPcieLinkWidth", ()),
        ("nvmlDeviceGetNvLinkState", (0,)),
        ("nvmlDeviceGetNvLinkErrorCounter", (0, 1)),
    ]
    for index in range(count):
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        print(
            f"gpu{index}: {text(nv.nvmlDeviceGetName(handle))} "
            f"bus {text(nv.nvmlDeviceGetPciInfo(handle).busId)}"
        )
        for function, args in raw:
            try:
                value = nv.call(function, handle, *args)
                if isinstance(value, (list, tuple)):
                    value = list(value)[:8]
            except Exception as exc:
                value = f"<{type(exc).__name__}: {exc}>"
            print(f"    {function}{args}: {value}")
    try:
        kernel_log: list[str] | None = read_kmsg("/dev/kmsg")
        print(f"kernel log: {len(kernel_log)} records readable")
    except OSError as exc:
        kernel_log = None
        print(f"kernel log unreadable here ({exc.strerror}): XID check skipped")
    options = GpuCheckOptions(
        expected_gpus=count, xid_fatal=DEFAULT_XID_FATAL, xid_ignore=DEFAULT_XID_IGNORE
    )
    for check in run_gpu_checks(nv, options, kernel_log=kernel_log):
        print(f"  {check.verdict.value:>7}  {check.check}: {check.reason}")
    nv.close()
    return count


def nccl_part(gpus: int) -> None:
    step(f"2. NCCL all-reduce, torch.distributed, CUDA events, {gpus} rank(s)")
    sizes = size_sweep(64 * 1024, 1024**3, 4, "float32")
    spec = SweepSpec(sizes=sizes, warmup=5, iters=20, backend="nccl")
    start = time.monotonic()
    result = launch_local(spec, max(1, gpus), timeout=45)
    print(format_table(result))
    largest = result.largest
    assert largest is not None
    print(
        f"wall {time.monotonic() - start:.1f} s; at {largest.size_bytes} B: "
        f"algbw {largest.algbw_gbps:.1f} GB/s, busbw {largest.busbw_gbps:.1f} GB/s "
        f"({'0 by definition with one rank' if result.ranks == 1 else f'{result.ranks} ranks'}), "
        f"#wrong {result.wrong}"
    )


def cli_part() -> None:
    step("3. python -m slurm_ai healthcheck --json (auto backend, default budget)")
    env = dict(os.environ, PYTHONPATH=str(REPO), SLURM_AI_CONFIG="/dev/null")
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "slurm_ai", "healthcheck", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=REPO,
    )
    wall = time.monotonic() - start
    try:
        data = json.loads(out.stdout)
        print(
            f"exit {out.returncode}, wall {wall:.1f} s, verdict {data['verdict']}, backend "
            f"{data['backend']}, ranks {data['ranks']}, size {data['size_bytes']}, algbw "
            f"{data['algbw_gbps']} GB/s, busbw {data['busbw_gbps']} GB/s, duration_s "
            f"{data['duration_s']}, reason: {data['reason']}"
        )
        for check in data["checks"]:
            print(f"  {check['verdict']:>7}  {check['check']}: {check['reason']}")
    except (ValueError, KeyError):
        print(
            f"exit {out.returncode}, wall {wall:.1f} s\nstdout: {out.stdout[-1500:]}\n"
            f"stderr: {out.stderr[-1500:]}"
        )


def mpi_part() -> None:
    step("4. mpi4py")
    code = "from slurm_ai.health.backends.mpi_backend import cuda_aware; print(cuda_aware())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=20,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    print(f"MPI CUDA-aware: {out.stdout.strip() or out.stderr.strip()[-300:]}")
    if shutil.which("mpirun") is None:
        print("no mpirun here: mpi4py node-scope run skipped")
        return
    spec = SweepSpec(
        sizes=size_sweep(64 * 1024, 64 * 1024**2, 4, "float32"), iters=5, backend="mpi"
    )
    print(format_table(launch_local(spec, 2, timeout=20)))


def main() -> int:
    gpus = 0
    for part in (nvml_part, nccl_part, cli_part, mpi_part):
        try:
            if part is nvml_part:
                gpus = nvml_part()
            elif part is nccl_part:
                nccl_part(gpus)
            else:
                part()
        except Exception:
            print(f"ERROR in {part.__name__}:\n{traceback.format_exc()[-2000:]}")
    print(f"\ntotal {time.monotonic() - T0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
