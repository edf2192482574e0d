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


def test_epilog_step_says_which_path_pinned_the_tasks(tmp_path: Path) -> None:
    from slurm_ai.topology.hook import epilog_step
    from slurm_ai.topology.planfile import BIND_MARK_NAME, PINNED_NAME

    marks = tmp_path / "marks"
    ctx = ctx_for(tmp_path, {"accounting": {"mark_dir": str(marks)}})
    ctx.prolog_state = {"topology": {"platform": {"class": "container"}, "plan": {"ranks": 2}}}
    fragment = epilog_step(ctx)
    assert fragment == {
        "platform": {"class": "container"},
        "plan": {"ranks": 2, "pinned_by": "none"},
    }
    ctx.job_dir.mkdir(parents=True)
    (ctx.job_dir / PINNED_NAME).touch()
    assert epilog_step(ctx)["plan"]["pinned_by"] == "plugin"  # type: ignore[index]
    (marks / "42").mkdir(parents=True)
    (marks / "42" / BIND_MARK_NAME).symlink_to("/etc/passwd")  # a user's link names nothing
    assert epilog_step(ctx)["plan"]["pinned_by"] == "plugin"  # type: ignore[index]
    (marks / "42" / BIND_MARK_NAME).unlink()
    (marks / "42" / BIND_MARK_NAME).touch()
    assert epilog_step(ctx)["plan"]["pinned_by"] == "bind"  # type: ignore[index]
    # No Prolog state: the record still says it.
    ctx.prolog_state = {}
    assert epilog_step(ctx) == {"plan": {"pinned_by": "bind"}}


def test_prolog_step_writes_the_task_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm_ai.topology.planfile import PLAN_NAME

    monkeypatch.setenv("SLURM_JOB_ID", "42")
    ctx = ctx_for(tmp_path, {})
    ctx.job_dir.mkdir(parents=True, mode=0o700)
    prolog_step(ctx)
    path = ctx.job_dir / PLAN_NAME
    assert path.read_text().startswith("sai-task-plan 1\n")
    assert os.stat(path).st_mode & 0o077 == 0
