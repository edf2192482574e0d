"""The NVML gateway: recorded data behaves like pynvml; faults are ProbeErrors."""

from __future__ import annotations

import time
from pathlib import Path

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


def test_a_clocked_counter_agrees_across_processes() -> None:
    """{"per_s": R}: a counter at R units a second of wall clock, so a Prolog and an
    Epilog (two processes, two recordings opened) see the energy in between."""
    data = {"devices": [{"nvmlDeviceGetTotalEnergyConsumption": {"per_s": 80_000}}]}
    first = RecordedNvml(data)
    before = first.nvmlDeviceGetTotalEnergyConsumption(first.nvmlDeviceGetHandleByIndex(0))
    time.sleep(0.2)
    second = RecordedNvml(data)
    after = second.nvmlDeviceGetTotalEnergyConsumption(second.nvmlDeviceGetHandleByIndex(0))
    assert 0.15 * 80_000 <= after - before <= 5 * 80_000


def test_the_site_recording_answers_every_open_without_a_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[nvml] recording` (load_config sets it, "{node}" expanded) replaces the driver
    for every open_nvml() without a source; an explicit source still wins."""
    import json

    from slurm_ai.config import load_config
    from slurm_ai.errors import ConfigError
    from slurm_ai.health.backends import choose_backend
    from slurm_ai.nvml import site_recording

    (tmp_path / "n7.json").write_text(json.dumps(RECORDING))
    config = tmp_path / "config.toml"
    config.write_text(f'[nvml]\nrecording = "{tmp_path}/{{node}}.json"\n')
    monkeypatch.setenv("SLURMD_NODENAME", "n7")
    try:
        load_config(str(config))
        assert site_recording() == str(tmp_path / "n7.json")
        with open_nvml() as nv:
            assert nv.source == "unit test" and nv.device_count() == 2
        with open_nvml({"devices": []}) as nv:
            assert nv.device_count() == 0
        # Recorded GPUs have no driver: the all-reduce never picks NCCL on them.
        assert choose_backend("auto", 2) != "nccl"
        config.write_text('[nvml]\nrecording = "relative.json"\n')
        with pytest.raises(ConfigError, match="absolute path"):
            load_config(str(config))
        config.write_text("")
        load_config(str(config))
        assert site_recording() is None  # a config without it: the driver again
    finally:
        from slurm_ai.nvml import use_site_recording

        use_site_recording(None)
