"""Regenerate tests/data/nvml/health_*.json: python tests/health/make_recordings.py

The healthy node is CONSTRUCTED from public facts, not captured: an 8x H100
SXM5 HGX board (PCIe Gen5 x16 per GPU, 18 NVLink4 links per GPU, row
remapping instead of page retirement, so nvmlDeviceGetRetiredPages is
NotSupported), idle clock-event reason 0x1 and zero uncorrectable ECC as read
on the real lent H200 (tests/data/nvml/agent_h200_load.json), NVML enum
values from nvml.h. Each fault file changes one thing on one GPU, as the
NVIDIA Xid catalogue and "GPU Memory Error Management" guide describe it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "data" / "nvml"
SOURCE = (
    "CONSTRUCTED (tests/health/make_recordings.py): 8x H100 SXM5 80GB HBM3, PCIe Gen5 x16, "
    "18 NVLink4 links per GPU, row remapping (page retirement NotSupported); idle clock "
    "event reason 0x1 and zero uncorrectable ECC as read on the real lent H200 "
    "(agent_h200_load.json); NVML enums from nvml.h."
)
BUS = ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]


def gpu(index: int) -> dict[str, Any]:
    dev: dict[str, Any] = {
        "nvmlDeviceGetName": "NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetUUID": f"GPU-00000000-0000-4000-8000-00000000000{index}",
        "nvmlDeviceGetPciInfo": {"busId": f"00000000:{BUS[index].upper()}:00.0"},
        "nvmlDeviceGetTotalEccErrors(1,0)": 0,
        "nvmlDeviceGetTotalEccErrors(1,1)": 0,
        "nvmlDeviceGetRetiredPages(0)": {"error": "NotSupported"},
        "nvmlDeviceGetRetiredPages(1)": {"error": "NotSupported"},
        "nvmlDeviceGetRetiredPagesPendingStatus": {"error": "NotSupported"},
        "nvmlDeviceGetRemappedRows": [0, 0, 0, 0],
        "nvmlDeviceGetCurrentClocksEventReasons": 1,
        # An idle H100 trains its link down to Gen1 to save power: not a fault.
        "nvmlDeviceGetCurrPcieLinkGeneration": 1,
        "nvmlDeviceGetMaxPcieLinkGeneration": 5,
        "nvmlDeviceGetCurrPcieLinkWidth": 16,
        "nvmlDeviceGetMaxPcieLinkWidth": 16,
    }
    for link in range(18):
        dev[f"nvmlDeviceGetNvLinkState({link})"] = 1
        for counter in range(4):
            dev[f"nvmlDeviceGetNvLinkErrorCounter({link},{counter})"] = 0
    return dev


def healthy() -> dict[str, Any]:
    return {
        "source": SOURCE,
        "system": {"nvmlSystemGetDriverVersion": "550.54.15"},
        "devices": [gpu(i) for i in range(8)],
        "kernel_log": [
            "6,1021,4313000,-;NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.54.15",
            # XID 13 (graphics engine exception) is a user program's fault: ignored.
            "4,2210,91200000,-;NVRM: Xid (PCI:0000:2a:00): 13, pid=4242, name=python, "
            "Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0): Illegal Instruction Encoding",
        ],
    }


def faults() -> dict[str, tuple[str, dict[str, Any]]]:
    out: dict[str, tuple[str, dict[str, Any]]] = {}

    def variant(name: str, why: str, change: Any) -> None:
        data = copy.deepcopy(healthy())
        change(data)
        data["source"] = SOURCE + " FAULT: " + why
        out[name] = (why, data)

    variant(
        "ecc",
        "GPU 1 has 2 volatile uncorrectable (double-bit) ECC errors",
        lambda d: d["devices"][1].update(
            {"nvmlDeviceGetTotalEccErrors(1,0)": 2, "nvmlDeviceGetTotalEccErrors(1,1)": 2}
        ),
    )
    variant(
        "remap",
        "GPU 2: a row remap is pending after an uncorrectable error (needs a GPU reset)",
        lambda d: d["devices"][2].update({"nvmlDeviceGetRemappedRows": [0, 1, 1, 0]}),
    )
    variant(
        "remapfail",
        "GPU 6: row remapping failed (bank out of spare rows)",
        lambda d: d["devices"][6].update({"nvmlDeviceGetRemappedRows": [3, 8, 0, 1]}),
    )
    variant(
        "pcie",
        "GPU 3: PCIe link trained at x8 instead of x16 (link downgrade)",
        lambda d: d["devices"][3].update({"nvmlDeviceGetCurrPcieLinkWidth": 8}),
    )
    variant(
        "throttle",
        "GPU 4: HW slowdown + HW thermal slowdown at idle (0x49)",
        lambda d: d["devices"][4].update({"nvmlDeviceGetCurrentClocksEventReasons": 0x49}),
    )
    variant(
        "nvlink",
        "GPU 5: NVLink 3 inactive while the other 17 are up",
        lambda d: d["devices"][5].update({"nvmlDeviceGetNvLinkState(3)": 0}),
    )
    variant(
        "xid",
        "kernel log: Xid 79 (GPU has fallen off the bus) on GPU 7 (PCI db:00)",
        lambda d: d["kernel_log"].append(
            "3,3120,123456789,-;NVRM: Xid (PCI:0000:db:00): 79, pid='<unknown>', "
            "name=<unknown>, GPU has fallen off the bus."
        ),
    )
    variant(
        "missing",
        "only 7 of 8 GPUs visible (GPU 7 lost)",
        lambda d: d["devices"].pop(),
    )
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "health_h100_ok.json").write_text(json.dumps(healthy(), indent=1) + "\n")
    for name, (_, data) in faults().items():
        (OUT / f"health_h100_{name}.json").write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
