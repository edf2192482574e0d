"""The Prolog step: {"platform", "plan"} fragment, per-boot cache, overrides, failing config."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from slurm_ai.config import Config
from slurm_ai.hooks.context import HookContext
from slurm_ai.slurmenv import JobEnv
from slurm_ai.topology.hook import prolog_step
from slurm_ai.topology.probe import cache_path, probe_node
from slurm_ai.topology.virt import platform_record


def ctx_for(tmp_path: Path, data: dict) -> HookContext:
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_PARTITION": "vm", "SLURMD_NODENAME": "n1"}
    return HookContext(
        config=Config(path=None, data=data),
        job=JobEnv.from_environ(env),
        node="n1",
        spool_dir=tmp_path / "spool",
        log=logging.getLogger("test"),
    )


def live_class() -> str:
    """This host's detected class, whatever it is (the recorded machines pin exact classes)."""
    return str(platform_record(probe_node("/").fingerprint)["class"])


def test_prolog_step_fragment_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_SCRIPT_CONTEXT", "prolog_slurmd")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    fragment = prolog_step(ctx_for(tmp_path, {}))
    assert fragment is not None and set(fragment) == {"platform", "plan"}
    assert fragment["platform"]["class"] == live_class()
    assert fragment["platform"]["override"] is False
    assert fragment["plan"]["ranks"] == 1
    cache = cache_path(tmp_path / "spool")
    assert cache.exists() and (os.stat(cache).st_mode & 0o077) == 0
    # Second call reads the cache; the override applies on top of it.
    data = {"platform": {"partitions": {"vm": {"class": "vm-passthrough"}}}}
    fragment = prolog_step(ctx_for(tmp_path, data))
    assert fragment is not None
    assert fragment["platform"]["class"] == "vm-passthrough"
    assert fragment["platform"]["override"] is True


def test_prolog_step_bad_config_fails_open(tmp_path: Path) -> None:
    data = {"topology": {"visible_devices": "sideways"}, "platform": {"class": "cloudy"}}
    fragment = prolog_step(ctx_for(tmp_path, data))
    assert fragment is not None
    assert fragment["platform"]["class"] == live_class()
    assert any("override ignored" in e for e in fragment["platform"]["evidence"])
