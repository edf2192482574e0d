"""The Prolog step: policy, cache, drain request, fail open."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from health_helpers import needs_mpi

from slurm_ai.config import Config
from slurm_ai.health.hook import prolog_step
from slurm_ai.hooks.context import HookContext
from slurm_ai.slurmenv import JobEnv

ENV = {
    "SLURM_JOB_ID": "77",
    "SLURM_JOB_PARTITION": "bare",
    "SLURMD_NODENAME": "n1",
    "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
}
FAST = {
    "backend": "mpi",
    "when": "every_job",  # the full check in the Prolog (background mode: test_health_background)
    "min_size": "4K",
    "cpu_max_size": "64K",
    "iters": 1,
    "budget_s": 60,
}


def ctx_for(tmp_path: Path, health: dict[str, Any]) -> HookContext:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700, exist_ok=True)
    config = Config(None, {"spool": {"dir": str(spool)}, "health": health})
    return HookContext(config, JobEnv.from_environ(ENV), "n1", spool, logging.getLogger("t"))


def test_disabled_by_default_is_skipped(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, {})
    out = prolog_step(ctx)
    assert out is not None and out["health"]["verdict"] == "skipped"
    assert ctx.drain_reasons == []


@needs_mpi
def test_impossible_floor_requests_a_readable_drain(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, {**FAST, "enabled": True, "floors": {"bare": {"min_busbw_gbps": 1e9}}})
    out = prolog_step(ctx)
    assert out is not None
    health = out["health"]
    assert health["verdict"] == "fail" and health["backend"] == "mpi" and health["busbw_gbps"] > 0
    assert health["device"] == "cpu"  # host buffers here: the report keys it "cpu"
    assert len(ctx.drain_reasons) == 1
    assert ctx.drain_reasons[0].startswith("slurm_ai: allreduce-busbw: busbw ")
    assert "below the floor 1e+09 GB/s" in ctx.drain_reasons[0]


@needs_mpi
def test_after_boot_uses_the_cache_and_history_grows(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, {**FAST, "enabled": True, "when": "after_boot"})
    first = prolog_step(ctx)
    second = prolog_step(ctx)
    assert first is not None and second is not None
    assert first["health"]["verdict"] == "pass" and first["health"]["cached"] is False
    assert second["health"]["cached"] is True
    assert second["health"]["busbw_gbps"] == first["health"]["busbw_gbps"]
    assert second["health"]["device"] == first["health"]["device"] == "cpu"
    history = tmp_path / "spool" / "health" / "history" / "bare.json"
    assert history.exists()


@needs_mpi
def test_hung_check_times_out_without_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_AI_HEALTH_FAULT", "hang:1")
    ctx = ctx_for(tmp_path, {**FAST, "enabled": True, "budget_s": 4})
    out = prolog_step(ctx)
    assert out is not None and out["health"]["verdict"] == "timeout"
    assert ctx.drain_reasons == []


def test_internal_errors_fail_open(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, {"enabled": True, "budget_s": "ten"})
    out = prolog_step(ctx)
    assert out is not None and out["health"]["verdict"] == "error"
    assert ctx.drain_reasons == []
    ctx = ctx_for(tmp_path, {**FAST, "enabled": True, "mpirun": "/nonexistent/mpirun"})
    out = prolog_step(ctx)
    assert out is not None and out["health"]["verdict"] == "error"
    assert ctx.drain_reasons == []
