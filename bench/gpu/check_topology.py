#!/usr/bin/env python3
"""GPU check for the topology area: probe the real GPU(s) on a lent machine.

Run from the repo root:  PYTHONPATH=. python3 bench/gpu/check_topology.py
Prints, per GPU: index, model, UUID, PCI bus id, NUMA node (sysfs and NVML),
PCI path, NVML virtualization mode, MIG mode; then the platform class with its
evidence, the plan for a 1-task job using all GPUs, and `capture` replayed
through `probe --root` (must match the live probe). Every step is guarded: an
error is printed, never raised; the whole script stays well under 60 s.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def step(name: str):  # type: ignore[no-untyped-def]
    def wrap(fn):  # type: ignore[no-untyped-def]
        def run():  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            print(f"--- {name}")
            try:
                fn()
            except Exception:
                print(f"ERROR in {name}:")
                traceback.print_exc(file=sys.stdout)
            print(f"    ({time.perf_counter() - started:.2f} s)")

        return run

    return wrap


@step("live probe (NVML + sysfs)")
def live_probe() -> None:
    from slurm_ai.topology.probe import probe_node
    from slurm_ai.topology.virt import platform_record

    result = probe_node("/", nvml_timeout=10.0)
    topo = result.topology
    print(f"driver {topo.driver}; NVML source {topo.nvml_source}; GPUs {len(topo.gpus)}")
    for gpu in topo.gpus:
        print(
            f"GPU {gpu.index}: {gpu.model} uuid={gpu.uuid} pci={gpu.bus_id} numa={gpu.numa} "
            f"virt_mode={gpu.virt_mode} mig={gpu.mig_enabled} nvlinks={gpu.nvlinks} "
            f"mem={gpu.memory_bytes}"
        )
        print(f"    pci path: {' > '.join(gpu.pci_path) or '(none)'}")
        print(f"    local cpus: {gpu.local_cpus[:8]}{'...' if len(gpu.local_cpus) > 8 else ''}")
    for nic in topo.nics:
        print(f"NIC {nic.name}: {nic.kind} pci={nic.bus_id} numa={nic.numa} vf={nic.sriov_vf}")
    for warning in topo.warnings:
        print(f"warning: {warning}")
    platform = platform_record(result.fingerprint)
    print(f"platform class: {platform['class']}  ({platform['summary']})")
    print("evidence:\n  " + "\n  ".join(platform["evidence"]))


@step("raw NVML numa/virtualization calls (cross-check)")
def raw_nvml() -> None:
    from slurm_ai.errors import ProbeError
    from slurm_ai.nvml import open_nvml

    with open_nvml(timeout=10.0) as nv:
        for index, handle in enumerate(nv.handles()):
            for fn in (
                "nvmlDeviceGetPciInfo",
                "nvmlDeviceGetVirtualizationMode",
                "nvmlDeviceGetNumaNodeId",
                "nvmlDeviceGetMigMode",
            ):
                try:
                    value = nv.call(fn, handle)
                    value = getattr(value, "busId", value)
                except ProbeError as exc:
                    value = f"error: {exc}"
                print(f"GPU {index} {fn}: {value}")


@step("plan for 1 task over all GPUs")
def plan() -> None:
    from slurm_ai.topology.settings import TopologySettings
    from slurm_ai.topology.task import plan_for_task

    env = dict(os.environ)
    env.setdefault("SLURM_JOB_ID", "1")
    env.setdefault("SLURM_LOCALID", "0")
    env.setdefault("SLURM_STEP_TASKS_PER_NODE", "1")
    if "SLURM_JOB_GPUS" not in env:
        from slurm_ai.topology.probe import probe_node

        count = len(probe_node("/", with_fingerprint=False).topology.gpus)
        env["SLURM_JOB_GPUS"] = ",".join(str(i) for i in range(count))
    task = plan_for_task(env, TopologySettings(nvml_timeout_s=10.0))
    print(json.dumps(task.plan.to_dict(), indent=1)[:3000])


@step("capture and replay")
def capture_replay() -> None:
    from slurm_ai.topology.capture import capture
    from slurm_ai.topology.probe import probe_node

    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "cap"
        summary = capture(dest, note="bench/gpu/check_topology.py")
        print(f"captured: {summary}")
        live = probe_node("/").topology.to_dict()
        replay = probe_node(dest).topology.to_dict()
        live.pop("nvml_source", None)
        replay.pop("nvml_source", None)
        print("replay matches live probe:", live == replay)
        if live != replay:
            for key in live:
                if live[key] != replay.get(key):
                    print(f"  differs: {key}")


if __name__ == "__main__":
    live_probe()
    raw_nvml()
    plan()
    capture_replay()
