"""Energy from captured powercap trees and recorded NVML readings (no hardware here)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from slurm_ai.config import Config
from slurm_ai.energy import hook, ipmi, rapl
from slurm_ai.errors import ProbeError
from slurm_ai.hooks.context import HookContext
from slurm_ai.slurmenv import JobEnv
from slurm_ai.sysfs import Sysfs

DATA = Path(__file__).resolve().parent.parent / "data"


def _tree(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(DATA / "rapl" / name, root)
    return root


def _set(root: Path, zone: str, uj: int) -> None:
    (root / "sys/class/powercap" / zone / "energy_uj").write_text(f"{uj}\n")


def _ctx(tmp_path: Path, energy: dict, env: dict[str, str]) -> HookContext:
    config = Config(path=None, data={"energy": {"ipmi": "off", **energy}})
    job = JobEnv.from_environ(env)
    return HookContext(config, job, job.nodename or "n1", tmp_path, logging.getLogger("t"), env=env)


ENV = {
    "SLURM_JOB_ID": "7",
    "SLURMD_NODENAME": "n1",
    "SLURM_JOB_NODELIST": "n1",
    "SLURM_JOB_CPUS_PER_NODE": "8",
    "SLURM_SCRIPT_CONTEXT": "epilog_slurmd",
}


def test_discover_intel_two_sockets_skips_mmio_psys_core():
    domains = rapl.discover(Sysfs(DATA / "rapl" / "intel-xeon-2s"))
    assert [d.name for d in domains] == ["package-0", "package-1", "dram-0", "dram-1"]
    assert domains[0].max_power_w == 270.0  # constraint_0_max_power_uw


def test_counter_delta_wraps_once():
    assert rapl.counter_delta(100, 250, 1000) == 150
    assert rapl.counter_delta(900, 50, 1000) == 150


def _run(ctx, root, changes, elapsed):
    start = hook.take_snapshot(ctx, hook.EnergySettings.from_ctx(ctx))
    for zone, uj in changes.items():
        _set(root, zone, uj)
    end = hook.take_snapshot(ctx, hook.EnergySettings.from_ctx(ctx))
    end["t"] = start["t"] + elapsed
    return hook.compute(ctx, hook.EnergySettings.from_ctx(ctx), start, end)


def test_intel_rapl_job_with_wraparound(tmp_path):
    root = _tree(tmp_path, "intel-xeon-2s")
    ctx = _ctx(tmp_path, {"sysfs_root": str(root)}, ENV)
    # package-0 starts 143328850 uJ below its wrap point and wraps: 143.33 J + 56.67 J.
    out = _run(
        ctx,
        root,
        {
            "intel-rapl:0": 56671150,
            "intel-rapl:1": 101000000,
            "intel-rapl:0:0": 15000000,
            "intel-rapl:1:0": 15000000,
        },
        5.0,
    )
    by = {s["domain"]: s for s in out["sources"]}
    assert by["package-0"]["joules"] == pytest.approx(200.0)
    assert "wrapped" in by["package-0"]["note"]
    assert by["package-1"]["joules"] == pytest.approx(100.0)
    assert by["dram-0"]["joules"] == pytest.approx(10.0)
    assert out["quality"] == "measured" and out["total_j"] == pytest.approx(320.0)
    assert not any(s["source"] == "cpu-model" for s in out["sources"])


def test_shared_node_is_apportioned_and_estimated(tmp_path):
    root = _tree(tmp_path, "intel-xeon-2s")
    env = {**ENV, "SLURM_JOB_CPUS_PER_NODE": "2"}
    ctx = _ctx(tmp_path, {"sysfs_root": str(root)}, env)
    out = _run(ctx, root, {"intel-rapl:1": 101000000}, 3.0)
    pkg1 = next(s for s in out["sources"] if s["domain"] == "package-1")
    assert pkg1["joules"] == pytest.approx(25.0) and pkg1["quality"] == "estimated"
    assert "2/8" in pkg1["note"] and out["share"] == 0.25


def test_amd_package_counter(tmp_path):
    root = _tree(tmp_path, "amd-epyc-1s")
    ctx = _ctx(tmp_path, {"sysfs_root": str(root)}, {**ENV, "SLURM_JOB_CPUS_PER_NODE": "4"})
    out = _run(ctx, root, {"intel-rapl:0": 389013}, 2.0)  # wraps at 65532610987
    assert out["sources"][0]["domain"] == "package-0"
    assert out["sources"][0]["joules"] == pytest.approx(1.0)
    assert out["quality"] == "measured"


def test_long_job_beyond_wrap_window_is_not_measured(tmp_path):
    root = _tree(tmp_path, "amd-epyc-1s")
    ctx = _ctx(
        tmp_path,
        {"sysfs_root": str(root), "cpu_tdp_w": 100.0},
        {**ENV, "SLURM_JOB_CPUS_PER_NODE": "4"},
    )
    out = _run(ctx, root, {"intel-rapl:0": 1000}, 3600.0)  # window: 65.5 kJ / 500 W = 131 s
    rapl_src = next(s for s in out["sources"] if s["source"] == "rapl")
    assert rapl_src["quality"] == "unavailable" and rapl_src["joules"] is None
    model = next(s for s in out["sources"] if s["source"] == "cpu-model")
    assert model["joules"] == pytest.approx(4 * 3600 * 25.0)  # 100 W / 4 CPUs
    assert out["quality"] == "estimated"


def test_no_rapl_uses_named_cpu_model(tmp_path):
    (tmp_path / "sys/devices/system/cpu").mkdir(parents=True)
    (tmp_path / "sys/devices/system/cpu/online").write_text("0-1\n")
    ctx = _ctx(tmp_path, {"sysfs_root": str(tmp_path)}, {**ENV, "SLURM_JOB_CPUS_PER_NODE": "1"})
    out = _run(ctx, tmp_path, {}, 4.0)
    [src] = out["sources"]
    assert src["source"] == "cpu-model" and src["quality"] == "estimated"
    assert "assumed" in src["note"] and src["joules"] == pytest.approx(4.0 * 100.0)


def test_nvml_counter_delta_and_vgpu_power_estimate(tmp_path):
    from slurm_ai.energy.gpu import snapshot
    from slurm_ai.nvml import open_nvml

    nv = open_nvml(recorded=DATA / "nvml" / "energy_h100x4.json")
    start = {"t": 0.0, "rapl": {}, "gpus": snapshot(nv, [1, 3])}
    end = {"t": 10.0, "rapl": {}, "gpus": snapshot(nv, [1, 3])}
    ctx = _ctx(tmp_path, {"sysfs_root": str(tmp_path)}, {**ENV, "SLURM_JOB_GPUS": "1,3"})
    out = hook.compute(ctx, hook.EnergySettings.from_ctx(ctx), start, end)
    by = {s["domain"]: s for s in out["sources"]}
    assert by["gpu1"] == {
        "source": "nvml",
        "domain": "gpu1",
        "joules": 1400.0,
        "quality": "measured",
    }
    assert by["gpu3"]["joules"] == 2800.0
    assert out["gpus"][0]["model"] == "NVIDIA H100 80GB HBM3"

    vg = open_nvml(recorded=DATA / "nvml" / "energy_vgpu.json")
    start = {"t": 0.0, "rapl": {}, "gpus": snapshot(vg, [0])}
    end = {"t": 10.0, "rapl": {}, "gpus": snapshot(vg, [0])}
    out = hook.compute(ctx, hook.EnergySettings.from_ctx(ctx), start, end)
    gpu = next(s for s in out["sources"] if s["domain"] == "gpu0")
    assert gpu["source"] == "nvml-power" and gpu["quality"] == "estimated"
    assert gpu["joules"] == pytest.approx(2000.0) and "NotSupported" in gpu["note"]


def test_cpu_only_job_never_opens_nvml(tmp_path, monkeypatch):
    import slurm_ai.nvml as nvml_mod

    monkeypatch.setattr(nvml_mod, "open_nvml", lambda **kw: pytest.fail("NVML opened"))
    ctx = _ctx(tmp_path, {"sysfs_root": str(tmp_path)}, ENV)
    assert "gpus" not in hook.take_snapshot(ctx, hook.EnergySettings.from_ctx(ctx))


def test_ipmi_dcmi_parse_and_garbage():
    text = "\n    Instantaneous power reading:                   412 Watts\n    Minimum during sampling period: 30 Watts\n"
    assert ipmi.parse_dcmi(text) == 412.0
    for bad in ("", "Instantaneous power reading: 0 Watts", "garbage"):
        with pytest.raises(ProbeError):
            ipmi.parse_dcmi(bad)


def test_ipmi_timeout_is_a_probe_error(tmp_path):
    slow = tmp_path / "ipmitool"
    slow.write_text("#!/bin/sh\nsleep 5\n")
    slow.chmod(0o755)
    with pytest.raises(ProbeError, match="timed out"):
        ipmi.read_power_w(str(slow), timeout_s=0.3)


def test_epilog_without_prolog_snapshot_says_unavailable(tmp_path):
    ctx = _ctx(tmp_path, {"sysfs_root": str(tmp_path)}, ENV)
    out = hook.epilog_step(ctx)
    assert out["quality"] == "unavailable" and "no Prolog snapshot" in out["note"]


@pytest.mark.parametrize(("efficiency", "factor"), [(0.0, 0.3), (0.5, 0.65), (1.0, 1.0)])
def test_cpu_model_counts_idle_allocated_cpus(tmp_path, efficiency, factor):
    """A job that only sleeps still holds its CPUs: they draw the idle share of TDP."""
    (tmp_path / "sys/devices/system/cpu").mkdir(parents=True)
    (tmp_path / "sys/devices/system/cpu/online").write_text("0-1\n")
    ctx = _ctx(tmp_path, {"sysfs_root": str(tmp_path)}, {**ENV, "SLURM_JOB_CPUS_PER_NODE": "1"})
    ctx.fragments["agent"] = {"usage": {"cpu_efficiency": efficiency}}
    out = _run(ctx, tmp_path, {}, 4.0)
    [src] = out["sources"]
    assert src["joules"] == pytest.approx(4.0 * 100.0 * factor)
    assert "idle share 0.3" in src["note"] and "CPU efficiency from the agent" in src["note"]
