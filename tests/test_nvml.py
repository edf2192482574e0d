"""The NVML gateway: recorded data behaves like pynvml; faults are ProbeErrors."""

from __future__ import annotations

import time

import pytest

from slurm_ai.errors import ProbeError
from slurm_ai.nvml import LiveNvml, NvmlCallError, RecordedNvml, open_nvml, to_jsonable

RECORDING = {
    "source": "unit test",
    "system": {"nvmlSystemGetDriverVersion": "550.54.15"},
    "devices": [
        {
            "nvmlDeviceGetName": "NVIDIA H100 80GB HBM3",
            "nvmlDeviceGetPciInfo": {"busId": "00000000:18:00.0"},
            "nvmlDeviceGetTotalEnergyConsumption": {"seq": [1000, 61000]},
            "nvmlDeviceGetNvLinkState(0)": 1,
            "nvmlDeviceGetRetiredPages(1)": {"error": "NotSupported"},
            "mig": [{"nvmlDeviceGetName": "MIG 1g.10gb"}],
        },
        {"nvmlDeviceGetName": "NVIDIA H100 80GB HBM3", "nvmlDeviceGetPowerUsage": {"hang": True}},
    ],
    "pairs": {"0,1": {"nvmlDeviceGetTopologyCommonAncestor": 0}},
}


def test_recorded_nvml_answers_like_pynvml() -> None:
    nv = open_nvml(RECORDING)
    assert nv.device_count() == 2
    gpu0, gpu1 = list(nv.handles())
    assert nv.nvmlDeviceGetName(gpu0) == "NVIDIA H100 80GB HBM3"
    assert nv.nvmlDeviceGetPciInfo(gpu0).busId == "00000000:18:00.0"
    assert nv.nvmlDeviceGetTotalEnergyConsumption(gpu0) == 1000
    assert nv.nvmlDeviceGetTotalEnergyConsumption(gpu0) == 61000
    assert nv.nvmlDeviceGetTotalEnergyConsumption(gpu0) == 61000
    assert nv.nvmlDeviceGetNvLinkState(gpu0, 0) == 1
    assert nv.nvmlDeviceGetTopologyCommonAncestor(gpu1, gpu0) == 0
    assert nv.nvmlSystemGetDriverVersion() == "550.54.15"
    assert nv.nvmlDeviceGetHandleByPciBusId("00000000:18:00.0") is gpu0
    mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(gpu0, 0)
    assert nv.nvmlDeviceGetName(mig) == "MIG 1g.10gb"


def test_recorded_errors_and_hangs() -> None:
    nv = RecordedNvml(RECORDING)
    gpu0 = nv.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(NvmlCallError) as err:
        nv.nvmlDeviceGetRetiredPages(gpu0, 1)
    assert err.value.code_name == "NotSupported"
    with pytest.raises(NvmlCallError, match="NotSupported"):
        nv.nvmlDeviceGetFanSpeed(gpu0)
    with pytest.raises(NvmlCallError, match="InvalidArgument"):
        nv.nvmlDeviceGetHandleByIndex(7)
    with pytest.raises(ProbeError, match="did not answer"):
        nv.nvmlDeviceGetPowerUsage(nv.nvmlDeviceGetHandleByIndex(1))


def test_live_nvml_absent_is_a_probe_error() -> None:
    # No NVIDIA driver on this machine: a clear ProbeError, never an OSError.
    with pytest.raises(ProbeError):
        open_nvml()


def test_live_call_timeout_marks_nvml_unusable(monkeypatch: pytest.MonkeyPatch) -> None:
    import pynvml

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: time.sleep(5))
    nv = LiveNvml(timeout=0.2)
    started = time.monotonic()
    with pytest.raises(ProbeError, match="did not answer"):
        nv.device_count()
    assert time.monotonic() - started < 2
    with pytest.raises(ProbeError, match="hung earlier"):
        nv.device_count()


def test_to_jsonable_handles_ctypes_structs() -> None:
    import pynvml

    info = pynvml.c_nvmlMemory_t()
    info.total, info.free, info.used = 80, 30, 50
    assert to_jsonable(info) == {"total": 80, "free": 30, "used": 50}
    assert to_jsonable(b"abc") == "abc"
