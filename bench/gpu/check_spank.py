#!/usr/bin/env python3
"""GPU check for the SPANK plugin's core: the real GPU's variables from the C core.

Run from the repo root:  PYTHONPATH=. python3 bench/gpu/check_spank.py
Probes the live node (NVML + sysfs), writes the task plan file the Prolog would
write for a job holding every GPU, builds the core's harness
(slurm_ai/topology/native/sai_bind_harness.c, needs a C compiler, no Slurm) and
prints, for 1 rank and for one rank per GPU, what the plugin would apply (CPUs,
memory node, CUDA_VISIBLE_DEVICES, NIC variables, OMP_NUM_THREADS) next to
compute_plan()'s answer, with MATCH or DIFFER; then the core's time per task.
Then, with torch, checks that CUDA in a process with the rank's
CUDA_VISIBLE_DEVICES sees the expected device first (its UUID). Every step is
guarded: an error is printed, never raised; the whole script stays under 60 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    from slurm_ai.sysfs import format_cpu_list
    from slurm_ai.topology import planfile, spank
    from slurm_ai.topology.plan import JobAllocation, compute_plan, gpu_units
    from slurm_ai.topology.probe import probe_node
    from slurm_ai.topology.settings import TopologySettings

    topo = probe_node("/", nvml_timeout=10.0).topology
    units = gpu_units(topo)
    gpus = [u.index for u in units]
    print(f"GPU units: {[(u.index, u.gpu.model, u.uuid) for u in units]}")
    with tempfile.TemporaryDirectory() as tmp:
        harness = spank.build_harness(Path(tmp))
        plan = Path(tmp) / planfile.PLAN_NAME
        plan.write_text(planfile.render(topo, gpus, TopologySettings(visible_devices="index")))
        print(plan.read_text())
        allowed = format_cpu_list(topo.cpu.online)
        env = [f"SLURM_STEP_GPUS={','.join(map(str, gpus))}"] if gpus else []
        visible = {}
        for ntasks in sorted({1, max(1, len(gpus))}):
            want = compute_plan(topo, JobAllocation(cpus=topo.cpu.online, gpus=gpus, ntasks=ntasks))
            for rank in range(ntasks):
                out = subprocess.run(
                    [str(harness), plan.name, str(ntasks), str(rank), allowed, *env],
                    cwd=tmp, capture_output=True, text=True, timeout=10, check=False,
                ).stdout  # fmt: skip
                got = {k: v for k, _, v in (line.partition(" ") for line in out.splitlines())}
                envs = dict(
                    line[4:].split("=", 1) for line in out.splitlines() if line.startswith("env ")
                )
                r = want.ranks[rank]
                same = got.get("cpus") == format_cpu_list(r.cpus) and envs == r.env
                print(f"ntasks={ntasks} rank={rank}: {'MATCH' if same else 'DIFFER'}\n{out}")
                if ntasks == len(gpus):
                    visible[rank] = envs.get("CUDA_VISIBLE_DEVICES", "")
        timing = subprocess.run(
            [str(harness), "--repeat", "2000", str(plan), "1", "0", allowed, *env],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout  # fmt: skip
        print(next((ln for ln in timing.splitlines() if ln.startswith("us_per_task")), timing))
    for rank, value in visible.items():
        try:
            code = "import torch; print(torch.cuda.get_device_properties(0).uuid)"
            uuid = subprocess.run(
                [sys.executable, "-c", code], env={**os.environ, "CUDA_VISIBLE_DEVICES": value},
                capture_output=True, text=True, timeout=60, check=False,
            ).stdout.strip()  # fmt: skip
            expected = units[rank].uuid or ""
            ok = bool(uuid) and expected.endswith(uuid.replace("GPU-", ""))
            print(f"rank {rank}: CUDA_VISIBLE_DEVICES={value} -> device 0 uuid {uuid}: "
                  f"{'MATCH' if ok else 'DIFFER'} (expected {expected})")  # fmt: skip
        except Exception:
            traceback.print_exc(file=sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc(file=sys.stdout)
