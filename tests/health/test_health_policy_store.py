"""Policy, the spool cache and history, drain reasons, the textfile, settings."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from slurm_ai.config import Config
from slurm_ai.errors import ConfigError
from slurm_ai.health import history
from slurm_ai.health.drain import MAX_REASON, drain_node, drain_reason
from slurm_ai.health.history import HealthStore, comparable_busbw
from slurm_ai.health.policy import decide
from slurm_ai.health.prom import render, write_textfile
from slurm_ai.health.settings import HealthSettings
from slurm_ai.health.verdict import (
    EXIT_CODES,
    CheckResult,
    Verdict,
    first_worst,
    from_severity,
    worst,
)
from slurm_ai.slurmenv import JobEnv

JOB = JobEnv.from_environ(
    {
        "SLURM_JOB_ID": "7",
        "SLURM_JOB_PARTITION": "gpu",
        "SLURM_JOB_GPUS": "0,1,2,3",
        "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
    }
)


def settings(**health: object) -> HealthSettings:
    return HealthSettings.from_config(Config(None, {"health": {"enabled": True, **health}}))


def test_verdict_table() -> None:
    assert {v.value: c for v, c in EXIT_CODES.items()} == {
        "pass": 0,
        "info": 0,
        "skipped": 0,
        "unchecked": 0,
        "warn": 1,
        "fail": 2,
        "error": 3,
        "timeout": 4,
    }
    assert worst([Verdict.PASS, Verdict.TIMEOUT, Verdict.WARN]) is Verdict.TIMEOUT
    assert worst([Verdict.ERROR, Verdict.FAIL]) is Verdict.FAIL
    assert worst([Verdict.INFO, Verdict.PASS]) is Verdict.PASS
    # Not judged is never pass, and never hides a warning.
    assert worst([Verdict.PASS, Verdict.UNCHECKED]) is Verdict.UNCHECKED
    assert worst([Verdict.UNCHECKED, Verdict.WARN]) is Verdict.WARN
    info = CheckResult("xid", Verdict.INFO, "old")
    assert first_worst([info, CheckResult("gpu", Verdict.SKIPPED, "s")]) is info
    assert from_severity(Verdict.FAIL.severity) is Verdict.FAIL
    assert [v for v in Verdict if v.drains] == [Verdict.FAIL]


def test_policy_modes() -> None:
    now = 1_000_000.0
    good = {"boot_id": "b1", "checked_at": now - 600, "health": {"verdict": "pass"}}
    assert not decide(settings(enabled=False), JOB, None, "b1", now).run
    every = settings(when="every_job")
    assert decide(every, JOB, good, "b1", now).run
    assert not decide(settings(partitions=["other"]), JOB, None, "b1", now).run
    assert decide(settings(when="every_job", partitions=["gpu"]), JOB, None, "b1", now).run
    # The default: never in the Prolog, which reads the latest full verdict instead.
    background = decide(settings(), JOB, good, "b1", now)
    assert not background.run and background.background and background.cached is None
    assert not decide(settings(min_gpus=8), JOB, None, "b1", now).run
    boot = settings(when="after_boot")
    cached = decide(boot, JOB, good, "b1", now)
    assert not cached.run and cached.cached == {"verdict": "pass"}
    assert decide(boot, JOB, good, "b2", now).run  # rebooted
    assert decide(boot, JOB, {**good, "health": {"verdict": "fail"}}, "b1", now).run
    hourly = settings(when="interval", interval_hours=1)
    assert not decide(hourly, JOB, good, "b1", now).run
    assert decide(hourly, JOB, good, "b1", now + 3600).run
    assert decide(hourly, JOB, {**good, "checked_at": "garbage"}, "b1", now).run
    assert decide(hourly, JOB, {**good, "checked_at": now + 99999}, "b1", now).run  # clock skew


def test_settings_validation() -> None:
    s = HealthSettings.from_config(
        Config(
            None,
            {
                "health": {
                    "cpu_max_size": "4M",
                    "floors": {"gpu": {"min_busbw_gbps": 350}},
                    "max_small_time_us": 50,
                }
            },
        )
    )
    assert s.cpu_max_size == 4 * 2**20
    assert s.floors_for("gpu").min_busbw_gbps == 350 and s.floors_for("gpu").max_small_time_us == 50
    assert s.floors_for("cpu").min_busbw_gbps == 0
    assert not s.enabled and s.budget_s == 10.0
    for bad in (
        {"when": "sometimes"},
        {"budget_s": 0},
        {"cpu_max_size": "lots"},
        {"min_busbw_gbps": "fast"},
        {"xid_fatal": ["79"]},
        {"outlier_verdict": "drain"},
        {"floors": {"gpu": 3}},
        {"partitions": "gpu"},
    ):
        with pytest.raises(ConfigError):
            HealthSettings.from_config(Config(None, {"health": bad}))


def test_store_round_trip_history_and_corruption(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    store = HealthStore(spool)
    assert store.last() is None and store.history("gpu") == []
    store.save_last("b1", 5.0, {"verdict": "pass"})
    assert store.last() == {"boot_id": "b1", "checked_at": 5.0, "health": {"verdict": "pass"}}
    for i in range(5):
        entry = {
            "verdict": "pass" if i != 3 else "fail",
            "backend": "nccl",
            "ranks": 8,
            "size_bytes": 2**28,
            "busbw_gbps": 400.0 + i,
        }
        store.append_history("gpu", entry, keep=4)
    entries = store.history("gpu")
    assert len(entries) == 4
    assert comparable_busbw(entries, "nccl", 8, 2**28) == [401.0, 402.0, 404.0]
    assert comparable_busbw(entries, "nccl", 4, 2**28) == []
    assert stat.S_IMODE(os.stat(spool / "health").st_mode) == 0o700
    # A hostile partition name cannot escape the history directory.
    path = store.history_path("../../etc/passwd")
    assert path.parent == spool / "health" / "history" and ".." not in path.name
    assert path.name == "____etc_passwd.json"
    # Corrupt file: quarantined, read as empty.
    store.history_path("gpu").write_text("{not json")
    assert store.history("gpu") == []
    assert any(p.name.endswith("gpu.json") for p in (spool / "corrupt").iterdir())
    # A symlinked last.json is refused (and moved aside), never followed.
    target = tmp_path / "elsewhere.json"
    target.write_text('{"health": {"verdict": "pass"}}')
    (spool / "health" / "last.json").unlink()
    (spool / "health" / "last.json").symlink_to(target)
    assert store.last() is None


def test_drain_reason_is_one_safe_line() -> None:
    reason = drain_reason("xid", "gpu7: Xid 79\n\x1b[31mfallen\toff   the bus")
    assert reason == "slurm_ai: xid: gpu7: Xid 79 [31mfallen off the bus"
    long = drain_reason("allreduce", "x" * 1000)
    assert len(long) == MAX_REASON and long.endswith("...")
    with pytest.raises(ValueError):
        drain_node("n1;reboot", "r", {})


def test_textfile(tmp_path: Path) -> None:
    health = {
        "verdict": "fail",
        "backend": "nccl",
        "busbw_gbps": 12.5,
        "ranks": 8,
        "duration_s": 3.2,
        "checks": [{"check": 'x"y', "verdict": "fail"}],
    }
    text = render(health, "gpu01")
    assert 'slurm_ai_health_verdict{node="gpu01",verdict="fail"} 1' in text
    assert 'slurm_ai_health_verdict{node="gpu01",verdict="pass"} 0' in text
    assert 'slurm_ai_health_busbw_gbps{node="gpu01",backend="nccl"} 12.5' in text
    assert 'check="x\\"y"} 5' in text
    path = write_textfile(tmp_path, health, "gpu01")
    assert path.read_text() == text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["slurm_ai_health.prom"]


def test_a_fresh_last_result_is_not_quarantined_for_a_corrupt_one_read_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Epilog saves a fresh result while a Prolog is reading the corrupt one it
    replaces: the Prolog's quarantine must leave the fresh result in place."""
    spool = tmp_path / "spool"
    store = HealthStore(spool)
    store.save_last("b1", 5.0, {"verdict": "pass"})
    (spool / "health" / "last.json").write_text("{torn")
    real_read = history.read_json

    def read_then_writer_renames(path: Path) -> Any:
        try:
            return real_read(path)
        finally:
            store.save_last("b1", 9.0, {"verdict": "pass"})  # lands before the quarantine

    monkeypatch.setattr(history, "read_json", read_then_writer_renames)
    assert store.last() is None  # what this reader saw was corrupt
    monkeypatch.undo()
    assert store.last() == {"boot_id": "b1", "checked_at": 9.0, "health": {"verdict": "pass"}}
    assert not (spool / "corrupt").exists() or list((spool / "corrupt").iterdir()) == []
