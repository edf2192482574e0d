"""GPU check for the node agent: real NVML under a short torch matmul load.

Run from the repo root on a GPU machine (about 30 s):

    PYTHONPATH=. python3 bench/gpu/check_agent.py [--seconds 12] [--dump trace.json]

It starts a "job" (a child process with SLURM_JOB_ID / SLURMD_NODENAME set,
running torch matmuls on GPU 0), samples with the real agent (live NVML,
interval 0.5 s) into a temporary store, then prints:
- which NVML queries the GPU answered (and which it did not);
- per-tick cost of the agent (CPU ms per tick, NVML calls included);
- the job's usage summary (utilisation, power, energy by power integration
  beside the NVML counter delta, throttle reasons, CPU efficiency, RSS)
  and the rendered bars.
--dump writes the sampled values as an NVML recording (tests/data/nvml format).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

LOAD = r"""
import sys, time, torch
seconds = float(sys.argv[1])
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
end = time.time() + seconds
n = 0
while time.time() < end:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize()
    n += 20
print(f"load: {n} matmuls 8192^3 fp16 in {seconds:.0f} s", flush=True)
"""


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def probe_queries(nv: Any, handle: Any) -> dict[str, Any]:
    from slurm_ai.agent import gpu as g

    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("nvmlDeviceGetName", ()),
        ("nvmlDeviceGetUUID", ()),
        ("nvmlDeviceGetUtilizationRates", ()),
        ("nvmlDeviceGetMemoryInfo", ()),
        ("nvmlDeviceGetPowerUsage", ()),
        ("nvmlDeviceGetClockInfo", (g.NVML_CLOCK_SM,)),
        ("nvmlDeviceGetCurrentClocksEventReasons", ()),
        ("nvmlDeviceGetCurrentClocksThrottleReasons", ()),
        ("nvmlDeviceGetTotalEnergyConsumption", ()),
        ("nvmlDeviceGetTotalEccErrors", (0, 0)),
        ("nvmlDeviceGetTotalEccErrors", (1, 0)),
        ("nvmlDeviceGetFieldValues", (g.FIELD_IDS,)),
        ("nvmlDeviceGetSupportedEventTypes", ()),
        ("nvmlDeviceGetPcieThroughput", (0,)),
    ]
    from slurm_ai.nvml import to_jsonable

    out: dict[str, Any] = {}
    for name, args in calls:
        key = name if not args else f"{name}({','.join(map(str, args))})"
        try:
            t0 = time.perf_counter()
            value = getattr(nv, name)(handle, *args)
            ms = (time.perf_counter() - t0) * 1000
            out[key] = to_jsonable(value)
            print(f"  {key:58} {json.dumps(out[key])[:110]}  ({ms:.2f} ms)")
        except Exception as exc:
            out[key] = {"error": getattr(exc, "code_name", type(exc).__name__)}
            print(f"  {key:58} ERROR {exc}")
    return out


def profile_tick(agent: Any, nv: Any) -> None:
    """CPU per phase (GPU sampling, process scan, store write) and per NVML call."""
    per_call: dict[str, float] = {}
    real_call = nv.call

    def timed(function: str, *args: Any) -> Any:
        c0 = time.process_time()
        try:
            return real_call(function, *args)
        finally:
            per_call[function] = per_call.get(function, 0.0) + time.process_time() - c0

    nv.call = timed
    phases = {"gpu": 0.0, "procs": 0.0, "store": 0.0}
    n = 20
    for _ in range(n):
        c0 = time.process_time()
        gpus = agent.gpus.sample(time.time(), slow=False) if agent.gpus else []
        c1 = time.process_time()
        jobs = agent.procs.scan()
        c2 = time.process_time()
        from slurm_ai.agent.samples import Tick

        agent.store.write_tick(
            Tick(t=time.time(), interval_s=0.5, gpus=gpus, jobs=jobs), agent.procs.state()
        )
        c3 = time.process_time()
        phases["gpu"] += c1 - c0
        phases["procs"] += c2 - c1
        phases["store"] += c3 - c2
        time.sleep(0.05)
    nv.call = real_call
    print("  " + ", ".join(f"{k} {v / n * 1000:.2f}" for k, v in phases.items()))
    for name, cpu in sorted(per_call.items(), key=lambda x: -x[1]):
        print(f"    {name:48} {cpu / n * 1000:.3f} ms")
    # The same query straight through pynvml (no gateway thread), as a floor.
    try:
        import pynvml

        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        c0 = time.process_time()
        for _ in range(n):
            pynvml.nvmlDeviceGetPowerUsage(handle)
        direct = (time.process_time() - c0) / n * 1000
        c0 = time.process_time()
        for _ in range(n):
            nv.nvmlDeviceGetPowerUsage(nv.nvmlDeviceGetHandleByIndex(0))
        gated = (time.process_time() - c0) / n * 1000 / 2
        print(f"  nvmlDeviceGetPowerUsage: direct {direct:.3f} ms, via gateway {gated:.3f} ms/call")
        c0 = time.process_time()
        for _ in range(n):
            os.listdir("/proc")
        print(
            f"  os.listdir('/proc'): {(time.process_time() - c0) / n * 1000:.3f} ms "
            f"({len(os.listdir('/proc'))} entries)"
        )
    except Exception:
        traceback.print_exc()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--dump", help="write an NVML recording of the sampled values here")
    args = parser.parse_args()

    from slurm_ai.agent.daemon import Agent
    from slurm_ai.agent.render import render_usage
    from slurm_ai.agent.store import SampleStore
    from slurm_ai.agent.summary import summarise
    from slurm_ai.nvml import open_nvml

    section("NVML")
    try:
        nv = open_nvml(timeout=5.0)
        print(f"  driver {nv.nvmlSystemGetDriverVersion()}, {nv.device_count()} GPU(s)")
        handle = nv.nvmlDeviceGetHandleByIndex(0)
        static = probe_queries(nv, handle)
    except Exception:
        traceback.print_exc()
        return 1

    node = socket.gethostname().split(".")[0]
    job_id = "990001"
    store_dir = tempfile.mkdtemp(prefix="sai-agent-check-")
    store = SampleStore(store_dir)
    agent = Agent(node=node, store=store, interval_s=0.5, nv=nv)
    section("agent")
    print(
        f"  GPUs sampled: {len(agent.gpus.handles) if agent.gpus else 0}; "
        f"NVML events: {agent.gpus.events_available if agent.gpus else False}"
        f" ({agent.gpus._event_error if agent.gpus else ''})"
    )

    env = dict(os.environ, SLURM_JOB_ID=job_id, SLURMD_NODENAME=node, CUDA_VISIBLE_DEVICES="0")
    start = time.time()
    child = subprocess.Popen(
        [sys.executable, "-c", LOAD, str(args.seconds)], env=env, stdout=subprocess.PIPE, text=True
    )
    tick_cpu: list[float] = []
    trace: list[dict[str, Any]] = []
    deadline = time.time() + args.seconds + 40  # torch import + CUDA init + load
    try:
        while child.poll() is None and time.time() < deadline:
            c0 = time.process_time()
            tick = agent.tick()
            tick_cpu.append((time.process_time() - c0) * 1000)
            if tick.gpus:
                trace.append(vars(tick.gpus[0]) | {"t": tick.t})
            time.sleep(0.5)
        if child.poll() is None:
            child.kill()
            print("  load did not finish in time: killed")
        out = child.communicate(timeout=10)[0]
        print("  " + out.strip())
    except Exception:
        traceback.print_exc()
        child.kill()
    end = time.time()
    agent.tick()

    section("where a tick's CPU goes (20 extra ticks, CPU ms per tick)")
    try:
        profile_tick(agent, nv)
    except Exception:
        traceback.print_exc()

    section("per-tick agent cost (live NVML, 1 GPU)")
    if tick_cpu:
        tick_cpu.sort()
        print(
            f"  {len(tick_cpu)} ticks: median {tick_cpu[len(tick_cpu) // 2]:.2f} ms CPU, "
            f"max {tick_cpu[-1]:.2f} ms; at 1 s interval = "
            f"{tick_cpu[len(tick_cpu) // 2] / 10:.3f}% of one core"
        )
    ticks = max(1, len(tick_cpu))
    phases = getattr(agent, "phase_cpu_s", {})
    if phases:
        print("  per part (CPU ms per tick): " + ", ".join(
            f"{name} {seconds * 1000 / ticks:.2f}" for name, seconds in phases.items()
        ))  # fmt: skip

    section("samples (GPU 0): t, util%, mem_util%, mem GiB, W, SM MHz, throttle, energy J")
    for row in trace[:: max(1, len(trace) // 12)]:
        print(
            f"  {row['t'] - start:6.1f} {row['util']} {row['mem_util']} "
            f"{(row['mem_used'] or 0) / 2**30:.1f} {row['power_w']} {row['sm_clock_mhz']} "
            f"{row['throttle']} {(row['energy_mj'] or 0) / 1000:.1f} "
            f"pcie {row['pcie_tx_bps']}/{row['pcie_rx_bps']} nvl {row['nvlink_tx_bps']}"
        )

    section("job usage summary")
    with SampleStore(store_dir, readonly=True) as reader:
        usage = summarise(reader, job=job_id, gpus=[0], start=start, end=end, node=node)
    print(json.dumps(usage, indent=1)[:4000])
    print(render_usage(usage))

    if args.dump and trace:
        device = dict(static)
        device["nvmlDeviceGetUtilizationRates"] = {
            "seq": [{"gpu": r["util"], "memory": r["mem_util"]} for r in trace]
        }
        device["nvmlDeviceGetPowerUsage"] = {
            "seq": [int((r["power_w"] or 0) * 1000) for r in trace]
        }
        device["nvmlDeviceGetTotalEnergyConsumption"] = {"seq": [r["energy_mj"] for r in trace]}
        total = (static.get("nvmlDeviceGetMemoryInfo") or {}).get("total")
        device["nvmlDeviceGetMemoryInfo"] = {
            "seq": [{"total": total, "used": r["mem_used"]} for r in trace]
        }
        device["nvmlDeviceGetClockInfo(1)"] = {"seq": [r["sm_clock_mhz"] for r in trace]}
        if trace[0]["throttle"] is not None:
            device["nvmlDeviceGetCurrentClocksEventReasons"] = {
                "seq": [r["throttle"] for r in trace]
            }
        with open(args.dump, "w") as handle_out:
            json.dump(
                {
                    "source": f"bench/gpu/check_agent.py on {node}, live NVML, 0.5 s ticks",
                    "driver": str(nv.nvmlSystemGetDriverVersion()),
                    "devices": [device],
                },
                handle_out,
                indent=1,
            )
        print(f"\nwrote {args.dump}")
    agent.close()
    nv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
