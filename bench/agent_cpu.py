"""Agent cost: CPU per tick with 8 recorded GPUs and 50 job processes; Epilog summary time.

    python bench/agent_cpu.py [--ticks 300] [--hours 24]

1. Tick cost. 50 real processes (sleeping, with SLURM_JOB_ID set, 5 jobs of
   10) plus 8 GPUs from tests/data/nvml/agent_8gpu_xid.json. Runs ticks back
   to back and reports CPU per tick, which at a 1 s interval is the share of
   one core (target < 1%), and per part (the agent's own phase counters).
   Baseline in the same run: the floor any sampler pays, reading
   /proc/<pid>/stat of the same 50 processes once per tick. Recorded NVML
   costs no driver time: bench/gpu/check_agent.py measures the live NVML part
   on a real GPU. RAPL: the cost of one read of every counter of the captured
   2-socket Xeon tree (tests/data/rapl), which the agent does each tick.
2. Epilog time. A store holding `--hours` of 1 s ticks with 8 GPUs and a job
   on them (built with bulk inserts, then rolled up as the agent does minute
   by minute), then `summarise()` for that job over the whole window, from
   the per-minute rollups. Baselines in the same run: the same summary from
   the raw rows only (`rollups=False`, the reference the results are compared
   with; slower than the pre-rollup code, whose queries were simpler: run
   git HEAD~ of this file for that), the same summary over the job's last
   minute (the fixed cost), and one full scan of the GPU table.
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

from slurm_ai.agent.daemon import PHASES, Agent  # noqa: E402
from slurm_ai.agent.samples import GpuSample, JobSample, Tick  # noqa: E402
from slurm_ai.agent.store import SampleStore  # noqa: E402
from slurm_ai.agent.summary import summarise  # noqa: E402
from slurm_ai.energy.rapl import RaplReader  # noqa: E402
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
            agent.phase_cpu_s = dict.fromkeys(PHASES, 0.0)
            c0 = time.process_time()
            for _ in range(ticks):
                tick = agent.tick()
            per_tick = (time.process_time() - c0) / ticks
            phases = {name: spent / ticks for name, spent in agent.phase_cpu_s.items()}
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
    print("  per part (ms): " + ", ".join(f"{k} {v * 1000:.3f}" for k, v in phases.items()))
    print(
        f"  baseline (read 50 /proc/PID/stat): {floor * 1000:.3f} ms; ratio {per_tick / floor:.1f}x"
    )
    reader = RaplReader(Sysfs(REPO / "tests" / "data" / "rapl" / "intel-xeon-2s"))
    c0 = time.process_time()
    for _ in range(ticks):
        reader.read()
    rapl = (time.process_time() - c0) / ticks
    print(
        f"  RAPL read of {len(reader.domains)} counters (captured Xeon tree): {rapl * 1e6:.1f} us"
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
        db.executemany(
            "INSERT INTO rapl VALUES ('package-0', ?, ?)",
            ((start + i, (i * 200_000_000) % 65_532_610_987) for i in range(n)),
        )
        db.execute("COMMIT")
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.roll_up_to(start + n)  # what the agent does as each minute completes
        rolled = time.perf_counter() - t0
        size = store.path.stat().st_size
        # Another job's minute and rows outside the window must not be read.
        store.write_tick(
            Tick(t=start + n + 10, interval_s=1.0, gpus=[GpuSample(index=0)],
                 jobs=[JobSample(job="1", uid=0)]),
            [],
        )  # fmt: skip
        gpus = list(range(8))

        def timed(lo: float, hi: float, repeat: int = 3, rollups: bool = True) -> float:
            best = float("inf")
            for _ in range(repeat):
                t = time.perf_counter()
                summarise(store, job="4242", gpus=gpus, start=lo, end=hi, uid=1000, ncpus=16,
                          rollups=rollups)  # fmt: skip
                best = min(best, time.perf_counter() - t)
            return best

        # Windows as an Epilog sees them: not on minute boundaries.
        lo, hi = start + 0.5, start + n - 0.5
        full = timed(lo, hi)
        raw = timed(lo, hi, rollups=False)
        same = summarise(store, job="4242", gpus=gpus, start=lo, end=hi, uid=1000) == summarise(
            store, job="4242", gpus=gpus, start=lo, end=hi, uid=1000, rollups=False
        )
        t = time.perf_counter()
        chain = store.rapl_chain("package-0", lo, hi)
        rapl_s = time.perf_counter() - t
        t = time.perf_counter()
        store.rapl_chain("package-0", lo, hi, rollups=False)
        rapl_raw_s = time.perf_counter() - t
        minute = timed(start + n - 60, start + n)
        t = time.perf_counter()
        store.query("SELECT AVG(power_w) FROM gpu NOT INDEXED")
        scan = time.perf_counter() - t
        usage = summarise(store, job="4242", gpus=gpus, start=start, end=start + n, uid=1000)
        store.close()
    print(
        f"epilog: summary of a {hours:g} h job (8 GPUs, 1 s ticks, {n * 10:,} rows, "
        f"{size / 2**20:.0f} MiB store, built in {build:.0f} s, rolled up in {rolled:.1f} s): "
        f"{full * 1000:.1f} ms from rollups"
    )
    print(
        f"  reference, raw rows only (rollups=False): {raw * 1000:.0f} ms "
        f"(ratio {raw / full:.0f}x); identical result: {same}"
    )
    assert chain is not None
    print(
        f"  RAPL wrap chain for the energy step: {rapl_s * 1000:.1f} ms from rollups, "
        f"{rapl_raw_s * 1000:.1f} ms raw ({chain['n']:,} readings, {chain['wraps']} wraps)"
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
