"""The Prolog's health step drains only for a real health failure. Every fault
of slurm-ai itself or of its tools (an internal error, NVML absent or hung,
torch missing or broken, mpirun missing, a worker crash, our own launcher's
timeout) gives exit 0 of the Prolog: no drain request, a verdict that says
what happened."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from health_helpers import needs_mpi, needs_torch

import slurm_ai.health.backends as backends
import slurm_ai.nvml
from slurm_ai.config import Config
from slurm_ai.errors import ProbeError
from slurm_ai.health.hook import prolog_step
from slurm_ai.hooks.context import HookContext
from slurm_ai.nvml import Nvml, NvmlCallError, RecordedNvml
from slurm_ai.slurmenv import JobEnv

ENV = {
    "SLURM_JOB_ID": "79",
    "SLURM_JOB_PARTITION": "bare",
    "SLURMD_NODENAME": "n1",
    "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
}
FAST = {
    "backend": "mpi",
    "when": "every_job",
    "min_size": "4K",
    "cpu_max_size": "16K",
    "iters": 1,
    "budget_s": 60,
}


def prolog(
    tmp_path: Path, health: dict[str, Any], env: dict[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700, exist_ok=True)
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("6,1,1,-;Linux version 6.1\n")
    health = {"enabled": True, "kmsg": str(kmsg), **health}
    config = Config(None, {"spool": {"dir": str(spool)}, "health": health})
    ctx = HookContext(
        config, JobEnv.from_environ({**ENV, **(env or {})}), "n1", spool, logging.getLogger("t")
    )
    out = prolog_step(ctx)
    assert out is not None
    json.dumps(out)  # it must reach the record
    return out["health"], ctx.drain_reasons


def reasons(health: dict[str, Any]) -> str:
    return " | ".join(f"{c['check']}:{c['verdict']}:{c['reason']}" for c in health["checks"])


def use_nvml(monkeypatch: pytest.MonkeyPatch, make: Callable[..., Nvml]) -> None:
    monkeypatch.setattr(slurm_ai.nvml, "open_nvml", make)


@needs_mpi
def test_nvml_absent_on_a_cpu_node_is_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(recorded: Any = None, timeout: float = 5.0) -> Nvml:
        raise ProbeError("pynvml is not installed (pip install nvidia-ml-py)")

    use_nvml(monkeypatch, absent)
    health, drains = prolog(tmp_path, FAST)
    assert health["verdict"] == "pass" and drains == []
    assert "gpu:info:no GPU (pynvml is not installed" in reasons(health)


@needs_mpi
@pytest.mark.parametrize(
    "why", ["NVML_ERROR_LIBRARY_NOT_FOUND", "nvmlInit did not answer within 2.5 s"]
)
def test_nvml_absent_or_hung_with_gpus_allocated_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    def broken(recorded: Any = None, timeout: float = 5.0) -> Nvml:
        raise ProbeError(why)

    use_nvml(monkeypatch, broken)
    health, drains = prolog(tmp_path, FAST, {"SLURM_JOB_GPUS": "0,1"})
    assert health["verdict"] == "error" and drains == []
    assert f"NVML unusable while Slurm allocated 2 GPUs: {why}" in reasons(health)


class HandleFault(RecordedNvml):
    """A recorded node whose handle lookup hangs or says the GPU is lost."""

    def __init__(self, data: dict[str, Any], fault: Exception) -> None:
        super().__init__(data)
        self.fault = fault

    def call(self, function: str, *args: Any) -> Any:
        if function == "nvmlDeviceGetHandleByIndex" and int(args[0]) == 3:
            raise self.fault
        return super().call(function, *args)


@needs_mpi
def test_hung_nvml_calls_never_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recording: Callable[[str], str]
) -> None:
    data = json.loads(Path(recording("ok")).read_text())
    hang = ProbeError("nvmlDeviceGetHandleByIndex did not answer within 2.5 s")
    use_nvml(monkeypatch, lambda recorded=None, timeout=5.0: HandleFault(data, hang))
    health, drains = prolog(tmp_path, FAST)
    assert health["verdict"] == "error" and drains == []
    assert "count:error:gpu3: nvmlDeviceGetHandleByIndex did not answer" in reasons(health)
    # A query that hangs mid-check (recorded {"hang": true}): error, no drain.
    data["devices"][0]["nvmlDeviceGetRemappedRows"] = {"hang": True}
    use_nvml(monkeypatch, lambda recorded=None, timeout=5.0: RecordedNvml(data))
    health, drains = prolog(tmp_path, FAST)
    assert health["verdict"] == "error" and drains == []
    # Odd values from a driver are our error too.
    data["devices"][0]["nvmlDeviceGetRemappedRows"] = "garbage"
    health, drains = prolog(tmp_path, FAST)
    assert health["verdict"] == "error" and drains == []
    # Whereas a GPU that is lost is a real failure and drains.
    lost = NvmlCallError("nvmlDeviceGetHandleByIndex", "GpuIsLost")
    data["devices"][0]["nvmlDeviceGetRemappedRows"] = [0, 0, 0, 0]
    use_nvml(monkeypatch, lambda recorded=None, timeout=5.0: HandleFault(data, lost))
    health, drains = prolog(tmp_path, FAST)
    assert health["verdict"] == "fail"
    assert drains == ["slurm_ai: count: gpu3: not reachable: nvmlDeviceGetHandleByIndex: GpuIsLost"]


def test_torch_missing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = backends.have_module
    monkeypatch.setattr(backends, "have_module", lambda name: name != "torch" and real(name))
    health, drains = prolog(tmp_path, {**FAST, "backend": "gloo"})
    assert health["verdict"] == "error" and drains == []
    assert "backend gloo needs torch, not found here" in health["reason"]
    # auto with neither torch nor mpirun: no backend at all, still no drain.
    health, drains = prolog(tmp_path, {**FAST, "backend": "auto", "mpirun": "/nonexistent/mpirun"})
    assert health["verdict"] == "error" and drains == []
    assert "no all-reduce backend here" in health["reason"]


@needs_torch
def test_torch_that_fails_to_import_in_the_workers_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "torch.py").write_text(
        "raise ImportError('libtorch_cpu.so: cannot open shared object file')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    health, drains = prolog(tmp_path, {**FAST, "backend": "gloo"})
    assert health["verdict"] == "error" and drains == []
    assert "libtorch_cpu.so" in health["reason"]


@needs_mpi
def test_mpirun_missing_or_a_crashing_worker_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    health, drains = prolog(tmp_path, {**FAST, "mpirun": "/nonexistent/mpirun"})
    assert health["verdict"] == "error" and drains == []
    monkeypatch.setenv("SLURM_AI_HEALTH_FAULT", "crash:1")
    health, drains = prolog(tmp_path, FAST)
    assert health["verdict"] == "error" and drains == []
    assert "mpi worker" in health["reason"]


@needs_mpi
def test_our_own_launcher_timing_out_is_a_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A budget too small for the launcher: the hard kill fires, verdict timeout.
    monkeypatch.setenv("SLURM_AI_HEALTH_FAULT", "hang:0")
    health, drains = prolog(tmp_path, {**FAST, "budget_s": 3})
    assert health["verdict"] == "timeout" and drains == []


@needs_mpi
def test_internal_errors_anywhere_fail_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import slurm_ai.health.fullcheck as fullcheck

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in slurm-ai")

    monkeypatch.setattr(fullcheck, "run_node_check", boom)
    health, drains = prolog(tmp_path, FAST)
    assert health["verdict"] == "error" and drains == []
    assert health["reason"] == "internal error: RuntimeError"
    monkeypatch.undo()
    # A spool the check must refuse (group-writable): error, never a drain.
    (tmp_path / "spool").chmod(0o777)
    try:
        health, drains = prolog(tmp_path, {**FAST, "when": "after_boot"})
    finally:
        (tmp_path / "spool").chmod(0o700)
    assert health["verdict"] == "pass" and drains == [], health
    assert "XID cursor not saved" not in reasons(health)  # no GPU here: no cursor to save
