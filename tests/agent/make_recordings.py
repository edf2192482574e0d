"""Regenerate tests/data/nvml/agent_*.json (run from the repo root).

    python tests/agent/make_recordings.py /work/.device/1/agent_trace.json

- agent_h200_load.json: the real trace that bench/gpu/check_agent.py dumped on
  a lent H200 (10 s fp16 matmul load, 0.5 s ticks), kept as measured.
- agent_8gpu_xid.json: 8 GPUs built from that real trace (same utilisation,
  power, clock and energy series, shifted per GPU so they differ), with
  events added by hand from the documentation: an XID 79 ("GPU has fallen off
  the bus", NVIDIA Xid catalogue) on GPU 3, and HW slowdown / SW thermal
  throttle bits (nvml.h nvmlClocksEventReason*) on GPU 5. The PCIe and NVLink
  counters are plain ramps. It feeds the throttle/XID tests and the CPU bench.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path("tests/data/nvml")


def main(trace_path: str) -> None:
    trace = json.loads(Path(trace_path).read_text())
    device = dict(trace["devices"][0])
    # The dump's struct arrays did not serialise; the agent sees "no counters" then.
    device.pop("nvmlDeviceGetFieldValues([197, 198, 138, 139])", None)
    real = {
        "source": (
            "REAL: NVIDIA H200 (150754820096 B), lent GPU VM, driver as printed by "
            "bench/gpu/check_agent.py; live NVML sampled every 0.5 s under a 10 s fp16 "
            "8192^3 matmul load (idle 80 W, 690 W loaded, SW power cap bit 0x4 while "
            "loaded). Written by tests/agent/make_recordings.py from that run's dump."
        ),
        "system": {"nvmlSystemGetDriverVersion": trace.get("driver", "unknown")},
        "devices": [device],
    }
    real["system"]["nvmlSystemGetDriverVersion"] = trace.get("driver", "unknown")
    (OUT / "agent_h200_load.json").write_text(json.dumps(real, indent=1) + "\n")

    util = device["nvmlDeviceGetUtilizationRates"]["seq"]
    power = device["nvmlDeviceGetPowerUsage"]["seq"]
    clock = device["nvmlDeviceGetClockInfo(1)"]["seq"]
    energy = device["nvmlDeviceGetTotalEnergyConsumption"]["seq"]
    reasons = device["nvmlDeviceGetCurrentClocksEventReasons"]["seq"]
    mem = device["nvmlDeviceGetMemoryInfo"]["seq"]
    n = len(util)
    devices = []
    for index in range(8):
        shift = index % 4
        dev = {
            "nvmlDeviceGetName": "NVIDIA H100 80GB HBM3",
            "nvmlDeviceGetUUID": f"GPU-00000000-0000-4000-8000-00000000000{index}",
            "nvmlDeviceGetUtilizationRates": {"seq": util[shift:] + util[:shift]},
            "nvmlDeviceGetMemoryInfo": {
                "seq": [{"total": 85520809984, "used": m["used"]} for m in mem]
            },
            "nvmlDeviceGetPowerUsage": {"seq": power[shift:] + power[:shift]},
            "nvmlDeviceGetClockInfo(1)": {"seq": clock},
            "nvmlDeviceGetCurrentClocksEventReasons": {"seq": list(reasons)},
            # The agent reads the energy counter every 12th tick: one value per read.
            "nvmlDeviceGetTotalEnergyConsumption": {
                "seq": [e + index * 10**6 for e in energy[::12]]
            },
            "nvmlDeviceGetTotalEccErrors(0,0)": 0,
            "nvmlDeviceGetTotalEccErrors(1,0)": 0,
            "nvmlDeviceGetSupportedEventTypes": 11,
            "nvmlDeviceRegisterEvents(11,evset)": None,
            "nvmlDeviceGetFieldValues([197, 198, 138, 139])": {
                "seq": [
                    [
                        {"fieldId": 197, "nvmlReturn": 0, "valueType": 3,
                         "value": {"ullVal": 3 * 10**9 * k}},
                        {"fieldId": 198, "nvmlReturn": 0, "valueType": 3,
                         "value": {"ullVal": 10**9 * k}},
                        {"fieldId": 138, "nvmlReturn": 0, "valueType": 3,
                         "value": {"ullVal": 50 * 2**20 * k}},
                        {"fieldId": 139, "nvmlReturn": 0, "valueType": 3,
                         "value": {"ullVal": 50 * 2**20 * k}},
                    ]
                    for k in range(n)
                ]
            },
        }  # fmt: skip
        if index == 5:
            # HW slowdown (0x8) with SW thermal (0x20) for the loaded half.
            dev["nvmlDeviceGetCurrentClocksEventReasons"] = {
                "seq": [0x8 | 0x20 if r == 4 else r for r in reasons]
            }
            # ECC counters are read every 12th tick (slow counters): 0, 0, then 3.
            dev["nvmlDeviceGetTotalEccErrors(0,0)"] = {"seq": [0, 0, 3]}
        devices.append(dev)
    waits: list[object] = [{"error": "Timeout"}] * 10
    waits += [{"eventType": 8, "eventData": 79, "device": {"index": 3}}, {"error": "Timeout"}]
    synthetic = {
        "source": (
            "CONSTRUCTED from the real H200 trace agent_h200_load.json: 8 GPUs (H100 80GB "
            "names and memory size), series shifted per GPU; XID 79 on GPU 3 at the 11th "
            "tick and HW slowdown + SW thermal throttling on GPU 5 added by hand from the "
            "NVIDIA Xid catalogue and nvml.h. See tests/agent/make_recordings.py."
        ),
        "system": {
            "nvmlSystemGetDriverVersion": real["system"]["nvmlSystemGetDriverVersion"],
            "nvmlEventSetCreate": "evset",
            "nvmlEventSetWait_v2(evset,0)": {"seq": waits},
        },
        "devices": devices,
    }
    (OUT / "agent_8gpu_xid.json").write_text(json.dumps(synthetic, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
