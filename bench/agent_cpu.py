"""Agent cost: CPU per tick with 8 recorded GPUs and 50 job processes; Epilog summary time.

    python bench/agent_cpu.py [--ticks 300] [--hours 24]

1. Tick cost. 50 real processes (sleeping, with SLURM_JOB_ID set, 5 jobs of
   10) plus 8 GPUs from tests/data/nvml/agent_8gpu_xid.json. Runs ticks back
   to back and reports CPU per tick, which at a 1 s interval is the share of
   one core (target < 1%). Baseline in the same run: the floor any sampler
   pays, reading /proc/<pid>/stat of the same 50 processes once per tick.
   Recorded NVML costs no driver time: bench/gpu/check_agent.py measures the
   live NVML part on a real GPU.
2. Epilog time. A store holding `--hours` of 1 s ticks with 8 GPUs and a job
   on them (built with bulk inserts), then `summarise()` for that job over the
   whole window. Baseline: the same summary over the job's last minute (the
   fixed cost), and a full scan of the GPU table (what an unindexed reader pays).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slurm_ai.agent.daemon import Agent  # noqa: E402
from slurm_ai.agent.samples import GpuSample, JobSample, Tick  # noqa: E402
from slurm_ai.agent.store import SampleStore  # noqa: E402
from slurm_ai.agent.summary import summarise  # noqa: E402
from slurm_ai.nvml import open_nvml  # noqa: E402
from slurm_ai.sysfs import Sysfs  # noqa: E402

TRACE = REPO / "tests" / "data" / "nvml" / "agent_8gpu_xid.json"
NODE = "benchnode"


def tick_cost(ticks: int) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"],
            env=dict(os.environ, SLURM_JOB_ID=str(900 + i % 5), SLURMD_NODENAME=NODE),
        )
        for i in range(50)
    ]
    try:
        time.sleep(1.0)
        with tempfile.TemporaryDirectory() as tmp:
            store = SampleStore(Path(tmp) / NODE)
            agent = Agent(
                node=NODE, store=store, interval_s=1.0, nv=open_nvml(TRACE), sysfs=Sysfs("/")
            )
            agent.tick()  # the first tick classifies every process on the machine
            c0 = time.process_time()
            for _ in range(ticks):
                tick = agent.tick()
            per_tick = (time.process_time() - c0) / ticks
            assert sum(j.nproc for j in tick.jobs) == 50, tick.jobs
            assert len(tick.gpus) == 8
            agent.close()
        c0 = time.process_time()
        for _ in range(ticks):
            for proc in procs:
                with open(f"/proc/{proc.pid}/stat", "rb") as handle:
                    handle.read()
        floor = (time.process_time() - c0) / ticks
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    print(f"tick: {per_tick * 1000:.2f} ms CPU per tick (8 GPUs, 50 job processes, 5 jobs)")
    print(f"  at a 1 s interval: {per_tick * 100:.2f}% of one core (target < 1%)")
    print(
        f"  baseline (read 50 /proc/PID/stat): {floor * 1000:.3f} ms; ratio {per_tick / floor:.1f}x"
    )


def epilog_cost(hours: float) -> None:
    n = int(hours * 3600)
    start = 1.7e9
    with tempfile.TemporaryDirectory() as tmp:
        store = SampleStore(Path(tmp) / NODE, max_bytes=4 * 2**30)
        t0 = time.perf_counter()
        db = store.db
        db.execute("BEGIN")
        db.executemany("INSERT INTO tick VALUES (?, 1.0)", ((start + i,) for i in range(n)))
        db.executemany(
            "INSERT INTO gpu VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                (g, start + i, 50.0, 20.0, 1 << 30, 300.0 + g, 1400.0, 4, i * 300_000,
                 None, None, None, None, None, None)
                for i in range(n) for g in range(8)
            ),
        )  # fmt: skip
        db.executemany(
            "INSERT INTO job VALUES ('4242', ?, 1000, 7.5, ?, 8, 16)",
            ((start + i, (1 << 30) + i) for i in range(n)),
        )
        db.execute("COMMIT")
        build = time.perf_counter() - t0
        size = store.path.stat().st_size
        # Another job's minute and rows outside the window must not be read.
        store.write_tick(
            Tick(t=start + n + 10, interval_s=1.0, gpus=[GpuSample(index=0)],
                 jobs=[JobSample(job="1", uid=0)]),
            [],
        )  # fmt: skip
        gpus = list(range(8))

        def timed(lo: float, hi: float, repeat: int = 3) -> float:
            best = float("inf")
            for _ in range(repeat):
                t = time.perf_counter()
                summarise(store, job="4242", gpus=gpus, start=lo, end=hi, uid=1000, ncpus=16)
                best = min(best, time.perf_counter() - t)
            return best

        full = timed(start, start + n)
        minute = timed(start + n - 60, start + n)
        t = time.perf_counter()
        store.query("SELECT AVG(power_w) FROM gpu NOT INDEXED")
        scan = time.perf_counter() - t
        usage = summarise(store, job="4242", gpus=gpus, start=start, end=start + n, uid=1000)
        store.close()
    print(
        f"epilog: summary of a {hours:g} h job (8 GPUs, 1 s ticks, {n * 10:,} rows, "
        f"{size / 2**20:.0f} MiB store, built in {build:.0f} s): {full * 1000:.0f} ms"
    )
    print(
        f"  baseline, same summary over the last minute: {minute * 1000:.1f} ms "
        f"(ratio {full / minute:.0f}x)"
    )
    print(
        f"  baseline, one full-table aggregate over gpu: {scan * 1000:.0f} ms "
        f"(summary / scan = {full / scan:.2f})"
    )
    print(
        f"  check: coverage {usage['coverage']}, energy by power "
        f"{usage['gpu']['energy_power_j'] / 3.6e6:.2f} kWh vs counter "
        f"{usage['gpu']['energy_counter_j'] / 3.6e6:.2f} kWh"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--hours", type=float, default=24.0)
    args = parser.parse_args()
    tick_cost(args.ticks)
    epilog_cost(args.hours)


if __name__ == "__main__":
    main()
