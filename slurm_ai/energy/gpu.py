"""GPU energy through the NVML gateway (slurm_ai.nvml).

`nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver loaded, Volta and
newer) gives a measured delta per GPU. vGPU guests and older boards answer
NotSupported; then power (`nvmlDeviceGetPowerUsage`, mW) read at both ends
gives an estimate.
"""

from __future__ import annotations

from typing import Any

from slurm_ai.errors import ProbeError
from slurm_ai.nvml import Nvml, text


def snapshot(nv: Nvml, indices: list[int]) -> list[dict[str, Any]]:
    """Per allocated GPU: index, uuid, model, energy counter (mJ) and power (mW)."""
    out: list[dict[str, Any]] = []
    for index in indices:
        entry: dict[str, Any] = {"index": index}
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
        except ProbeError as exc:
            entry["error"] = str(exc)[:200]
            out.append(entry)
            continue
        for key, function, conv in (
            ("uuid", "nvmlDeviceGetUUID", text),
            ("model", "nvmlDeviceGetName", text),
            ("mj", "nvmlDeviceGetTotalEnergyConsumption", int),
            ("mw", "nvmlDeviceGetPowerUsage", int),
        ):
            try:
                entry[key] = conv(nv.call(function, handle))
            except ProbeError as exc:
                entry[f"{key}_error"] = getattr(exc, "code_name", str(exc))[:80]
        out.append(entry)
    return out
